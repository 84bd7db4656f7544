#!/usr/bin/env bash
#SBATCH --job-name=mtg-E8
#SBATCH --nodes=1
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=2-00:00:00
#SBATCH --output=runs/slurm-%x-%j.out
##SBATCH --partition=YOUR_PARTITION
# E8 multi-relation: Phase 1 and Phase 2 on the five relations jointly (MULTI_RELATION,
# facts 0..FACTS-1 and 0..K-1 of each); Phase 2 from the last Phase-1 epoch and from EXTRA_BASE_EPOCH
# (the original also used checkpoint 1500 = epoch 6); EV per relation plus the macro mean, and the
# control of each Phase-1 epoch Phase 2 started from.
#   MULTI_RELATION=12+21+50+71+105  EXTRA_BASE_EPOCH=6 (SMOKE: 1; empty: none)
ROOT=${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
source "$ROOT/recipes/common.sh" E8 "Five relations jointly" "$@"
MULTI_RELATION=${MULTI_RELATION:-12+21+50+71+105}
EXTRA_BASE_EPOCH=${EXTRA_BASE_EPOCH-$(on $SMOKE 1 6)}
mtg_require int '>= 1' EXTRA_BASE_EPOCH

recipe_facts "$MULTI_RELATION"
recipe_phase1 p1 "$MULTI_RELATION"
recipe_memory p1:final "$MULTI_RELATION"
for e in $EXTRA_BASE_EPOCH $P1_EPOCHS; do
  recipe_phase2 "p2_from$e" "p1:$e" "$MULTI_RELATION"
  recipe_ev "p2_from$e:final" "$MULTI_RELATION"
  recipe_control "p1:$e" "$MULTI_RELATION"
done
recipe_run
