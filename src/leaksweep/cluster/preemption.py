"""Preemption: the warning Slurm sends before a time limit (`--signal=B:USR1@N`), and what follows.

A sweep worker installs `install()`; the signal only sets `requested` (a handler must not do
real work: it interrupts whatever the main thread was doing). The running stages check it:

* training (the model stage's SFT loop) checks it after every optimizer step; when set it saves a
  Trainer checkpoint under the trial's `trainer/` folder, stops and raises `Preempted(checkpoint, step)`;
* the trial (trial.run_trial) writes its preemption record (layout.TrialDir.PREEMPTED: checkpoint,
  step, W&B run id, job, history) and closes its W&B run; the study is not told: the trial stays
  RUNNING, marked preempted by its heartbeat (`mark_preempted`), so it is neither failed nor counted twice;
* the study's worker (`run_worker`) asks for no new trial once it is set, and the `leaksweep worker`
  command then requeues its Slurm job (`requeue()`) and exits with REQUEUE_EXIT.

On restart a worker first adopts preempted trials (its own job's first), reruns the trial from its
spec.json, resumes training from the checkpoint and continues the same W&B run (same run id).
A signal that arrives during evaluation lets the trial finish (generation is short next to training,
and it cannot be checkpointed); the worker then stops before its next trial.

No heavy imports here: training, the trial and the study's worker all use this module.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable

from leaksweep.cluster.env import JobEnvironment

# sysexits' EX_TEMPFAIL: "try again later"; a worker that checkpointed and requeued exits with it,
# so `leaksweep sweep` (local workers) and the job log tell a preemption from a crash (1) or bad input (2).
REQUEUE_EXIT = 75
DEFAULT_SIGNALS = (signal.SIGUSR1,)

requested = threading.Event()


class Preempted(Exception):
    """Training stopped on a preemption request; `checkpoint` is where it can resume (None: from the start)."""

    def __init__(self, checkpoint: Path | None, step: int | None):
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.step = step
        where = f"checkpoint {self.checkpoint} at step {step}" if self.checkpoint else "no checkpoint (not started)"
        super().__init__(f"preempted; {where}")


def _handler(signum: int, frame) -> None:
    requested.set()
    # os.write, not print: a print from a handler can collide with a print the main thread is in
    os.write(2, f"leaksweep: got signal {signal.Signals(signum).name}: checkpointing and requeueing\n".encode())


def install(signals: tuple[int, ...] = DEFAULT_SIGNALS) -> None:
    """Handle the preemption signal(s) in this process (main thread only, as Python requires).

    Only USR1 by default: SIGTERM is also what `scancel` sends, and a cancelled job must not requeue.
    """
    for sig in signals:
        signal.signal(sig, _handler)


def slurm_job_id() -> str | None:
    """The job to requeue: an array task has its own SLURM_JOB_ID, which `scontrol requeue` accepts."""
    return JobEnvironment.current().job_id


def requeue(announce: Callable[[str], None] | None = None) -> str:
    """Requeue this Slurm job (it restarts later with the same job id and SLURM_RESTART_COUNT + 1).

    Returns what happened, for the log. Slurm ends the running job when it is requeued, so this is the
    last thing a worker does, after every file is written. Outside Slurm there is nothing to requeue:
    the trial waits, marked preempted, for the next `leaksweep worker` or `leaksweep sweep` on the folder.
    """
    job = slurm_job_id()
    if job is None:
        return "not a Slurm job: rerun `leaksweep worker SWEEP_DIR` (or `leaksweep sweep`) to resume the trial"
    scontrol = shutil.which("scontrol")
    if scontrol is None:
        return (
            f"Slurm job {job}, but scontrol is not on PATH: the job was not requeued; resubmit, or another "
            "worker of the sweep adopts the preempted trial"
        )
    if announce is not None:  # before scontrol: Slurm may end this job before it returns
        announce(f"requeueing Slurm job {job}")
    sys.stdout.flush()
    sys.stderr.flush()
    done = subprocess.run([scontrol, "requeue", job], capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip() or f"exit code {done.returncode}"
        return (
            f"`scontrol requeue {job}` failed ({why}); the job needs `#SBATCH --requeue` (or JobRequeue=1). "
            "The trial stays preempted: another worker of the sweep adopts it, or resubmit"
        )
    return f"requeued Slurm job {job}"
