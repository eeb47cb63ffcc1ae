"""`leaksweep repair`: rebuild a sweep's Optuna study from its trial folders.

The trial folders are the source of truth (layout.py): spec.json says what a trial ran, result.json
that it finished and with which objectives, error.json that it failed. When the journal is damaged
(a cut-off or garbled line), emptied or deleted, every command stops and names this one, which

* moves the damaged journal aside (`optuna.journal.damaged-<UTC stamp>`, kept, never deleted),
* creates a fresh study of the same name and directions, and
* adds one trial per folder, in number order, so trial numbers stay folder numbers: COMPLETE with
  result.json's objectives as values, FAIL for error.json; a folder with only spec.json (its worker
  was running it) is added as FAIL and its parameters re-enqueued as a new trial (so it runs again,
  once, in a new folder); a number with no folder becomes a FAIL placeholder and is reported;
* re-enqueues the planned trials (baselines, grid points) that no folder holds: those were waiting.

Each trial gets the parameters (with the distributions the sweep suggests them from) and the user
attributes leaksweep reads back: condition / condition_json, seed, label, trial_dir. What cannot be
rebuilt: Optuna's retry history (system attributes) and the trials a sampler had asked but no worker
had started (a sampler that suggests asks them again: the budget counts complete trials).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from leaksweep.config import SweepConfig
from leaksweep.errors import UserError
from leaksweep.experiments.conditions import Condition
from leaksweep.files import read_json
from leaksweep.layout import SweepDir, TrialDir
from leaksweep.study import storage
from leaksweep.study.prepare import INT_TRAIN_KEYS, _axes, ask_lock, load_sweep_dir, planned_trials


@dataclass
class Rebuilt:
    """One trial as its folder says: what `storage.add_finished_trial` takes."""

    number: int
    state: str  # COMPLETE | FAIL
    params: dict[str, Any] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    values: list[float] | None = None
    started: datetime | None = None
    completed: datetime | None = None
    retry: bool = False  # only spec.json: its worker was running it; run it again


def _mtime(path: Path) -> datetime | None:
    return datetime.fromtimestamp(path.stat().st_mtime) if path.exists() else None


def _attrs(cfg: SweepConfig, spec: dict, trial: TrialDir) -> dict[str, Any]:
    """The user attributes leaksweep's study reads back, from spec.json (worker.py, experiment.py)."""
    seed = int(spec.get("seed", 0))
    attrs: dict[str, Any] = {"seed": seed, "trial_dir": str(trial.path)}
    condition = str(spec.get("condition", "mixture"))
    if cfg.search.mode != "optuna":  # an experiment mode's condition, as experiments.conditions writes it
        params = spec.get("params") or {}
        raw = {k: params.get(k) for k in ("subset", "fraction", "refill", "source")}
        raw = {"kind": condition, **raw, "plan": spec["plan"]}
        cond = Condition.from_dict(raw)
        attrs.update(condition_json=cond.key(), label=cond.label())
    else:
        attrs["condition"] = condition
    if trial.result.is_file():
        attrs["label"] = str(read_json(trial.result).get("label") or attrs.get("label") or f"trial {trial.name}")
    return attrs


def _from_folder(cfg: SweepConfig, trial: TrialDir, number: int, n_objectives: int) -> Rebuilt:
    try:
        spec = read_json(trial.spec)
    except ValueError as exc:
        raise UserError(f"{trial.spec}: not JSON ({exc}); fix or remove this trial folder, then repair again") from exc
    axes = dict(_axes(cfg)) if cfg.search.mode == "optuna" else {}
    params = {k: v for k, v in (spec.get("params") or {}).items() if k in axes}
    row = Rebuilt(number, "FAIL", params, _attrs(cfg, spec, trial), started=_mtime(trial.spec))
    if trial.result.is_file():
        values = [float(v) for v in read_json(trial.result).get("objectives") or []]
        if len(values) == n_objectives:
            row.state, row.values, row.completed = "COMPLETE", values, _mtime(trial.result)
            return row
        row.attrs["repair"] = f"result.json has {len(values)} objective(s), the study {n_objectives}: not counted"
    elif trial.error.is_file():
        row.completed = _mtime(trial.error)
    else:
        row.retry, row.completed = True, datetime.now()
        row.attrs["repair"] = "no result.json nor error.json (it was running): re-enqueued"
    return row


def rebuild_rows(cfg: SweepConfig, folder: SweepDir, n_objectives: int) -> tuple[list[Rebuilt], list[int]]:
    """One row per trial number from 0 to the highest folder, and the numbers that have no folder."""
    found = {int(t.name): t for t in folder.trials() if t.name.isdigit()}
    rows, missing = [], []
    for number in range(max(found) + 1 if found else 0):
        if number in found:
            rows.append(_from_folder(cfg, found[number], number, n_objectives))
        else:
            missing.append(number)
            rows.append(Rebuilt(number, "FAIL", attrs={"repair": "no trial folder with this number"}))
    return rows, missing


def _key(params: dict, attrs: dict) -> str:
    return json.dumps([attrs.get("condition", "mixture"), int(attrs.get("seed", 0)), params], sort_keys=True)


def _distributions(cfg: SweepConfig, params: dict) -> dict:
    axes = dict(_axes(cfg))
    return {k: storage.distribution(axes[k], k.removeprefix("hp.") in INT_TRAIN_KEYS) for k in params}


def _journal_is_whole(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0 and storage.journal_problem(path) is None


def repair(sweep_dir: Path, superseded_by: str | None = None) -> dict:
    """Rebuild the study of `sweep_dir` from its trial folders; what was done, for the command to print.

    Without `superseded_by` only a damaged journal is rebuilt (a whole one is refused). With it (e.g.
    "rejudged": the results changed after the study was told them) a whole journal is rebuilt too, and
    the old one kept as NAME.<superseded_by>-<UTC stamp>."""
    folder = SweepDir(sweep_dir)
    cfg = load_sweep_dir(folder.path)
    path = storage.journal_path(cfg.search.storage, folder.path)
    if path is None:
        raise UserError(
            f"search.storage: {cfg.search.storage.split('://')[0]}://...: the study is in a database, which "
            "`leaksweep repair` does not rebuild (it rebuilds a journal file from the trial folders)"
        )
    with ask_lock(folder.path):
        if superseded_by is None and _journal_is_whole(path):
            raise UserError(f"{path}: the journal is whole (every line parses); nothing to repair")
        kept = None
        if path.exists():
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            kept = (
                SweepDir.damaged_copy(path, stamp)
                if superseded_by is None
                else path.with_name(f"{path.name}.{superseded_by}-{stamp}")
            )
            os.replace(path, kept)
        storage.create_study(cfg, folder.path, folder.folder_lock().kind, rebuilding=True)
        study = storage.load_study(folder.path, cfg)
        rows, missing = rebuild_rows(cfg, folder, len(storage.directions(study)))
        for row in rows:
            dists = _distributions(cfg, row.params)
            storage.add_finished_trial(
                study, row.state, row.params, dists, row.values, row.attrs, row.started, row.completed
            )
        retried = [row for row in rows if row.retry]
        for row in retried:
            attrs = {k: v for k, v in row.attrs.items() if k not in ("trial_dir", "repair")}
            storage.enqueue(study, row.params, attrs)
        covered = {_key(r.params, r.attrs) for r in rows if "condition_json" not in r.attrs}
        waiting = [p for p in (planned_trials(cfg) if cfg.search.mode == "optuna" else []) if _key(*p) not in covered]
        for params, attrs in waiting:
            storage.enqueue(study, params, attrs)
    states = [r.state for r in rows]
    return {
        "journal": str(path),
        "kept": str(kept) if kept else None,
        "complete": states.count("COMPLETE"),
        "failed": states.count("FAIL") - len(missing) - len(retried),
        "requeued_running": [r.number for r in retried],
        "missing": missing,
        "requeued_planned": len(waiting),
    }
