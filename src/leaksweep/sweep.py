"""Search stage: an Optuna study over mixture fractions (and hyperparameters), run by workers.

The only module that imports optuna. Suggestion and execution are decoupled with ask/tell:
a worker asks for a trial, writes its spec.json, runs it (trial.py) and tells the objective values.

* `prepare(cfg)` validates everything a trial needs (data, subsets, traits, base model), writes the
  resolved config to `<sweep dir>/sweep.json`, creates the study and enqueues the baselines and,
  for the grid sampler, every grid point (times `seeds`). Enqueued trials are popped by exactly one
  worker each, so parallel workers never duplicate a grid point (Optuna's GridSampler can).
* `run_worker(sweep_dir, tracker)` loops until the trial budget is spent.
* `run_local(sweep_dir, workers)` starts N worker processes (one torch thread each) and shows one
  progress bar for the sweep.
"""

from __future__ import annotations

import copy
import dataclasses
import fcntl
import itertools
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from leaksweep import heartbeat, lm, preemption, slurm
from leaksweep import trial as trial_stage
from leaksweep.config import FloatRange, Rule, SweepConfig, sweep_from_dict
from leaksweep.experiments import Condition, Request, Run, make_search
from leaksweep.errors import UserError
from leaksweep.files import read_json, write_json
from leaksweep.data.mixture import MixturePlan
from leaksweep.progress import Progress
from leaksweep.schema import to_dict
from leaksweep.data.world import resolve_world

INT_TRAIN_KEYS = {"max_steps", "batch_size"}
optuna.logging.set_verbosity(optuna.logging.WARNING)


# --- preparing a sweep folder ----------------------------------------------------------------------


def prepare(cfg: SweepConfig) -> Path:
    """Create (or reopen) the sweep folder and its study; returns the folder."""
    sweep_dir = Path(cfg.output_dir)
    if cfg.train.model != "tiny":
        lm.local_folder(cfg.train.model)  # a path-looking model must exist: fail before anything is written
    if cfg.data.world is None:
        trial_stage.prepare_data(cfg)  # bad data fails here, before anything is written
    sweep_dir.mkdir(parents=True, exist_ok=True)
    # Slurm array tasks given a sweep file all prepare the same folder at once: one creates the study
    # and enqueues the plan, the others wait and then find it (enqueueing twice would run it twice).
    with open(sweep_dir / ".prepare.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        return _prepare_locked(cfg, sweep_dir)


def _prepare_locked(cfg: SweepConfig, sweep_dir: Path) -> Path:
    cfg = resolve_world(cfg, sweep_dir)
    resolved = to_dict(cfg)
    existing = sweep_dir / "sweep.json"
    # Compared with defaults filled in (a folder from before a new config key still resumes), and without
    # `slurm:`: more time or another partition for the same sweep must not start a new one.
    if existing.exists() and _resumable_view(sweep_from_dict(read_json(existing), str(existing))) != _resumable_view(cfg):
        raise UserError(
            f"{sweep_dir}: holds a sweep with a different configuration; set another `output_dir` "
            "(or delete the folder) to start a new sweep, or restore the old sweep file to resume it"
        )
    prepared = trial_stage.prepare_data(cfg)
    check_partition(cfg, prepared)
    if not cfg.search.runner:
        trial_stage.base_model_path(cfg.train, str(sweep_dir / "models"), prepared)
    (sweep_dir / "trials").mkdir(exist_ok=True)
    created = _create_study(cfg, sweep_dir)
    if created and cfg.search.mode == "optuna":  # experiment modes enqueue round by round
        study = load_study(sweep_dir, cfg)
        for params, attrs in planned_trials(cfg):
            study.enqueue_trial(params, user_attrs=attrs)
    write_json(existing, resolved)
    return sweep_dir


def _resumable_view(cfg: SweepConfig) -> dict:
    """The parts of a sweep's config that must match for a folder to be resumed."""
    return {k: v for k, v in to_dict(cfg).items() if k != "slurm"}


def check_partition(cfg: SweepConfig, prepared: trial_stage.Prepared) -> None:
    """subset_scan with `partition: true` needs a disjoint family: name every overlap."""
    if not cfg.search.partition:
        return
    family = [prepared.subsets[n] for n in cfg.search.subsets]
    overlaps = [f"{a.name} & {b.name}: {len(a.ids & b.ids)} prompts" for i, a in enumerate(family)
                for b in family[i + 1:] if a.ids & b.ids]
    if overlaps:
        raise UserError(f"search.subsets: `partition: true` needs disjoint subsets, but {'; '.join(overlaps)}")


def open_storage(url: str | None, sweep_dir: Path, search=None):
    """Default: a journal file in the sweep folder (no server, safe for concurrent local workers).

    An RDB URL (sqlite:///..., postgresql://...) is opened with Optuna's heartbeat when `search`
    (the sweep's SearchConfig) is given: its heartbeat_s / stale_after_s become Optuna's interval and
    grace period (whole seconds), and reclaim_stale fails and retries the trials it finds stale.
    """
    if not url:
        return JournalStorage(JournalFileBackend(str(sweep_dir / "optuna.journal")))
    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:"))
        return JournalStorage(JournalFileBackend(str(path if path.is_absolute() else sweep_dir / path)))
    if search is None:
        return url  # Optuna opens it
    with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9; the API is stable in use
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _rdb_with_heartbeat(url, search)


def _rdb_with_heartbeat(url: str, search) -> RDBStorage:
    return RDBStorage(url, heartbeat_interval=max(1, math.ceil(search.heartbeat_s)),
                      grace_period=max(1, math.ceil(search.stale_after_s)),
                      heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=search.max_retries),
                      engine_kwargs={"pool_pre_ping": True})  # a server restart must not break long-lived workers


def _create_study(cfg: SweepConfig, sweep_dir: Path) -> bool:
    storage = open_storage(cfg.search.storage, sweep_dir)
    try:
        optuna.load_study(study_name=cfg.name, storage=storage)
        return False
    except KeyError:
        pass
    directions = [o.direction for o in cfg.search.objectives] or ["maximize"]
    optuna.create_study(study_name=cfg.name, storage=storage, directions=directions)
    return True


def _sampler(cfg: SweepConfig) -> optuna.samplers.BaseSampler:
    if cfg.search.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=None)
    if cfg.search.sampler == "gp":
        return optuna.samplers.GPSampler()
    if cfg.search.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler()
    # grid: every trial is enqueued, the sampler never suggests; random for the rest
    return optuna.samplers.RandomSampler()


def load_study(sweep_dir: Path, cfg: SweepConfig) -> optuna.Study:
    storage = open_storage(cfg.search.storage, sweep_dir, cfg.search)
    try:
        return optuna.load_study(study_name=cfg.name, storage=storage, sampler=_sampler(cfg))
    except KeyError as exc:
        raise UserError(f"{sweep_dir}: no study named {cfg.name!r} in its storage; run `leaksweep sweep` first") from exc


def load_sweep_dir(sweep_dir: Path) -> SweepConfig:
    path = Path(sweep_dir) / "sweep.json"
    if not path.exists():
        raise UserError(f"{sweep_dir}: not a sweep folder (no sweep.json); run `leaksweep sweep SWEEP.yaml` first")
    return sweep_from_dict(read_json(path), str(path))


# --- what to run ---------------------------------------------------------------------------------


def _axes(cfg: SweepConfig) -> list[tuple[str, Any]]:
    s = cfg.search
    return (
        [(f"frac.{k}", v) for k, v in s.fractions.items()]
        + [(f"drop.{k}", v) for k, v in s.drop.items()]
        + [(f"hp.{k}", v) for k, v in s.hyperparameters.items()]
    )


def planned_trials(cfg: SweepConfig) -> list[tuple[dict, dict]]:
    """The enqueued trials: baselines first, then (grid sampler) every grid point, each x seeds."""
    s = cfg.search
    planned = []
    for seed in range(s.seeds):
        if s.baselines:
            planned += [({}, {"condition": "all_clean", "seed": seed}), ({}, {"condition": "all_teacher", "seed": seed})]
        if s.sampler != "grid":
            continue
        names = [n for n, _ in _axes(cfg)]
        for values in itertools.product(*[v for _, v in _axes(cfg)]):
            params = dict(zip(names, values))
            if s.baselines and not s.hyperparameters and all(v == 0 for v in values):
                continue  # the same manifest as the all-clean baseline
            planned.append((params, {"condition": "mixture", "seed": seed}))
    return planned


def budget(cfg: SweepConfig) -> int | None:
    """Trials the sweep will run; None for experiment modes, whose searches decide as they go."""
    if cfg.search.mode != "optuna":
        return None
    planned = len(planned_trials(cfg))
    return planned if cfg.search.sampler == "grid" else planned + cfg.search.n_trials


def _suggest(trial: optuna.Trial, name: str, choice: Any) -> Any:
    if isinstance(choice, list):
        return trial.suggest_categorical(name, choice)
    assert isinstance(choice, FloatRange)
    if name.removeprefix("hp.") in INT_TRAIN_KEYS:
        return trial.suggest_int(name, int(choice.low), int(choice.high), log=choice.log, step=int(choice.step or 1))
    return trial.suggest_float(name, choice.low, choice.high, log=choice.log, step=choice.step)


def spec_for(cfg: SweepConfig, trial: optuna.Trial, sweep_dir: Path) -> trial_stage.TrialSpec:
    """Turn an asked trial into a TrialSpec: its params become mixture rules and train overrides."""
    seed = int(trial.user_attrs.get("seed", 0))
    if "condition_json" in trial.user_attrs:  # an experiment mode's condition
        cond = Condition.from_dict(json.loads(trial.user_attrs["condition_json"]))
        params = {k: v for k, v in (("subset", cond.subset), ("fraction", cond.fraction), ("refill", cond.refill),
                                    ("source", cond.source)) if v is not None}
        return trial_stage.TrialSpec(cfg, trial.number, cond.kind, params, cond.plan, seed, cfg.train, str(sweep_dir / "models"))
    condition = trial.user_attrs.get("condition", "mixture")
    s = cfg.search
    params: dict[str, Any] = {}
    rules: list[Rule] = []
    train = cfg.train
    base = cfg.base
    if condition == "all_teacher":
        base = s.teacher
    elif condition == "mixture":
        params = {name: _suggest(trial, name, choice) for name, choice in _axes(cfg)}
        rules = list(cfg.rules)
        rules += [Rule(subset=k, action="patch", source=s.teacher, fraction=params[f"frac.{k}"]) for k in s.fractions]
        rules += [Rule(subset=k, action="drop", fraction=params[f"drop.{k}"]) for k in s.drop]
        overrides = {k.removeprefix("hp."): v for k, v in params.items() if k.startswith("hp.")}
        train = dataclasses.replace(train, **overrides)
    plan = MixturePlan(base, tuple(rules), s.mixture_seed)
    return trial_stage.TrialSpec(cfg, trial.number, condition, params, plan, seed, train, str(sweep_dir / "models"))


# --- workers -------------------------------------------------------------------------------------


@contextmanager
def _ask_lock(sweep_dir: Path) -> Iterator[None]:
    """Serialise 'count trials, then ask' across workers, so the budget is never overshot."""
    with open(sweep_dir / ".ask.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _next_trial(study: optuna.Study, cfg: SweepConfig, sweep_dir: Path) -> optuna.Trial | None:
    """The next trial to run, or None when the sweep (or the current round) has nothing left.

    When nothing is left to ask but other workers' trials are still running, wait for them (polling
    every second at most): if one of those workers died, its trial goes stale and this worker reclaims and
    reruns it. Otherwise the last workers of a sweep could all exit and leave a dead trial behind.
    Preempted trials are not waited for: their requeued Slurm job resumes them. A preempted trial
    comes first of all: this worker adopts it (its own Slurm job's first, then any other), and runs it
    again from its spec.json; training resumes from the checkpoint (preemption.py).
    """
    while not preemption.requested.is_set():
        with _ask_lock(sweep_dir):
            # a trial whose worker died is failed and re-enqueued first, so it counts as waiting below
            reclaim_stale(study, cfg, sweep_dir)
            adopted = _adopt_preempted(study, cfg, sweep_dir)
            if adopted is not None:
                return adopted
            trials = study.get_trials(deepcopy=False)
            waiting = any(t.state == TrialState.WAITING for t in trials)
            counted = sum(t.state != TrialState.FAIL for t in trials)
            only_enqueued = cfg.search.mode != "optuna" or cfg.search.sampler == "grid"
            if waiting or (not only_enqueued and counted < budget(cfg)):
                with warnings.catch_warnings():  # we run the heartbeat ourselves (beating), not Study.optimize
                    warnings.filterwarnings("ignore", message=".*Heartbeat of storage is supposed to be used.*")
                    return study.ask()
            others = [t for t in trials if t.state == TrialState.RUNNING
                      and not _is_preempted(trial_dir(sweep_dir, t.number))]
            if not others:
                return None
        # at most 1 s: the last trial's own worker exits as soon as it is done, and a sweep (or round)
        # ends when its last worker does, so a long nap here would only delay the end
        time.sleep(min(cfg.search.heartbeat_s, 1.0))
    return None  # preemption requested: take nothing new


def _adopt_preempted(study: optuna.Study, cfg: SweepConfig, sweep_dir: Path) -> optuna.Trial | None:
    """Claim a RUNNING trial whose worker was preempted (under the ask lock, so only one worker can):
    this job's own first (a requeued task finds the trial it left), then any other's (a job that was
    not requeued, or a local worker, must not leave it behind)."""
    mine = heartbeat.slurm_job()  # the id its heartbeats record: "<array job>_<task>" or the job id
    found = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        beat = heartbeat.read_beat(trial_dir(sweep_dir, t.number))
        if beat is not None and beat.state == "preempted":
            found.append((beat.slurm_job != mine or mine is None, t.number, t))
    if not found:
        return None
    _, number, t = min(found, key=lambda f: f[:2])
    heartbeat.write_beat(trial_dir(sweep_dir, number), cfg.search.heartbeat_s)  # claimed: no longer "preempted"
    print(f"resuming preempted trial {number}", file=sys.stderr, flush=True)
    return optuna.Trial(study, t._trial_id)


def _is_preempted(directory: Path) -> bool:
    beat = heartbeat.read_beat(directory)
    return beat is not None and beat.state == "preempted"


# --- heartbeats and stale trials -------------------------------------------------------------------


def _uses_optuna_heartbeat(study: optuna.Study) -> bool:
    # Optuna wraps an RDBStorage in a cache that forwards the heartbeat methods; the journal has none
    interval = getattr(study._storage, "get_heartbeat_interval", None)
    return interval is not None and interval() is not None


def beating(study: optuna.Study, trial: optuna.Trial, directory: Path, cfg: SweepConfig) -> heartbeat.Heartbeat:
    """The heartbeat of a running trial: its heartbeat.json always, and Optuna's RDB heartbeat too when
    the storage has one (Optuna only beats inside Study.optimize; leaksweep workers ask and tell)."""
    extra = None
    if _uses_optuna_heartbeat(study):
        storage, trial_id = study._storage, trial._trial_id
        extra = lambda: storage.record_heartbeat(trial_id)  # noqa: E731
    return heartbeat.Heartbeat(directory, cfg.search.heartbeat_s, extra)


def _stale_running(study: optuna.Study, cfg: SweepConfig, sweep_dir: Path, now: float,
                   include_preempted: bool) -> list[tuple[optuna.trial.FrozenTrial, str]]:
    """RUNNING trials whose worker stopped beating, each with why it counts as stale."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    grace_s = cfg.search.stale_after_s
    if _uses_optuna_heartbeat(study):
        stale_ids = set(study._storage._get_stale_trial_ids(study._study_id))  # Optuna's own verdict
    else:
        stale_ids = None
    found = []
    for t in running:
        beat = heartbeat.read_beat(trial_dir(sweep_dir, t.number))
        if beat is not None and beat.state == "preempted":
            if include_preempted:
                found.append((t, f"preempted (job {beat.slurm_job}) {beat.age_s(now):.0f} s ago and not resumed; "
                                 "reclaimed on request"))
            continue  # its requeued job resumes it from its checkpoint
        if stale_ids is not None:
            if t._trial_id in stale_ids:
                found.append((t, f"no Optuna heartbeat for over {math.ceil(grace_s)} s"))
            continue
        if beat is not None:
            if beat.age_s(now) > grace_s:
                found.append((t, f"no heartbeat for {beat.age_s(now):.0f} s (over stale_after_s={grace_s:g}) from "
                                 f"pid {beat.pid} on {beat.host}" + (f", Slurm job {beat.slurm_job}" if beat.slurm_job else "")))
        elif t.datetime_start is not None and now - t.datetime_start.timestamp() > grace_s:
            found.append((t, f"started {now - t.datetime_start.timestamp():.0f} s ago and never sent a heartbeat"))
    return found


def reclaim_stale(study: optuna.Study, cfg: SweepConfig, sweep_dir: Path, now: float | None = None,
                  include_preempted: bool = False) -> list[dict]:
    """Mark stale RUNNING trials FAIL and re-enqueue their parameters and attributes (at most
    `search.max_retries` times per original trial; Optuna's retry callback keeps the history).

    Workers call this under the ask lock before each ask; `leaksweep reclaim` calls it on demand.
    Marking FAIL is a compare-and-set in the storage: when two reclaimers race, or the worker
    finishes at the same moment, only one wins, so a trial is never re-enqueued twice.
    Each reclaimed trial's folder gets error.json saying why (what `leaksweep status` shows).
    """
    with warnings.catch_warnings():  # the retry callback is "experimental" since Optuna 2.8 and stable in use
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _reclaim_stale(study, cfg, sweep_dir, time.time() if now is None else now, include_preempted)


def _reclaim_stale(study: optuna.Study, cfg: SweepConfig, sweep_dir: Path, now: float,
                   include_preempted: bool) -> list[dict]:
    sweep_dir = Path(sweep_dir)
    retry = RetryHeartbeatStaleTrialCallback(max_retry=cfg.search.max_retries)
    reclaimed = []
    for t, why in _stale_running(study, cfg, sweep_dir, now, include_preempted):
        try:
            if not study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:
            continue  # finished (or reclaimed by another worker) meanwhile
        failed = copy.deepcopy(study._storage.get_trial(t._trial_id))  # the callback edits its system_attrs
        runs = len(RetryHeartbeatStaleTrialCallback.retry_history(failed)) + 1  # this one and its earlier tries
        retry(study, failed)
        retried = runs <= cfg.search.max_retries  # the callback's own rule: it enqueued the retry
        note = (f"reclaimed: {why}; its parameters were re-enqueued as a new trial" if retried else
                f"reclaimed: {why}; not retried: the trial already ran {runs} times "
                f"(search.max_retries={cfg.search.max_retries})")
        write_json(trial_dir(sweep_dir, t.number) / trial_stage.ERROR, {"error": note, "traceback": None})
        print(f"trial {t.number} {note}", file=sys.stderr, flush=True)
        reclaimed.append({"trial": t.number, "reason": why, "retried": retried})
    return reclaimed


def reclaim(sweep_dir: Path, include_preempted: bool = False) -> list[dict]:
    """`leaksweep reclaim`: reclaim the stale trials of a sweep folder now (under the ask lock)."""
    sweep_dir = Path(sweep_dir)
    cfg = load_sweep_dir(sweep_dir)
    study = load_study(sweep_dir, cfg)
    with _ask_lock(sweep_dir):
        return reclaim_stale(study, cfg, sweep_dir, include_preempted=include_preempted)


def trial_dir(sweep_dir: Path, number: int) -> Path:
    return Path(sweep_dir) / "trials" / f"{number:05d}"


def run_worker(sweep_dir: Path, tracker, max_trials: int | None = None) -> int:
    """Ask, run and tell trials until the budget is spent; returns how many this worker completed."""
    sweep_dir = Path(sweep_dir)
    cfg = load_sweep_dir(sweep_dir)
    study = load_study(sweep_dir, cfg)
    slurm_task = slurm.task_env_id()
    done = 0
    while (max_trials is None or done < max_trials) and not preemption.requested.is_set():
        trial = _next_trial(study, cfg, sweep_dir)
        if trial is None:
            break
        directory = trial_dir(sweep_dir, trial.number)
        try:
            # beat from the moment the trial is ours: a slow spec write on a busy node must not look like death
            with beating(study, trial, directory, cfg):
                if not (directory / trial_stage.SPEC).exists():  # else an adopted preempted trial: rerun its spec
                    spec = spec_for(cfg, trial, sweep_dir)
                    trial.set_user_attr("trial_dir", str(directory))
                    trial.set_user_attr("label", trial_stage.label(spec))
                    write_json(directory / trial_stage.SPEC, spec.to_dict())
                if slurm_task:  # which Slurm array task runs it (the latest, after a requeue), for `leaksweep status`
                    trial.set_user_attr("slurm_task", slurm_task)
                result = trial_stage.run_trial(directory, tracker, study=cfg.name)
        except preemption.Preempted as exc:
            # Not told: the trial stays RUNNING (counted once, never failed), marked preempted for
            # whichever worker resumes it; the heartbeat thread has stopped, so nothing overwrites the mark.
            heartbeat.mark_preempted(directory, cfg.search.heartbeat_s)
            print(f"trial {trial.number} preempted: {exc}", file=sys.stderr, flush=True)
            break
        except UserError:
            _tell_failed(study, trial)
            raise  # a config problem fails every trial the same way: stop and say it
        except Exception as exc:  # one broken trial must not stop the sweep; error.json says why
            print(f"trial {trial.number} failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            _tell_failed(study, trial)
            continue
        if not _tell_complete(study, trial, result["objectives"], directory):
            continue
        done += 1
    return done


def _tell_failed(study: optuna.Study, trial: optuna.Trial) -> None:
    """Tell FAIL, unless the trial was reclaimed meanwhile (then it is FAIL already and retried)."""
    try:
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    except UpdateFinishedTrialError:
        pass


def _tell_complete(study: optuna.Study, trial: optuna.Trial, values: list[float], directory: Path) -> bool:
    """Tell a finished trial's values; False when it was reclaimed meanwhile (this worker looked dead,
    e.g. stopped or cut off from storage longer than stale_after_s). Its retry is the trial that counts,
    so this result is moved aside, where the report and progress (which read result.json) ignore it."""
    try:
        frozen = study.tell(trial, values=values, skip_if_finished=True)
    except UpdateFinishedTrialError:
        frozen = None
    if frozen is not None and frozen.state == TrialState.COMPLETE:
        return True
    result = directory / trial_stage.RESULT
    if result.exists():
        os.replace(result, directory / "result.reclaimed.json")
    print(f"trial {trial.number} finished after it was reclaimed as stale; its result is kept in "
          f"{directory / 'result.reclaimed.json'} and not counted (its retry counts)", file=sys.stderr, flush=True)
    return False


def run_local(sweep_dir: Path, workers: int, wandb_enabled: bool = True) -> None:
    """Run `workers` worker processes on one study and wait; a progress bar counts finished trials."""
    sweep_dir = Path(sweep_dir)
    cfg = load_sweep_dir(sweep_dir)
    study = load_study(sweep_dir, cfg)
    total = budget(cfg) or len(study.get_trials(deepcopy=False))
    logs = sweep_dir / "logs"
    logs.mkdir(exist_ok=True)
    # One torch thread per process: two busy processes with 2 threads each stall for seconds per step.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    procs = []
    for i in range(workers):
        cmd = [sys.executable, "-m", "leaksweep.cli", "worker", str(sweep_dir)] + ([] if wandb_enabled else ["--no-wandb"])
        log = open(logs / f"worker-{i}.log", "a")
        procs.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log, i))
    complete = lambda: len(list((sweep_dir / "trials").glob("*/result.json")))  # noqa: E731
    # A live bar on a terminal, plain lines in a log (progress.py). The workers' own training and
    # generation progress goes to their log files above, never onto this bar.
    seen = complete()
    # every_fraction=0: a trial takes long enough that each finished one earns its own log line
    with Progress(total, f"sweep {cfg.name}", "trials", initial=seen, leave=True, every_fraction=0) as bar:
        while any(p.poll() is None for p, _, _ in procs):
            time.sleep(1.0)
            now = complete()
            bar.update(now - seen)
            seen = now
    failed = []
    for proc, log, i in procs:
        log.close()
        if proc.returncode == preemption.REQUEUE_EXIT:
            failed.append(f"worker {i} was preempted (SIGUSR1): its trial is checkpointed and marked preempted; "
                          "rerun the same command to resume it")
        elif proc.returncode != 0:
            tail = (logs / f"worker-{i}.log").read_text().splitlines()[-15:]
            failed.append(f"worker {i} exited with {proc.returncode}; last lines of {logs / f'worker-{i}.log'}:\n  " + "\n  ".join(tail))
    if failed:
        raise UserError(failed)


# --- experiment modes: rounds of enqueued conditions ------------------------------------------------


def collect_runs(study: optuna.Study, sweep_dir: Path) -> list[Run]:
    """Every complete trial of an experiment mode as a Run (condition, seed, trait results)."""
    runs = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if "condition_json" not in t.user_attrs:
            continue
        result = read_json(trial_dir(sweep_dir, t.number) / trial_stage.RESULT)
        runs.append(Run(Condition.from_dict(json.loads(t.user_attrs["condition_json"])), int(t.user_attrs["seed"]),
                        t.number, result["traits"]))
    return runs


def enqueue(study: optuna.Study, requests: list[Request]) -> int:
    """Enqueue requests not already waiting or running (a resumed sweep must not run them twice)."""
    pending = {(t.user_attrs.get("condition_json"), t.user_attrs.get("seed"))
               for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))}
    added = 0
    for condition, seed in requests:
        key = (json.dumps(condition.to_dict(), sort_keys=True), seed)
        if key in pending:
            continue
        study.enqueue_trial({}, user_attrs={"condition_json": key[0], "seed": seed, "label": condition.label()})
        pending.add(key)
        added += 1
    return added


def run_experiment(sweep_dir: Path, execute_round) -> dict:
    """Drive an experiment-mode search: each round enqueue what it asks for, run, read the results.

    `execute_round()` runs every waiting trial (local worker processes, or in-process). The
    conclusions go to `<sweep dir>/analysis.json`, which the report reads.
    """
    sweep_dir = Path(sweep_dir)
    cfg = load_sweep_dir(sweep_dir)
    study = load_study(sweep_dir, cfg)
    # the resolved config names every source; a simulated runner has just the clean one and the teacher
    search = make_search(cfg, sorted(cfg.data.sources) if not cfg.search.runner else [cfg.base, cfg.search.teacher])
    previous: list[Request] | None = None
    for round_number in range(1, 200):
        runs = collect_runs(study, sweep_dir)
        requests = search.next_round(runs)
        if not requests:
            break
        if previous is not None and [(c.key(), s) for c, s in requests] == [(c.key(), s) for c, s in previous]:
            raise UserError(f"{sweep_dir}: trials of round {round_number - 1} failed (see trials/*/error.json and "
                            f"`leaksweep status {sweep_dir}`); fix the cause and rerun the sweep to resume")
        enqueue(study, requests)
        print(f"{cfg.search.mode}: round {round_number}, {len(requests)} trial(s)", flush=True)
        execute_round()
        previous = requests
    conclusions = search.conclude(collect_runs(study, sweep_dir))
    write_json(sweep_dir / "analysis.json", conclusions)
    return conclusions


# --- status --------------------------------------------------------------------------------------


def finished(sweep_dir: Path) -> bool:
    """True when an optuna-mode sweep has nothing left: no trial waiting or running (a preempted trial
    stays RUNNING until its requeued job resumes it) and the budget spent. Slurm workers use it to
    decide which of them writes the report."""
    sweep_dir = Path(sweep_dir)
    cfg = load_sweep_dir(sweep_dir)
    trials = load_study(sweep_dir, cfg).get_trials(deepcopy=False)
    if any(t.state in (TrialState.WAITING, TrialState.RUNNING) for t in trials):
        return False
    if cfg.search.mode != "optuna" or cfg.search.sampler == "grid":
        return True  # only enqueued trials, and none is left
    return sum(t.state != TrialState.FAIL for t in trials) >= budget(cfg)


def status(sweep_dir: Path) -> dict:
    """Trials by state, the best so far by the first objective, and a time estimate."""
    sweep_dir = Path(sweep_dir)
    cfg = load_sweep_dir(sweep_dir)
    trials = load_study(sweep_dir, cfg).get_trials(deepcopy=False)
    by_state: dict[str, int] = {}
    for t in trials:
        by_state[t.state.name] = by_state.get(t.state.name, 0) + 1
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    objective = cfg.search.objectives[0] if cfg.search.objectives else None
    best = None
    if complete and objective is not None:
        pick = max if objective.direction == "maximize" else min
        top = pick(complete, key=lambda t: t.values[0])
        best = {"trial": top.number, "label": top.user_attrs.get("label"), "value": top.values[0], "trait": objective.trait}
    durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in complete if t.datetime_start and t.datetime_complete]
    planned = budget(cfg) or len(trials)
    remaining = max(0, planned - len(complete))
    running = by_state.get("RUNNING", 0)
    eta_s = (sum(durations) / len(durations)) * remaining / max(1, running) if durations and remaining else None
    failed = []
    for t in trials:
        if t.state == TrialState.FAIL:
            err = trial_dir(sweep_dir, t.number) / trial_stage.ERROR
            failed.append({"trial": t.number, "error": read_json(err)["error"] if err.exists() else "no error.json"})
    slurm_trials: dict[str, list[int]] = {}  # Slurm array task -> the trials it ran (set by run_worker)
    for t in trials:
        if "slurm_task" in t.user_attrs:
            slurm_trials.setdefault(t.user_attrs["slurm_task"], []).append(t.number)
    preempted = []  # RUNNING trials waiting for a worker to resume them from their checkpoint
    for t in trials:
        if t.state == TrialState.RUNNING and _is_preempted(trial_dir(sweep_dir, t.number)):
            record = trial_stage.read_preempted(trial_dir(sweep_dir, t.number)) or {}
            last = (record.get("history") or [{}])[-1]
            preempted.append({"trial": t.number, "step": record.get("step"), "slurm_job": last.get("slurm_job"),
                              "at": last.get("at")})
    return {"sweep": cfg.name, "dir": str(sweep_dir), "budget": planned, "mode": cfg.search.mode, "states": by_state, "best": best,
            "mean_trial_s": sum(durations) / len(durations) if durations else None, "eta_s": eta_s, "failed": failed,
            "slurm_trials": slurm_trials, "preempted": preempted}


# --- dashboard -----------------------------------------------------------------------------------


def _storage_target(cfg: SweepConfig, sweep_dir: Path) -> str:
    """What `optuna-dashboard` takes on its command line: the journal file's path or the RDB URL."""
    url = cfg.search.storage
    if not url:
        return str((sweep_dir / "optuna.journal").resolve())
    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:"))
        return str((path if path.is_absolute() else sweep_dir / path).resolve())
    return url


def _mask_password(url: str) -> str:
    """postgresql://user:SECRET@host/db -> postgresql://user:***@host/db: printed commands end up in logs."""
    # greedy up to the last "@", as SQLAlchemy parses it: a password may itself contain "@"
    return re.sub(r"^([\w+]+://[^:/@]*:).*@", r"\1***@", url)


def dashboard_command(sweep_dir: Path, host: str, port: int) -> str:
    """The equivalent `optuna-dashboard` command line (a storage password is shown as ***)."""
    sweep_dir = Path(sweep_dir)
    target = _mask_password(_storage_target(load_sweep_dir(sweep_dir), sweep_dir))
    return f"optuna-dashboard {shlex.quote(target)} --host {host} --port {port}"


def serve_dashboard(sweep_dir: Path, host: str = "127.0.0.1", port: int = 8080,
                    ready: Callable[[str, str], None] | None = None) -> None:
    """Serve the sweep's study in optuna-dashboard until interrupted (Ctrl-C).

    Uses optuna-dashboard's WSGI app on our storage object (a journal file is opened the same way
    the workers open it) behind a threaded wsgiref server, so the bound port is known before
    serving (`port=0` picks a free one); `ready(url, command)` gets the study's page and the
    equivalent `optuna-dashboard` command line. The dashboard has no login and can change the
    study (notes, tell, delete): bind a loopback address unless the network is trusted.
    """
    import socket
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    import optuna_dashboard

    sweep_dir = Path(sweep_dir)
    cfg = load_sweep_dir(sweep_dir)
    study = load_study(sweep_dir, cfg)  # says "run leaksweep sweep first" when there is no study yet
    storage = study._storage  # the storage object load_study opened (Optuna has no public accessor)
    study_id = storage.get_study_id_from_name(cfg.name)

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True  # the page polls; a hung request must not block Ctrl-C
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format, *args):  # noqa: A002 - the page polls every few seconds: no access log
            pass

    try:
        server = make_server(host, port, optuna_dashboard.wsgi(storage), server_class=Server,
                             handler_class=QuietHandler)
    except OSError as exc:
        raise UserError(f"--host {host} --port {port}: cannot listen there ({exc.strerror}); "
                        "pick another port (--port 0 picks a free one)") from exc
    shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else f"[{host}]" if ":" in host else host
    try:
        if ready is not None:
            ready(f"http://{shown}:{server.server_port}/dashboard/studies/{study_id}",
                  dashboard_command(sweep_dir, host, server.server_port))
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


# --- study summary (for the report) ------------------------------------------------------------------


MIN_IMPORTANCE_TRIALS = 3  # PED-ANOVA compares a top quantile with the rest: 2 trials cannot split


def study_summary(sweep_dir: Path) -> dict:
    """What the report needs from the Optuna study, as plain JSON-able data (report.py never imports optuna).

    {"directions": ["maximize", ...], "objectives": [names], "n_complete": int,
     "trials": [{"number", "values", "params"}] (complete trials),
     "pareto": [trial numbers on the Pareto front] (multi-objective studies; [] otherwise),
     "importances": {objective name: {param: importance}} (PED-ANOVA), "importance_method": how,
     "importances_absent": why there are none (None when computed)}

    Raises UserError when the folder has no study; opening it never creates one.
    """
    sweep_dir = Path(sweep_dir)
    cfg = load_sweep_dir(sweep_dir)
    if not cfg.search.storage and not (sweep_dir / "optuna.journal").is_file():
        # JournalFileBackend would create an empty journal: a report must not write into the study
        raise UserError(f"{sweep_dir}: no optuna.journal, so no Optuna study to summarise; "
                        "`leaksweep sweep` writes it when the sweep starts")
    study = load_study(sweep_dir, cfg)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    directions = [d.name.lower() for d in study.directions]
    names = [o.trait for o in cfg.search.objectives] or ["objective"]
    if len(set(names)) < len(names):  # the same trait both maximised and minimised, say
        names = [f"{o.trait} ({o.direction})" for o in cfg.search.objectives]
    names = (names + [f"objective {i}" for i in range(len(names), len(directions))])[: len(directions)]
    multi = len(directions) > 1
    summary: dict[str, Any] = {
        "directions": directions, "objectives": names, "n_complete": len(complete),
        "trials": [{"number": t.number, "values": list(t.values), "params": dict(t.params)} for t in complete],
        "pareto": sorted(t.number for t in study.best_trials) if multi and complete else [],
        "importances": {}, "importances_absent": None,
    }
    # Baselines and experiment-mode conditions carry no suggested params: importances only make sense over
    # the trials that have every param, and only for params that take more than one value there.
    params = sorted({p for t in complete for p in t.params})
    with_all = [t for t in complete if set(params) <= set(t.params)]
    varying = [p for p in params if len({repr(t.params[p]) for t in with_all}) > 1]
    if not params:
        summary["importances_absent"] = ("no trial has Optuna-suggested parameters (baselines and experiment-mode "
                                         "conditions have none)")
    elif len(with_all) < MIN_IMPORTANCE_TRIALS or not varying:
        summary["importances_absent"] = (
            f"{len(with_all)} complete trial(s) have all of the parameters {', '.join(params)}, and "
            f"{len(varying)} of those parameters vary among them; importances need at least "
            f"{MIN_IMPORTANCE_TRIALS} such trials and a varying parameter")
    else:
        # A copy holding only those trials: the evaluator would otherwise count the param-less baselines.
        sub = optuna.create_study(directions=study.directions)
        sub.add_trials(with_all)
        # PED-ANOVA needs no scikit-learn (fANOVA does) and is deterministic. Its top quantile must hold at
        # least 2 trials and fewer than all of them, or every importance comes out equal.
        quantile = min(0.5, max(0.1, 2 / len(with_all)))
        evaluator = optuna.importance.PedAnovaImportanceEvaluator(target_quantile=quantile)
        for i, name in enumerate(names):
            # with an explicit target PED-ANOVA treats lower as better, so maximised objectives are negated
            sign = -1.0 if directions[i] == "maximize" else 1.0
            with warnings.catch_warnings():  # its "lower target is better" reminder: handled by the sign
                warnings.filterwarnings("ignore", message=".*low `target` values.*")
                found = optuna.importance.get_param_importances(
                    sub, evaluator=evaluator, params=varying, target=lambda t, i=i, sign=sign: sign * t.values[i])
            summary["importances"][name] = {k: float(v) for k, v in found.items()}
        summary["importance_method"] = ("PED-ANOVA (optuna.importance.PedAnovaImportanceEvaluator, top "
                                        f"{quantile:.0%} of {len(with_all)} trials)")
    return summary
