#!/usr/bin/env bash
# The GPU half of the benchmarks as one short call (< 5 min on an H100/H200):
#   1. training, Qwen2.5-1.5B shape, 256 seq/step, s-o loss: ours vs grouped_full vs random batches
#      vs the original recipe (batch 1, a few steps);
#   2. scoring, Llama-3.1-8B shape, 100 options: multi-token and single-token, hf vs naive (profiled),
#      and multi-token with 4x wider forwards;
#   3. scoring, Qwen2.5-0.5B shape (the anchor of earlier plain-loop measurements), if time is left;
#   with COMPILED=1 also the training variants with train.compile (its own process; ~4 min more).
#   On an H100 (80 GiB), grouped_full and random_dynamic at 256 sequences per step need more (93.7 and
#   96.5 GiB peaks on an H200): their rows say `out of memory`, the others still count.
# JSON records (one per step, named after it) and a log go to $OUT (when set) or bench/results/gpu.
# Dry run on a CPU: DEVICE=cpu TRAIN_SHAPE=tiny SCORE_SHAPE=tiny SMALL_SHAPE=tiny bash bench/gpu_suite.sh
# Parameters (environment): OUT, PYTHON=python3, DEVICE=cuda, TRAIN_SHAPE, SCORE_SHAPE, SMALL_SHAPE, COMPILED=0.
set -u
cd "$(dirname "$0")/.."
source scripts/bashlib.sh
mtg_help "${1:-}" bench/gpu_suite.sh
mtg_no_arguments bench/gpu_suite.sh "" "$@"
out=${OUT:-bench/results/gpu}
mkdir -p "$out"
py=${PYTHON:-python3}
device=${DEVICE:-cuda}
log="$out/gpu_suite.log"
started=$(date +%s)
step() {   # step <limit_s> <name> <command...>: run with a time limit, log everything, never abort the suite
    local limit=$1 name=$2; shift 2
    echo "== $name (limit ${limit}s, t=$(( $(date +%s) - started ))s)" | tee -a "$log"
    timeout -k 5 "$limit" "$@" 2>&1 | grep -v "^{'train_runtime'" | tee -a "$log"
    echo "== $name: exit ${PIPESTATUS[0]}" | tee -a "$log"
}
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true; } | tee -a "$log"
step 130 train "$py" bench/train_throughput.py --device "$device" --threads 4 --shape "${TRAIN_SHAPE:-qwen2.5-1.5b}" \
    --seqs-per-step 256 --steps 6 --warmup 2 --original-steps 15 --rounds 2 --profile ours,grouped_full \
    --variants ours,grouped_full,random_dynamic,original --out "$out/train_${TRAIN_SHAPE:-qwen2.5-1.5b}.json"
step 80 score8b "$py" bench/score_throughput.py --device "$device" --threads 4 --shape "${SCORE_SHAPE:-llama-3.1-8b}" \
    --questions 200 --single-questions 4096 --naive-questions 10 --profile --out "$out/score8b_${SCORE_SHAPE:-llama-3.1-8b}.json"
step 40 score8b_wide "$py" bench/score_throughput.py --device "$device" --threads 4 --shape "${SCORE_SHAPE:-llama-3.1-8b}" \
    --sets multi --questions 200 --naive-questions 5 --tokens-per-forward 32768 --out "$out/score8b_wide_${SCORE_SHAPE:-llama-3.1-8b}.json"
if [ "${COMPILED:-0}" = 1 ]; then   # + ~4 min: the compile alone takes ~200 s on an H200
    step 330 train_compiled "$py" bench/train_throughput.py --device "$device" --threads 4 --shape "${TRAIN_SHAPE:-qwen2.5-1.5b}" \
        --seqs-per-step 256 --steps 6 --warmup 4 --rounds 2 --compile --profile ours --variants ours,grouped_full \
        --out "$out/train_${TRAIN_SHAPE:-qwen2.5-1.5b}_compiled.json"
fi
left=$(( 280 + ${COMPILED:-0} * 330 - ($(date +%s) - started) ))
if [ "$left" -gt 25 ]; then
    step "$left" score05b "$py" bench/score_throughput.py --device "$device" --threads 4 --shape "${SMALL_SHAPE:-qwen2.5-0.5b}" \
        --questions 300 --single-questions 4096 --naive-questions 20 --out "$out/score05b_${SMALL_SHAPE:-qwen2.5-0.5b}.json"
fi
echo "== suite done in $(( $(date +%s) - started ))s" | tee -a "$log"
