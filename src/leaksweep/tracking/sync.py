"""Uploading offline W&B runs: `leaksweep sync`.

Offline runs land in `<run_dir>/wandb/offline-run-<time>-<id>/run-<id>.wandb`; `wandb sync` (run
as a separate process, several at a time) uploads them and leaves a `.synced` marker next to each
file it uploaded completely, so a second `leaksweep sync` skips them.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from leaksweep.errors import UserError
from leaksweep.tracking.redact import redact


@dataclass(frozen=True)
class OfflineRun:
    """One W&B run's offline folders under a sweep; a resumed run (the study summary run, logged
    again by `leaksweep report`) has several, oldest first, which must be synced in that order."""

    run_id: str
    dirs: tuple[Path, ...]


@dataclass(frozen=True)
class SyncOutcome:
    run: OfflineRun
    ok: bool
    message: str


def _run_id_of(offline_dir: Path) -> str:
    # offline-run-<YYYYMMDD_HHMMSS>-<id>; ids may contain "-" (summary-<study>-<hash>)
    parts = offline_dir.name.split("-", 3)
    return parts[3] if len(parts) == 4 else offline_dir.name


def is_synced(offline_dir: Path) -> bool:
    """`wandb sync` leaves `run-<id>.wandb.synced` next to each file it uploaded completely."""
    files = list(offline_dir.glob("*.wandb"))
    return bool(files) and all(f.with_suffix(".wandb.synced").exists() for f in files)


def find_offline_runs(root: Path) -> tuple[list[OfflineRun], int]:
    """Runs under `root` with offline folders not yet synced, and how many synced folders were skipped."""
    dirs = sorted(p for p in Path(root).rglob("offline-run-*") if p.is_dir() and p.parent.name == "wandb")
    pending: dict[str, list[Path]] = {}
    skipped = 0
    for d in dirs:
        if is_synced(d):
            skipped += 1
        else:
            pending.setdefault(_run_id_of(d), []).append(d)
    # the folder name starts with the start time, so sorting by name orders a run's resumptions
    runs = [OfflineRun(run_id, tuple(sorted(ds, key=lambda d: d.name))) for run_id, ds in sorted(pending.items())]
    return runs, skipped


def wandb_sync(run: OfflineRun) -> tuple[bool, str]:
    """Upload one run with `wandb sync` (a separate process); ok when every file got its .synced marker."""
    cmd = [sys.executable, "-m", "wandb", "sync", *map(str, run.dirs)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    except subprocess.TimeoutExpired:
        return False, "wandb sync did not finish within an hour"
    lines = [ln for ln in (done.stdout + done.stderr).splitlines() if ln.strip()]
    last = redact({"line": lines[-1] if lines else ""})["line"]
    ok = done.returncode == 0 and all(is_synced(d) for d in run.dirs)
    if ok:
        return True, last or "synced"
    return False, f"wandb sync exited with {done.returncode}: {last or 'no output'}"


def sync_offline_runs(
    runs: list[OfflineRun],
    jobs: int = 4,
    upload: Callable[[OfflineRun], tuple[bool, str]] = wandb_sync,
    progress: Callable[[int, int, SyncOutcome], None] | None = None,
) -> list[SyncOutcome]:
    """Upload `runs` with `jobs` uploads at a time; one failure does not stop the others.

    `upload` returns (ok, message); an exception it raises counts as a failure of that run.
    `progress(done, total, outcome)` is called as each run finishes. Outcomes come back in the
    order of `runs`.
    """
    if jobs < 1:
        raise UserError(f"--jobs {jobs}: use at least 1")
    outcomes: dict[int, SyncOutcome] = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(upload, run): i for i, run in enumerate(runs)}
        for future in as_completed(futures):
            i = futures[future]
            try:
                ok, message = future.result()
            except Exception as exc:  # one broken upload must not hide the others' results
                ok, message = False, f"{type(exc).__name__}: {exc}"
            outcomes[i] = SyncOutcome(runs[i], bool(ok), str(message))
            if progress:
                progress(len(outcomes), len(runs), outcomes[i])
    return [outcomes[i] for i in range(len(runs))]
