"""One trial: spec.json in, result.json out.

A trial folder (layout.TrialDir, which names its files) is self-contained and rerunnable
(`leaksweep trial DIR`): spec.json is read, manifest.jsonl, train_log.jsonl and samples.jsonl are
written as the trial runs, result.json last (atomically: its presence means the trial is complete),
error.json instead when it failed, preempted.json when its worker was preempted.

The recipe (`_execute`): compile the manifest, train (in this process or on several DDP
processes), evaluate the traits, write the result.

The tracker (W&B or its null twin) is handed in by the caller; this module never imports wandb.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import socket
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from leaksweep.cluster import preemption
from leaksweep.cluster.env import JobEnvironment
from leaksweep.config import TEACHER_SHARE, Rule, SweepConfig, is_hf_spec
from leaksweep.data.dataset import SOURCE_PREFIX, Dataset
from leaksweep.data.manifest_file import write_manifest
from leaksweep.data.mixture import MixturePlan, compile_plan, training_examples
from leaksweep.data.records import input_identity, load_dataset, read_hf, read_records
from leaksweep.data.store import open_dataset
from leaksweep.data.subsets import Subset, compute_subsets, resolve_path
from leaksweep.errors import UserError
from leaksweep.files import file_sha256, read_json, sha256_json
from leaksweep.layout import SweepDir, TrialDir
from leaksweep.model.ddp import num_processes, train_processes
from leaksweep.model.generate import generate as generate_responses
from leaksweep.model.loading import load_lm, load_tokenizer, resolve_device, save_lm, set_cpu_threads
from leaksweep.model.sft import train_sft
from leaksweep.model.smollm2 import resolve_model_name
from leaksweep.model.tiny import build_tiny_model
from leaksweep.model.token_cache import TokenCache
from leaksweep.provenance import code_version, library_versions
from leaksweep.schema import build, to_dict
from leaksweep.sweepfile import sweep_from_dict
from leaksweep.train_config import TrainConfig
from leaksweep.traits.cache import VerdictCache
from leaksweep.traits.evalset import Trait, build_traits
from leaksweep.traits.scoring import evaluate, evaluate_responses
from leaksweep.traits.subset_judge import SubsetJudges


@dataclass(frozen=True)
class TrialSpec:
    sweep: SweepConfig
    trial: int
    condition: str  # "mixture", "all_clean" or "all_teacher"
    params: dict[str, Any]
    plan: MixturePlan
    seed: int
    train: TrainConfig
    models_dir: str  # where the built-in tiny base model lives (shared by the sweep's trials)

    def to_dict(self) -> dict:
        return {
            "sweep": to_dict(self.sweep),
            "trial": self.trial,
            "condition": self.condition,
            "params": self.params,
            "plan": {
                "base": self.plan.base,
                "mixture_seed": self.plan.mixture_seed,
                "rules": to_dict(list(self.plan.rules)),
            },
            "seed": self.seed,
            "train": to_dict(self.train),
            "models_dir": self.models_dir,
        }

    @staticmethod
    def from_dict(raw: dict, where: str) -> "TrialSpec":
        try:
            plan = raw["plan"]
            rules = tuple(build(Rule, r, f"{where}: plan.rules[{i}]") for i, r in enumerate(plan["rules"]))
            return TrialSpec(
                sweep=sweep_from_dict(raw["sweep"], f"{where}: sweep"),
                trial=int(raw["trial"]),
                condition=raw["condition"],
                params=dict(raw["params"]),
                plan=MixturePlan(plan["base"], rules, int(plan["mixture_seed"])),
                seed=int(raw["seed"]),
                train=build(TrainConfig, raw["train"], f"{where}: train"),
                models_dir=raw["models_dir"],
            )
        except KeyError as exc:
            raise UserError(
                f"{where}: missing key {exc}; the spec is incomplete (was it written by leaksweep?)"
            ) from exc


@dataclass(frozen=True)
class Prepared:
    """What every trial of a sweep shares; built once per worker process."""

    dataset: Dataset
    subsets: dict[str, Subset]
    traits: dict[str, Trait]


@functools.lru_cache(maxsize=4)
def _prepare_cached(data_json: str, sweep_dir: str | None = None) -> Prepared:
    """A trial's shared data. In a sweep folder it is memory-mapped from the folder's data cache and
    judge subsets read the verdicts the sweep's prepare saved, never calling the judge; outside one
    the files are read and judged in memory."""
    cfg = sweep_from_dict(json.loads(data_json), "spec sweep")
    if sweep_dir is None:
        return prepare_data(cfg, SubsetJudges.in_memory())
    sweep = SweepDir(Path(sweep_dir))
    return prepare_data(cfg, SubsetJudges.for_trials(sweep.judgments), sweep.data_cache)


def _sweep_of(folder: TrialDir) -> str | None:
    """The sweep folder holding this trial folder (sweep/trials/NNNNN), if it is in one."""
    sweep = SweepDir(folder.path.resolve().parent.parent)
    return str(sweep.path) if sweep.exists() else None


def prepare_data(
    cfg: SweepConfig, subset_judges: SubsetJudges | None = None, data_cache: Path | None = None
) -> Prepared:
    """Dataset, subsets and traits. With `data_cache` (a sweep folder's) the data is read through the
    columnar cache there (data/store.py), else from the files in memory. Judge subsets are judged
    through `subset_judges` (default: in memory; the study's prepare passes SubsetJudges.for_prepare,
    trials SubsetJudges.for_trials)."""
    dataset = open_dataset(cfg.data, cfg.base, data_cache) if data_cache else load_dataset(cfg.data, cfg.base)
    subsets = compute_subsets(cfg.subsets, dataset, subset_judges or SubsetJudges.in_memory())
    traits = build_traits(cfg.traits, dataset.text_keys())
    return Prepared(dataset, subsets, traits)


def tiny_corpus(prepared: Prepared) -> Iterator[str]:
    """Everything the tiny model's tokenizer must cover: prompts, every response, eval prompts (lazily:
    only the trial that builds the tiny model reads it)."""
    ds = prepared.dataset
    for column in ["text", *(SOURCE_PREFIX + name for name in ds.source_names)]:
        for _, chunk in ds.texts(column):
            yield from (t for t in chunk if t is not None)
    yield from (m["content"] for t in prepared.traits.values() for e in t.prompts for m in e.messages)


def base_model_path(train: TrainConfig, models_dir: str, prepared: Prepared) -> str:
    """The model to fine-tune: the built-in tiny model (built once into models_dir) or as named."""
    if train.model != "tiny":
        return resolve_model_name(train.model)  # `smollm2`: the converted SmolLM2 folder (cached)
    return str(build_tiny_model(Path(models_dir) / "tiny", tiny_corpus(prepared), train.tiny))


def run_trial(trial_dir: Path, tracker, study: str | None = None) -> dict:
    """Run the trial described by `trial_dir/spec.json`; write and return its result."""
    folder = TrialDir(trial_dir)
    raw = read_json(folder.spec)
    spec = TrialSpec.from_dict(raw, str(folder.spec))
    study = study or spec.sweep.name
    folder.error.unlink(missing_ok=True)
    started = time.time()
    resume = folder.read_preempted()  # a preempted trial continues its W&B run and its training
    run = tracker.start_run(
        name=f"{study}-t{spec.trial:05d}",
        group=study,
        config=raw,
        run_dir=folder.path,
        tags=[spec.sweep.search.mode, spec.condition],
        run_id=resume.get("run_id") if resume else None,
        job_type="trial",
    )
    try:
        log_inputs(run, spec)
        result = _execute(spec, folder, run, study, started)
    except preemption.Preempted as exc:  # not a failure: no error.json; the worker requeues itself
        record = record_preemption(folder.path, exc, run.run_id, resume)
        run.summary({"trial/status": "preempted", "trial/preemptions": len(record["history"])})
        run.finish(exit_code=0)
        raise
    except BaseException as exc:
        folder.write_error(f"{type(exc).__name__}: {exc}", traceback.format_exc())
        run.finish(exit_code=1)
        raise
    run.finish(exit_code=0)
    return result


def resume_checkpoint(trial_dir: Path) -> Path | None:
    """The Trainer checkpoint a preempted trial resumes from (None: train from the start)."""
    record = TrialDir(trial_dir).read_preempted()
    if not record or not record.get("checkpoint"):
        return None
    path = Path(trial_dir) / record["checkpoint"]
    return path if path.is_dir() else None


def record_preemption(trial_dir: Path, exc: preemption.Preempted, run_id: str | None, previous: dict | None) -> dict:
    """Write preempted.json: where to resume (a signal before training keeps the older checkpoint),
    the W&B run to continue, and this preemption appended to the history."""
    trial_dir = Path(trial_dir)
    checkpoint = str(exc.checkpoint.relative_to(trial_dir)) if exc.checkpoint else (previous or {}).get("checkpoint")
    event = {
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "step": exc.step,
        "checkpoint": checkpoint,
        "host": socket.gethostname(),
        "slurm_job": preemption.slurm_job_id(),
        "slurm_restart_count": JobEnvironment.current().restart_count,
    }
    record = {
        "checkpoint": checkpoint,
        "step": exc.step if exc.checkpoint else (previous or {}).get("step"),
        "run_id": run_id or (previous or {}).get("run_id"),
        "history": [*(previous or {}).get("history", []), event],
    }
    TrialDir(trial_dir).write_preempted(record)
    return record


def input_files(spec: TrialSpec) -> list[tuple[str, str, Path]]:
    """(artifact name, role, path) of the data files this trial draws on: the prompt set and the
    rollout sources its plan names (base, patch sources, refill sources); a teacher eval reads the
    base source's eval responses instead. A simulated runner stands in for training on the same
    plan, so its trials record the same inputs and rehearse the real workspace."""
    data = spec.sweep.data
    if spec.condition == "teacher_eval":
        path = data.eval_responses.get(spec.plan.base)
        return [(f"eval-responses-{spec.plan.base}", "eval_responses", Path(path))] if path else []
    used = (
        [spec.plan.base]
        + [r.source for r in spec.plan.rules if r.source]
        + [r.refill for r in spec.plan.rules if r.refill != "none"]
    )
    files = [("prompts", "prompts", Path(data.prompts))] if data.prompts else []
    files += [
        (f"rollouts-{name}", "rollouts", Path(data.sources[name]))
        for name in dict.fromkeys(used)
        if name in data.sources
    ]
    return files


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """Content hash of an input file; cached per (path, size, mtime) since every trial uses it."""
    return file_sha256(Path(path))


def log_inputs(run, spec: TrialSpec) -> None:
    """Record the trial's data files as used artifacts (lineage), named by source, with their
    content hash as metadata and as an alias `sha256-<12 hex>`."""
    for name, role, path in input_files(spec):
        if is_hf_spec(str(path)):  # a Hub dataset: its cached arrow files, named by revision and content
            identity = input_identity(str(path))
            loaded, _ = read_hf(str(path))
            sha = identity["sha256"] or identity["fingerprint"]
            files = [Path(f["filename"]) for f in loaded.cache_files]
            metadata = {"role": role, **{k: identity[k] for k in ("spec", "revision", "sha256", "fingerprint")}}
            run.use_artifact(name, "dataset", files, {**metadata, "bytes": identity["size"]}, [f"sha256-{sha[:12]}"])
            continue
        stat = path.stat()
        sha = _file_sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        run.use_artifact(
            name,
            "dataset",
            [path],
            {"role": role, "path": str(path), "sha256": sha, "bytes": stat.st_size},
            aliases=[f"sha256-{sha[:12]}"],
        )


def load_runner(target: str):
    """Import `module:function`, the pluggable trial runner.

    It takes a TrialSpec and returns {"traits": {trait: result}}, optionally with "teacher_share"
    (share of training rows from the teacher) and "teacher_share_by_subset" ({"all": ..., subset: ...},
    what the report plots scores against).
    """
    module_name, _, function = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, function)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"search.runner: cannot import {target!r} ({exc}); give an importable module:function") from exc


def plan_subsets(plan: MixturePlan, prepared: Prepared) -> dict[str, Subset]:
    """The sweep's subsets plus those the plan names implicitly: `all`, and halves like `S/0/1`
    (stratified by the prompts' category, so halves keep the subset's mix of categories)."""
    subsets = dict(prepared.subsets)
    derived = [rule.subset for rule in plan.rules if rule.subset not in subsets]
    if not derived:
        return subsets
    dataset = prepared.dataset
    roots = {name: s.ids for name, s in subsets.items()} | {"all": frozenset(dataset.id_list)}
    category = dataset.meta_column("category")
    values = category.to_pylist() if category is not None else [None] * dataset.n
    if category is not None and dataset.meta_is_json("category"):
        values = [None if v is None else json.loads(v) for v in values]
    strata = {p: "" if v is None else str(v) for p, v in zip(dataset.id_list, values)}
    for name in derived:
        if name not in subsets:
            ids = resolve_path(name, roots, strata)
            subsets[name] = Subset(name, ids, f"derived from {name.split('/')[0]}", sha256_json(sorted(ids)))
    return subsets


def _execute(spec: TrialSpec, folder: TrialDir, run, study: str, started: float) -> dict:
    if spec.sweep.search.runner:
        return _execute_runner(spec, folder, run, study, started)
    prepared = _prepare_cached(json.dumps(to_dict(spec.sweep), sort_keys=True), _sweep_of(folder))
    if spec.condition == "teacher_eval":
        return _execute_teacher_eval(spec, folder, run, study, started, prepared)
    subsets = plan_subsets(spec.plan, prepared)
    manifest = compile_plan(spec.plan, prepared.dataset, subsets)
    manifest_summary = _write_manifest(folder, run, manifest, manifest.summary(subsets, spec.sweep.search.teacher))
    model_path = base_model_path(spec.train, spec.models_dir, prepared)
    trained, outcome = _train(
        spec, folder, run, _training_data(spec, folder, manifest, prepared, model_path), model_path
    )
    if spec.train.save_model:
        save_lm(trained, folder.model)
    cache = VerdictCache(folder.judgments)
    scores, samples = evaluate(prepared.traits, functools.partial(generate_responses, trained), spec.seed, cache)
    cache.save()
    run.summary({"train/final_loss": outcome.final_loss, "manifest/hash": manifest.hash})
    run.table("samples", list(SAMPLE_COLUMNS), [[s[k] for k in SAMPLE_COLUMNS] for s in samples[:200]])
    return _finish(
        spec,
        folder,
        run,
        study,
        started,
        scores,
        samples,
        {
            "manifest": manifest_summary,
            "train": {
                **{k: v for k, v in dataclasses.asdict(outcome).items() if k != "log_history"},
                "model": model_path,
            },
            "objectives": objectives(spec, scores, manifest_summary["teacher_share"]["all"] or 0.0),
            "data_fingerprint": prepared.dataset.fingerprint(),
            "data_notes": list(prepared.dataset.notes),
        },
    )


SAMPLE_COLUMNS = ("trait", "prompt_id", "sample", "prompt", "response", "value", "reason")  # the W&B samples table


def _write_manifest(folder: TrialDir, run, manifest, summary: dict) -> dict:
    """manifest.parquet (data/manifest_file.py: each prompt's source, then the refill rows), logged as a
    W&B artifact."""
    cache = manifest.dataset.cache_dir
    write_manifest(folder.manifest, manifest, cache.name if cache is not None else "")
    run.artifact(f"manifest-{manifest.hash}", "manifest", [folder.manifest], summary)
    return summary


def _training_data(spec: TrialSpec, folder: TrialDir, manifest, prepared: Prepared, model_path: str):
    """The rows the trial trains on. In a sweep folder: selected from its token cache (tokens/, each source
    tokenized once per tokenizer, max length and data: model/token_cache.py); elsewhere chat examples."""
    sweep = SweepDir(folder.path.resolve().parent.parent)
    if not sweep.exists():
        return training_examples(manifest, prepared.dataset)
    dataset = prepared.dataset
    cache = TokenCache(sweep.tokens, load_tokenizer(model_path), spec.train.max_length_tokens, dataset.fingerprint())
    positions, codes = manifest.training_positions()
    names = dataset.source_names
    rows = [(p, names[c]) for p, c in zip(positions.tolist(), codes.tolist())]
    return cache.select(rows, dataset.conversation, dataset.n)


def _train(spec: TrialSpec, folder: TrialDir, run, examples, model_path: str) -> tuple:
    """Fine-tune (resuming a preempted trial's checkpoint); train_log.jsonl is written even when
    training is preempted, so the curve so far is kept. Returns (trained LM, TrainOutcome)."""
    set_cpu_threads(spec.train.torch_threads)
    device = resolve_device(spec.train.device)
    n_processes = num_processes(spec.train)
    checkpoint = resume_checkpoint(folder.path)
    curve: list[dict] = []
    if checkpoint is not None:
        # the curve up to the checkpoint; the steps after it are trained (and logged) again
        resumed_at = int(folder.read_preempted()["step"])
        curve = [r for r in folder.read_train_log() if int(r["step"]) <= resumed_at]

    def log(record: dict, step: int) -> None:
        curve.append({"step": step, **record})
        run.log(record, step=step)

    try:
        if n_processes > 1:
            return train_processes(
                folder.path, n_processes, spec.train, spec.seed, examples, model_path, device, checkpoint, log
            )
        base = load_lm(model_path, device, spec.train.attention)
        return train_sft(base, examples, spec.train, folder.trainer, spec.seed, log, resume_from=checkpoint)
    finally:  # a preempted trial keeps its curve so far
        folder.write_train_log(curve)


def objectives(spec: TrialSpec, scores: dict, teacher_share: float) -> list[float]:
    """Values told to Optuna: the sweep's objectives, or (experiment modes) the decision trait's score."""
    search = spec.sweep.search
    if not search.objectives:
        return [scores[search.trait or next(iter(spec.sweep.traits))]["score"]]
    return [teacher_share if o.trait == TEACHER_SHARE else scores[o.trait]["score"] for o in search.objectives]


def _finish(
    spec: TrialSpec, folder: TrialDir, run, study: str, started: float, scores: dict, samples: list[dict], extra: dict
) -> dict:
    """Write samples and result.json (last), and log the scores to the tracker."""
    folder.write_samples(samples)
    result = {
        "trial": spec.trial,
        "study": study,
        "status": "complete",
        "condition": spec.condition,
        "params": spec.params,
        "plan": raw_plan(spec.plan),
        "label": label(spec),
        "seed": spec.seed,
        "traits": scores,
        **extra,
        "code": code_version(),
        "versions": library_versions(),
        "wall_s": round(time.time() - started, 3),
        "wandb_run_id": run.run_id,
        "preemptions": (folder.read_preempted() or {}).get("history", []),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    run.summary(
        {f"trait/{t}/{k}": s[k] for t, s in scores.items() for k in ("score", "low", "high")}
        | {  # traits.T.calibration: the judge-corrected rate (None when not identifiable)
            f"trait/{t}/corrected" + ("" if k == "score" else f"_{k}"): s["calibration"]["corrected"][k]
            for t, s in scores.items()
            if "calibration" in s
            for k in ("score", "low", "high")
        }
        | {"wall_s": result["wall_s"]}
    )
    folder.write_result(result)  # last: its presence marks the trial complete
    return result


def _execute_runner(spec: TrialSpec, folder: TrialDir, run, study: str, started: float) -> dict:
    out = load_runner(spec.sweep.search.runner)(spec)
    share = float(out.get("teacher_share") or 0.0)
    return _finish(
        spec,
        folder,
        run,
        study,
        started,
        out["traits"],
        [],
        {
            "runner": spec.sweep.search.runner,
            "objectives": objectives(spec, out["traits"], share),
            "manifest": {"teacher_share": out.get("teacher_share_by_subset", {"all": share})},
        },
    )


def _execute_teacher_eval(
    spec: TrialSpec, folder: TrialDir, run, study: str, started: float, prepared: Prepared
) -> dict:
    """Score a teacher's own responses to the eval prompts (no training): tau_T for transfer ratios."""
    source = spec.plan.base
    path = spec.sweep.data.eval_responses.get(source)
    if not path:
        raise UserError(
            f"data.eval_responses: no file for source {source!r}; teacher_eval needs each teacher's "
            "responses to the eval prompts ({prompt_id, response} per line)"
        )
    responses = {str(r["prompt_id"]): str(r["response"]) for r in read_records(path)}
    cache = VerdictCache(folder.judgments)
    scores, samples = evaluate_responses(prepared.traits, responses, path, cache)
    cache.save()
    return _finish(
        spec,
        folder,
        run,
        study,
        started,
        scores,
        samples,
        {
            "objectives": objectives(spec, scores, 1.0),
            "manifest": {"teacher_share": {"all": 1.0}},
            "data_fingerprint": prepared.dataset.fingerprint(),
        },
    )


def raw_plan(plan: MixturePlan) -> dict:
    return {"base": plan.base, "mixture_seed": plan.mixture_seed, "rules": to_dict(list(plan.rules))}


def label(spec: TrialSpec) -> str:
    names = {
        "all_clean": "all-clean baseline",
        "all_teacher": "all-teacher baseline",
        "teacher_eval": f"teacher eval of {spec.plan.base}",
        "full_swap": f"all from {spec.plan.base}",
    }
    text = names.get(spec.condition, spec.plan.label())
    return text if spec.seed == 0 else f"{text} (seed {spec.seed})"
