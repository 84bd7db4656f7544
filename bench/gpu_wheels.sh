#!/usr/bin/env bash
# Fill .whl/ with the wheels an offline GPU machine lacks for the entry points: hydra-core, omegaconf
# and antlr4's runtime at requirements.lock's versions (the rest, torch, transformers, accelerate,
# pandas, comes with a CUDA image). Run it where pip reaches a registry; copy .whl (~0.4 MiB) to the
# GPU machine and install it there first:
#   python3 -m pip install -q --no-index --no-deps --target .whl/site .whl/*.whl && export PYTHONPATH=$PWD/.whl/site
# antlr4-python3-runtime 4.9.3 is published as a source archive only: it is built into a wheel here.
# Parameters (environment): PYTHON=python3, PY_VERSION=3.12 (the GPU machine's Python).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bashlib.sh
mtg_help "${1:-}" bench/gpu_wheels.sh
mtg_no_arguments bench/gpu_wheels.sh "" "$@"
py=${PYTHON:-python3}
pinned() { grep -i "^$1==" requirements.lock; }
rm -rf .whl && mkdir -p .whl
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version "${PY_VERSION:-3.12}" --implementation cp \
    -d .whl "$(pinned hydra-core)" "$(pinned omegaconf)"
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
"$py" -m pip download -q --no-deps --no-binary=:all: -d "$src" "$(pinned antlr4-python3-runtime)"
"$py" -m pip wheel -q --no-deps -w .whl "$src"/*
ls -l .whl
