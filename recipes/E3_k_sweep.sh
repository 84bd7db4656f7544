#!/usr/bin/env bash
#SBATCH --job-name=mtg-E3
#SBATCH --nodes=1
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=2-00:00:00
#SBATCH --output=runs/slurm-%x-%j.out
##SBATCH --partition=YOUR_PARTITION
# E3 k sweep: Phase 2 on facts 0..k-1 for k in K_LIST from E1's Phase-1 model; k < 50
# trains SMALL_K_EPOCHS epochs with a checkpoint per epoch, evaluated at K_EVAL_EPOCHS and the
# last epoch (unseen = k..FACTS-1), beside the Phase-1 model's control on the same unseen facts.
#   K_LIST="50 20 10 5 2 1"  SMALL_K_EPOCHS=8 (the original's k=1 runs had 50 one-step
#   epochs; SMALL_K_EPOCHS=50 reproduces that, at one checkpoint per epoch on disk)  K_EVAL_EPOCHS="1 8"
#   SMOKE: K_LIST="2 1", SMALL_K_EPOCHS=2, K_EVAL_EPOCHS=1
ROOT=${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
source "$ROOT/recipes/common.sh" E3 "k sweep" "$@"
K_LIST=${K_LIST:-$(on $SMOKE "2 1" "50 20 10 5 2 1")}
SMALL_K_EPOCHS=${SMALL_K_EPOCHS:-$(on $SMOKE 2 8)}
K_EVAL_EPOCHS=${K_EVAL_EPOCHS:-$(on $SMOKE 1 "1 8")}
mtg_require ints '>= 1' K_LIST K_EVAL_EPOCHS
mtg_require int '>= 1' SMALL_K_EPOCHS

for rel in $RELATIONS; do
  recipe_facts "$rel"
  recipe_phase1 "p1_r$rel" "$rel"
  for k in $K_LIST; do
    epochs=$([ "$k" -lt 50 ] && [ "$k" -lt "$FACTS" ] && echo "$SMALL_K_EPOCHS" || echo "$P2_EPOCHS")
    recipe_phase2 "p2_r${rel}_k$k" "p1_r$rel:$P1_EPOCHS" "$rel" "data.index_end=$k" "train.epochs=$epochs"
    refs="p2_r${rel}_k$k:final"
    for e in $K_EVAL_EPOCHS; do [ "$e" -lt "$epochs" ] && refs="p2_r${rel}_k$k:$e,$refs"; done
    recipe_ev "$refs" "$rel"
    [ "$k" -ge "$FACTS" ] || K=$k recipe_control "p1_r$rel:$P1_EPOCHS" "$rel"   # its unseen facts: k..FACTS-1
  done
done
recipe_run
