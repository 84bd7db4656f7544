#!/usr/bin/env bash
# The test command: set up (idempotent), then run the whole offline CPU suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not integration"`, or
# `bash scripts/test.sh -m multiproc` (only the tests that launch several processes).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bashlib.sh
mtg_help "${1:-}" scripts/test.sh
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
