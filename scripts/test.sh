#!/usr/bin/env bash
# The test command: set up (idempotent), then run the whole offline CPU suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not integration"`, or
# `bash scripts/test.sh -m multiproc` (only the tests that launch several processes).
# Two pytest-xdist workers, one per core of the 2-core machines it is sized for, each taking whole
# test files (a module's fixtures are built once); `-n 0` after the command runs everything in one
# process (for --pdb), `-n 4` uses four.
# The `vllm` tests need vLLM's own environment: built once (~3.5 GB, 2-5 min) into a cache outside the
# clone and reused by every clone; MTG_SKIP_VLLM=1 skips the build and those tests (the summary says so).
# On a machine without it the build runs in the background while .venv is set up and the other tests
# run (the real-vLLM tests, few and late in the order, wait for it: tests/vllmkit.py); its log is shown
# when it fails, and a failed build fails the command.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bashlib.sh
mtg_help "${1:-}" scripts/test.sh
unset MTG_VLLM_BUILD
if [ "${MTG_SKIP_VLLM:-}" != 1 ]; then
  # MTG_VLLM_BUILD: where the build leaves its log (.log) and, when it ends, its exit status (.rc).
  MTG_VLLM_BUILD=$(mktemp -d)/setup_vllm
  export MTG_VLLM_BUILD
  (
    rc=0
    bash scripts/setup_vllm.sh > "$MTG_VLLM_BUILD.log" 2>&1 || rc=$?
    echo "$rc" > "$MTG_VLLM_BUILD.rc.tmp" && mv "$MTG_VLLM_BUILD.rc.tmp" "$MTG_VLLM_BUILD.rc"
  ) &
fi

# vllm_build_done: wait for the build (a run that selected no real-vLLM test did not), show its own
# lines, and fail when it failed.
vllm_build_done() {
  [ -n "${MTG_VLLM_BUILD:-}" ] || return 0
  wait
  local rc
  rc=$(cat "$MTG_VLLM_BUILD.rc" 2> /dev/null) || rc=interrupted     # no status: the build was killed
  grep -h '^setup_vllm:' "$MTG_VLLM_BUILD.log" >&2 || true
  if [ "$rc" != 0 ]; then
    tail -n 20 "$MTG_VLLM_BUILD.log" >&2
    echo "error: scripts/setup_vllm.sh: the vLLM environment did not build (exit $rc; its last lines above)" >&2
  fi
  rm -rf "$(dirname "$MTG_VLLM_BUILD")"
  [ "$rc" = 0 ]
}

rc=0
bash scripts/setup.sh || rc=$?
[ "$rc" != 0 ] || .venv/bin/python -m pytest -n 2 --dist loadfile "$@" || rc=$?
vllm_build_done || [ "$rc" != 0 ] || rc=2
exit "$rc"
