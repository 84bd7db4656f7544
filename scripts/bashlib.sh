# Shared by the bash entry points (sourced, never run): `--help` from a script's header comment,
# the number of GPUs of this node without starting Python, and a batch split over ranks.

# mtg_help FIRST_ARGUMENT FILE...: when FIRST_ARGUMENT is -h or --help, print the header comment of
# each FILE (what the script does and its parameters; #SBATCH lines left out) and exit 0.
mtg_help() {
  case "${1:-}" in -h|--help) ;; *) return 0 ;; esac
  shift
  local file
  for file in "$@"; do
    awk 'NR == 1 && /^#!/ { next } /^##?SBATCH/ { next }
         /^#/ { sub(/^# ?/, ""); if (shown || $0 != "") { print; shown = 1 }; next } { exit }' "$file"
  done
  exit 0
}

# gpu_count: this node's GPUs for training: the slurm allocation, else CUDA_VISIBLE_DEVICES, else nvidia-smi.
gpu_count() {
  if [ -n "${SLURM_GPUS_ON_NODE:-}" ]; then
    echo "$SLURM_GPUS_ON_NODE"
  elif [ -n "${CUDA_VISIBLE_DEVICES+x}" ]; then
    awk -F, '{print ($0 == "" || $0 == "-1") ? 0 : NF}' <<< "$CUDA_VISIBLE_DEVICES"
  else
    (nvidia-smi -L 2>/dev/null || true) | grep -c '^GPU' || true
  fi
}

# per_rank BATCH WORLD: the per-device batch that makes BATCH over WORLD ranks (at least 1).
per_rank() { echo $(( $1 / $2 > 0 ? $1 / $2 : 1 )); }
