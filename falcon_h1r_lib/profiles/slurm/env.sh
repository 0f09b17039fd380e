# Sourced by every sbatch script here. Submit from the repository root (sbatch runs a copy of the script, so
# paths are taken from $SLURM_SUBMIT_DIR). Settings come from the environment:
#   PROFILE           full (default) or rehearsal
#   CONFIG            the stage YAML (default: falcon_h1r_lib/profiles/$PROFILE/<stage>.yaml; notebooks pass
#                     their runs/<profile>/<stage>/job_config.yaml)
#   FALCON_H1R_RUNS   where runs/ lives: a folder on the filesystem every node mounts (default: ./runs)
#   PY                the project's Python (default: .venv-gpu/bin/python, made by `make setup PROFILE=full`)
#   EXTRA_ARGS        arguments passed on to the stage (e.g. "--set benchmarks=[AIME24]")
set -euo pipefail
cd "${FALCON_H1R_ROOT:-${SLURM_SUBMIT_DIR:-$PWD}}"
export FALCON_H1R_ROOT=$PWD
export PROFILE=${PROFILE:-full}
export PY=${PY:-.venv-gpu/bin/python}
export FALCON_H1R_RUNS=${FALCON_H1R_RUNS:-$PWD/runs}
export EXTRA_ARGS=${EXTRA_ARGS:-}
export TOKENIZERS_PARALLELISM=false
export NCCL_ASYNC_ERROR_HANDLING=1
MAIN_HOST=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export MAIN_HOST

# launch JOB [ARGS...]: this node's part of a job (falcon_h1r_lib/launch.py builds the accelerate command)
launch() {
  local -; set -f   # EXTRA_ARGS such as --set benchmarks=[AIME24] are arguments, not glob patterns
  local job=$1; shift
  "$PY" -m falcon_h1r_lib.launch "$job" --profile "$PROFILE" ${CONFIG:+--config "$CONFIG"} "$@" --exec \
    -- $EXTRA_ARGS
}
export -f launch
