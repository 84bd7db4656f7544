#!/usr/bin/env bash
#SBATCH --job-name=mtg-E9
#SBATCH --nodes=1
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=1-00:00:00
#SBATCH --output=runs/slurm-%x-%j.out
##SBATCH --partition=YOUR_PARTITION
# E9 reversal: relation 105 generated with unique objects (objects.unique=true) into
# UNIQUE_DATA, the reversed relation r105 derived from it; Phase 1 + Phase 2 on 105 as in E1, then
# r105's hgp-0 ("The child of {head} is", +experiment=E9), also on Phase 1 alone (the control). SFT
# counterpart (E9_SFT=1): E4's hgp-0 SFT on 105, evaluated the same way. The forward direction (105's
# hgp-0) beside each: a reversal near chance means something only where the forward fact is known.
#   UNIQUE_DATA=sync_unique_o   E9_SFT=1   SFT_EPOCHS=20 (SMOKE: 2)
ROOT=${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
source "$ROOT/recipes/common.sh" E9 "Reversal" "$@"
DATA_NAME=${UNIQUE_DATA:-sync_unique_o}
E9_SFT=${E9_SFT:-1}
SFT_EPOCHS=${SFT_EPOCHS:-$(on $SMOKE 2 20)}
mtg_require int '>= 1' SFT_EPOCHS
mtg_require int '>= 0, <= 1' E9_SFT

plan_data "$DATA_NAME" 105 objects.unique=true
plan_data "$DATA_NAME" r105 mode=derive derive.kind=reverse derive.source=105
recipe_phase1 p1_r105 105
recipe_phase2 p2_r105 "p1_r105:$P1_EPOCHS" 105
recipe_ev p2_r105:final 105
plan_eval p2_r105:final $(eval_args r105) +experiment=E9 "data.seen_fact_ids='0:$K'"
plan_eval p1_r105:final $(eval_args r105) +experiment=E9   # control: the reversal after Phase 1 alone
recipe_control p1_r105:final 105                            # and the forward direction after Phase 1 alone
if [ "$E9_SFT" = 1 ]; then
  recipe_sft sft_r105 105 hgp-0 "$SFT_EPOCHS"
  plan_eval sft_r105:final $(eval_args r105) +experiment=E9 "data.seen_fact_ids='0:$FACTS'"
  plan_eval sft_r105:final $(eval_args 105) +experiment=E9 "data.seen_fact_ids='0:$FACTS'"   # forward (105 wins over E9's r105)
fi
recipe_run
