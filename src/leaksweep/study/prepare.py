"""Preparing a sweep folder, and what a sweep will run.

Owns: `prepare` (validate everything a trial needs, choose the folder's lock for its file system
(study/locks.py), write sweep.json, create the study and enqueue the planned trials, once, under the
folder's prepare lock), the folder's two locks (of the kind sweep.json records), `load_sweep_dir`,
the trial plan (`planned_trials`, `budget`) and `spec_for`, which turns an asked trial into the
TrialSpec that trial.py runs.

What prepare can check fails before anything is written (data, the model: a folder with a config.json
or a hub id in the HF cache or on the hub, the runner's import, the world's source names). A folder
holding another sweep is refused once any trial of it finished; until then (the first trial found the
mistake) the corrected sweep replaces it, and the old sweep.json, study and trial folders are kept
under superseded/STAMP/ (`_supersede`).

Enqueued trials are popped by exactly one worker each, so parallel workers never duplicate a grid
point (Optuna's GridSampler can). Experiment modes enqueue round by round (study.experiment).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from leaksweep import trial as trial_stage
from leaksweep.config import WORLD_SOURCES, FloatRange, Rule, SweepConfig
from leaksweep.data.mixture import MixturePlan
from leaksweep.data.subsets import needs_judge
from leaksweep.data.world import resolve_world, world_matches
from leaksweep.errors import UserError
from leaksweep.experiments.conditions import Condition
from leaksweep.layout import FolderLock, SweepDir
from leaksweep.model.loading import BUILT_IN_MODELS, check_model
from leaksweep.schema import to_dict
from leaksweep.study import heartbeat, locks, storage
from leaksweep.sweepfile import sweep_from_dict
from leaksweep.traits.subset_judge import SubsetJudges

INT_TRAIN_KEYS = {"max_steps", "batch_size"}  # hyperparameters Optuna suggests as whole numbers


def ask_lock(sweep_dir: Path):
    """Serialise 'reclaim, count trials, then ask' across workers, so the budget is never overshot.
    The lock kind is the one prepare chose (sweep.json's folder_lock): in the database for a study in
    PostgreSQL, else the one that works on the folder's file system."""
    folder = SweepDir(sweep_dir)
    return _lock(folder, SweepDir.ASK_LOCK, folder.folder_lock().kind, load_sweep_dir(folder.path))


def _lock(folder: SweepDir, name: str, kind: str, cfg: SweepConfig):
    if kind == DATABASE_LOCK:
        return storage.advisory_lock(cfg.search.storage, f"{cfg.name}/{name}")
    return locks.folder_lock(folder / name, kind)


DATABASE_LOCK = "database"  # folder_lock.kind of a study in PostgreSQL: pg_advisory_lock, not a file


def _choose_lock(cfg: SweepConfig, sweep_dir: Path) -> FolderLock:
    """The study's lock: in the database when the study is in PostgreSQL (then the folder's file system
    needs none), else the one that works on the folder's file system, tried there (study/locks.py)."""
    if storage.uses_database_lock(cfg.search.storage):
        mount = locks.mount_of(sweep_dir)
        why = "the study is in PostgreSQL: prepare and ask take pg_advisory_lock, whatever the file system"
        return FolderLock(DATABASE_LOCK, mount.fstype, mount.mount_point, why)
    return FolderLock(**locks.choose_lock(sweep_dir).as_record())


def prepare(cfg: SweepConfig, say: Callable[[str], None] | None = None) -> Path:
    """Create (or reopen) the sweep folder and its study; returns the folder. `say` hears what prepare
    did beyond that (a superseded sweep set aside); default: stderr."""
    sweep_dir = Path(cfg.output_dir)
    if cfg.train.model not in BUILT_IN_MODELS:
        # a folder without config.json, a hub id that is not cached or not on the hub: found here, before
        # anything is written (so the corrected sweep file is simply taken), not by the first trial
        check_model(cfg.train.model)
    if cfg.search.runner:
        trial_stage.load_runner(cfg.search.runner)  # an unimportable runner fails here, not in the first trial
    check_world_sources(cfg)
    # the user's data: bad data fails here, before anything is written (the built-in world is built
    # into the folder, under the lock, and read there; judge subsets are judged there, once, into the folder)
    early = cfg.data.world is None and not needs_judge(cfg.subsets)
    check_output_dir(sweep_dir)
    fresh = not sweep_dir.exists()
    try:  # the data cache is built in the sweep folder: bad data must not leave a new folder behind
        prepared = trial_stage.prepare_data(cfg, data_cache=SweepDir(sweep_dir).data_cache) if early else None
        if prepared is not None:
            check_partition(cfg, prepared)
    except BaseException:
        if fresh:
            shutil.rmtree(sweep_dir, ignore_errors=True)
        raise
    if not early and cfg.data.world is not None and not needs_judge(cfg.subsets) and not SweepDir(sweep_dir).exists():
        _check_world_data(cfg)
    storage.check_storage_url(cfg.search.storage)
    make_output_dir(sweep_dir)
    # Slurm array tasks given a sweep file all prepare the same folder at once: one creates the study
    # and enqueues the plan, the others wait and then find it (enqueueing twice would run it twice).
    # Which lock works here is tried on the file system itself (every preparer of the folder finds the same)
    lock = _choose_lock(cfg, sweep_dir)
    with _lock(SweepDir(sweep_dir), SweepDir.PREPARE_LOCK, lock.kind, cfg):
        return _prepare_locked(cfg, sweep_dir, prepared, lock, say or _to_stderr)


def _check_world_data(cfg: SweepConfig) -> None:
    """A new sweep on the built-in world: its subsets and traits checked on a scratch copy of the world
    (generated in well under a second), so that a subset matching nothing leaves no sweep folder behind."""
    with tempfile.TemporaryDirectory(prefix="leaksweep-world-") as scratch:
        world_cfg = resolve_world(cfg, Path(scratch))
        check_partition(world_cfg, trial_stage.prepare_data(world_cfg))


def check_output_dir(sweep_dir: Path) -> None:
    """A file where the sweep folder (or one of its parents) should be is a UserError naming it."""
    if sweep_dir.exists() and not sweep_dir.is_dir():
        raise UserError(
            f"output_dir: {sweep_dir} is a file, not a folder; set output_dir to a folder (new or a sweep's)"
        )
    blocker = next((p for p in sweep_dir.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise UserError(
            f"output_dir: cannot create {sweep_dir} ({blocker} is a file); set output_dir to a folder you can write"
        )


def make_output_dir(sweep_dir: Path) -> None:
    """The sweep folder, created with its parents; a file in the way is a UserError naming it."""
    check_output_dir(sweep_dir)
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = next((p for p in sweep_dir.parents if p.exists() and not p.is_dir()), None)
        why = f"{blocker} is a file" if blocker is not None else exc.strerror
        raise UserError(
            f"output_dir: cannot create {sweep_dir} ({why}); set output_dir to a folder you can write"
        ) from exc


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr)


def _prepare_locked(
    cfg: SweepConfig,
    sweep_dir: Path,
    prepared: trial_stage.Prepared | None,
    lock: FolderLock,
    say: Callable[[str], None],
) -> Path:
    folder = SweepDir(sweep_dir)
    existing = _existing(folder)
    # Compared with defaults filled in (a folder from before a new config key still resumes), and without
    # `slurm:`: more time or another partition for the same sweep must not start a new one. Before the
    # world is (re)generated: a refused sweep leaves the folder's world as it was.
    if existing is not None and (
        isinstance(existing, UserError)
        or not world_matches(cfg, sweep_dir)
        or _resumable_view(existing) != _resumable_view(resolve_world(cfg, sweep_dir, generate=False))
    ):
        _supersede(folder, cfg, existing, say)
    cfg = resolve_world(cfg, sweep_dir)
    if prepared is None:
        prepared = trial_stage.prepare_data(cfg, SubsetJudges.for_prepare(folder.judgments), folder.data_cache)
    check_partition(cfg, prepared)
    for stream in ("patch", "drop", "refill"):  # saved in the data cache: every trial's compile reads them
        prepared.dataset.uniforms(cfg.search.mixture_seed, stream)
    preflight_judges(prepared)  # an endpoint judge that is down fails here, before any training
    if not cfg.search.runner:
        trial_stage.base_model_path(cfg.train, str(folder.models), prepared)
    folder.trials_dir.mkdir(exist_ok=True)
    created = storage.create_study(cfg, sweep_dir, lock.kind)
    if created and cfg.search.mode == "optuna":  # experiment modes enqueue round by round
        study = storage.load_study(sweep_dir, cfg, lock.kind)
        for params, attrs in planned_trials(cfg):
            storage.enqueue(study, params, attrs)
    folder.write_config(to_dict(cfg), lock)
    return sweep_dir


def check_world_sources(cfg: SweepConfig) -> None:
    """With the built-in world, `base` and `search.teacher` must name its sources (known before it is built)."""
    if cfg.data.world is None:
        return
    problems = [
        f"{label}: {name!r} is not a source of the built-in world; its sources are {list(WORLD_SOURCES)}"
        for label, name in (("base", cfg.base), ("search.teacher", cfg.search.teacher))
        if name not in WORLD_SOURCES
    ]
    if problems:
        raise UserError(problems)


def _existing(folder: SweepDir) -> SweepConfig | UserError | None:
    """The sweep the folder holds; the UserError when its sweep.json no longer loads; None when none."""
    if not folder.exists():
        return None
    try:
        return sweep_from_dict(folder.read_config(), str(folder.sweep_file))
    except UserError as exc:
        return exc


def _supersede(
    folder: SweepDir, cfg: SweepConfig, existing: SweepConfig | UserError, say: Callable[[str], None]
) -> None:
    """The folder holds another sweep (or one whose sweep.json no longer loads). None of its trials
    completed: set its study and trials aside (superseded/STAMP/) and let `cfg` start afresh. Refused
    when a trial finished (results are at stake) or one is running (its worker would lose its study)."""
    what = (
        "a different configuration"
        if isinstance(existing, SweepConfig)
        else f"a sweep that no longer loads ({existing})"
    )
    finished = folder.count_finished()
    if finished:
        raise UserError(
            f"{folder.path}: holds a sweep with {what}, and {finished} trial(s) complete in it; set another "
            "`output_dir` (or delete the folder) to start a new sweep, or restore the old sweep file to resume it"
        )
    old = existing if isinstance(existing, SweepConfig) else cfg
    now = time.time()
    for trial in folder.trials():
        beat = heartbeat.read_beat(trial.path)
        ended = trial.error.is_file()  # a failed trial's worker wrote error.json (a retry gets a new folder)
        if beat is not None and beat.state == "running" and not ended and beat.age_s(now) < old.search.stale_after_s:
            raise UserError(
                f"{folder.path}: holds a sweep with {what}, and its trial {trial.name} is running (pid {beat.pid} "
                f"on {beat.host}, last beat {beat.age_s(now):.0f} s ago); stop its worker and run this again, "
                "or set another `output_dir`"
            )
    journal = storage.journal_path(old.search.storage, folder.path)
    if journal is None:
        storage.delete_study(old.search.storage, folder.path, old.name)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    aside = folder.set_aside(stamp, journal)
    where = journal or f"the study {old.name!r} in {old.search.storage} (deleted)"
    say(
        f"{folder.path}: held a sweep with {what}, but no trial of it completed: its sweep.json, study "
        f"({where}) and trial folders are moved to {aside}; starting the new sweep"
    )


def _resumable_view(cfg: SweepConfig) -> dict:
    """The parts of a sweep's config that must match for a folder to be resumed."""
    return {k: v for k, v in to_dict(cfg).items() if k != "slurm"}


def preflight_judges(prepared: trial_stage.Prepared) -> None:
    """Each trait judge's preflight, once (an endpoint judge asks its server); a UserError says what to fix."""
    for trait in prepared.traits.values():
        if trait.built.preflight is not None:
            trait.built.preflight()


def check_partition(cfg: SweepConfig, prepared: trial_stage.Prepared) -> None:
    """subset_scan with `partition: true` needs a disjoint family: name every overlap."""
    if not cfg.search.partition:
        return
    family = [prepared.subsets[n] for n in cfg.search.subsets]
    shared = {
        (a.name, b.name): len(np.intersect1d(a.positions(prepared.dataset), b.positions(prepared.dataset)))
        for i, a in enumerate(family)
        for b in family[i + 1 :]
    }
    overlaps = [f"{a} & {b}: {n} prompts" for (a, b), n in shared.items() if n]
    if overlaps:
        raise UserError(f"search.subsets: `partition: true` needs disjoint subsets, but {'; '.join(overlaps)}")


def load_sweep_dir(sweep_dir: Path) -> SweepConfig:
    """The resolved config a prepared sweep folder holds (its sweep.json)."""
    folder = SweepDir(sweep_dir)
    if not folder.exists():
        raise UserError(
            f"{sweep_dir}: not a sweep folder (no {SweepDir.SWEEP}); run `leaksweep sweep SWEEP.yaml` first"
        )
    return sweep_from_dict(folder.read_config(), str(folder.sweep_file))


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
            planned += [({}, {"condition": base, "seed": seed}) for base in ("all_clean", "all_teacher")]
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


def _suggest(trial: storage.Trial, name: str, choice: list | FloatRange) -> Any:
    return storage.suggest(trial, name, choice, integer=name.removeprefix("hp.") in INT_TRAIN_KEYS)


def spec_for(cfg: SweepConfig, trial: storage.Trial, sweep_dir: Path) -> trial_stage.TrialSpec:
    """Turn an asked trial into a TrialSpec: its params become mixture rules and train overrides."""
    attrs = storage.user_attrs(trial)
    models = str(SweepDir(sweep_dir).models)
    seed = int(attrs.get("seed", 0))
    if "condition_json" in attrs:  # an experiment mode's condition
        cond = Condition.from_dict(json.loads(attrs["condition_json"]))
        params = {
            k: v
            for k, v in (
                ("subset", cond.subset),
                ("fraction", cond.fraction),
                ("refill", cond.refill),
                ("source", cond.source),
            )
            if v is not None
        }
        return trial_stage.TrialSpec(cfg, trial.number, cond.kind, params, cond.plan, seed, cfg.train, models)
    condition = attrs.get("condition", "mixture")
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
    return trial_stage.TrialSpec(cfg, trial.number, condition, params, plan, seed, train, models)
