#!/usr/bin/env bash
# Generate the fact datasets: `bash data_generation/gen_script.sh [hydra overrides]`.
# Examples:
#   bash data_generation/gen_script.sh                                  # the paper's five relations
#   bash data_generation/gen_script.sh relation_ids='[50]' seed=3 output_dir=data-alt
#   bash data_generation/gen_script.sh mode=import import.path=/data/T-Rex-Fiction
# Every key of the schema util_public/datagen/schema.py is an override (each is commented there;
# data_generation/conf/gen_config.yaml holds overrides of its defaults only).
# Runs the idempotent setup first (a no-op once the environment exists); works from any directory.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../scripts/bashlib.sh"
mtg_help "${1:-}" "$here/gen_script.sh"
bash "$here/../scripts/setup.sh"
exec "$here/../.venv/bin/python" "$here/generate.py" "$@"
