#!/usr/bin/env bash
#SBATCH --job-name=mtg-E16
#SBATCH --nodes=1
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=1-00:00:00
#SBATCH --output=runs/slurm-%x-%j.out
# E16 dose-response (this project's addition, not in the paper): generalization against
# specificity as the Phase-2 strength varies. From one Phase-1 model, Phase 2 on facts 0..K-1 with
# each (batch x epochs) of DOSES (a batch is one optimizer step, split over the ranks: on NPROC=2
# each batch must be even) and each learning rate of DOSE_LRS; every Phase-2 model
# is evaluated on the unseen facts K..FACTS-1: MC and greedy generation under the train prompt,
# one held-out paraphrase and the unrelated prompts (generation "contains" there is the rate at
# which the memorized object is emitted for a question about something else), and the locality
# control (real facts, general-text perplexity) on the base, Phase-1 and every Phase-2 model.
#   DOSES="50x1 25x1 17x1 10x1 10x3" (with K=50: 1, 2, 3, 5 and 15 optimizer steps)
#   DOSE_LRS="1e-5 3e-5"   DOSE_PROMPTS="hgp-0,test-0,unrelated-*"
#   P1_MODEL=<registry name>: start from an existing Phase-1 checkpoint (e.g. the demo's) instead of
#   training E1's Phase 1 here.   SMOKE: DOSES="2x1 1x2", DOSE_LRS=1e-4
# Figure: python -m util_public.recipes.plots dose {RECIPE_RESULTS}/sweep.csv
ROOT=${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
source "$ROOT/recipes/common.sh" E16 "Dose-response: Phase-2 strength vs specificity" "$@"
DOSES=${DOSES:-$(on $SMOKE "2x1 1x2" "50x1 25x1 17x1 10x1 10x3")}
DOSE_LRS=${DOSE_LRS:-$(on $SMOKE 1e-4 "1e-5 3e-5")}
mtg_require numbers '> 0' DOSE_LRS
DOSE_PROMPTS=${DOSE_PROMPTS:-hgp-0,test-0,unrelated-*}

for rel in $RELATIONS; do
  recipe_facts "$rel"
  if [ -n "${P1_MODEL:-}" ]; then
    base=- from=("model.base=$P1_MODEL") p1="=$P1_MODEL"
  else
    recipe_phase1 "p1_r$rel" "$rel"
    base="p1_r$rel:$P1_EPOCHS" from=() p1="p1_r$rel:final"
  fi
  # Unseen facts only; seen/unseen named explicitly so that the Phase-1 model reports them too.
  dose_eval() {
    plan_eval "$1" $(eval_args "$rel") $(control_args) "tasks=[mc,gen]" \
      "prompt.type=[$DOSE_PROMPTS]"
  }
  dose_eval "$p1"                    # zero Phase-2 steps
  models="=$BASE_MODEL,$p1"
  for lr in $DOSE_LRS; do
    for dose in $DOSES; do
      batch=${dose%x*} epochs=${dose#*x} label="p2_r${rel}_lr${lr}_b${dose}"
      recipe_phase2 "$label" "$base" "$rel" "${from[@]}" "train.learning_rate=$lr" "train.epochs=$epochs" \
        "train.per_device_train_batch_size=$(per_rank "$batch" "$WORLD")" "train.effective_batch_size=$batch" \
        "train.warmup_steps=0"     # one optimizer step of `batch` facts, over every rank (no accumulation)
      dose_eval "$label:final"
      models="$models,$label:final"
    done
  done
  recipe_locality "$models" "$rel"
done
recipe_run
