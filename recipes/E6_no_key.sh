#!/usr/bin/env bash
#SBATCH --job-name=mtg-E6
#SBATCH --nodes=1
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=1-00:00:00
#SBATCH --output=runs/slurm-%x-%j.out
##SBATCH --partition=YOUR_PARTITION
# E6 no-key ablation: Phase 1 on "S O." (`subject`, +experiment=E6), then hgp-0 as in E1;
# memorization is measured with the `subject` prompt (there is no key token); the control of P1.
ROOT=${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
source "$ROOT/recipes/common.sh" E6 "No key token" "$@"

for rel in $RELATIONS; do
  recipe_facts "$rel"
  recipe_phase1 "p1_r$rel" "$rel" +experiment=E6
  recipe_phase2 "p2_r$rel" "p1_r$rel:$P1_EPOCHS" "$rel"
  recipe_memory "p1_r$rel:final" "$rel" subject
  recipe_control "p1_r$rel:final" "$rel"
  recipe_ev "p2_r$rel:final" "$rel" subject
done
recipe_run
