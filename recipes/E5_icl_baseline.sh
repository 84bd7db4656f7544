#!/usr/bin/env bash
#SBATCH --job-name=mtg-E5
#SBATCH --nodes=1
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=0-06:00:00
#SBATCH --output=runs/slurm-%x-%j.out
##SBATCH --partition=YOUR_PARTITION
# E5 ICL baseline: no training; the base model with the fact statement in context
# (test_type=open, open_content=hgp-0) on test-* and unrelated-* (+experiment=E5).
ROOT=${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
source "$ROOT/recipes/common.sh" E5 "ICL baseline" "$@"

for rel in $RELATIONS; do
  recipe_facts "$rel"
  plan_eval "=$BASE_MODEL" $(eval_args "$rel") +experiment=E5
done
recipe_run
