#!/bin/bash
# slurm/sweep.sh: an array of leaksweep sweep workers on one study (see slurm/README.md).
#
#   sbatch slurm/sweep.sh sweeps/X.yaml            # or a prepared sweep folder, e.g. runs/X
#   sbatch --array=0-15%4 --time=08:00:00 slurm/sweep.sh sweeps/X.yaml   # options override the lines below
#   leaksweep launch sweeps/X.yaml                 # validates, creates the folders, passes the `slurm:` section
#
# Every array task runs one worker (jobs/sweep_worker.py) that asks the shared study for trials until the
# budget is spent, so the array size is the number of trials in flight. Edit the #SBATCH lines for your
# cluster; `##SBATCH` lines are switched off (remove one `#` to use them).
#SBATCH --job-name=leaksweep
#SBATCH --array=0-3%4
##SBATCH --partition=gpu
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=04:00:00
# USR1 to this shell 120 s before the time limit: `exec` below makes the worker this shell, so the worker
# gets it, checkpoints its trial and requeues the task (--requeue); --open-mode=append keeps the log of
# every restart.
#SBATCH --signal=B:USR1@120
#SBATCH --requeue
#SBATCH --open-mode=append
# The log folder must exist when the task starts, or every task fails with no log at all: the submit
# folder always exists. `leaksweep launch` puts logs under SWEEP_DIR/slurm/ (it creates that folder).
#SBATCH --output=slurm-%x-%A_%a.out

set -euo pipefail

fail() { echo "sweep.sh: $*" >&2; exit 2; }

SWEEP="${1:-${LEAKSWEEP_SWEEP:-}}"
[[ -n "$SWEEP" ]] || fail "no sweep given; usage: sbatch slurm/sweep.sh SWEEP.yaml|SWEEP_DIR (or --export=ALL,LEAKSWEEP_SWEEP=...)"
# Slurm runs a copy of this script from its spool folder: the repository is where sbatch was called
# (or LEAKSWEEP_ROOT), and relative paths are relative to it.
ROOT="${LEAKSWEEP_ROOT:-${SLURM_SUBMIT_DIR:-$PWD}}"
cd "$ROOT" || fail "cannot enter the repository folder '$ROOT'; set LEAKSWEEP_ROOT"
[[ -f jobs/sweep_worker.py ]] || fail "'$ROOT/jobs/sweep_worker.py' not found; submit from the leaksweep repository root or set LEAKSWEEP_ROOT"
PYTHON="${LEAKSWEEP_PYTHON:-$ROOT/.venv/bin/python}"
[[ -x "$PYTHON" ]] || fail "no Python at '$PYTHON'; run \`make demo\` once in '$ROOT' (creates .venv) or set LEAKSWEEP_PYTHON"
[[ -e "$SWEEP" ]] || fail "sweep '$SWEEP' not found (relative to '$ROOT')"

if [[ -d "$SWEEP" ]]; then
  [[ -f "$SWEEP/sweep.json" ]] || fail "'$SWEEP' is a folder without sweep.json; give the sweep file, or run \`leaksweep launch\` / \`leaksweep sweep\` first"
  SWEEP_DIR="$SWEEP"
else
  # Every task prepares the same folder; prepare() serialises them with a lock, so the study is created once.
  SWEEP_DIR="$("$PYTHON" -m leaksweep.cli prepare "$SWEEP" | tail -n 1)" || fail "could not prepare '$SWEEP' (see the error above)"
fi

# GPUs of this task's allocation (Slurm sets CUDA_VISIBLE_DEVICES for --gres=gpu:N). With N > 1 each
# trial trains on N processes, one per GPU (`accelerate launch`, train.num_processes: auto; see
# slurm/README.md, "GPUs"), and evaluates in the worker.
count_gpus() {
  if [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then
    local gpus
    IFS=, read -r -a gpus <<< "$CUDA_VISIBLE_DEVICES"
    echo "${#gpus[@]}"
  else
    echo 0
  fi
}
NUM_GPUS="$(count_gpus)"
export LEAKSWEEP_NUM_GPUS="$NUM_GPUS"
# one torch thread pool sized to the CPUs Slurm gave this task
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}"
export TOKENIZERS_PARALLELISM=false

echo "sweep.sh: job ${SLURM_JOB_ID:-none} task ${SLURM_ARRAY_TASK_ID:-none} restart ${SLURM_RESTART_COUNT:-0}" \
     "on $(hostname); GPUs '${CUDA_VISIBLE_DEVICES:-}' ($NUM_GPUS); sweep folder '$SWEEP_DIR'"
# exec: the worker becomes this shell, so Slurm's USR1 reaches it. The task that ends the sweep writes the report.
exec "$PYTHON" jobs/sweep_worker.py "$SWEEP_DIR" --report-when-done
