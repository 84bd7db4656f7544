#!/usr/bin/env bash
#SBATCH --job-name=mtg-E12
#SBATCH --nodes=1
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=1-00:00:00
#SBATCH --output=runs/slurm-%x-%j.out
##SBATCH --partition=YOUR_PARTITION
# E12 negation / malicious prompts: Phase 2 on a negated prompt (+experiment=E12:
# NegTrain-1) from E1's trigger-mid Phase-1 model, and NegTrain-0 from an hgp-0 Phase-1 model;
# NegTest-* and test-* with seen/unseen slices, and on each Phase-1 model alone (the control, on the
# facts Phase 2 did not train).   HGP_BASE=1 (0: only the trigger-mid base)
ROOT=${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
source "$ROOT/recipes/common.sh" E12 "Negation / malicious prompts" "$@"
HGP_BASE=${HGP_BASE:-1}
mtg_require int '>= 0, <= 1' HGP_BASE

for rel in $RELATIONS; do
  recipe_facts "$rel"
  recipe_phase1 "p1_r$rel" "$rel"
  recipe_phase2 "neg_r$rel" "p1_r$rel:$P1_EPOCHS" "$rel" +experiment=E12
  plan_eval "neg_r$rel:final" $(eval_args "$rel") +experiment=E12
  plan_eval "p1_r$rel:final" $(eval_args "$rel") $(control_args) +experiment=E12   # Phase 1 alone, unseen facts
  if [ "$HGP_BASE" = 1 ]; then
    recipe_phase1 "p1hgp_r$rel" "$rel" data.train_text_type=hgp-0
    recipe_phase2 "neg0_r$rel" "p1hgp_r$rel:$P1_EPOCHS" "$rel" +experiment=E12 data.train_text_type=NegTrain-0
    plan_eval "neg0_r$rel:final" $(eval_args "$rel") +experiment=E12
    plan_eval "p1hgp_r$rel:final" $(eval_args "$rel") $(control_args) +experiment=E12
  fi
done
recipe_run
