"""What a sweep's study says: `status` (for `leaksweep status`), `finished` (which Slurm worker writes
the report) and `study_summary` (what the report needs from the study, as plain JSON-able data, so
the report never imports optuna). Read-only: nothing here changes the study.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from leaksweep.config import SweepConfig
from leaksweep.errors import UserError
from leaksweep.layout import SweepDir
from leaksweep.study import heartbeat, storage
from leaksweep.study.prepare import budget, load_sweep_dir

MIN_IMPORTANCE_TRIALS = 3  # PED-ANOVA compares a top quantile with the rest: 2 trials cannot split


def finished(sweep_dir: Path) -> bool:
    """True when an optuna-mode sweep has nothing left: no trial waiting or running (a preempted trial
    stays RUNNING until its requeued job resumes it) and the budget spent. Slurm workers use it to
    decide which of them writes the report."""
    sweep_dir = Path(sweep_dir)
    cfg = load_sweep_dir(sweep_dir)
    trials = storage.trials(storage.load_study(sweep_dir, cfg))
    if any(t.state in ("WAITING", "RUNNING") for t in trials):
        return False
    if cfg.search.mode != "optuna" or cfg.search.sampler == "grid":
        return True  # only enqueued trials, and none is left
    return sum(t.state != "FAIL" for t in trials) >= budget(cfg)


def _best(cfg: SweepConfig, complete: list[storage.TrialRecord]) -> dict | None:
    """The best complete trial by the first objective."""
    objective = cfg.search.objectives[0] if cfg.search.objectives else None
    if not complete or objective is None:
        return None
    pick = max if objective.direction == "maximize" else min
    top = pick(complete, key=lambda t: t.values[0])
    return {"trial": top.number, "label": top.user_attrs.get("label"), "value": top.values[0], "trait": objective.trait}


def _preempted(folder: SweepDir, trials: list[storage.TrialRecord]) -> list[dict]:
    """RUNNING trials waiting for a worker to resume them from their checkpoint."""
    preempted = []
    for t in trials:
        if t.state == "RUNNING" and heartbeat.is_preempted(folder.trial(t.number).path):
            record = folder.trial(t.number).read_preempted() or {}
            last = (record.get("history") or [{}])[-1]
            preempted.append(
                {
                    "trial": t.number,
                    "step": record.get("step"),
                    "slurm_job": last.get("slurm_job"),
                    "at": last.get("at"),
                }
            )
    return preempted


def status(sweep_dir: Path) -> dict:
    """Trials by state, the best so far by the first objective, and a time estimate."""
    folder = SweepDir(sweep_dir)
    cfg = load_sweep_dir(folder.path)
    trials = storage.trials(storage.load_study(folder.path, cfg))
    by_state: dict[str, int] = {}
    for t in trials:
        by_state[t.state] = by_state.get(t.state, 0) + 1
    complete = [t for t in trials if t.state == "COMPLETE"]
    durations = [(t.completed_at - t.started_at).total_seconds() for t in complete if t.started_at and t.completed_at]
    planned = budget(cfg) or len(trials)
    remaining = max(0, planned - len(complete))
    running = by_state.get("RUNNING", 0)
    eta_s = (sum(durations) / len(durations)) * remaining / max(1, running) if durations and remaining else None
    failed = []
    for t in trials:
        if t.state == "FAIL":
            trial = folder.trial(t.number)
            failed.append({"trial": t.number, "error": trial.read_error() if trial.error.exists() else "no error.json"})
    slurm_trials: dict[str, list[int]] = {}  # Slurm array task -> the trials it ran (set by run_worker)
    for t in trials:
        if "slurm_task" in t.user_attrs:
            slurm_trials.setdefault(t.user_attrs["slurm_task"], []).append(t.number)
    return {
        "sweep": cfg.name,
        "dir": str(folder.path),
        "budget": planned,
        "mode": cfg.search.mode,
        "states": by_state,
        "best": _best(cfg, complete),
        "mean_trial_s": sum(durations) / len(durations) if durations else None,
        "eta_s": eta_s,
        "failed": failed,
        "slurm_trials": slurm_trials,
        "preempted": _preempted(folder, trials),
    }


# --- study summary (for the report) ------------------------------------------------------------------


def _objective_names(cfg: SweepConfig, directions: list[str]) -> list[str]:
    names = [o.trait for o in cfg.search.objectives] or ["objective"]
    if len(set(names)) < len(names):  # the same trait both maximised and minimised, say
        names = [f"{o.trait} ({o.direction})" for o in cfg.search.objectives]
    return (names + [f"objective {i}" for i in range(len(names), len(directions))])[: len(directions)]


def _add_importances(summary: dict, study: storage.Study, complete: list[storage.TrialRecord]) -> None:
    """PED-ANOVA importances per objective, or why there are none."""
    # Baselines and experiment-mode conditions carry no suggested params: importances only make sense over
    # the trials that have every param, and only for params that take more than one value there.
    params = sorted({p for t in complete for p in t.params})
    with_all = [t for t in complete if set(params) <= set(t.params)]
    varying = [p for p in params if len({repr(t.params[p]) for t in with_all}) > 1]
    if not params:
        summary["importances_absent"] = (
            "no trial has Optuna-suggested parameters (baselines and experiment-mode conditions have none)"
        )
        return
    if len(with_all) < MIN_IMPORTANCE_TRIALS or not varying:
        summary["importances_absent"] = (
            f"{len(with_all)} complete trial(s) have all of the parameters {', '.join(params)}, and "
            f"{len(varying)} of those parameters vary among them; importances need at least "
            f"{MIN_IMPORTANCE_TRIALS} such trials and a varying parameter"
        )
        return
    # Only those trials: the evaluator would otherwise count the param-less baselines. PED-ANOVA's top
    # quantile must hold at least 2 trials and fewer than all of them, or every importance comes out equal.
    quantile = min(0.5, max(0.1, 2 / len(with_all)))
    # with an explicit target PED-ANOVA treats lower as better, so maximised objectives are negated
    signs = [-1.0 if d == "maximize" else 1.0 for d in summary["directions"]]
    found = storage.param_importances(study, [t.number for t in with_all], varying, quantile, signs)
    summary["importances"] = dict(zip(summary["objectives"], found))
    summary["importance_method"] = (
        f"PED-ANOVA (optuna.importance.PedAnovaImportanceEvaluator, top {quantile:.0%} of {len(with_all)} trials)"
    )


def study_summary(sweep_dir: Path) -> dict:
    """What the report needs from the Optuna study, as plain JSON-able data (the report never imports optuna).

    {"directions": ["maximize", ...], "objectives": [names], "n_complete": int,
     "trials": [{"number", "values", "params"}] (complete trials),
     "pareto": [trial numbers on the Pareto front] (multi-objective studies; [] otherwise),
     "importances": {objective name: {param: importance}} (PED-ANOVA), "importance_method": how,
     "importances_absent": why there are none (None when computed)}

    Raises UserError when the folder has no study; opening it never creates one.
    """
    folder = SweepDir(sweep_dir)
    cfg = load_sweep_dir(folder.path)
    if not cfg.search.storage and not folder.journal.is_file():
        # JournalFileBackend would create an empty journal: a report must not write into the study
        raise UserError(
            f"{folder.path}: no {SweepDir.JOURNAL}, so no Optuna study to summarise; "
            "`leaksweep sweep` writes it when the sweep starts"
        )
    study = storage.load_study(folder.path, cfg)
    complete = storage.trials(study, "COMPLETE")
    directions = storage.directions(study)
    multi = len(directions) > 1
    summary: dict[str, Any] = {
        "directions": directions,
        "objectives": _objective_names(cfg, directions),
        "n_complete": len(complete),
        "trials": [{"number": t.number, "values": list(t.values), "params": dict(t.params)} for t in complete],
        "pareto": storage.pareto_numbers(study) if multi and complete else [],
        "importances": {},
        "importances_absent": None,
    }
    _add_importances(summary, study, complete)
    return summary
