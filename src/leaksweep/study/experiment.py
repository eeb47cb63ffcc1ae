"""The experiment-mode driver: rounds of enqueued conditions, run by workers, read back as Runs.

Owns the loop between an experiment search (leaksweep.experiments: it decides each round's
conditions and the conclusions, and never sees Optuna) and the study: `run_experiment` enqueues what
a round asks for, has the round executed, reads the results (`collect_runs`) and writes the
conclusions to analysis.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from leaksweep.errors import UserError
from leaksweep.experiments.conditions import Condition, Request, Run
from leaksweep.experiments.registry import make_search
from leaksweep.files import read_json
from leaksweep.layout import SweepDir
from leaksweep.study import storage
from leaksweep.study.prepare import load_sweep_dir

MAX_ROUNDS = 200  # the loop runs rounds 1..199 at most, so a search that keeps asking still ends


def collect_runs(study: storage.Study, sweep_dir: Path) -> list[Run]:
    """Every complete trial of an experiment mode as a Run (condition, seed, trait results), each
    (condition, seed) once: the first trial; later ones are reruns (`duplicate_runs` names them)."""
    return _collect(study, sweep_dir)[0]


def duplicate_runs(study: storage.Study, sweep_dir: Path) -> list[dict]:
    """Complete trials set aside because an earlier trial ran the same (condition, seed)."""
    return _collect(study, sweep_dir)[1]


def _collect(study: storage.Study, sweep_dir: Path) -> tuple[list[Run], list[dict]]:
    runs, aside, first = [], [], {}
    for t in storage.trials(study, "COMPLETE"):
        if "condition_json" not in t.user_attrs:
            continue
        key = (t.user_attrs["condition_json"], int(t.user_attrs["seed"]))
        if key in first:
            label = t.user_attrs.get("label", "")
            aside.append({"trial": t.number, "kept": first[key], "label": label, "seed": key[1]})
            continue
        first[key] = t.number
        result = read_json(SweepDir(sweep_dir).trial(t.number).result)
        runs.append(
            Run(
                Condition.from_dict(json.loads(t.user_attrs["condition_json"])),
                int(t.user_attrs["seed"]),
                t.number,
                result["traits"],
                dict((result.get("manifest") or {}).get("teacher_share") or {}),
            )
        )
    return runs, aside


def enqueue(study: storage.Study, requests: list[Request]) -> int:
    """Enqueue requests not already waiting or running (a resumed sweep must not run them twice)."""
    pending = {
        (t.user_attrs.get("condition_json"), t.user_attrs.get("seed"))
        for t in storage.trials(study, "WAITING", "RUNNING")
    }
    added = 0
    for condition, seed in requests:
        key = (json.dumps(condition.to_dict(), sort_keys=True), seed)
        if key in pending:
            continue
        storage.enqueue(study, {}, {"condition_json": key[0], "seed": seed, "label": condition.label()})
        pending.add(key)
        added += 1
    return added


def run_experiment(sweep_dir: Path, execute_round: Callable[[], object]) -> dict:
    """Drive an experiment-mode search: each round enqueue what it asks for, run, read the results.

    `execute_round()` runs every waiting trial (local worker processes, or in-process). The
    conclusions go to `<sweep dir>/analysis.json`, which the report reads.
    """
    folder = SweepDir(sweep_dir)
    cfg = load_sweep_dir(folder.path)
    study = storage.load_study(folder.path, cfg)
    # the resolved config names every source; a simulated runner has just the clean one and the teacher
    search = make_search(cfg, sorted(cfg.data.sources) if not cfg.search.runner else [cfg.base, cfg.search.teacher])
    previous: list[Request] | None = None
    for round_number in range(1, MAX_ROUNDS):
        requests = search.next_round(collect_runs(study, folder.path))
        if not requests:
            break
        if previous is not None and [(c.key(), s) for c, s in requests] == [(c.key(), s) for c, s in previous]:
            raise UserError(
                f"{folder.path}: trials of round {round_number - 1} failed (see trials/*/error.json and "
                f"`leaksweep status {folder.path}`); fix the cause and rerun the sweep to resume"
            )
        enqueue(study, requests)
        print(f"{cfg.search.mode}: round {round_number}, {len(requests)} trial(s)", flush=True)
        execute_round()
        previous = requests
    return write_conclusions(search, study, folder)


def write_conclusions(search, study: storage.Study, folder: SweepDir) -> dict:
    """The search's conclusions over the complete runs, each (condition, seed) once, into analysis.json;
    trials set aside as duplicates are listed under `duplicates_set_aside`."""
    runs, aside = _collect(study, folder.path)
    conclusions = search.conclude(runs)
    if aside:
        conclusions = {**conclusions, "duplicates_set_aside": aside}
    folder.write_analysis(conclusions)
    return conclusions
