#!/usr/bin/env bash
#SBATCH --job-name=mtg-E1
#SBATCH --nodes=1
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=1-00:00:00
#SBATCH --output=runs/slurm-%x-%j.out
##SBATCH --partition=YOUR_PARTITION
# E1 main: Phase 1 "S <TRIGGER_r> O." on all facts for P1_EPOCHS, Phase 2 hgp-0 on facts
# 0..K-1 from the last Phase-1 epoch; EV on the Phase-2 model, memorization and the Phase-1-only control
# (EV's prompts on the unseen facts) on the Phase-1 model,
# the locality control (real facts, general-text perplexity) on the base, Phase-1 and Phase-2 models,
# and the specificity probes (emission under unrelated prompts, cross-relation MC) on the Phase-2 model.
#   bash recipes/E1_main.sh | sbatch recipes/E1_main.sh | SMOKE=1 bash recipes/E1_main.sh
# Parameters: recipes/common.sh (BASE_MODEL, RELATIONS, FACTS, K, epochs, LEGACY, ...).
ROOT=${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
source "$ROOT/recipes/common.sh" E1 "Main: memorize, then generalize" "$@"

for rel in $RELATIONS; do
  recipe_facts "$rel"
  recipe_phase1 "p1_r$rel" "$rel"
  recipe_phase2 "p2_r$rel" "p1_r$rel:$P1_EPOCHS" "$rel"
  recipe_memory "p1_r$rel:final" "$rel"
  recipe_control "p1_r$rel:final" "$rel"
  recipe_ev "p2_r$rel:final" "$rel"
  recipe_locality "=$BASE_MODEL,p1_r$rel:final,p2_r$rel:final" "$rel"
  recipe_specificity "p2_r$rel:final" "$rel"
done
recipe_run
