#!/usr/bin/env bash
# End-to-end wall times (main demo, quick demo, whole test suite); see bench/e2e.py. Arguments go to it:
#   --only demo|demo_quick|tests (repeatable: run only these)   --out FILE (the JSON record; the log beside it)
# Run it when nothing else runs: contention inflates every figure.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bashlib.sh
mtg_help "${1:-}" bench/e2e.sh
exec .venv/bin/python bench/e2e.py "$@"
