"""A sweep worker: ask for a trial, write its spec.json, run it (trial.py), tell the study.

Owns the worker loop (`run_worker`), the choice of the next trial (a preempted one to adopt first,
then a waiting or newly asked one, or wait for other workers' running trials), a running trial's
heartbeat (`beating`) and telling the outcome. Every Optuna call goes through study.storage.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from leaksweep import trial as trial_stage
from leaksweep.cluster import preemption
from leaksweep.cluster.env import JobEnvironment
from leaksweep.config import SweepConfig
from leaksweep.errors import UserError
from leaksweep.files import write_json
from leaksweep.layout import SweepDir, TrialDir
from leaksweep.study import heartbeat, storage
from leaksweep.study.prepare import ask_lock, budget, load_sweep_dir, spec_for
from leaksweep.study.reclaim import reclaim_stale


def _next_trial(study: storage.Study, cfg: SweepConfig, sweep_dir: Path) -> storage.Trial | None:
    """The next trial to run, or None when the sweep (or the current round) has nothing left.

    When nothing is left to ask but other workers' trials are still running, wait for them (polling
    every second at most): if one of those workers died, its trial goes stale and this worker reclaims and
    reruns it. Otherwise the last workers of a sweep could all exit and leave a dead trial behind.
    Preempted trials are not waited for: their requeued Slurm job resumes them. A preempted trial
    comes first of all: this worker adopts it (its own Slurm job's first, then any other), and runs it
    again from its spec.json; training resumes from the checkpoint (cluster/preemption.py).
    """
    while not preemption.requested.is_set():
        with ask_lock(sweep_dir):
            # a trial whose worker died is failed and re-enqueued first, so it counts as waiting below
            reclaim_stale(study, cfg, sweep_dir)
            adopted = _adopt_preempted(study, cfg, sweep_dir)
            if adopted is not None:
                return adopted
            trials = storage.trials(study)
            if _may_ask(cfg, trials):
                return storage.ask(study)
            others = [
                t
                for t in trials
                if t.state == "RUNNING" and not heartbeat.is_preempted(SweepDir(sweep_dir).trial(t.number).path)
            ]
            if not others:
                return None
        # at most 1 s: the last trial's own worker exits as soon as it is done, and a sweep (or round)
        # ends when its last worker does, so a long nap here would only delay the end
        time.sleep(min(cfg.search.heartbeat_s, 1.0))
    return None  # preemption requested: take nothing new


def _may_ask(cfg: SweepConfig, trials: list[storage.TrialRecord]) -> bool:
    """A trial is waiting, or (a sampler that suggests) the budget is not spent yet."""
    waiting = any(t.state == "WAITING" for t in trials)
    counted = sum(t.state != "FAIL" for t in trials)
    only_enqueued = cfg.search.mode != "optuna" or cfg.search.sampler == "grid"
    return waiting or (not only_enqueued and counted < budget(cfg))


def _adopt_preempted(study: storage.Study, cfg: SweepConfig, sweep_dir: Path) -> storage.Trial | None:
    """Claim a RUNNING trial whose worker was preempted (under the ask lock, so only one worker can):
    this job's own first (a requeued task finds the trial it left), then any other's (a job that was
    not requeued, or a local worker, must not leave it behind)."""
    mine = heartbeat.slurm_job()  # the id its heartbeats record: "<array job>_<task>" or the job id
    found = []
    for t in storage.trials(study, "RUNNING"):
        beat = heartbeat.read_beat(SweepDir(sweep_dir).trial(t.number).path)
        if beat is not None and beat.state == "preempted":
            found.append((beat.slurm_job != mine or mine is None, t.number, t))
    if not found:
        return None
    _, number, t = min(found, key=lambda f: f[:2])
    # claimed: no longer "preempted"
    heartbeat.write_beat(SweepDir(sweep_dir).trial(number).path, cfg.search.heartbeat_s)
    print(f"resuming preempted trial {number}", file=sys.stderr, flush=True)
    return storage.trial_for(study, t)


def beating(study: storage.Study, trial: storage.Trial, directory: Path, cfg: SweepConfig) -> heartbeat.Heartbeat:
    """The heartbeat of a running trial: its heartbeat.json always, and Optuna's RDB heartbeat too when
    the storage has one (Optuna only beats inside Study.optimize; leaksweep workers ask and tell)."""
    extra = storage.heartbeat_recorder(study, trial) if storage.has_optuna_heartbeat(study) else None
    return heartbeat.Heartbeat(directory, cfg.search.heartbeat_s, extra)


def _start(cfg: SweepConfig, trial: storage.Trial, folder: TrialDir, sweep_dir: Path) -> None:
    """Write the trial's spec.json, unless it has one (an adopted preempted trial reruns its spec)."""
    if folder.spec.exists():
        return
    spec = spec_for(cfg, trial, sweep_dir)
    storage.set_user_attrs(trial, trial_dir=str(folder.path), label=trial_stage.label(spec))
    write_json(folder.spec, spec.to_dict())


def run_worker(sweep_dir: Path, tracker, max_trials: int | None = None) -> int:
    """Ask, run and tell trials until the budget is spent; returns how many this worker completed."""
    sweep_dir = Path(sweep_dir)
    cfg = load_sweep_dir(sweep_dir)
    study = storage.load_study(sweep_dir, cfg)
    slurm_task = JobEnvironment.current().task
    done = 0
    while (max_trials is None or done < max_trials) and not preemption.requested.is_set():
        trial = _next_trial(study, cfg, sweep_dir)
        if trial is None:
            break
        folder = SweepDir(sweep_dir).trial(trial.number)
        try:
            # beat from the moment the trial is ours: a slow spec write on a busy node must not look like death
            with beating(study, trial, folder.path, cfg):
                _start(cfg, trial, folder, sweep_dir)
                if slurm_task:  # which Slurm array task runs it (the latest, after a requeue), for `leaksweep status`
                    storage.set_user_attrs(trial, slurm_task=slurm_task)
                result = trial_stage.run_trial(folder.path, tracker, study=cfg.name)
        except KeyboardInterrupt:
            interrupted(study, cfg, trial, folder.path, sweep_dir)
            raise
        except preemption.Preempted as exc:
            # Not told: the trial stays RUNNING (counted once, never failed), marked preempted for
            # whichever worker resumes it; the heartbeat thread has stopped, so nothing overwrites the mark.
            heartbeat.mark_preempted(folder.path, cfg.search.heartbeat_s)
            print(f"trial {trial.number} preempted: {exc}", file=sys.stderr, flush=True)
            break
        except UserError:
            storage.tell_failed(study, trial)
            raise  # a config problem fails every trial the same way: stop and say it
        except Exception as exc:  # one broken trial must not stop the sweep; error.json says why
            print(f"trial {trial.number} failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            storage.tell_failed(study, trial)
            continue
        if tell_complete(study, trial, result["objectives"], folder.path):
            done += 1
    return done


def interrupted(study: storage.Study, cfg: SweepConfig, trial: storage.Trial, directory: Path, sweep_dir: Path) -> None:
    """SIGINT during a trial: mark it interrupted and reclaim it at once (its parameters re-enqueued,
    error.json saying "interrupted"), so that a rerun resumes it immediately. Should the study be out
    of reach now, the mark alone makes the next worker's reclaim take it without waiting stale_after_s."""
    heartbeat.mark_interrupted(directory, cfg.search.heartbeat_s)
    print(f"trial {trial.number} interrupted (SIGINT); a rerun resumes it", file=sys.stderr, flush=True)
    try:
        with ask_lock(sweep_dir):
            reclaim_stale(study, cfg, sweep_dir)
    except Exception as exc:  # noqa: BLE001 - best effort: the mark is what counts
        print(f"trial {trial.number}: not reclaimed now ({type(exc).__name__}: {exc})", file=sys.stderr, flush=True)


def tell_complete(study: storage.Study, trial: storage.Trial, values: list[float], directory: Path) -> bool:
    """Tell a finished trial's values; False when it was reclaimed meanwhile (this worker looked dead,
    e.g. stopped or cut off from storage longer than stale_after_s). Its retry is the trial that counts,
    so this result is moved aside, where the report and progress (which read result.json) ignore it."""
    if storage.tell_complete(study, trial, values):
        return True
    if storage.state_of(study, trial) == "COMPLETE":
        return True  # a reclaimer told it from this result.json (this worker looked dead): counted once
    folder = TrialDir(directory)
    kept = folder / TrialDir.RECLAIMED_RESULT
    if folder.result.exists():
        os.replace(folder.result, kept)
    print(
        f"trial {trial.number} finished after it was reclaimed as stale; its result is kept in "
        f"{kept} and not counted (its retry counts)",
        file=sys.stderr,
        flush=True,
    )
    return False
