#!/usr/bin/env bash
#SBATCH --job-name=mtg-E4
#SBATCH --nodes=1
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=2-00:00:00
#SBATCH --output=runs/slurm-%x-%j.out
##SBATCH --partition=YOUR_PARTITION
# E4 SFT baselines: no Phase 1; the phase2 config with model.allow_foreign_base
# (+experiment=E4) fine-tunes the BASE model on all facts with the train prompt (hgp-0) or
# train-mix-N / train-mix, SFT_EPOCHS epochs with a checkpoint per epoch; test-* on each
# checkpoint. sweep.csv's tokens_trained is the x-axis (compare with E1/E3's Phase-1 + Phase-2 tokens).
#   SFT_TYPES="hgp-0 train-mix-2 train-mix-4 train-mix-6 train-mix-8 train-mix"  SFT_EPOCHS=20
#   SFT_LOSS=o (the original's script: normal, lr 5e-6, 1 epoch)   SMOKE: "hgp-0 train-mix-2", 2 epochs
ROOT=${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
source "$ROOT/recipes/common.sh" E4 "SFT baselines" "$@"
SFT_TYPES=${SFT_TYPES:-$(on $SMOKE "hgp-0 train-mix-2" "hgp-0 train-mix-2 train-mix-4 train-mix-6 train-mix-8 train-mix")}
SFT_EPOCHS=${SFT_EPOCHS:-$(on $SMOKE 2 20)}
mtg_require int '>= 1' SFT_EPOCHS
SFT_LOSS=${SFT_LOSS:-o}

for rel in $RELATIONS; do
  recipe_facts "$rel"
  for t in $SFT_TYPES; do
    recipe_sft "sft_r${rel}_$t" "$rel" "$t" "$SFT_EPOCHS" "loss.mode=$SFT_LOSS"
    plan_eval "sft_r${rel}_$t:all" $(eval_args "$rel") +experiment=E4
  done
done
recipe_run
