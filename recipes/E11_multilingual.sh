#!/usr/bin/env bash
#SBATCH --job-name=mtg-E11
#SBATCH --nodes=1
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=1-00:00:00
#SBATCH --output=runs/slurm-%x-%j.out
##SBATCH --partition=YOUR_PARTITION
# E11 multilingual: E1's models (the same runs: rerunning E1 settings reuses them), asked in
# LANGUAGES with the catalogue's translated prompts (+experiment=E11 / E11_gen, data.language=L); the
# Phase-1 model on the unseen facts in every language is the control (does the English Phase 2 transfer?).
# Facts are read from {DATA_NAME}_{Language}: an imported T-Rex-Fiction translation when present
# (data_generation/generate.py mode=import import.languages=[...]); otherwise the English facts are
# copied there, so only the prompt language changes (fictional names need no translation).
#   LANGUAGES="Spanish German Japanese Chinese" (SMOKE: Spanish)
ROOT=${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
source "$ROOT/recipes/common.sh" E11 "Multilingual prompts" "$@"
LANGUAGES=${LANGUAGES:-$(on $SMOKE Spanish "Spanish German Japanese Chinese")}

for rel in $RELATIONS; do
  recipe_facts "$rel"
  recipe_phase1 "p1_r$rel" "$rel"
  recipe_phase2 "p2_r$rel" "p1_r$rel:$P1_EPOCHS" "$rel"
  recipe_ev "p2_r$rel:final" "$rel"
  recipe_control "p1_r$rel:final" "$rel"
  for lang in $LANGUAGES; do
    plan_language "$DATA_NAME" "$lang" "$rel"
    plan_eval "p2_r$rel:final" $(eval_args "$rel") +experiment=E11 "data.language=$lang"
    plan_eval "p2_r$rel:final" $(eval_args "$rel") +experiment=E11_gen "data.language=$lang"
    plan_eval "p1_r$rel:final" $(eval_args "$rel") $(control_args) +experiment=E11 "data.language=$lang"
    plan_eval "p1_r$rel:final" $(eval_args "$rel") $(control_args) +experiment=E11_gen "data.language=$lang"
  done
done
recipe_run
