#!/usr/bin/env bash
#SBATCH --job-name=mtg-E7
#SBATCH --nodes=1
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=1-00:00:00
#SBATCH --output=runs/slurm-%x-%j.out
##SBATCH --partition=YOUR_PARTITION
# E7 key position: Phase 1 "<TRIGGER_r> S O." (trigger-begin, +experiment=E7) against
# "S <TRIGGER_r> O." (trigger-mid), each followed by hgp-0; EV with each one's own key prompt, and each
# Phase-1 model's control on the unseen facts (the two positions memorize alike but transfer differently).
ROOT=${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
source "$ROOT/recipes/common.sh" E7 "Key position: trigger-begin vs trigger-mid" "$@"

for rel in $RELATIONS; do
  recipe_facts "$rel"
  for pos in begin mid; do
    preset=$([ $pos = begin ] && echo +experiment=E7 || true)
    recipe_phase1 "p1_r${rel}_$pos" "$rel" $preset
    recipe_phase2 "p2_r${rel}_$pos" "p1_r${rel}_$pos:$P1_EPOCHS" "$rel"
    recipe_memory "p1_r${rel}_$pos:final" "$rel" "trigger-$pos"
    recipe_control "p1_r${rel}_$pos:final" "$rel"
    recipe_ev "p2_r${rel}_$pos:final" "$rel" "trigger-$pos"
  done
done
recipe_run
