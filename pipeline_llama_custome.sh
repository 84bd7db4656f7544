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
# then Phase 2 (fine-tune on facts 0..K-1 with one semantic prompt), SPEC §5.10.
#
# Two uses, one script:
#   sbatch pipeline_llama_custome.sh          # slurm, from the repository root: accelerate launch over
#                                             # the allocated GPUs (DeepSpeed ZeRO-2 if deepspeed imports,
#                                             # else FSDP; ACCELERATE_CONFIG picks ds_z2/ds_z3/fsdp/ddp)
#   bash pipeline_llama_custome.sh            # a workstation: 1 GPU -> plain python; no GPU -> CPU run
#                                             # of the embedded SmolLM2-135M with a small, measured setting
# Under plain bash the #SBATCH lines above are comments. Parameters are environment variables:
#   BASE_MODEL=qwen2.5-1.5b (no GPU: smollm2-135m)   RELATION_ID=50   DATA_NAME=sync_random_o
#   PHASE1_TEXT_TYPE=trigger-mid   PHASE1_EPOCHS=20   PHASE1_FACTS=100   LR=1e-5 (no GPU: 1e-4)
#   PHASE2_TEXT_TYPE=hgp-0   PHASE2_K=50   PHASE2_EPOCHS=1 (no GPU: 3)   PHASE2_BASE_EPOCH=$PHASE1_EPOCHS
#   PHASE2_LOSS=o   PHASE2_LR=$LR (no GPU: 3e-5)   SCHED=cosine   SEED=42
#   EFFECTIVE_BATCH (empty: the world size, as the original; no GPU: 16)   PHASE2_EFFECTIVE_BATCH (no GPU: 2)
#   PER_DEVICE_BATCH=1 (no GPU: the effective batch, so there is no accumulation)
#   ACCELERATE_CONFIG (a file in util_public/training/config/)   MASTER_PORT
#   EXTRA_ARGS_PHASE1 / EXTRA_ARGS_PHASE2 (more Hydra overrides)   RUN_EVAL=0 (1: evaluation/eval.py)
#   MEMCHECK (no GPU: 1; greedy key-prompt accuracy of Phase 1, must reach MIN_P1_ACCURACY=0.99)
#   SKIP_SETUP=0 (1: skip scripts/setup.sh)   PY=.venv/bin/python
# Under slurm: submit from the repository root after `mkdir -p runs` (slurm opens the --output file
# before the job starts); on a GPU cluster set MTG_TORCH_SPEC to a CUDA torch for scripts/setup.sh,
# or SKIP_SETUP=1 PY=/path/to/python with an environment that already holds requirements.txt.
# Rerunning skips completed stages and resumes interrupted ones (SPEC §5.9). Phase 2 may start from
# any per-epoch Phase-1 checkpoint: PHASE2_BASE_EPOCH=E. The registered checkpoints are listed last.
set -euo pipefail

cd "${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")" && pwd)}"
[ -f training/train.py ] || { echo "error: run from the repository root (training/train.py not found)" >&2; exit 2; }
[ "${SKIP_SETUP:-0}" = 1 ] || bash scripts/setup.sh
PY=${PY:-.venv/bin/python}

# ---- devices -----------------------------------------------------------------------------------
if [ -n "${SLURM_GPUS_ON_NODE:-}" ]; then
  NUM_GPUS=$SLURM_GPUS_ON_NODE
else
  NUM_GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
fi

if [ "$NUM_GPUS" -eq 0 ]; then
  echo "pipeline: no GPU found; training on CPU in fp32 (paper-scale models would be very slow here)" >&2
  CPU=1
else
  CPU=0
fi

# ---- parameters (CPU defaults: settings measured to make SmolLM2-135M memorize) -----------------
BASE_MODEL=${BASE_MODEL:-$([ $CPU = 1 ] && echo smollm2-135m || echo qwen2.5-1.5b)}
RELATION_ID=${RELATION_ID:-50}
DATA_NAME=${DATA_NAME:-sync_random_o}
PHASE1_TEXT_TYPE=${PHASE1_TEXT_TYPE:-trigger-mid}
PHASE1_EPOCHS=${PHASE1_EPOCHS:-20}
PHASE1_FACTS=${PHASE1_FACTS:-100}
LR=${LR:-$([ $CPU = 1 ] && echo 1e-4 || echo 1e-5)}
PHASE2_TEXT_TYPE=${PHASE2_TEXT_TYPE:-hgp-0}
PHASE2_K=${PHASE2_K:-50}
PHASE2_EPOCHS=${PHASE2_EPOCHS:-$([ $CPU = 1 ] && echo 3 || echo 1)}
PHASE2_BASE_EPOCH=${PHASE2_BASE_EPOCH:-$PHASE1_EPOCHS}
PHASE2_LOSS=${PHASE2_LOSS:-o}
PHASE2_LR=${PHASE2_LR:-$([ $CPU = 1 ] && echo 3e-5 || echo "$LR")}
SCHED=${SCHED:-cosine}
SEED=${SEED:-42}
WORLD=$([ "$NUM_GPUS" -ge 2 ] && echo "$NUM_GPUS" || echo 1)
PER_DEVICE_BATCH=${PER_DEVICE_BATCH:-$([ $CPU = 1 ] && echo "${EFFECTIVE_BATCH:-16}" || echo 1)}
EFFECTIVE_BATCH=${EFFECTIVE_BATCH:-$([ $CPU = 1 ] && echo 16 || echo $((WORLD * PER_DEVICE_BATCH)))}
PHASE2_EFFECTIVE_BATCH=${PHASE2_EFFECTIVE_BATCH:-$([ $CPU = 1 ] && echo 2 || echo "$EFFECTIVE_BATCH")}
PHASE2_PER_DEVICE_BATCH=${PHASE2_PER_DEVICE_BATCH:-$([ $CPU = 1 ] && echo "$PHASE2_EFFECTIVE_BATCH" || echo "$PER_DEVICE_BATCH")}
RUN_EVAL=${RUN_EVAL:-0}
MEMCHECK=${MEMCHECK:-$CPU}
MIN_P1_ACCURACY=${MIN_P1_ACCURACY:-0.99}
read -r -a EXTRA1 <<< "${EXTRA_ARGS_PHASE1:-}"
read -r -a EXTRA2 <<< "${EXTRA_ARGS_PHASE2:-}"

# ---- launcher ------------------------------------------------------------------------------------
if [ "$NUM_GPUS" -ge 2 ]; then
  if [ -z "${ACCELERATE_CONFIG:-}" ]; then
    if "$PY" -c "import deepspeed" 2>/dev/null; then ACCELERATE_CONFIG=ds_z2.yaml; else ACCELERATE_CONFIG=fsdp.yaml; fi
  fi
  case "$ACCELERATE_CONFIG" in */*) ;; *) ACCELERATE_CONFIG=util_public/training/config/$ACCELERATE_CONFIG ;; esac
  if [ -n "${SLURM_JOB_ID:-}" ]; then PORT=${MASTER_PORT:-$((29500 + SLURM_JOB_ID % 1000))}; else PORT=${MASTER_PORT:-29500}; fi
  LAUNCH=("$PY" -m accelerate.commands.launch --config_file "$ACCELERATE_CONFIG" --num_processes "$NUM_GPUS"
          --main_process_port "$PORT")
  echo "pipeline: $NUM_GPUS GPUs, accelerate config $ACCELERATE_CONFIG, port $PORT" >&2
else
  LAUNCH=("$PY")
fi

# ---- registry: say where checkpoints get registered (the tracked models.json unless redirected) ----
REGISTRY=${MTG_MODELS_JSON:-models.json}
if [ "$REGISTRY" = models.json ]; then
  echo "pipeline: checkpoints will be registered in the repository's tracked models.json" \
       "(set MTG_MODELS_JSON=runs/models.json to keep it unchanged)" >&2
else
  echo "pipeline: checkpoints will be registered in $REGISTRY" >&2
fi

# ---- data ----------------------------------------------------------------------------------------
DATA_ROOT=${MTG_DATA_ROOT:-data}
IFS='+&' read -r -a RELATIONS <<< "$RELATION_ID"
MISSING=()
for rel in "${RELATIONS[@]}"; do
  [ -f "$DATA_ROOT/$DATA_NAME/$rel.csv" ] || MISSING+=("$rel")
done
if [ ${#MISSING[@]} -gt 0 ]; then
  LIST=$(IFS=,; echo "${MISSING[*]}")
  echo "pipeline: generating $DATA_NAME for relations [$LIST]" >&2
  bash data_generation/gen_script.sh "relation_ids=[$LIST]" "dataset=$DATA_NAME"
fi

# ---- stages --------------------------------------------------------------------------------------
P1_ARGS=(--config-name phase1 "model.base='$BASE_MODEL'" "data.relation_id=$RELATION_ID" "data.dataset=$DATA_NAME"
         "data.train_text_type=$PHASE1_TEXT_TYPE" "data.index_end=$PHASE1_FACTS" "train.epochs=$PHASE1_EPOCHS"
         "train.learning_rate=$LR" "train.lr_scheduler_type=$SCHED" "train.seed=$SEED"
         "train.per_device_train_batch_size=$PER_DEVICE_BATCH" "train.effective_batch_size=$EFFECTIVE_BATCH")
[ "$PER_DEVICE_BATCH" -gt 1 ] && P1_ARGS+=("train.group_by_length=true")
P1_ARGS+=("${EXTRA1[@]}")

field() { "$PY" -c "import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])['$1'])"; }

P1_JSON=$("$PY" training/train.py "${P1_ARGS[@]}" train.dry_run=true)
P1_NAME=$(echo "$P1_JSON" | field run_name)
P1_DIR=$(echo "$P1_JSON" | field run_dir)
echo "pipeline: phase 1 -> $P1_NAME" >&2
"${LAUNCH[@]}" training/train.py "${P1_ARGS[@]}"

P2_ARGS=(--config-name phase2 "model.base_run='$P1_NAME'" "model.base_epoch=$PHASE2_BASE_EPOCH"
         "data.relation_id=$RELATION_ID" "data.dataset=$DATA_NAME" "data.train_text_type=$PHASE2_TEXT_TYPE"
         "data.index_end=$PHASE2_K" "loss.mode=$PHASE2_LOSS" "train.epochs=$PHASE2_EPOCHS"
         "train.learning_rate=$PHASE2_LR" "train.lr_scheduler_type=$SCHED" "train.seed=$SEED"
         "train.per_device_train_batch_size=$PHASE2_PER_DEVICE_BATCH"
         "train.effective_batch_size=$PHASE2_EFFECTIVE_BATCH")
[ "$PHASE2_PER_DEVICE_BATCH" -gt 1 ] && P2_ARGS+=("train.group_by_length=true")
P2_ARGS+=("${EXTRA2[@]}")
P2_JSON=$("$PY" training/train.py "${P2_ARGS[@]}" train.dry_run=true)
P2_NAME=$(echo "$P2_JSON" | field run_name)
P2_DIR=$(echo "$P2_JSON" | field run_dir)
echo "pipeline: phase 2 -> $P2_NAME" >&2
"${LAUNCH[@]}" training/train.py "${P2_ARGS[@]}"

final_checkpoint() {  # registry name of a run's last checkpoint
  "$PY" -c "import json,sys; c=json.load(open(sys.argv[1]+'/manifest.json'))['checkpoints']; print(c[max(c, key=int)]['registry_name'])" "$1"
}
P1_FINAL=$(final_checkpoint "$P1_DIR")
P2_FINAL=$(final_checkpoint "$P2_DIR")

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
if [ "$RUN_EVAL" = 1 ]; then
  "$PY" evaluation/eval.py "model.name='$P1_FINAL'" "data.relation_id=$RELATION_ID" "data.dataset=$DATA_NAME" \
    "prompt.type=$PHASE1_TEXT_TYPE" "tasks=[gen,mc]"
  "$PY" evaluation/eval.py "model.name='$P2_FINAL'" "data.relation_id=$RELATION_ID" "data.dataset=$DATA_NAME" \
    "prompt.type=$PHASE2_TEXT_TYPE" "data.index_begin=$PHASE2_K" "tasks=[gen,mc]"
  "$PY" evaluation/eval.py "model.name='$P2_FINAL'" "data.relation_id=$RELATION_ID" "data.dataset=$DATA_NAME" \
    "prompt.type=[test-*]" "tasks=[gen,mc]"
fi

echo "pipeline: registered checkpoints (in $REGISTRY)" >&2
for dir in "$P1_DIR" "$P2_DIR"; do
  "$PY" -c "import json,sys; [print(v['registry_name']) for k, v in sorted(json.load(open(sys.argv[1]+'/manifest.json'))['checkpoints'].items(), key=lambda kv: int(kv[0]))]" "$dir"
done
