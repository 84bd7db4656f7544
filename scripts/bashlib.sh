# Shared by the bash entry points (sourced, never run): `--help` from a script's header comment,
# bad input said the project's way, numeric parameters checked before anything runs, the number of
# GPUs of this node without starting Python, and a batch split over ranks.

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

# mtg_error WHERE PROBLEM [HINT]: bad input, said as every entry point says it (one line
# `error: WHERE: PROBLEM; HINT` on stderr), then exit 2.
mtg_error() { echo "error: $1: $2${3:+; $3}" >&2; exit 2; }

# Transparent huge pages for glibc's heap (glibc >= 2.35 reads this when a process starts; older or
# other C libraries ignore it). Where the kernel's THP mode is `madvise`, a fresh 0.5B-model training
# process otherwise faults in its gradients and AdamW state 4 KiB at a time: the demo's one-step
# Phase 2 as its own process took 24-46 s instead of 22-24 s (2-core AVX512_BF16 EPYC,
# docs/PERFORMANCE.md). A hugetlb setting of the caller's stays as it is.
case ":${GLIBC_TUNABLES:-}:" in
  *:glibc.malloc.hugetlb=*) ;;
  *) export GLIBC_TUNABLES="${GLIBC_TUNABLES:+$GLIBC_TUNABLES:}glibc.malloc.hugetlb=1" ;;
esac

# The path variables start with ~ as Python reads them (expanduser): the shell does not expand a `~`
# inside a value, so a check made here looked elsewhere than the stage it planned (MTG_DATA_ROOT='~/d').
for _var in MTG_DATA_ROOT MTG_RUNS_ROOT MTG_RESULTS_ROOT MTG_MODELS_JSON MTG_MODEL_CACHE RECIPE_HOME RECIPE_RESULTS; do
  case "${!_var:-}" in "~" | "~/"*) export "$_var=$HOME${!_var:1}" ;; esac
done
unset _var

# mtg_start_registry WHO: an MTG_MODELS_JSON that names no file yet starts as a copy of the tracked
# models.json, written atomically (a registry that does not exist holds no model to start from: the
# pipeline's own hint, `MTG_MODELS_JSON=runs/models.json`, ended in "not in the registry").
mtg_registry_missing() { [ -n "${MTG_MODELS_JSON:-}" ] && [ ! -e "$MTG_MODELS_JSON" ] && [ ! -L "$MTG_MODELS_JSON" ]; }
mtg_start_registry() {
  local reg=${MTG_MODELS_JSON:-}
  mtg_registry_missing || return 0
  { mkdir -p "$(dirname "$reg")" && cp models.json "$reg.tmp.$$" && mv "$reg.tmp.$$" "$reg"; } 2> /dev/null \
    || { rm -f "$reg.tmp.$$" 2> /dev/null; mtg_error "MTG_MODELS_JSON=$reg" "could not start it as a copy of models.json"; }
  echo "$1: $reg did not exist: it starts as a copy of models.json" >&2
}

# mtg_no_arguments SCRIPT HINT [ARGUMENT...]: a script whose parameters are environment variables
# refuses arguments (a Hydra override given as one was dropped without a word).
mtg_no_arguments() {
  [ $# -le 2 ] || mtg_error "$1" "takes no arguments (got: ${*:3})" \
    "its parameters are environment variables (--help lists them)${2:+; $2}"
}

# mtg_require KIND LIMIT NAME...: each named environment parameter that is set is a KIND within LIMIT,
# else mtg_error naming it. KIND: int (42, -1) or number (3, 0.99, 1e-5); ints / numbers: a
# space-separated list of them (K_LIST="50 20"). LIMIT reads as in util_public/limits.py: '>= 1',
# '> 0', '>= 0, <= 1'. Called before a value is used: bash arithmetic would take `abc` for a variable
# name and `08` for octal, and Hydra would read `08` as a string, each failing far from the cause.
mtg_require() {
  local kind=$1 limit=$2 name word words what
  shift 2
  case $kind in
    int) what="an integer" ;;  ints) what="a list of integers" ;;
    number) what="a number" ;;  numbers) what="a list of numbers" ;;
  esac
  for name in "$@"; do
    [ -n "${!name:-}" ] || continue                 # unset or empty: the script's default applies
    if [[ $kind == *s ]]; then read -r -a words <<< "${!name}"; else words=("${!name}"); fi
    for word in "${words[@]}"; do
      _mtg_within "${kind%s}" "$word" "$limit" ||
        mtg_error "$name" "'${!name}' is not $what $limit" "see \`bash $0 --help\`"
    done
  done
}

# _mtg_within KIND VALUE LIMIT: VALUE is written as a KIND (no leading zeros for an int) within LIMIT.
_mtg_within() {
  local pattern='^-?(0|[1-9][0-9]*)$' rule rules
  [ "$1" = int ] || pattern='^-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$'
  [[ $2 =~ $pattern ]] || return 1
  IFS=, read -r -a rules <<< "$3"
  for rule in "${rules[@]}"; do
    awk -v v="$2" "BEGIN { exit !(v + 0 $rule) }" || return 1
  done
}
