"""Stale trials: finding RUNNING trials whose worker died, failing them and re-enqueueing their params.

Owns the staleness rule. With the journal file (no heartbeat in Optuna), a trial is stale when its
heartbeat.json (study.heartbeat) is older than `search.stale_after_s`, or, with no beat at all, when
it started longer ago than that. With an RDB storage Optuna's own heartbeat table decides. A trial
marked preempted is left to its requeued job unless reclaim is asked to take it too.

Workers call `reclaim_stale` under the ask lock before each ask; `leaksweep reclaim` calls `reclaim`.
Failing is a compare-and-set in the storage (study.storage.fail_and_retry): when two reclaimers race,
or the worker finishes at the same moment, only one wins, so a trial is never re-enqueued twice.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

from leaksweep.config import SweepConfig
from leaksweep.errors import UserError
from leaksweep.layout import SweepDir
from leaksweep.study import heartbeat, storage
from leaksweep.study.prepare import ask_lock, load_sweep_dir


def _why_stale(
    t: storage.TrialRecord,
    cfg: SweepConfig,
    sweep_dir: Path,
    now: float,
    include_preempted: bool,
    optuna_stale: set[int] | None,
) -> str | None:
    """Why a RUNNING trial counts as stale, or None when it does not."""
    grace_s = cfg.search.stale_after_s
    beat = heartbeat.read_beat(SweepDir(sweep_dir).trial(t.number).path)
    if beat is not None and beat.state == "preempted":
        if include_preempted:
            return f"preempted (job {beat.slurm_job}) {beat.age_s(now):.0f} s ago and not resumed; reclaimed on request"
        return None  # its requeued job resumes it from its checkpoint
    if beat is not None and beat.state == "interrupted":  # Ctrl-C: resume it now, not after stale_after_s
        return f"interrupted (SIGINT to pid {beat.pid} on {beat.host}) {beat.age_s(now):.0f} s ago"
    if optuna_stale is not None:
        return f"no Optuna heartbeat for over {math.ceil(grace_s)} s" if t.trial_id in optuna_stale else None
    if beat is not None:
        if beat.age_s(now) <= grace_s:
            return None
        return (
            f"no heartbeat for {beat.age_s(now):.0f} s (over stale_after_s={grace_s:g}) from "
            f"pid {beat.pid} on {beat.host}" + (f", Slurm job {beat.slurm_job}" if beat.slurm_job else "")
        )
    if t.started_at is not None and now - t.started_at.timestamp() > grace_s:
        return f"started {now - t.started_at.timestamp():.0f} s ago and never sent a heartbeat"
    return None


def stale_running(
    study: storage.Study, cfg: SweepConfig, sweep_dir: Path, now: float, include_preempted: bool = False
) -> list[tuple[storage.TrialRecord, str]]:
    """RUNNING trials whose worker stopped beating, each with why it counts as stale."""
    optuna_stale = storage.optuna_stale_ids(study)  # Optuna's own verdict, with an RDB heartbeat
    found = []
    for t in storage.trials(study, "RUNNING"):
        why = _why_stale(t, cfg, sweep_dir, now, include_preempted, optuna_stale)
        if why is not None:
            found.append((t, why))
    return found


def reclaim_stale(
    study: storage.Study, cfg: SweepConfig, sweep_dir: Path, now: float | None = None, include_preempted: bool = False
) -> list[dict]:
    """Mark stale RUNNING trials FAIL and re-enqueue their parameters and attributes (at most
    `search.max_retries` times per original trial; Optuna's retry callback keeps the history).

    Each reclaimed trial's folder gets error.json saying why (what `leaksweep status` shows).
    """
    sweep_dir = Path(sweep_dir)
    now = time.time() if now is None else now
    max_retries = cfg.search.max_retries
    reclaimed = []
    for t, why in stale_running(study, cfg, sweep_dir, now, include_preempted):
        if _complete_from_result(study, t, sweep_dir, why):
            reclaimed.append({"trial": t.number, "reason": why, "retried": False, "completed": True})
            continue
        outcome = storage.fail_and_retry(study, t, max_retries)
        if outcome is None:
            continue  # finished (or reclaimed by another worker) meanwhile
        runs, retried = outcome
        note = (
            f"reclaimed: {why}; its parameters were re-enqueued as a new trial"
            if retried
            else f"reclaimed: {why}; not retried: the trial already ran {runs} times (search.max_retries={max_retries})"
        )
        SweepDir(sweep_dir).trial(t.number).write_error(note, None)
        print(f"trial {t.number} {note}", file=sys.stderr, flush=True)
        reclaimed.append({"trial": t.number, "reason": why, "retried": retried})
    return reclaimed


def _complete_from_result(study: storage.Study, t: storage.TrialRecord, sweep_dir: Path, why: str) -> bool:
    """A stale trial whose result.json exists finished: its worker died after writing the result and
    before telling the study. Tell it COMPLETE with the result's objectives; never rerun it."""
    folder = SweepDir(sweep_dir).trial(t.number)
    if not folder.is_complete():
        return False
    try:
        values = [float(v) for v in folder.read_result().objectives]
    except (UserError, ValueError, TypeError):
        return False  # an unreadable result: the trial is failed and retried as any stale one
    if not storage.complete_from_result(study, t, values):
        return False
    print(
        f"trial {t.number} reclaimed ({why}): its result.json exists, so it is told COMPLETE with its "
        f"objectives {values}, not rerun",
        file=sys.stderr,
        flush=True,
    )
    return True


def reclaim(sweep_dir: Path, include_preempted: bool = False) -> list[dict]:
    """`leaksweep reclaim`: reclaim the stale trials of a sweep folder now (under the ask lock)."""
    sweep_dir = Path(sweep_dir)
    cfg = load_sweep_dir(sweep_dir)
    study = storage.load_study(sweep_dir, cfg)
    with ask_lock(sweep_dir):
        return reclaim_stale(study, cfg, sweep_dir, include_preempted=include_preempted)
