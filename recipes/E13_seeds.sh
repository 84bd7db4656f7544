#!/usr/bin/env bash
#SBATCH --job-name=mtg-E13
#SBATCH --nodes=1
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=3-00:00:00
#SBATCH --output=runs/slurm-%x-%j.out
##SBATCH --partition=YOUR_PARTITION
# E13 seeds: E1 for each seed in SEEDS (Phase 1 and Phase 2 both use it), with each seed's
# Phase-1 control; sweep.csv has a `seed` column for mean ± sd.   SEEDS="42 0 10 70 100" (SMOKE: "42 0")
ROOT=${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
source "$ROOT/recipes/common.sh" E13 "Seeds" "$@"
SEEDS=${SEEDS:-$(on $SMOKE "42 0" "42 0 10 70 100")}
mtg_require ints '>= 0' SEEDS

for rel in $RELATIONS; do
  recipe_facts "$rel"
  for SEED in $SEEDS; do
    recipe_phase1 "p1_r${rel}_s$SEED" "$rel"
    recipe_phase2 "p2_r${rel}_s$SEED" "p1_r${rel}_s$SEED:$P1_EPOCHS" "$rel"
    recipe_ev "p2_r${rel}_s$SEED:final" "$rel"
    recipe_control "p1_r${rel}_s$SEED:$P1_EPOCHS" "$rel"
  done
done
recipe_run
