#!/usr/bin/env bash
#SBATCH --job-name=mtg-E2
#SBATCH --nodes=1
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=1-00:00:00
#SBATCH --output=runs/slurm-%x-%j.out
##SBATCH --partition=YOUR_PARTITION
# E2 memorization depth: Phase 2 from Phase-1 epochs DEPTH_EPOCHS, all checkpoints of the
# SAME P1_EPOCHS-epoch cosine run (not separate short runs); memorization and the control of each of
# those Phase-1 checkpoints and EV of each Phase-2 model.
#   DEPTH_EPOCHS="3 6 10 20" (SMOKE: "1 2")
ROOT=${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
source "$ROOT/recipes/common.sh" E2 "Memorization depth" "$@"
DEPTH_EPOCHS=${DEPTH_EPOCHS:-$(on $SMOKE "1 2" "3 6 10 20")}
mtg_require ints '>= 1' DEPTH_EPOCHS

for rel in $RELATIONS; do
  recipe_facts "$rel"
  recipe_phase1 "p1_r$rel" "$rel"
  for e in $DEPTH_EPOCHS; do
    recipe_phase2 "p2_r${rel}_from$e" "p1_r$rel:$e" "$rel"
    recipe_memory "p1_r$rel:$e" "$rel"
    recipe_control "p1_r$rel:$e" "$rel"
    recipe_ev "p2_r${rel}_from$e:final" "$rel"
  done
done
recipe_run
