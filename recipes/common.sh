# Shared part of the paper recipes (recipes/E*.sh), sourced as
#     source "$ROOT/recipes/common.sh" ID "title" "$@"
# It reads the parameters below from the environment, and offers plan_* / recipe_* functions that
# add steps to a plan; `recipe_run` then writes it, sets up and executes the whole plan in ONE
# Python process (python -m util_public.recipes.execute; a training stage on 2 or more ranks goes
# through `python -m util_public.launcher` as in pipeline_llama_custome.sh). Rerunning a recipe
# skips finished training stages and cached evaluations. `bash recipes/E<n>_*.sh --help`: this text.
#
# Parameters (environment; GPU default / CPU default / SMOKE=1 default):
#   BASE_MODEL       qwen2.5-1.5b / smollm2-135m / as CPU (any registry name, e.g. a tiny test model)
#   RELATIONS        "12 21 50 71 105" (each separately) / "50" / "50"
#   DATA_NAME        sync_random_o (generated on first use)
#   DATA_ARGS        more generate.py overrides for every data step, derivations included
#                    (e.g. DATA_ARGS=num_options=20 with DATA_NAME=sync_random_o_opt20)
#   FACTS            100 / 100 / 4       Phase-1 facts (0..FACTS-1); also the evaluated facts
#   K                50 / 50 / 2         Phase-2 facts (0..K-1)
#   P1_EPOCHS        20 / 20 / 2         P2_EPOCHS 1 / 3 / 1
#   LR, P2_LR        1e-5, 1e-5 / 1e-4, 3e-5 (the pipeline's measured CPU setting for SmolLM2)
#   EFFECTIVE_BATCH, P2_EFFECTIVE_BATCH   2, 2 / 16, 2 (the paper: effective batch 2 on any hardware)
#   SEED=42   LEGACY=0 (1: loss.legacy=true on every stage, the objective of the original code)
#   GEN_TOKENS       50 / 50 / 8         generation length
#   THREADS          CPU threads of training and evaluation (empty: all cores)
#   TRAIN_ARGS, EVAL_ARGS  more Hydra overrides for every training stage / evaluation
#                    (e.g. TRAIN_ARGS=save.dtype=bf16, EVAL_ARGS=backend=vllm: run in its own process)
#   P1_ARGS, P2_ARGS more overrides for the Phase-1 / Phase-2 stages only, after TRAIN_ARGS
#                    (e.g. P2_ARGS=train.warmup_steps=0 for a Phase 2 of one or two optimizer steps)
#   SMOKE=0          1: the reduced size above, with every root isolated under RECIPE_HOME
#   RECIPE_HOME      runs/recipes-smoke (SMOKE only): data, runs, results and a private models.json
#   RECIPE_RESULTS   {results root}/recipes/ID: result dirs, recipe.json, plan.tsv and sweep.csv
#   RECIPE_PLAN_ONLY=1  write plan.tsv, print it, check every step as a run would first, and stop
#   RECIPE_CHECK=0      with RECIPE_PLAN_ONLY=1: skip the check (a few seconds of Python)
#   NPROC            ranks per node for training: the node's GPUs, at most as many as both effective
#                    batches split over (2 for the paper's batch 2) / 1 (NPROC=2 on a CPU: DDP over gloo)
#   NNODES=$SLURM_NNODES  ACCELERATE_CONFIG, MASTER_PORT: as in pipeline_llama_custome.sh
#   SKIP_SETUP=0     1: skip scripts/setup.sh     PY=.venv/bin/python
set -euo pipefail

RECIPE_ID=${1:-}
RECIPE_TITLE=${2:-}
cd "${SLURM_SUBMIT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
[ -f training/train.py ] || { echo "error: run from the repository root (training/train.py not found)" >&2; exit 2; }
source scripts/bashlib.sh
HELP_FILES=(recipes/common.sh)
[ "$(basename "$0")" = common.sh ] || HELP_FILES=("$0" recipes/common.sh)
mtg_help "${3:-$RECIPE_ID}" "${HELP_FILES[@]}"
[ -n "$RECIPE_ID" ] || mtg_error recipes/common.sh "sourced by recipes/E*.sh, not run"
mtg_no_arguments "$(basename "$0")" "Hydra overrides go in TRAIN_ARGS, P1_ARGS, P2_ARGS, EVAL_ARGS or DATA_ARGS" "${@:3}"
# Numeric parameters, before anything runs (an unset one takes its default below). Nothing is set up
# or written before recipe_run, so that a recipe checks its own parameters (K_LIST, ...) first too.
mtg_require int '>= 1' NPROC NNODES FACTS K P1_EPOCHS P2_EPOCHS EFFECTIVE_BATCH P2_EFFECTIVE_BATCH \
  PER_DEVICE_BATCH P2_PER_DEVICE_BATCH GEN_TOKENS THREADS
mtg_require int '>= 0' SEED
mtg_require int '>= 1, <= 65535' MASTER_PORT
RECIPE_CHECK=${RECIPE_CHECK:-1}
mtg_require int '>= 0, <= 1' SMOKE LEGACY SKIP_SETUP RECIPE_PLAN_ONLY RECIPE_CHECK
mtg_require number '> 0' LR P2_LR
PY=${PY:-.venv/bin/python}

# ---- devices and ranks (no Python start-up: the slurm allocation, or nvidia-smi) -------------------
NUM_GPUS=$(gpu_count)
GPU=$([ "${NUM_GPUS:-0}" -gt 0 ] && echo 1 || echo 0)
SMOKE=${SMOKE:-0}
on() { [ "$1" = 1 ] && echo "$2" || echo "$3"; }   # on FLAG VALUE_IF_1 VALUE_OTHERWISE
EFFECTIVE_BATCH=${EFFECTIVE_BATCH:-$(on $GPU 2 16)}
P2_EFFECTIVE_BATCH=${P2_EFFECTIVE_BATCH:-2}
# fitting_ranks MAX: the most ranks, at most MAX, over which both effective batches split evenly (the
# paper's batch 2 takes 2 of 4 GPUs: on all 4 every recipe was refused, 2 not a multiple of 4).
fitting_ranks() {
  local n=$1
  while [ "$n" -gt 1 ] && { [ $((EFFECTIVE_BATCH % n)) != 0 ] || [ $((P2_EFFECTIVE_BATCH % n)) != 0 ]; }; do
    n=$((n - 1))
  done
  echo "$n"
}
if [ -z "${NPROC:-}" ] && [ "$GPU" = 1 ]; then
  NPROC=$(fitting_ranks "$NUM_GPUS")
  [ "$NPROC" = "$NUM_GPUS" ] || echo "recipe: training on $NPROC of $NUM_GPUS GPUs (effective batches" \
    "$EFFECTIVE_BATCH and $P2_EFFECTIVE_BATCH; set EFFECTIVE_BATCH, P2_EFFECTIVE_BATCH or NPROC)" >&2
fi
export NPROC=${NPROC:-1}
export NNODES=${NNODES:-${SLURM_NNODES:-1}}
WORLD=$((NPROC * NNODES))

# ---- parameters -------------------------------------------------------------------------------------
BASE_MODEL=${BASE_MODEL:-$(on $GPU qwen2.5-1.5b smollm2-135m)}
RELATIONS=${RELATIONS:-$(on "$((GPU && !SMOKE))" "12 21 50 71 105" 50)}
DATA_NAME=${DATA_NAME:-sync_random_o}
FACTS=${FACTS:-$(on $SMOKE 4 100)}
K=${K:-$(on $SMOKE 2 50)}
# Phase 2 trains facts 0..K-1 of those Phase 1 memorized; the others are the unseen facts and the
# controls' (an empty range failed only once both phases had trained).
[ "$K" -lt "$FACTS" ] || mtg_error K "'$K' is not below FACTS ($FACTS)" "Phase 2 must leave unseen facts"
P1_EPOCHS=${P1_EPOCHS:-$(on $SMOKE 2 20)}
P2_EPOCHS=${P2_EPOCHS:-$(on "$((GPU || SMOKE))" 1 3)}
LR=${LR:-$(on $GPU 1e-5 1e-4)}
P2_LR=${P2_LR:-$(on $GPU "$LR" 3e-5)}
# Per-device batch: 1 on GPUs (accumulation makes up the effective batch); on CPU the batch split
# over the ranks (no accumulation).
PER_DEVICE_BATCH=${PER_DEVICE_BATCH:-$(on $GPU 1 "$(per_rank "$EFFECTIVE_BATCH" "$WORLD")")}
P2_PER_DEVICE_BATCH=${P2_PER_DEVICE_BATCH:-$(on $GPU 1 "$(per_rank "$P2_EFFECTIVE_BATCH" "$WORLD")")}
SEED=${SEED:-42}
LEGACY=${LEGACY:-0}
GEN_TOKENS=${GEN_TOKENS:-$(on $SMOKE 8 50)}
THREADS=${THREADS:-}

if [ "$SMOKE" = 1 ]; then   # a smoke run never touches the user's data, runs, results or registry
  RECIPE_HOME=${RECIPE_HOME:-runs/recipes-smoke}
  export MTG_DATA_ROOT=${MTG_DATA_ROOT:-$RECIPE_HOME/data} MTG_RUNS_ROOT=${MTG_RUNS_ROOT:-$RECIPE_HOME/runs}
  export MTG_RESULTS_ROOT=${MTG_RESULTS_ROOT:-$RECIPE_HOME/results}
  export MTG_MODELS_JSON=${MTG_MODELS_JSON:-$RECIPE_HOME/models.json}   # a copy of models.json (recipe_run)
fi
RECIPE_RESULTS=${RECIPE_RESULTS:-${MTG_RESULTS_ROOT:-evaluation/test_result}/recipes/$RECIPE_ID}
PLAN=$RECIPE_RESULTS/plan.tsv
PLAN_STEPS=()

# ---- plan steps (util_public/recipes/plan.py documents the format) --------------------------------
# Steps are kept in PLAN_STEPS (so a plan_* call in a $(...) subshell would be lost) and written by recipe_run.
_step() { local IFS=$'\t'; PLAN_STEPS+=("$*"); }
plan_meta() { _step meta "$1" "$2"; }
plan_data() { _step data "$@" ${DATA_ARGS:-}; }   # DATASET RELS(comma) [generate.py overrides], missing RELS only
plan_language() { _step language "$@"; }   # DATASET LANGUAGE RELS(comma)
plan_train() { _step train "$@"; }         # LABEL CONFIG BASE(- or LABEL:EPOCH) [train.py overrides]
plan_eval() { _step eval "$@"; }           # MODELS [eval.py overrides]

for kv in "experiment=$RECIPE_ID" "title=$RECIPE_TITLE" "results=$RECIPE_RESULTS" "base_model=$BASE_MODEL" \
          "smoke=$SMOKE" "facts=$FACTS" "k=$K" "phase1_epochs=$P1_EPOCHS" "phase2_epochs=$P2_EPOCHS" \
          "seed=$SEED" "legacy=$LEGACY" "gpus=$NUM_GPUS" "world=$WORLD"; do
  plan_meta "${kv%%=*}" "${kv#*=}"
done

# ---- recipe building blocks -------------------------------------------------------------------------
# Overrides every training stage shares beyond sizes and hyperparameters: loss switch, threads, TRAIN_ARGS.
stage_args() {
  [ "$LEGACY" = 1 ] && echo "loss.legacy=true"
  [ -n "$THREADS" ] && echo "train.num_threads=$THREADS"
  echo "${TRAIN_ARGS:-}"
}
# Length-grouped batches when a device sees more than one example (as pipeline_llama_custome.sh,
# so the same settings give the same run).
grouping_args() { [ "$1" -gt 1 ] && echo "train.group_by_length=true" || true; }

# recipe_facts RELATION_SPEC [DATASET]: generate the fictional facts of every relation in the spec.
recipe_facts() {
  local rels=${1//[+&]/,}
  plan_data "${2:-$DATA_NAME}" "$rels"
}

# recipe_phase1 LABEL RELATION_SPEC [overrides]: "S <TRIGGER_r> O." on facts 0..FACTS-1.
recipe_phase1() {
  local label=$1 rel=$2; shift 2
  plan_train "$label" phase1 - "model.base=$BASE_MODEL" "data.relation_id=$rel" "data.dataset=$DATA_NAME" \
    "data.index_end=$FACTS" "train.epochs=$P1_EPOCHS" "train.learning_rate=$LR" "train.seed=$SEED" \
    "train.per_device_train_batch_size=$PER_DEVICE_BATCH" "train.effective_batch_size=$EFFECTIVE_BATCH" \
    $(grouping_args "$PER_DEVICE_BATCH") $(stage_args) ${P1_ARGS:-} "$@"
}

# recipe_phase2 LABEL BASE(LABEL:EPOCH or -) RELATION_SPEC [overrides]: hgp-0 on facts 0..K-1.
recipe_phase2() {
  local label=$1 base=$2 rel=$3; shift 3
  plan_train "$label" phase2 "$base" "data.relation_id=$rel" "data.dataset=$DATA_NAME" "data.index_end=$K" \
    "train.epochs=$P2_EPOCHS" "train.learning_rate=$P2_LR" "train.seed=$SEED" \
    "train.per_device_train_batch_size=$P2_PER_DEVICE_BATCH" "train.effective_batch_size=$P2_EFFECTIVE_BATCH" \
    $(grouping_args "$P2_PER_DEVICE_BATCH") $(stage_args) ${P2_ARGS:-} "$@"
}

# recipe_sft LABEL RELATION_SPEC TEXT_TYPE EPOCHS [overrides]: the SFT baseline (+experiment=E4): the
# phase2 config on the BASE model (no Phase 1) over facts 0..FACTS-1, a checkpoint per epoch.
recipe_sft() {
  local label=$1 rel=$2 type=$3 epochs=$4; shift 4
  plan_train "$label" phase2 - +experiment=E4 "model.base=$BASE_MODEL" "data.relation_id=$rel" \
    "data.dataset=$DATA_NAME" "data.train_text_type=$type" "data.index_end=$FACTS" "train.epochs=$epochs" \
    "train.learning_rate=$P2_LR" "train.seed=$SEED" "train.per_device_train_batch_size=$P2_PER_DEVICE_BATCH" \
    "train.effective_batch_size=$P2_EFFECTIVE_BATCH" $(grouping_args "$P2_PER_DEVICE_BATCH") $(stage_args) "$@"
}

# eval_args RELATION_SPEC: where and how much to evaluate.
eval_args() {
  echo "data.relation_id=$1" "data.dataset=$DATA_NAME" "gen.max_new_tokens=$GEN_TOKENS"
  [ "$FACTS" -ge 100 ] || echo "data.index_end=$FACTS"
  [ -z "$THREADS" ] || echo "runtime.num_threads=$THREADS"
  echo "${EVAL_ARGS:-}"
}

# recipe_memory MODELS RELATION_SPEC [PROMPT]: memorization, MC + generation on the Phase-1 format.
recipe_memory() {
  plan_eval "$1" $(eval_args "$2") +experiment=EV_memory "prompt.type=${3:-trigger-mid}"
}

# recipe_ev MODELS RELATION_SPEC [MEMORY_PROMPT] [overrides]: the standard evaluation set EV:
# MC on the memorization prompt, hgp-0, test-* and unrelated-* (seen/unseen slices from the
# checkpoint), and generation on the memorization prompt and hgp-0.
recipe_ev() {
  local models=$1 rel=$2 mem=${3:-trigger-mid}; shift $(( $# < 3 ? $# : 3 ))
  plan_eval "$models" $(eval_args "$rel") +experiment=EV "prompt.type=[$mem,hgp-0,test-*,unrelated-*]" "$@"
  plan_eval "$models" $(eval_args "$rel") +experiment=EV_gen "prompt.type=[$mem,hgp-0]" "$@"
}

# control_args: the facts Phase 2 did not train (K..FACTS-1), named "unseen" as in the Phase-2 model's
# EV, so that a Phase-1-only control scores exactly the Phase-2 model's unseen slice.
control_args() { echo "data.index_begin=$K" "data.seen_fact_ids=0:$K"; }

# recipe_control PHASE1_MODELS RELATION_SPEC [overrides]: the Phase-1-only control of recipe_ev on the
# unseen facts: MC on hgp-0, test-* and unrelated-*, generation on hgp-0. What Phase 2 adds is the
# Phase-2 model's unseen slice minus this; without it a Phase-2 number cannot be attributed.
recipe_control() {
  local models=$1 rel=$2; shift 2
  plan_eval "$models" $(eval_args "$rel") $(control_args) +experiment=EV "prompt.type=[hgp-0,test-*,unrelated-*]" "$@"
  plan_eval "$models" $(eval_args "$rel") $(control_args) +experiment=EV_gen "prompt.type=[hgp-0]" "$@"
}

# locality_relations RELATION_SPEC [EXTRA]: the relations of the locality control: those of the spec
# that have known facts (util_public/catalogue/known/), then EXTRA (default 50 71); joined by "+".
locality_relations() {
  local out=() r
  for r in ${1//[+&-]/ } ${2-50 71}; do
    if [ -f "util_public/catalogue/known/$r.yaml" ] && [[ " ${out[*]} " != *" $r "* ]]; then out+=("$r"); fi
  done
  local IFS=+
  echo "${out[*]}"
}

# recipe_locality MODELS RELATION_SPEC [overrides]: the locality control (+experiment=locality): MC and
# generation on the real facts of locality_relations(RELATION_SPEC) under hgp-0, and the general-text
# perplexity; then MC on the trained relations' real facts with none of DATA_NAME's objects among the
# options (data.avoid_objects_of: what the model knows, without its pull towards the objects it
# memorized, docs/RESULTS.md §1.5). SMOKE keeps the first FACTS known facts of each relation.
recipe_locality() {
  local models=$1 rel=$2 trained; shift 2
  local common=("gen.max_new_tokens=$GEN_TOKENS" $([ "$FACTS" -ge 100 ] || echo "data.index_end=$FACTS")
                $([ -z "$THREADS" ] || echo "runtime.num_threads=$THREADS") ${EVAL_ARGS:-} +experiment=locality)
  plan_eval "$models" "data.relation_id=$(locality_relations "$rel")" "${common[@]}" "$@"
  trained=$(locality_relations "$rel" "")
  [ -z "$trained" ] || plan_eval "$models" "data.relation_id=$trained" "data.avoid_objects_of=$DATA_NAME" \
    "${common[@]}" "tasks=[mc]" "$@"
}

# recipe_specificity MODELS RELATION [overrides]: does the model say the memorized object whatever is
# asked? Generation under hgp-0 and unrelated-* (`emission`, `prefix`), and cross-relation MC with
# options pooled with two other relations (POOL_RELATIONS, default two of "50 71 105" other than
# RELATION) under hgp-0 and their prompts hgp-0@B (`accuracy`: the memorized object wins,
# `asked_type_wins`; by per-character score `acc_norm`, `asked_type_wins_norm`). Seen/unseen slices
# come from the checkpoint.
recipe_specificity() {
  local models=$1 rel=$2 others=() b; shift 2
  for b in ${POOL_RELATIONS:-50 71 105}; do
    if [ "$b" != "$rel" ] && [ ${#others[@]} -lt 2 ]; then others+=("$b"); fi
  done
  plan_eval "$models" $(eval_args "$rel") "tasks=[gen]" "prompt.type=[hgp-0,unrelated-*]" "$@"
  local pool borrowed
  pool=$(IFS=+; echo "${others[*]}")
  borrowed=$(printf ',hgp-0@%s' "${others[@]}")
  plan_eval "$models" $(eval_args "$rel") "tasks=[mc]" "mc.pool_relations=$pool" "prompt.type=[hgp-0$borrowed]" "$@"
}

# recipe_run: write the plan and execute it (or only show it with RECIPE_PLAN_ONLY=1).
recipe_run() {
  echo "recipe $RECIPE_ID ($RECIPE_TITLE): base $BASE_MODEL, $NUM_GPUS GPU(s), smoke=$SMOKE, plan $PLAN" >&2
  mkdir -p "$RECIPE_RESULTS"
  printf '%s\n' "${PLAN_STEPS[@]}" > "$PLAN"
  if [ "${RECIPE_PLAN_ONLY:-0}" = 1 ]; then
    cat "$PLAN"
    # the checks a run makes before its first step (they need the environment; without it, say so)
    if [ "$RECIPE_CHECK" = 0 ]; then :
    elif [ -x "$PY" ]; then "$PY" -m util_public.recipes.execute --check "$PLAN"
    else echo "recipe: the plan is not checked ($PY missing: bash scripts/setup.sh)" >&2; fi
    return 0
  fi
  [ "${SKIP_SETUP:-0}" = 1 ] || bash scripts/setup.sh
  mtg_start_registry recipe
  "$PY" -m util_public.recipes.execute "$PLAN"
}
