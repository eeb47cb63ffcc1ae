"""Re-judge a finished study: re-score every trial's saved samples under a new or changed judge.

No training and no generation: each complete trial's samples.jsonl holds every eval response, so a
trait can be re-scored with another judge (a model autorater, an endpoint, a fixed rule) at the cost
of the judging alone, and with the same judge at no cost at all (verdicts are cached per trial by
judge identity, prompt and response). Per trial, samples.jsonl is rewritten first and result.json
last, each atomically, so a crash leaves a trial either re-judged or as it was; a rerun finishes the
rest. Then sweep.json takes the new judge (so the report and the W&B summary name it) and an
experiment mode's conclusions are recomputed from the re-judged results.

The Optuna study was told the old values, and Optuna cannot re-tell a finished trial: so when the study
is a journal file and no trial is in flight, it is rebuilt from the re-judged trial folders
(study/repair.py; the old journal is kept as optuna.journal.rejudged-<stamp>), and its best trial,
Pareto front and dashboard show the new judge's values. A study in a database keeps the old values
(the report, which reads the trial folders, does not), and the command says so.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from leaksweep.config import SweepConfig, TraitConfig
from leaksweep.errors import UserError
from leaksweep.files import read_json, write_json
from leaksweep.layout import SweepDir, TrialDir
from leaksweep.progress import Progress
from leaksweep.schema import to_dict
from leaksweep.study.prepare import load_sweep_dir
from leaksweep.traits.cache import VerdictCache
from leaksweep.traits.evalset import Trait
from leaksweep.traits.scoring import score_samples
from leaksweep.traits.subset_judge import SubsetJudges
from leaksweep.trial import TrialSpec, objectives, prepare_data

# Fields of a trait that only change how its samples are judged: anything else (prompts, samples per
# prompt, decoding) changes the samples themselves, which only a new sweep can produce.
JUDGING_FIELDS = ("judge", "kind", "max_unjudged_share", "calibration")


@dataclass
class RejudgeOutcome:
    study: str = ""  # what happened to the Optuna study's values (rebuilt, or why not)
    trials: int = 0  # trials re-scored
    skipped: int = 0  # complete trials without saved samples of the trait (simulated runners)
    samples: int = 0  # samples re-scored
    judge_calls: int = 0  # verdicts asked of a judge (cache misses)
    cached: int = 0  # verdicts found in the trials' caches


def rejudge(sweep_dir: Path, traits: list[str], new_cfg: SweepConfig | None = None) -> RejudgeOutcome:
    """Re-score `traits` in every complete trial of the sweep; `new_cfg` (a sweep file) gives their new
    judges, else the sweep's own judges are reapplied (e.g. after a judge's version changed)."""
    folder = SweepDir(sweep_dir)
    cfg = _with_new_judges(load_sweep_dir(folder.path), traits, new_cfg)
    # the trials' data, through the folder's data cache; judge subsets read the verdicts prepare saved
    prepared = prepare_data(cfg, SubsetJudges.for_trials(folder.judgments), folder.data_cache)
    outcome = RejudgeOutcome()
    complete = folder.complete()
    with Progress(len(complete), "rejudge", "trials") as bar:
        for trial in complete:
            _rejudge_trial(trial, {t: prepared.traits[t] for t in traits}, outcome)
            bar.update(1)
    write_json(folder.sweep_file, {**read_json(folder.sweep_file), "traits": to_dict(cfg.traits)})
    outcome.study = _retell(folder, cfg) if outcome.trials else "unchanged (no trial was re-scored)"
    _reconclude(folder, cfg)
    return outcome


def _retell(folder: SweepDir, cfg: SweepConfig) -> str:
    """Rebuild a journal study from the re-judged folders, so its values are the new judge's."""
    from leaksweep.study import storage
    from leaksweep.study.repair import repair

    if storage.journal_path(cfg.search.storage, folder.path) is None:
        return "keeps the old values (a database study cannot be re-told; the report reads the new ones)"
    in_flight = [t.name for t in folder.trials() if not t.is_complete() and not t.error.is_file()]
    if in_flight:
        return (
            f"keeps the old values: trial(s) {', '.join(in_flight)} are still running; when they finish, rerun "
            "this command to rebuild the study (no judge is asked twice)"
        )
    done = repair(folder.path, superseded_by="rejudged")
    return f"rebuilt from the trial folders with the new values (the old journal is kept as {done['kept']})"


def _with_new_judges(cfg: SweepConfig, traits: list[str], new_cfg: SweepConfig | None) -> SweepConfig:
    unknown = [t for t in traits if t not in cfg.traits]
    if unknown or not traits:
        raise UserError(f"--trait {', '.join(unknown) or '(none)'}: the sweep's traits are {', '.join(cfg.traits)}")
    if new_cfg is None:
        return cfg
    updated = dict(cfg.traits)
    for name in traits:
        if name not in new_cfg.traits:
            raise UserError(f"traits.{name}: not in the new sweep file; it must define the trait's new judge")
        old, new = cfg.traits[name], new_cfg.traits[name]
        protocol = _protocol_changes(old, new)
        if protocol:
            raise UserError(
                f"traits.{name}: {', '.join(protocol)} changed; rejudge re-scores the saved samples and can change "
                f"only {', '.join(JUDGING_FIELDS)}. New eval prompts or decoding need new generations: run a new sweep"
            )
        updated[name] = dataclasses.replace(old, **{f: getattr(new, f) for f in JUDGING_FIELDS})
    return dataclasses.replace(cfg, traits=updated)


def _protocol_changes(old: TraitConfig, new: TraitConfig) -> list[str]:
    """Fields that would change the samples. `prompts` is compared as a file (sweep.json holds it resolved,
    and a built-in trait's prompts resolve to the world's eval file); batch_size changes no sample."""
    same_file = new.prompts is None or Path(new.prompts).resolve() == Path(old.prompts or "").resolve()
    changed = [] if same_file else ["prompts"]
    skip = {*JUDGING_FIELDS, "prompts", "batch_size"}
    return changed + [
        f.name
        for f in dataclasses.fields(TraitConfig)
        if f.name not in skip and getattr(old, f.name) != getattr(new, f.name)
    ]


def _rejudge_trial(trial: TrialDir, traits: dict[str, Trait], outcome: RejudgeOutcome) -> None:
    samples = trial.read_samples()
    result = read_json(trial.result)
    todo = [name for name in traits if any(s["trait"] == name for s in samples)]
    if not todo:
        outcome.skipped += 1
        return
    cache = VerdictCache(trial.judgments)
    for name in todo:
        rows = [s for s in samples if s["trait"] == name]
        meta = {p.prompt_id: p.meta for p in traits[name].prompts}
        items = [(s["prompt_id"], s["response"], meta.get(s["prompt_id"], {})) for s in rows]
        for row, verdict in zip(rows, cache.judge(traits[name].built, items)):
            row["value"], row["reason"] = verdict.value, verdict.reason
        result["traits"][name] = score_samples(traits[name], rows, int(result.get("seed", 0)))
        outcome.samples += len(rows)
    outcome.judge_calls, outcome.cached = cache.misses + outcome.judge_calls, cache.hits + outcome.cached
    cache.save()
    spec = TrialSpec.from_dict(read_json(trial.spec), str(trial.spec))
    share = float(result.get("manifest", {}).get("teacher_share", {}).get("all") or 0.0)
    result["objectives"] = objectives(spec, result["traits"], share)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    result["rejudged"] = [*result.get("rejudged", []), *({"trait": t, "at": stamp} for t in todo)]
    trial.write_samples(samples)  # first: result.json last, so a crash between them is redone by a rerun
    trial.write_result(result)
    outcome.trials += 1


def _reconclude(folder: SweepDir, cfg: SweepConfig) -> None:
    """An experiment mode's conclusions, recomputed from the re-judged results."""
    if cfg.search.mode == "optuna" or folder.read_analysis() is None:
        return
    from leaksweep.experiments.registry import make_search
    from leaksweep.study import storage
    from leaksweep.study.experiment import write_conclusions

    sources = sorted(cfg.data.sources) if not cfg.search.runner else [cfg.base, cfg.search.teacher]
    study = storage.load_study(folder.path, cfg)
    write_conclusions(make_search(cfg, sources), study, folder)
