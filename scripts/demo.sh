#!/usr/bin/env bash
# The main job on the embedded model (README Quickstart, first command).
# Today: set up, generate the fictional facts of the paper's five relations, then check that the
# embedded SmolLM2-135M loads and answers. Extra arguments go to the data generator.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash data_generation/gen_script.sh on_exists=overwrite "$@"
.venv/bin/python scripts/check_model.py smollm2-135m "The capital of France is"
