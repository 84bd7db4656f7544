#!/usr/bin/env bash
# The test command: set up (idempotent), then run the whole offline CPU suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not integration"`, or
# `bash scripts/test.sh -m multiproc` (only the tests that launch several processes).
# Two pytest-xdist workers, one per core of the 2-core machines it is sized for, each taking whole
# test files (a module's fixtures are built once); `-n 0` after the command runs everything in one
# process (for --pdb), `-n 4` uses four.
# The `vllm` tests need vLLM's own environment: built once (~3.5 GB, ~5 min) into a cache outside the
# clone and reused by every clone; MTG_SKIP_VLLM=1 skips the build and those tests (the summary says so).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bashlib.sh
mtg_help "${1:-}" scripts/test.sh
bash scripts/setup.sh
[ "${MTG_SKIP_VLLM:-}" = 1 ] || bash scripts/setup_vllm.sh
exec .venv/bin/python -m pytest -n 2 --dist loadfile "$@"
