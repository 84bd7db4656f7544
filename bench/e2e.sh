#!/usr/bin/env bash
# End-to-end wall times (quick demo, whole test suite); see bench/e2e.py. Arguments go to it.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python bench/e2e.py "$@"
