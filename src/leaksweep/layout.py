"""The sweep folder: every file name in it, and typed records for what its files hold.

The sweep folder is the source of truth of a study (every other state can be rebuilt from it), and
the report reads nothing else. This module is its one owner: no other module spells a file name of
the folder, and readers get dataclasses instead of nested dicts, so a renamed field fails here,
loudly, instead of silently somewhere in a report.

    runs/<sweep>/
      sweep.json            the resolved sweep config, and the folder's lock kind (written by prepare)
      optuna.journal        the Optuna study, unless search.storage names another storage
      analysis.json         an experiment mode's conclusions
      report.html           the self-contained report
      world/                the built-in miniature's data, when the sweep uses it
      models/               the built-in tiny base model, shared by the sweep's trials
      logs/                 local worker logs;  slurm/ the Slurm task logs and jobs.json
      summary/              the W&B summary run's offline files
      trials/NNNNN/         one folder per trial (TrialDir)
      superseded/STAMP/     a sweep replaced by a corrected sweep file before any trial of it completed:
                            its sweep.json, journal, trials/, logs/, analysis and report, kept as they were

Records read old folders: unknown keys are ignored and missing ones defaulted, so a folder written
by an older leaksweep still renders.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from leaksweep.errors import UserError
from leaksweep.files import read_json, read_jsonl, write_json, write_jsonl


class TrialDir:
    """One trial's folder: spec.json first, result.json last (atomically; its presence means done)."""

    SPEC = "spec.json"  # written first: resolved sweep config, plan, seed, train config
    MANIFEST = "manifest.parquet"  # each prompt's source or DROPPED, then the refill rows (data/manifest_file.py)
    TRAIN_LOG = "train_log.jsonl"  # the training curve
    SAMPLES = "samples.jsonl"  # every eval generation with its judge verdict
    JUDGMENTS = "judgments.jsonl"  # every verdict by (judge id, prompt, response): rejudging asks no judge twice
    RESULT = "result.json"  # written last: the trial is complete
    RECLAIMED_RESULT = "result.reclaimed.json"  # a result that arrived after its trial was reclaimed
    ERROR = "error.json"  # written instead of result.json when the trial failed
    PREEMPTED = "preempted.json"  # checkpoint to resume from, W&B run id, every preemption so far
    HEARTBEAT = "heartbeat.json"  # rewritten by the worker while the trial runs
    TRAINER = "trainer"  # the Trainer's output folder: checkpoints, multi-process hand-over files
    # under trainer/, the hand-over files of a multi-process fine-tune (model/ddp.py)
    TRAIN_INPUT = "train_input.json"  # what the ranks train (written by the worker)
    TRAIN_OUTPUT = "train_output.json"  # rank 0's TrainOutcome, or the preemption (checkpoint, step)
    TRAIN_CURVE = "train_curve.jsonl"  # rank 0's log records, as the in-process log_fn gets them
    PREEMPT_FLAG = "PREEMPT"  # the worker creates it on USR1; every rank polls it
    FINAL_MODEL = "final"  # rank 0's trained model, loaded by the worker and then deleted
    MODEL = "model"  # the fine-tuned model, with train.save_model
    WANDB = "wandb"  # the trial's offline W&B run

    def __init__(self, path: Path | str):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"TrialDir({str(self.path)!r})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def spec(self) -> Path:
        return self.path / self.SPEC

    @property
    def result(self) -> Path:
        return self.path / self.RESULT

    @property
    def error(self) -> Path:
        return self.path / self.ERROR

    @property
    def manifest(self) -> Path:
        return self.path / self.MANIFEST

    @property
    def train_log(self) -> Path:
        return self.path / self.TRAIN_LOG

    @property
    def samples(self) -> Path:
        return self.path / self.SAMPLES

    @property
    def preempted(self) -> Path:
        return self.path / self.PREEMPTED

    @property
    def judgments(self) -> Path:
        return self.path / self.JUDGMENTS

    @property
    def heartbeat(self) -> Path:
        return self.path / self.HEARTBEAT

    @property
    def trainer(self) -> Path:
        return self.path / self.TRAINER

    @property
    def model(self) -> Path:
        return self.path / self.MODEL

    def is_complete(self) -> bool:
        return self.result.is_file()

    def read_result(self) -> "TrialResult":
        return TrialResult.from_dict(read_json(self.result), str(self.result))

    def write_result(self, result: "TrialResult | dict") -> None:
        """Atomically, and last: its presence marks the trial complete."""
        write_json(self.result, result.to_dict() if isinstance(result, TrialResult) else result)

    def read_error(self) -> str:
        return str(read_json(self.error).get("error", "(no message)")) if self.error.is_file() else ""

    def write_error(self, error: str, traceback: str | None) -> None:
        write_json(self.error, {"error": error, "traceback": traceback})

    def read_preempted(self) -> dict | None:
        """The preemption record, or None when the trial was never preempted."""
        return read_json(self.preempted) if self.preempted.exists() else None

    def write_preempted(self, record: dict) -> None:
        write_json(self.preempted, record)

    def read_train_log(self) -> list[dict]:
        return read_jsonl(self.train_log) if self.train_log.is_file() else []

    def write_train_log(self, rows: list[dict]) -> None:
        write_jsonl(self.train_log, rows)

    def read_samples(self) -> list[dict]:
        return read_jsonl(self.samples) if self.samples.is_file() else []

    def write_samples(self, rows: list[dict]) -> None:
        write_jsonl(self.samples, rows)


class SweepDir:
    """A sweep's folder (runs/<name>): the config, the study, the trials, the conclusions, the report."""

    SWEEP = "sweep.json"
    JOURNAL = "optuna.journal"
    ANALYSIS = "analysis.json"
    REPORT = "report.html"
    TRIALS = "trials"
    WORLD = "world"
    MODELS = "models"
    LOGS = "logs"
    SLURM = "slurm"  # Slurm task logs and JOBS
    JOBS = "jobs.json"
    SUMMARY = "summary"  # the W&B summary run's offline files land in summary/wandb/
    JUDGMENTS = "judgments"  # verdict caches of subsets defined by a judge, one file per subset
    DATA = "data"  # the columnar data cache, one folder per input content (data/store.py)
    TOKENS = "tokens"  # tokens/KEY/SOURCE.arrow: each source tokenized once per tokenizer (model/token_cache.py)
    PREPARE_LOCK = ".prepare.lock"  # flock files; a link lock takes the name + "-link" (study/locks.py)
    ASK_LOCK = ".ask.lock"
    SUPERSEDED = "superseded"  # superseded/STAMP/: a sweep set aside by prepare (no trial of it had completed)
    SET_ASIDE = (SWEEP, TRIALS, LOGS, ANALYSIS, REPORT, SUMMARY)  # what a superseded sweep takes with it
    FOLDER_LOCK = "folder_lock"  # sweep.json's key for the lock kind chosen at prepare (not part of the config)

    def __init__(self, path: Path | str):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"SweepDir({str(self.path)!r})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def sweep_file(self) -> Path:
        return self.path / self.SWEEP

    @property
    def journal(self) -> Path:
        return self.path / self.JOURNAL

    @property
    def analysis(self) -> Path:
        return self.path / self.ANALYSIS

    @property
    def report(self) -> Path:
        return self.path / self.REPORT

    @property
    def trials_dir(self) -> Path:
        return self.path / self.TRIALS

    @property
    def world(self) -> Path:
        return self.path / self.WORLD

    @property
    def models(self) -> Path:
        return self.path / self.MODELS

    @property
    def logs(self) -> Path:
        return self.path / self.LOGS

    @property
    def slurm(self) -> Path:
        return self.path / self.SLURM

    @property
    def jobs_file(self) -> Path:
        return self.path / self.SLURM / self.JOBS

    @property
    def summary(self) -> Path:
        return self.path / self.SUMMARY

    @property
    def judgments(self) -> Path:
        return self.path / self.JUDGMENTS

    @property
    def data_cache(self) -> Path:
        return self.path / self.DATA

    @property
    def tokens(self) -> Path:
        return self.path / self.TOKENS

    def exists(self) -> bool:
        return self.sweep_file.is_file()

    def require(self) -> None:
        """UserError unless this is a sweep folder (one holding sweep.json)."""
        if not self.exists():
            raise UserError(
                f"{self.path}: not a sweep folder (no {self.SWEEP} in it); "
                f"pass the folder a sweep writes, the one holding {self.SWEEP} and {self.TRIALS}/"
            )

    def trial(self, number: int) -> TrialDir:
        return TrialDir(self.trials_dir / f"{number:05d}")

    def trials(self) -> Iterator[TrialDir]:
        """Every trial folder that has a spec.json, in trial-number order."""
        for spec in sorted(self.trials_dir.glob(f"*/{TrialDir.SPEC}")):
            yield TrialDir(spec.parent)

    def complete(self) -> list[TrialDir]:
        """Trial folders with a result.json (complete trials), in folder order."""
        return [TrialDir(p.parent) for p in sorted(self.trials_dir.glob(f"*/{TrialDir.RESULT}"))]

    def count_finished(self) -> int:
        """Trials that produced a result: result.json, or one that arrived after its trial was reclaimed."""
        names = (TrialDir.RESULT, TrialDir.RECLAIMED_RESULT)
        return sum(1 for name in names for _ in self.trials_dir.glob(f"*/{name}"))

    def set_aside(self, stamp: str, journal: Path | None) -> Path:
        """Move a sweep's study state (SET_ASIDE, and its journal file when it has one) into
        superseded/STAMP/; the folder's world, models, judgments and locks stay. Returns the new folder."""
        (self.path / self.SUPERSEDED).mkdir(exist_ok=True)
        aside, n = self.path / self.SUPERSEDED / stamp, 1
        while aside.exists():  # two in one second
            n += 1
            aside = self.path / self.SUPERSEDED / f"{stamp}-{n}"
        aside.mkdir()
        for name in self.SET_ASIDE:
            if (self.path / name).exists():
                (self.path / name).rename(aside / name)
        if journal is not None and journal.exists():
            shutil.move(journal, aside / journal.name)  # a journal:PATH may lie on another file system
        return aside

    def count_complete(self) -> int:
        return sum(1 for _ in self.trials_dir.glob(f"*/{TrialDir.RESULT}"))

    def read_results(self) -> list["TrialResult"]:
        """The complete trials' results, sorted by trial number, each (condition, seed) once (the first):
        a duplicate (a trial rerun after its result was written) is set aside (`set_aside_duplicates`)."""
        results = sorted((t.read_result() for t in self.complete()), key=lambda r: r.trial)
        return set_aside_duplicates(results, lambda r: r)[0]

    def read_config(self) -> dict:
        """sweep.json's sweep config (raw dict; sweepfile.sweep_from_dict types it), without folder_lock."""
        self.require()
        return {k: v for k, v in read_json(self.sweep_file).items() if k != self.FOLDER_LOCK}

    def folder_lock(self) -> "FolderLock":
        """The lock prepare chose for this folder's file system (study/locks.py); flock for a folder
        prepared before leaksweep recorded it, or not prepared yet."""
        raw = read_json(self.sweep_file).get(self.FOLDER_LOCK) if self.exists() else None
        return FolderLock.from_dict(raw or {})

    def write_config(self, config: dict, folder_lock: "FolderLock") -> None:
        """sweep.json: the resolved sweep config, and the folder's lock under `folder_lock`."""
        write_json(self.sweep_file, {**config, self.FOLDER_LOCK: dataclasses.asdict(folder_lock)})

    @staticmethod
    def damaged_copy(journal: Path, stamp: str) -> Path:
        """Where `leaksweep repair` keeps a damaged journal: beside it, as NAME.damaged-<UTC stamp>."""
        return journal.with_name(f"{journal.name}.damaged-{stamp}")

    def read_analysis(self) -> dict | None:
        return read_json(self.analysis) if self.analysis.is_file() else None

    def write_analysis(self, conclusions: dict) -> None:
        write_json(self.analysis, conclusions)


def set_aside_duplicates(items: list, result_of) -> tuple[list, list[dict]]:
    """Each (condition, seed) once: (the items kept, in order, [{"trial", "kept", "label", "seed"}] set aside).

    Two complete trials with the same condition (plan, parameters) and seed trained on the same data
    with the same seed: the second is a rerun of the first (e.g. a worker killed after result.json and
    before telling the study, before leaksweep told such trials COMPLETE). Counting both would weigh
    that condition twice in every statistic; the lowest trial number is kept. `items` in trial order;
    `result_of(item)` is its TrialResult."""
    kept, aside, first = [], [], {}
    for item in items:
        result = result_of(item)
        key = result.run_key()
        if key in first:
            aside.append({"trial": result.trial, "kept": first[key], "label": result.label, "seed": result.seed})
            continue
        first[key] = result.trial
        kept.append(item)
    return kept, aside


# --- records ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FolderLock:
    """sweep.json's `folder_lock`: the lock every process takes in this folder (study/locks.py) and why."""

    kind: str = "flock"  # flock | link | excl | database (PostgreSQL); flock for folders from before the record
    fstype: str = ""  # the sweep folder's file system type (/proc/self/mountinfo) at prepare
    mount_point: str = ""
    why: str = ""

    @classmethod
    def from_dict(cls, raw: dict) -> "FolderLock":
        return cls(**{k: str(v) for k, v in raw.items() if k in {f.name for f in dataclasses.fields(cls)}})


def _known(cls: type, raw: dict) -> dict:
    """The keys of `raw` that `cls` declares: unknown keys (newer writers) are ignored."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in raw.items() if k in names}


@dataclass(frozen=True)
class TraitScore:
    """One trait's score in one trial, with its interval and how it was measured."""

    score: float
    low: float
    high: float
    kind: str = "rate"  # rate (binary judge, Wilson interval) or scale (0-10, prompt bootstrap)
    interval: str = ""  # wilson95 | prompt_bootstrap95 | ...
    n_samples: int = 0
    n_prompts: int = 0
    judge: str = ""
    eval_duplicates_removed: int = 0
    n_unjudged: int = 0  # samples the judge could not judge (left out of the score)
    unjudged_reasons: dict[str, int] = field(default_factory=dict)
    judge_id: str = ""  # hash of the judge's identity (kind, model, rubric, parameters, version)
    prompt_values: tuple[float, ...] = ()  # per eval prompt, the mean judge value
    # traits.T.calibration: the judge's validation on labels and the judge-corrected rate (`corrected`)
    calibration: dict[str, Any] | None = None

    @staticmethod
    def from_dict(raw: dict) -> "TraitScore":
        known = _known(TraitScore, raw)
        known["prompt_values"] = tuple(known.get("prompt_values") or ())
        return TraitScore(**known)


@dataclass(frozen=True)
class PlanRule:
    subset: str
    action: str  # patch | drop
    source: str | None = None
    fraction: float = 1.0
    refill: str = "none"

    def is_teacher_patch(self, teacher: str) -> bool:
        """A patch with the teacher's rollouts at a fraction above 0."""
        return self.action == "patch" and self.source == teacher and float(self.fraction) > 0


@dataclass(frozen=True)
class PlanRecord:
    base: str = ""
    mixture_seed: int = 0
    rules: tuple[PlanRule, ...] = ()

    @staticmethod
    def from_dict(raw: dict) -> "PlanRecord":
        rules = tuple(PlanRule(**_known(PlanRule, r)) for r in raw.get("rules", []))
        return PlanRecord(str(raw.get("base", "")), int(raw.get("mixture_seed", 0)), rules)


@dataclass(frozen=True)
class TrialResult:
    """result.json. `raw` keeps the file as read: `to_dict()` writes back exactly what was read."""

    trial: int
    study: str = ""
    status: str = "complete"
    condition: str = "mixture"  # mixture | all_clean | all_teacher | an experiment condition kind
    label: str = ""
    seed: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    plan: PlanRecord = PlanRecord()
    traits: dict[str, TraitScore] = field(default_factory=dict)
    teacher_share: dict[str, float | None] = field(default_factory=dict)  # subset -> share; None: all dropped
    manifest: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    objectives: tuple[float, ...] = ()
    wall_s: float | None = None
    wandb_run_id: str | None = None
    preemptions: tuple[dict, ...] = ()
    code: str = ""  # code_version() of the writer: `<commit>, clean` or `..., with uncommitted changes`
    versions: dict[str, Any] = field(default_factory=dict)
    data_fingerprint: str = ""  # the prepared dataset's fingerprint; empty for runners without real data
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @staticmethod
    def from_dict(raw: dict, where: str = "result.json") -> "TrialResult":
        if not isinstance(raw, dict) or "trial" not in raw:
            raise UserError(f"{where}: not a trial result (no `trial` key); was it written by leaksweep?")
        manifest = raw.get("manifest") or {}
        try:
            return TrialResult(
                trial=int(raw["trial"]),
                study=str(raw.get("study", "")),
                status=str(raw.get("status", "complete")),
                condition=str(raw.get("condition", "mixture")),
                label=str(raw.get("label") or f"trial {raw['trial']}"),
                seed=int(raw.get("seed", 0)),
                params=dict(raw.get("params") or {}),
                plan=PlanRecord.from_dict(raw.get("plan") or {}),
                traits={k: TraitScore.from_dict(v) for k, v in (raw.get("traits") or {}).items()},
                teacher_share={
                    k: None if v is None else float(v) for k, v in (manifest.get("teacher_share") or {}).items()
                },
                manifest=dict(manifest),
                train=dict(raw.get("train") or {}),
                objectives=tuple(raw.get("objectives") or ()),
                wall_s=raw.get("wall_s"),
                wandb_run_id=raw.get("wandb_run_id"),
                preemptions=tuple(raw.get("preemptions") or ()),
                code=str(raw.get("code") or ""),
                versions=dict(raw.get("versions") or {}),
                data_fingerprint=str(raw.get("data_fingerprint") or ""),
                raw=dict(raw),
            )
        except (TypeError, ValueError, KeyError) as exc:
            raise UserError(f"{where}: malformed trial result ({type(exc).__name__}: {exc})") from exc

    def to_dict(self) -> dict:
        return dict(self.raw)

    def run_key(self) -> str:
        """What makes two trials the same run: condition, plan, parameters (hyperparameters among them), seed."""
        return json.dumps([self.condition, self.raw.get("plan"), self.params, self.seed], sort_keys=True, default=str)

    def share(self, subset: str) -> float:
        """The teacher's share of `subset`'s training rows in this trial's manifest (0 when not recorded or
        when the subset was dropped entirely: see share_or_none)."""
        return self.teacher_share.get(subset) or 0.0

    def share_or_none(self, subset: str) -> float | None:
        """The teacher's share of `subset`'s training rows; None when every row of it was dropped (n/a)."""
        return self.teacher_share.get(subset, 0.0)

    def score(self, trait: str) -> TraitScore | None:
        return self.traits.get(trait)
