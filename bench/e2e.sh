#!/usr/bin/env bash
# End-to-end wall times (quick demo, whole test suite); see bench/e2e.py. Arguments go to it:
#   --only demo|quick|tests (repeatable: run only these)   --out FILE (the JSON record)
# Run it when nothing else runs: contention inflates every figure.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bashlib.sh
mtg_help "${1:-}" bench/e2e.sh
exec .venv/bin/python bench/e2e.py "$@"
