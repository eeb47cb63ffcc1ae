"""Per-trial heartbeat files, so that a trial whose worker died without warning can be reclaimed.

Optuna's journal file storage has no heartbeat (only its RDB storage does): a worker killed with
-9, or lost with its node, leaves its trial RUNNING forever. So every running trial of a
leaksweep worker has `trials/NNNNN/heartbeat.json` (layout.TrialDir.heartbeat), rewritten every
`interval_s` by a thread of the worker:

    {"pid": 1234, "host": "node7", "beat_at": 1795000000.0, "interval_s": 10.0, "state": "running",
     "slurm_job": "4242_1" | null}

A trial is stale when its last beat (or, before the first beat, its start) is older than the
grace period; study.reclaim.reclaim_stale marks it failed and re-enqueues its parameters. Times are Unix
seconds from the writing host's clock: workers on several nodes must have synchronised clocks,
which Slurm's munge authentication requires anyway.

A trial whose worker got SIGINT (Ctrl-C) is marked "interrupted" (`mark_interrupted`): reclaim
takes it at once, and records "interrupted" rather than "no heartbeat". The KeyboardInterrupt waits
while the worker holds the journal lock (`hold_interrupts`): raised between a lock's acquire and the
try that releases it, it would leave the lock held, and the worker's own reclaim would then wait on it
for ever.

A preempted trial (Slurm sent the signal, the worker checkpointed and requeued its job) is not
dead: `mark_preempted` records that, and reclaim leaves such trials to the requeued job unless
told otherwise (`leaksweep reclaim --preempted`).

This module owns the heartbeat file's format and knows nothing of Optuna; study.reclaim decides what a
stale trial means for the study.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from leaksweep.cluster.env import JobEnvironment
from leaksweep.files import write_json
from leaksweep.layout import TrialDir


@dataclass(frozen=True)
class Beat:
    """The last heartbeat of a trial, as read from its file."""

    pid: int
    host: str
    beat_at: float  # Unix seconds
    interval_s: float
    state: str  # "running", "preempted" or "interrupted" (SIGINT: stale at once)
    slurm_job: str | None

    def age_s(self, now: float) -> float:
        return now - self.beat_at


def slurm_job() -> str | None:
    """This process's Slurm task ("<array job>_<task>" or the job id), as its heartbeats record it."""
    return JobEnvironment.current().task


def write_beat(trial_dir: Path, interval_s: float, state: str = "running") -> None:
    """Write one heartbeat now (atomically: a reader never sees half a file)."""
    write_json(
        TrialDir(trial_dir).heartbeat,
        {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "beat_at": time.time(),
            "interval_s": interval_s,
            "state": state,
            "slurm_job": slurm_job(),
        },
    )


def read_beat(trial_dir: Path) -> Beat | None:
    """The trial's last heartbeat; None when it has none (or a file another writer is replacing)."""
    try:
        raw = json.loads(TrialDir(trial_dir).heartbeat.read_text(encoding="utf-8"))
        return Beat(
            int(raw["pid"]),
            str(raw["host"]),
            float(raw["beat_at"]),
            float(raw["interval_s"]),
            str(raw.get("state", "running")),
            raw.get("slurm_job"),
        )
    except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def is_preempted(trial_dir: Path) -> bool:
    """True when the trial's worker stopped for preemption and no worker has resumed it yet."""
    beat = read_beat(trial_dir)
    return beat is not None and beat.state == "preempted"


def mark_preempted(trial_dir: Path, interval_s: float) -> None:
    """Record that the trial's worker was preempted on purpose and its job requeued: not stale."""
    write_beat(trial_dir, interval_s, state="preempted")


def mark_interrupted(trial_dir: Path, interval_s: float) -> None:
    """Record that the trial's worker stopped on SIGINT (Ctrl-C): reclaim takes the trial at once,
    without waiting stale_after_s, and says it was interrupted."""
    write_beat(trial_dir, interval_s, state="interrupted")


_held = 0  # journal locks this process holds (hold_interrupts), counted across threads
_pending = False  # a SIGINT arrived while one was held: KeyboardInterrupt when the last is released


def interrupt_once() -> None:
    """SIGINT raises KeyboardInterrupt once, and later ones are ignored: a worker marks its trial
    interrupted undisturbed when both the terminal (its process group) and `leaksweep sweep` signal it.
    While a journal lock is held (hold_interrupts) the KeyboardInterrupt waits for its release."""
    import signal

    def handler(signum, frame):
        global _pending
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if _held:
            _pending = True
            return
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)


def hold_interrupts() -> None:
    """A lock is about to be taken: a SIGINT from now on waits for release_interrupts."""
    global _held
    _held += 1


def release_interrupts() -> None:
    """The lock is released: raise the KeyboardInterrupt a SIGINT left meanwhile, once the last lock is."""
    global _held, _pending
    _held -= 1
    if not _held and _pending:
        _pending = False
        raise KeyboardInterrupt


class Heartbeat:
    """Context manager: beat at once, then every `interval_s` from a daemon thread, until exit.

    `extra` (optional) is called with each beat, e.g. to record Optuna's own RDB heartbeat too.
    On exit the file is left as it is: a finished trial's result.json says it is done, and a
    trial whose worker stopped for preemption is marked by `mark_preempted` afterwards.
    """

    def __init__(self, trial_dir: Path, interval_s: float, extra=None):
        if interval_s <= 0:
            raise ValueError(f"heartbeat interval must be positive, got {interval_s}")
        self.trial_dir = Path(trial_dir)
        self.interval_s = interval_s
        self.extra = extra
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        write_beat(self.trial_dir, self.interval_s)
        if self.extra is not None:
            self.extra()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - OSError from the file, the DB driver's errors from `extra`
                # a full disk, an NFS hiccup, a database restart: the next beat retries; enough missed
                # beats and the trial is reclaimed, the right outcome if storage stays unreachable
                pass

    def __enter__(self) -> "Heartbeat":
        self.trial_dir.mkdir(parents=True, exist_ok=True)
        self.beat()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{self.trial_dir.name}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
