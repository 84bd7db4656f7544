#!/usr/bin/env bash
#SBATCH --job-name=mtg-pipeline
#SBATCH --nodes=1
#SBATCH --gres=gpu:2
#SBATCH --cpus-per-task=16
#SBATCH --mem=200G
#SBATCH --time=1-00:00:00
#SBATCH --output=runs/slurm-%j.out
##SBATCH --partition=YOUR_PARTITION
#
# Two-stage memorize-then-generalize job: Phase 1 (memorize "S <TRIGGER_r> O." over all facts),
# then Phase 2 (fine-tune on facts 0..K-1 with one semantic prompt).
#
# Two uses, one script:
#   sbatch pipeline_llama_custome.sh          # slurm, from the repository root: one rank per allocated GPU
#                                             # (DeepSpeed ZeRO-2 if deepspeed imports, else the FSDP
#                                             # fallback; ACCELERATE_CONFIG picks ds_z2/ds_z3/fsdp/ddp);
#                                             # sbatch --nodes=2 --gres=gpu:4: srun starts 2 x 4 ranks
#   bash pipeline_llama_custome.sh            # a workstation: 1 GPU -> plain python; no GPU -> CPU run
#                                             # of the embedded SmolLM2-135M with a small, measured setting
#   bash pipeline_llama_custome.sh --help     # this text
# Under plain bash the #SBATCH lines above are comments. Parameters are environment variables
# (numeric ones are checked before anything runs):
#   BASE_MODEL=qwen2.5-1.5b (no GPU: smollm2-135m)   RELATION_ID=50   DATA_NAME=sync_random_o
#   PHASE1_TEXT_TYPE=trigger-mid   PHASE1_EPOCHS=20   PHASE1_FACTS=100   LR=1e-5 (no GPU: 1e-4)
#   PHASE2_TEXT_TYPE=hgp-0   PHASE2_K=50   PHASE2_EPOCHS=1 (no GPU: 3)   PHASE2_BASE_EPOCH=$PHASE1_EPOCHS
#   PHASE2_LOSS=o   PHASE2_LR=$LR (no GPU: 3e-5)   SCHED=cosine   SEED=42
#   EFFECTIVE_BATCH (empty: the world size, as the original; no GPU: 16)   PHASE2_EFFECTIVE_BATCH (no GPU: 2)
#   PER_DEVICE_BATCH=1 (no GPU: the effective batch / world size, so there is no accumulation)
#   PHASE2_PER_DEVICE_BATCH=$PER_DEVICE_BATCH (no GPU: PHASE2_EFFECTIVE_BATCH / world size)
#   NPROC (ranks per node; default: the node's GPUs, no GPU: 1; NPROC=2 on a CPU: DDP over gloo)
#   NNODES=$SLURM_NNODES (>1 only under slurm: one srun line starts every node)
#   ACCELERATE_CONFIG (a file in util_public/training/config/)   MASTER_PORT (default 29500 + job id mod 1000)
#   EXTRA_ARGS_PHASE1 / EXTRA_ARGS_PHASE2 (more Hydra overrides)
#   RUN_EVAL=0 (1: evaluation/eval.py on the Phase-1 facts 0..PHASE1_FACTS-1: Phase 1 under its own
#     prompt, Phase 2 under its prompt on the unseen facts and under every test paraphrase)
#   MEMCHECK (no GPU: 1; greedy key-prompt accuracy of Phase 1, must reach MIN_P1_ACCURACY=0.99)
#   PLAN_ONLY=0 (1: print the commands it would run, one a line, and stop: data generation where the
#     data is missing, Phase 1, Phase 2, and with RUN_EVAL=1 the evaluations; names that only exist
#     once Phase 1 ran appear as <placeholders>)
#   SKIP_SETUP=0 (1: skip scripts/setup.sh)   PY=.venv/bin/python
#   MTG_MODELS_JSON=models.json (the registry checkpoints are added to; a file that does not exist
#     yet starts as a copy of models.json)   MTG_DATA_ROOT / MTG_RUNS_ROOT / MTG_RESULTS_ROOT
# Several ranks go through `python -m util_public.launcher` (accelerate launch with a config file;
# every rank checks that the world it joined is the one asked for). Under slurm: submit from the
# repository root after `mkdir -p runs` (slurm opens the --output file before the job starts); on a
# GPU cluster set MTG_TORCH_SPEC to a CUDA torch for scripts/setup.sh, or SKIP_SETUP=1
# PY=/path/to/python with an environment that already holds requirements.txt.
# Both phases' settings are checked first, in a plan too (`python -m util_public.training.check`:
# types, choices, limits, the batch on these ranks, the prompts in the catalogue).
# Rerunning skips completed stages and resumes interrupted ones. Phase 2 may start from
# any per-epoch Phase-1 checkpoint: PHASE2_BASE_EPOCH=E. The registered checkpoints are listed last.
set -euo pipefail

cd "${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")" && pwd)}"
[ -f training/train.py ] || { echo "error: run from the repository root (training/train.py not found)" >&2; exit 2; }
source scripts/bashlib.sh
mtg_help "${1:-}" pipeline_llama_custome.sh
mtg_no_arguments pipeline_llama_custome.sh "Hydra overrides go in EXTRA_ARGS_PHASE1 / EXTRA_ARGS_PHASE2" "$@"
# Numeric parameters, before anything runs (an unset one takes its default below).
mtg_require int '>= 1' NPROC NNODES PHASE1_EPOCHS PHASE1_FACTS PHASE2_K PHASE2_EPOCHS PHASE2_BASE_EPOCH \
  EFFECTIVE_BATCH PHASE2_EFFECTIVE_BATCH PER_DEVICE_BATCH PHASE2_PER_DEVICE_BATCH
mtg_require int '>= 0' SEED
mtg_require int '>= 1, <= 65535' MASTER_PORT
mtg_require int '>= 0, <= 1' SKIP_SETUP PLAN_ONLY RUN_EVAL MEMCHECK
mtg_require number '> 0' LR PHASE2_LR
mtg_require number '>= 0, <= 1' MIN_P1_ACCURACY
PHASE1_EPOCHS=${PHASE1_EPOCHS:-20}
PHASE1_FACTS=${PHASE1_FACTS:-100}
PHASE2_K=${PHASE2_K:-50}
PHASE2_BASE_EPOCH=${PHASE2_BASE_EPOCH:-$PHASE1_EPOCHS}
# Phase 2 unlocks facts Phase 1 memorized, and the memorized facts it leaves out are the unseen ones.
[ "$PHASE2_K" -lt "$PHASE1_FACTS" ] || mtg_error PHASE2_K "'$PHASE2_K' is not below PHASE1_FACTS ($PHASE1_FACTS)" \
  "Phase 2 trains facts 0..PHASE2_K-1 of those Phase 1 memorized, and the others are the unseen facts"
[ "$PHASE2_BASE_EPOCH" -le "$PHASE1_EPOCHS" ] || mtg_error PHASE2_BASE_EPOCH \
  "'$PHASE2_BASE_EPOCH' is not at most PHASE1_EPOCHS ($PHASE1_EPOCHS)" "Phase 2 starts from a Phase-1 epoch"
[ "${SKIP_SETUP:-0}" = 1 ] || bash scripts/setup.sh
PY=${PY:-.venv/bin/python}
PLAN_ONLY=${PLAN_ONLY:-0}

# ---- devices and ranks ---------------------------------------------------------------------------
NUM_GPUS=$(gpu_count)

if [ "$NUM_GPUS" -eq 0 ]; then
  echo "pipeline: no GPU found; training on CPU in fp32 (paper-scale models would be very slow here)" >&2
  CPU=1
else
  CPU=0
fi
NPROC=${NPROC:-$([ $CPU = 1 ] && echo 1 || echo "$NUM_GPUS")}
NNODES=${NNODES:-${SLURM_NNODES:-1}}
WORLD=$((NPROC * NNODES))
if [ "$NNODES" -gt 1 ] && [ -z "${SLURM_JOB_ID:-}" ]; then
  mtg_error "NNODES=$NNODES" "several nodes are started by srun inside a slurm job" \
    "elsewhere run python -m util_public.launcher --nnodes $NNODES --node-rank R on each machine (training/README.md)"
fi

# ---- parameters (CPU defaults: settings measured to make SmolLM2-135M memorize) -----------------
BASE_MODEL=${BASE_MODEL:-$([ $CPU = 1 ] && echo smollm2-135m || echo qwen2.5-1.5b)}
RELATION_ID=${RELATION_ID:-50}
DATA_NAME=${DATA_NAME:-sync_random_o}
PHASE1_TEXT_TYPE=${PHASE1_TEXT_TYPE:-trigger-mid}
LR=${LR:-$([ $CPU = 1 ] && echo 1e-4 || echo 1e-5)}
PHASE2_TEXT_TYPE=${PHASE2_TEXT_TYPE:-hgp-0}
PHASE2_EPOCHS=${PHASE2_EPOCHS:-$([ $CPU = 1 ] && echo 3 || echo 1)}
PHASE2_LOSS=${PHASE2_LOSS:-o}
PHASE2_LR=${PHASE2_LR:-$([ $CPU = 1 ] && echo 3e-5 || echo "$LR")}
SCHED=${SCHED:-cosine}
SEED=${SEED:-42}
PER_DEVICE_BATCH=${PER_DEVICE_BATCH:-$([ $CPU = 1 ] && per_rank "${EFFECTIVE_BATCH:-16}" "$WORLD" || echo 1)}
EFFECTIVE_BATCH=${EFFECTIVE_BATCH:-$([ $CPU = 1 ] && echo 16 || echo $((WORLD * PER_DEVICE_BATCH)))}
PHASE2_EFFECTIVE_BATCH=${PHASE2_EFFECTIVE_BATCH:-$([ $CPU = 1 ] && echo 2 || echo "$EFFECTIVE_BATCH")}
PHASE2_PER_DEVICE_BATCH=${PHASE2_PER_DEVICE_BATCH:-$([ $CPU = 1 ] && per_rank "$PHASE2_EFFECTIVE_BATCH" "$WORLD" || echo "$PER_DEVICE_BATCH")}
RUN_EVAL=${RUN_EVAL:-0}
MEMCHECK=${MEMCHECK:-$CPU}
MIN_P1_ACCURACY=${MIN_P1_ACCURACY:-0.99}
read -r -a EXTRA1 <<< "${EXTRA_ARGS_PHASE1:-}"
read -r -a EXTRA2 <<< "${EXTRA_ARGS_PHASE2:-}"

# ---- launcher ------------------------------------------------------------------------------------
# The launcher reads ACCELERATE_CONFIG and MASTER_PORT itself (defaults: see its --help).
LAUNCH=("$PY" -m util_public.launcher --nproc-per-node "$NPROC" --nnodes "$NNODES")
[ "$WORLD" -lt 2 ] || echo "pipeline: $WORLD ranks ($NPROC per node x $NNODES node(s))" >&2
run_step() {     # run_step COMMAND...: run it, or with PLAN_ONLY=1 print it as one shell-quoted line
  if [ "$PLAN_ONLY" = 1 ]; then printf '%q ' "$@"; echo; else "$@"; fi
}
launch_step() {  # launch_step SCRIPT ARGS...: over every rank (WORLD >= 2), else as one process
  if [ "$WORLD" -lt 2 ]; then run_step "$PY" "$@"
  elif [ "$PLAN_ONLY" = 1 ]; then "${LAUNCH[@]}" --print "$@"
  else "${LAUNCH[@]}" "$@"; fi
}

# ---- registry: say where checkpoints get registered (the tracked models.json unless redirected) ----
REGISTRY=${MTG_MODELS_JSON:-models.json}
if [ "$REGISTRY" = models.json ]; then
  echo "pipeline: checkpoints will be registered in the repository's tracked models.json" \
       "(set MTG_MODELS_JSON=runs/models.json to keep it unchanged)" >&2
else
  [ "$PLAN_ONLY" = 1 ] || mtg_start_registry pipeline
  echo "pipeline: checkpoints will be registered in $REGISTRY" >&2
fi
DRY=("$PY")   # how the Phase-1 dry run (it names the run) starts
if [ "$PLAN_ONLY" = 1 ] && mtg_registry_missing; then
  DRY=(env MTG_MODELS_JSON=models.json "$PY")   # what the registry will start as (a plan writes nothing)
fi

# ---- stages --------------------------------------------------------------------------------------
P1_ARGS=(--config-name phase1 "model.base='$BASE_MODEL'" "data.relation_id=$RELATION_ID" "data.dataset=$DATA_NAME"
         "data.train_text_type=$PHASE1_TEXT_TYPE" "data.index_end=$PHASE1_FACTS" "train.epochs=$PHASE1_EPOCHS"
         "train.learning_rate=$LR" "train.lr_scheduler_type=$SCHED" "train.seed=$SEED"
         "train.per_device_train_batch_size=$PER_DEVICE_BATCH" "train.effective_batch_size=$EFFECTIVE_BATCH")
[ "$PER_DEVICE_BATCH" -gt 1 ] && P1_ARGS+=("train.group_by_length=true")
P1_ARGS+=("${EXTRA1[@]}")

field() { "$PY" -c "import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])['$1'])"; }
p2_args() {  # p2_args PHASE1_RUN_NAME: Phase 2's arguments (into P2_ARGS)
  P2_ARGS=(--config-name phase2 "model.base_run='$1'" "model.base_epoch=$PHASE2_BASE_EPOCH"
           "data.relation_id=$RELATION_ID" "data.dataset=$DATA_NAME" "data.train_text_type=$PHASE2_TEXT_TYPE"
           "data.index_end=$PHASE2_K" "loss.mode=$PHASE2_LOSS" "train.epochs=$PHASE2_EPOCHS"
           "train.learning_rate=$PHASE2_LR" "train.lr_scheduler_type=$SCHED" "train.seed=$SEED"
           "train.per_device_train_batch_size=$PHASE2_PER_DEVICE_BATCH"
           "train.effective_batch_size=$PHASE2_EFFECTIVE_BATCH")
  [ "$PHASE2_PER_DEVICE_BATCH" -gt 1 ] && P2_ARGS+=("train.group_by_length=true")
  P2_ARGS+=("${EXTRA2[@]}")
}

# Both stages' settings, checked on the ranks they will run on before anything trains (a Phase-2
# typo stopped the pipeline only after Phase 1 had trained; a plan printed it and exited 0).
p2_args '<phase-1 run name>'
for stage in P1_ARGS P2_ARGS; do
  declare -n args=$stage
  "$PY" -m util_public.training.check --world-size "$WORLD" "${args[@]}"
done
unset -n args

# ---- data ----------------------------------------------------------------------------------------
DATA_ROOT=${MTG_DATA_ROOT:-data}
# Not `mapfile < <(...)`: a process substitution's failure goes unnoticed, and the Phase-1 dry run
# below then said relspec's error a second time.
RELATION_LIST=$("$PY" -m util_public.relspec "$RELATION_ID")
mapfile -t RELATIONS <<< "$RELATION_LIST"
MISSING=()
for rel in "${RELATIONS[@]}"; do
  [ -f "$DATA_ROOT/$DATA_NAME/$rel.csv" ] || MISSING+=("$rel")
done
if [ ${#MISSING[@]} -gt 0 ]; then
  LIST=$(IFS=,; echo "${MISSING[*]}")
  echo "pipeline: generating $DATA_NAME for relations [$LIST]" >&2
  run_step "$PY" data_generation/generate.py "relation_ids=[$LIST]" "dataset=$DATA_NAME"   # $PY, set up above
fi

# ---- training ------------------------------------------------------------------------------------
if [ "$PLAN_ONLY" = 1 ] && [ ${#MISSING[@]} -gt 0 ]; then
  P1_NAME='<phase-1 run name>'   # the dry run that names it needs the data
else
  P1_JSON=$("${DRY[@]}" training/train.py "${P1_ARGS[@]}" train.dry_run=true)
  P1_NAME=$(echo "$P1_JSON" | field run_name)
  P1_DIR=$(echo "$P1_JSON" | field run_dir)
fi
echo "pipeline: phase 1 -> $P1_NAME" >&2
launch_step training/train.py "${P1_ARGS[@]}"

p2_args "$P1_NAME"
# Every evaluation stays within the facts Phase 1 memorized: "unseen" means memorized, not trained in Phase 2.
evaluations() {  # evaluations PHASE1_CHECKPOINT PHASE2_CHECKPOINT
  local common=("data.relation_id=$RELATION_ID" "data.dataset=$DATA_NAME" "data.index_end=$PHASE1_FACTS" "tasks=[gen,mc]")
  run_step "$PY" evaluation/eval.py "model.name='$1'" "${common[@]}" "prompt.type=$PHASE1_TEXT_TYPE"
  run_step "$PY" evaluation/eval.py "model.name='$2'" "${common[@]}" "prompt.type=$PHASE2_TEXT_TYPE" \
    "data.index_begin=$PHASE2_K"
  run_step "$PY" evaluation/eval.py "model.name='$2'" "${common[@]}" "prompt.type=[test-*]"
}
if [ "$PLAN_ONLY" = 1 ]; then   # Phase 2's dry run needs the Phase-1 run
  launch_step training/train.py "${P2_ARGS[@]}"
  [ "$RUN_EVAL" = 0 ] || evaluations '<phase-1 final checkpoint>' '<phase-2 final checkpoint>'
  exit 0
fi
P2_JSON=$("$PY" training/train.py "${P2_ARGS[@]}" train.dry_run=true)
P2_NAME=$(echo "$P2_JSON" | field run_name)
P2_DIR=$(echo "$P2_JSON" | field run_dir)
echo "pipeline: phase 2 -> $P2_NAME" >&2
launch_step training/train.py "${P2_ARGS[@]}"

P1_FINAL=$("$PY" -m util_public.artifacts final-checkpoint "$P1_DIR")
P2_FINAL=$("$PY" -m util_public.artifacts final-checkpoint "$P2_DIR")

# ---- checks and evaluation -----------------------------------------------------------------------
single_prompt() {  # memcheck needs one template per fact (not mixtures, wiki or IC-LKE)
  case "$1" in *mix*|*\&*|wiki|ic-lke*) return 1 ;; *) return 0 ;; esac
}
if [ "$MEMCHECK" = 1 ] && [[ "$RELATION_ID" != *[+\&]* ]] && single_prompt "$PHASE1_TEXT_TYPE"; then
  echo "pipeline: greedy key-prompt accuracy of $P1_FINAL (facts 0..$((PHASE1_FACTS - 1)))" >&2
  "$PY" -m util_public.training.memcheck "$P1_FINAL" --relation "$RELATION_ID" --dataset "$DATA_NAME" \
    --end "$PHASE1_FACTS" --prompt "$PHASE1_TEXT_TYPE" --min-accuracy "$MIN_P1_ACCURACY" || {
    echo "pipeline: phase 1 did not reach MIN_P1_ACCURACY=$MIN_P1_ACCURACY (line above); train longer" \
         "(PHASE1_EPOCHS, LR), lower the threshold (MIN_P1_ACCURACY=0.9) or skip the check (MEMCHECK=0)" >&2
    exit 1
  }
  if single_prompt "$PHASE2_TEXT_TYPE"; then
    for slice in "0 $PHASE2_K seen" "$PHASE2_K $PHASE1_FACTS unseen"; do
      read -r b e name <<< "$slice"
      [ "$b" -lt "$e" ] || continue
      echo "pipeline: greedy $PHASE2_TEXT_TYPE accuracy of $P2_FINAL on $name facts $b..$((e - 1))" >&2
      "$PY" -m util_public.training.memcheck "$P2_FINAL" --relation "$RELATION_ID" --dataset "$DATA_NAME" \
        --begin "$b" --end "$e" --prompt "$PHASE2_TEXT_TYPE"
    done
  fi
fi
[ "$RUN_EVAL" = 0 ] || evaluations "$P1_FINAL" "$P2_FINAL"

echo "pipeline: registered checkpoints (in $REGISTRY)" >&2
for dir in "$P1_DIR" "$P2_DIR"; do
  "$PY" -m util_public.artifacts checkpoints "$dir"
done
