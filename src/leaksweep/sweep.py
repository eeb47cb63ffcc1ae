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

import dataclasses
import fcntl
import itertools
import json
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
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from leaksweep import lm
from leaksweep import trial as trial_stage
from leaksweep.config import FloatRange, Rule, SweepConfig, sweep_from_dict
from leaksweep.experiments import Condition, Request, Run, make_search
from leaksweep.errors import UserError
from leaksweep.files import read_json, write_json
from leaksweep.mixture import MixturePlan
from leaksweep.progress import Progress
from leaksweep.schema import to_dict
from leaksweep.world import resolve_world

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
    cfg = resolve_world(cfg, sweep_dir)
    resolved = to_dict(cfg)
    existing = sweep_dir / "sweep.json"
    if existing.exists() and read_json(existing) != resolved:
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


def check_partition(cfg: SweepConfig, prepared: trial_stage.Prepared) -> None:
    """subset_scan with `partition: true` needs a disjoint family: name every overlap."""
    if not cfg.search.partition:
        return
    family = [prepared.subsets[n] for n in cfg.search.subsets]
    overlaps = [f"{a.name} & {b.name}: {len(a.ids & b.ids)} prompts" for i, a in enumerate(family)
                for b in family[i + 1:] if a.ids & b.ids]
    if overlaps:
        raise UserError(f"search.subsets: `partition: true` needs disjoint subsets, but {'; '.join(overlaps)}")


def open_storage(url: str | None, sweep_dir: Path):
    """Default: a journal file in the sweep folder (no server, safe for concurrent local workers)."""
    if not url:
        return JournalStorage(JournalFileBackend(str(sweep_dir / "optuna.journal")))
    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:"))
        return JournalStorage(JournalFileBackend(str(path if path.is_absolute() else sweep_dir / path)))
    return url  # an RDB URL (sqlite:///..., postgresql://...); Optuna opens it


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
    storage = open_storage(cfg.search.storage, sweep_dir)
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
    with _ask_lock(sweep_dir):
        trials = study.get_trials(deepcopy=False)
        waiting = any(t.state == TrialState.WAITING for t in trials)
        if not waiting and (cfg.search.mode != "optuna" or cfg.search.sampler == "grid"):
            return None  # only enqueued trials: none left
        counted = sum(t.state != TrialState.FAIL for t in trials)
        if not waiting and counted >= budget(cfg):
            return None
        return study.ask()


def trial_dir(sweep_dir: Path, number: int) -> Path:
    return Path(sweep_dir) / "trials" / f"{number:05d}"


def run_worker(sweep_dir: Path, tracker, max_trials: int | None = None) -> int:
    """Ask, run and tell trials until the budget is spent; returns how many this worker completed."""
    sweep_dir = Path(sweep_dir)
    cfg = load_sweep_dir(sweep_dir)
    study = load_study(sweep_dir, cfg)
    done = 0
    while max_trials is None or done < max_trials:
        trial = _next_trial(study, cfg, sweep_dir)
        if trial is None:
            break
        directory = trial_dir(sweep_dir, trial.number)
        try:
            spec = spec_for(cfg, trial, sweep_dir)
            trial.set_user_attr("trial_dir", str(directory))
            trial.set_user_attr("label", trial_stage.label(spec))
            write_json(directory / trial_stage.SPEC, spec.to_dict())
            result = trial_stage.run_trial(directory, tracker, study=cfg.name)
        except UserError:
            study.tell(trial, state=TrialState.FAIL)
            raise  # a config problem fails every trial the same way: stop and say it
        except Exception as exc:  # one broken trial must not stop the sweep; error.json says why
            print(f"trial {trial.number} failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            study.tell(trial, state=TrialState.FAIL)
            continue
        study.tell(trial, values=result["objectives"])
        done += 1
    return done


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
        if proc.returncode != 0:
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
    return {"sweep": cfg.name, "dir": str(sweep_dir), "budget": planned, "mode": cfg.search.mode, "states": by_state, "best": best,
            "mean_trial_s": sum(durations) / len(durations) if durations else None, "eta_s": eta_s, "failed": failed}


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
