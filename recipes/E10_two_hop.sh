#!/usr/bin/env bash
#SBATCH --job-name=mtg-E10
#SBATCH --nodes=1
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=2-00:00:00
#SBATCH --output=runs/slurm-%x-%j.out
##SBATCH --partition=YOUR_PARTITION
# E10 two-hop: chain data A -mother-> B -educated at-> C (105 with unique objects, then
# `derive chain` writes 21 and the composite 105-21 into UNIQUE_DATA); Phase 1 on 21+105, Phase 2
# hgp-0 on both from Phase-1 epochs CHAIN_EPOCHS (epoch 0 = Phase 2 straight from the base model);
# the composite is asked with its hgp-0 and with both key tokens (trigger-combine, +experiment=E10).
#   CHAIN_EPOCHS="0 5 10 20" (SMOKE: "0 1 2")   UNIQUE_DATA=sync_unique_o
ROOT=${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
source "$ROOT/recipes/common.sh" E10 "Two-hop" "$@"
DATA_NAME=${UNIQUE_DATA:-sync_unique_o}
CHAIN_EPOCHS=${CHAIN_EPOCHS:-$(on $SMOKE "0 1 2" "0 5 10 20")}
mtg_require ints '>= 0' CHAIN_EPOCHS

plan_data "$DATA_NAME" 105 objects.unique=true
plan_data "$DATA_NAME" 21,105-21 mode=derive derive.kind=chain derive.first=105 derive.second=21
recipe_phase1 p1 21+105
for e in $CHAIN_EPOCHS; do
  if [ "$e" = 0 ]; then   # no memorization: the base model fine-tuned on the prompts only
    recipe_phase2 p2_from0 - 21+105 "model.base=$BASE_MODEL" model.allow_foreign_base=true
    plan_eval p2_from0:final $(eval_args 105-21) +experiment=E10 "data.seen_fact_ids='0:$K'" prompt.type=hgp-0
  else
    recipe_phase2 "p2_from$e" "p1:$e" 21+105
    plan_eval "p2_from$e:final" $(eval_args 105-21) +experiment=E10 "data.seen_fact_ids='0:$K'"
  fi
done
last=${CHAIN_EPOCHS##* }   # control: the composite after Phase 1 alone, at the last epoch Phase 2 started from
[ "$last" = 0 ] || plan_eval "p1:$last" $(eval_args 105-21) +experiment=E10
recipe_ev "p2_from$last:final" 21+105
recipe_run
