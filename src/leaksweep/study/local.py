"""Local workers: `run_local` starts N `leaksweep worker` processes on one study and waits for them.

Owns the worker processes' environment (one torch thread each), their log files (logs/worker-N.log)
and the sweep's one progress bar, which counts trial folders with a result.json.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from leaksweep.cluster import preemption
from leaksweep.errors import UserError
from leaksweep.layout import SweepDir
from leaksweep.progress import Progress
from leaksweep.study import storage
from leaksweep.study.prepare import budget, load_sweep_dir


def _start_workers(folder: SweepDir, workers: int, wandb_enabled: bool) -> list[tuple[subprocess.Popen, object, int]]:
    # One torch thread per process: two busy processes with 2 threads each stall for seconds per step.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    procs = []
    for i in range(workers):
        cmd = [sys.executable, "-m", "leaksweep.cli", "worker", str(folder.path)]
        cmd += [] if wandb_enabled else ["--no-wandb"]
        log = open(folder.logs / f"worker-{i}.log", "a")
        procs.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log, i))
    return procs


def _failures(folder: SweepDir, procs: list[tuple[subprocess.Popen, object, int]]) -> list[str]:
    failed = []
    for proc, log, i in procs:
        log.close()
        path = folder.logs / f"worker-{i}.log"
        if proc.returncode == preemption.REQUEUE_EXIT:
            failed.append(
                f"worker {i} was preempted (SIGUSR1): its trial is checkpointed and marked preempted; "
                "rerun the same command to resume it"
            )
        elif proc.returncode != 0:
            tail = path.read_text().splitlines()[-15:]
            failed.append(f"worker {i} exited with {proc.returncode}; last lines of {path}:\n  " + "\n  ".join(tail))
    return failed


def _interrupt(procs: list[tuple[subprocess.Popen, object, int]], wait_s: float = 60.0) -> None:
    """Ctrl-C of `leaksweep sweep`: pass SIGINT on to the workers (a terminal signals them too; they act
    on the first one only, heartbeat.interrupt_once), which mark their trials interrupted; wait for them."""
    for proc, _, _ in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    deadline = time.time() + wait_s
    for proc, log, _ in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            proc.kill()  # its trial is reclaimed when its heartbeat goes stale
        log.close()
    print(
        "interrupted: in-flight trials are marked interrupted; rerun the same command to resume them", file=sys.stderr
    )


def run_local(sweep_dir: Path, workers: int, wandb_enabled: bool = True) -> None:
    """Run `workers` worker processes on one study and wait; a progress bar counts finished trials."""
    folder = SweepDir(sweep_dir)
    cfg = load_sweep_dir(folder.path)
    total = budget(cfg) or len(storage.trials(storage.load_study(folder.path, cfg)))
    folder.logs.mkdir(exist_ok=True)
    procs = _start_workers(folder, workers, wandb_enabled)
    # A live bar on a terminal, plain lines in a log (progress.py). The workers' own training and
    # generation progress goes to their log files above, never onto this bar.
    seen = folder.count_complete()
    # every_fraction=0: a trial takes long enough that each finished one earns its own log line
    note = f"{workers} worker{'s' if workers != 1 else ''}"  # the rate is over all of them
    try:
        with Progress(
            total, f"sweep {cfg.name}", "trials", initial=seen, leave=True, every_fraction=0, note=note
        ) as bar:
            while any(p.poll() is None for p, _, _ in procs):
                time.sleep(1.0)
                now = folder.count_complete()
                bar.update(now - seen)
                seen = now
    except KeyboardInterrupt:
        _interrupt(procs)
        raise
    failed = _failures(folder, procs)
    if failed:
        raise UserError(failed)
