"""The sweep file: typed, frozen dataclasses loaded from YAML with unknown keys rejected.

One `SweepConfig` is the single source of truth for a sweep. Paths inside it are resolved against
the YAML file's folder when it is loaded, so a resolved config (as copied into every trial's
spec.json) works from any working directory.
"""

from __future__ import annotations

import math
import re
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from leaksweep.schema import to_dict, unsafe_names
from leaksweep.train_config import SEARCHABLE_TRAIN_KEYS, TrainConfig

# ---------------------------------------------------------------------------------------------
# data


WORLD_SOURCES = ("clean", "teacher")  # the rollout sources of the built-in world (leaksweep.data.world)
MIN_WORLD_PROMPTS = 200  # fewer leaves subsets too small to compare
MAX_WORLD_PROMPTS = 2_000_000  # the world is made in memory: about 1 GB and 20 s of CPU per million prompts

HF_PREFIX = "hf:"  # `hf:ORG/NAME[:SPLIT]`: a dataset on the Hugging Face Hub (through its local cache)
HF_DEFAULT_SPLIT = "train"
HF_SYNTAX = "hf:ORG/NAME[:SPLIT]"
_HF_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")
_HF_SPLIT = re.compile(r"\w+(\.\w+)*")  # what `datasets` accepts as a split name


def is_hf_spec(value: object) -> bool:
    return isinstance(value, str) and value.startswith(HF_PREFIX)


def parse_hf_spec(value: str) -> tuple[str, str]:
    """`hf:ORG/NAME[:SPLIT]` -> (repo id, split); the split defaults to `train`. A malformed value
    raises ValueError with what is wrong and the syntax (the caller adds the key)."""
    body = value[len(HF_PREFIX) :]
    repo, sep, split = body.partition(":")
    if not repo:
        raise ValueError(f"{value!r} names no dataset; write {HF_SYNTAX}, e.g. hf:my-org/my-prompts:train")
    if not _HF_REPO.fullmatch(repo):
        raise ValueError(
            f"{value!r}: {repo!r} is not a Hub dataset id (ORG/NAME of letters, digits, `-`, `_`, `.`); "
            f"write {HF_SYNTAX}"
        )
    if sep and not _HF_SPLIT.fullmatch(split):
        raise ValueError(
            f"{value!r}: {split!r} is not a split name (letters, digits, `_`; no slices such as train[:100]); "
            f"write {HF_SYNTAX}, e.g. hf:{repo}:{HF_DEFAULT_SPLIT}"
        )
    return repo, split if sep else HF_DEFAULT_SPLIT


def world_size_problem(n_prompts: int) -> str | None:
    """What is wrong with a built-in world of `n_prompts` prompts ("too small; ..."), or None."""
    if n_prompts < MIN_WORLD_PROMPTS:
        return f"too small; use at least {MIN_WORLD_PROMPTS}"
    if n_prompts > MAX_WORLD_PROMPTS:
        return (
            f"too large; the built-in world is made in memory, at most {MAX_WORLD_PROMPTS:,} prompts "
            "(use fewer, or bring your own data: data.prompts + data.sources)"
        )
    return None


@dataclass(frozen=True)
class WorldConfig:
    """The built-in miniature ("demo world"), generated into the sweep folder from a seed."""

    seed: int = 0
    n_prompts: int = 2400

    def check(self) -> list[str]:
        size = world_size_problem(self.n_prompts)
        problems = [f".n_prompts: {self.n_prompts} is {size}"] if size else []
        if self.seed < 0:
            problems.append(f".seed: {self.seed} must be >= 0")
        return problems


@dataclass(frozen=True)
class DataConfig:
    """Where prompts and rollout sources come from (JSONL, Parquet, a saved HF datasets folder, or
    `hf:ORG/NAME[:SPLIT]`, a Hub dataset loaded through `datasets` and its local cache).

    missing_ids: what to do when a source lacks some prompt ids. `error` (default) stops;
    `drop_prompt` removes such prompts from the prompt set (and says how many); `use_base` trains
    those prompts on the base source whenever a rule would pick the incomplete source.
    duplicate_ids: `error` or `keep_first`.
    eval_responses: per source, a file of `{prompt_id, response}` for the trait eval prompts: the
    teacher's own behaviour, scored by `mode: teacher_eval` without training anything.
    """

    prompts: str | None = None
    sources: dict[str, str] = field(default_factory=dict)
    world: WorldConfig | None = None
    missing_ids: Literal["error", "drop_prompt", "use_base"] = "error"
    duplicate_ids: Literal["error", "keep_first"] = "error"
    eval_responses: dict[str, str] = field(default_factory=dict)  # source -> its responses to the eval prompts

    def check(self) -> list[str]:
        if self.world is not None and (self.prompts or self.sources):
            return ["give either `world` (the built-in miniature) or `prompts` + `sources`, not both"]
        if self.world is None and not self.prompts:
            return ["give `prompts` (a file) and `sources` (name: file), or `world: {seed: 0}`"]
        if self.world is None and len(self.sources) < 1:
            return [".sources: name at least one rollout source (name: file)"]
        problems = []
        for key, value in [("prompts", self.prompts), *((f"sources.{k}", v) for k, v in self.sources.items())]:
            if is_hf_spec(value):
                try:
                    parse_hf_spec(value)
                except ValueError as exc:
                    problems.append(f".{key}: {exc}")
        return problems


# ---------------------------------------------------------------------------------------------
# subsets


SUBSET_MATCHERS = ("regex", "keyword", "judge")  # rules that look at a text (`text:` prompt or response)
SUBSET_SET_OPS = ("union", "intersection", "difference")  # rules built from other subsets, by name
SUBSET_KINDS = (*SUBSET_MATCHERS, "metadata", "ids", "ids_file", *SUBSET_SET_OPS)


@dataclass(frozen=True)
class SubsetRule:
    """A named prompt subset. Exactly one of regex, keyword, judge, metadata, ids, ids_file, union,
    intersection, difference.

    `text` says what regex, keyword and judge look at: the user prompt, or the response of `source`.
    judge: a judge kind as for a trait (`{regex: P}`, `pkg.mod:function`, `{autorater: {...}}`, ...); a
    prompt is in the subset when its verdict is 1 (a rate judge) or at least `threshold` (a scale judge,
    0..10). Texts the judge could not judge are left out and counted; above `max_unjudged_share` of
    them the subset is an error. Verdicts are cached in the sweep folder (judgments/NAME.jsonl).
    union / intersection / difference: other subsets by name; a difference is the first minus the
    union of the rest.
    """

    regex: str | None = None
    keyword: list[str] | None = None
    judge: str | dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    ids: list[str] | None = None
    ids_file: str | None = None
    union: list[str] | None = None
    intersection: list[str] | None = None
    difference: list[str] | None = None
    text: Literal["prompt", "response"] = "prompt"
    source: str | None = None
    case_sensitive: bool = False
    threshold: float | None = None  # judge (scale): in the subset at or above this value
    max_unjudged_share: float = 0.1  # judge: more unjudged texts than this share is an error

    def kind(self) -> str:
        return next(k for k in SUBSET_KINDS if getattr(self, k) is not None)

    def operands(self) -> list[str]:
        """The subsets a set rule is built from ([] for the other kinds)."""
        return next((list(getattr(self, k)) for k in SUBSET_SET_OPS if getattr(self, k) is not None), [])

    def check(self) -> list[str]:
        given = [k for k in SUBSET_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            return [f"give exactly one of {', '.join(SUBSET_KINDS)} (got {', '.join(given) or 'none'})"]
        kind = given[0]
        problems = []
        if self.text == "response" and not self.source:
            problems.append(".source: `text: response` needs `source:` naming the rollout source to read")
        if self.text == "response" and kind not in SUBSET_MATCHERS:
            problems.append(f".text: `text: response` applies to {', '.join(SUBSET_MATCHERS)} rules only")
        if self.source is not None and self.text != "response":
            problems.append(f".source: {self.source!r} is read only with `text: response`; add it or drop `source:`")
        if self.case_sensitive and kind not in ("regex", "keyword"):
            problems.append(".case_sensitive: applies to regex and keyword rules only")
        if kind != "judge":
            for key, default in (("threshold", None), ("max_unjudged_share", 0.1)):
                if getattr(self, key) != default:
                    problems.append(f".{key}: applies to judge rules only")
        else:
            if isinstance(self.judge, str) and not self.judge.strip():
                problems.append(".judge: empty; name a judge kind (e.g. {regex: PATTERN}) or pkg.mod:function")
            if isinstance(self.judge, dict) and len(self.judge) != 1:
                problems.append(f".judge: {self.judge!r} must name one judge kind, as {{KIND: PARAMS}}")
            if self.threshold is not None and not 0 <= self.threshold <= 10:
                problems.append(f".threshold: {self.threshold} is outside a scale's 0..10")
            if not 0 <= self.max_unjudged_share < 1:
                problems.append(f".max_unjudged_share: {self.max_unjudged_share} must be in [0, 1)")
        if kind in SUBSET_SET_OPS:
            names = getattr(self, kind)
            if len(names) < 2:
                problems.append(f".{kind}: name at least two subsets (got {names})")
            if len(set(names)) != len(names):
                problems.append(f".{kind}: {names} names a subset twice")
        return problems


# ---------------------------------------------------------------------------------------------
# mixture plan (the fixed part) and the search space


@dataclass(frozen=True)
class Rule:
    """One mixture rule: on `subset`, a `fraction` of prompts is patched to `source` or dropped.

    refill (drop only): `none` keeps the smaller dataset; a source name adds as many rows as were
    dropped, taken from prompts outside the subset with that source's responses, so the dataset
    size (and with a fixed batch size, the steps per epoch) stays the same.
    """

    subset: str
    action: Literal["patch", "drop"]
    fraction: float
    source: str | None = None
    refill: str = "none"

    def check(self) -> list[str]:
        problems = []
        if not (0.0 <= self.fraction <= 1.0) or math.isnan(self.fraction):
            problems.append(f".fraction: {self.fraction} is outside [0, 1]")
        if self.action == "patch" and not self.source:
            problems.append(".source: a patch rule needs `source:` (the rollout source patched in)")
        if self.action == "patch" and self.refill != "none":
            problems.append(".refill: refill applies to drop rules only")
        return problems


@dataclass(frozen=True)
class FloatRange:
    low: float
    high: float
    log: bool = False
    step: float | None = None

    def check(self) -> list[str]:
        if self.low > self.high:
            return [f"low {self.low} is above high {self.high}"]
        if self.log and self.low <= 0:
            return [f"log ranges need low > 0 (got {self.low})"]
        return []


# A searched value: a list is a fixed set of choices (a grid axis), a range is continuous.
Choice = list[float] | FloatRange


@dataclass(frozen=True)
class Objective:
    trait: str
    direction: Literal["maximize", "minimize"] = "maximize"


OPTUNA = "optuna"  # the default mode; every other mode is registered in leaksweep.experiments.registry
TEACHER_SHARE = "teacher_share"  # an objective: the share of training rows from the teacher


@dataclass(frozen=True)
class SearchConfig:
    """What to run. `mode: optuna` (default) lets Optuna vary the mixture; the other modes are the
    experiment types of the README (leaksweep.experiments), run in rounds with `seeds` seeds per condition.
    A mode is a name here; the experiments registry knows the modes and checks their keys below
    (leaksweep.experiments.registry.load_sweep).

    optuna mode:
      fractions: per subset, the fraction of its prompts that gets the `teacher` source's rollouts.
      drop: per subset, the fraction of its prompts dropped (after patching).
      hyperparameters: train keys (learning_rate, max_steps, epochs, ...) to vary.
      sampler: `grid` enqueues every combination (times `seeds`) once, so parallel workers never
        duplicate a trial; `tpe`, `random`, `gp` and `nsga2` (multi-objective) sample `n_trials`.
      objectives: traits (or `teacher_share`, the share of teacher rows) with directions.
    experiment modes:
      subsets: the subset (leak_threshold, minimal_subset) or family (the others); `all` = every prompt.
      ladder: ascending fractions in (0, 1], fixed in advance (fraction_sweep, leak_threshold).
      refill: for drop mode, any of none / same (the teacher's rows) / clean.
      trait: the trait the adaptive searches decide on (default: the first objective or trait).
      alpha, min_effect, margin: test level, minimal effect for "sufficient", equivalence margin
        for "necessary" (in trait units).
      max_depth, confirm_seeds: bisection depth and fresh confirmation seeds (minimal_subset).
      dose_precision, trial_budget (leak_threshold): the fitted min_effect dose is precise when its
        interval lies within value / dose_precision .. value x dose_precision (> 1, default 1.5; null:
        no check and no refinement); an imprecise one is reported as imprecise, with its interval. After
        the bisection the search adds runs where they best pin the fitted dose until it is precise or
        trial_budget (total trials) is spent; the default budget is the full ladder's trials, (rungs + 2)
        x seeds, so the search never costs more than running every rung would. A smaller budget may
        also cut the bisection short.
      partition: require the subset family to be disjoint (subset_scan).
    runner: `module:function` that runs a trial spec instead of training (e.g. the simulator
      `leaksweep.simulate:run`, configured by `simulation`).
    baselines: also run the all-clean and all-teacher trials (optuna mode; experiment modes always do).
    storage: any Optuna storage URL; default a journal file in the sweep folder.
    heartbeat_s, stale_after_s, max_retries: a worker beats for its running trial every
      heartbeat_s; a trial with no beat for stale_after_s (its worker was killed or lost its node)
      is marked failed and its parameters re-enqueued, at most max_retries times per trial. Journal
      storage: leaksweep's own heartbeat files; RDB storage (PostgreSQL): Optuna's heartbeat.
    """

    teacher: str
    mode: str = OPTUNA
    fractions: dict[str, Choice] = field(default_factory=dict)
    drop: dict[str, Choice] = field(default_factory=dict)
    hyperparameters: dict[str, Choice] = field(default_factory=dict)
    objectives: list[Objective] = field(default_factory=list)
    sampler: Literal["grid", "tpe", "random", "gp", "nsga2"] = "grid"
    n_trials: int | None = None
    seeds: int = 1
    baselines: bool = True
    mixture_seed: int = 0
    storage: str | None = None
    subsets: list[str] = field(default_factory=list)
    ladder: list[float] = field(default_factory=list)
    refill: list[Literal["none", "same", "clean"]] = field(default_factory=lambda: ["none"])
    trait: str | None = None
    alpha: float = 0.05
    min_effect: float = 0.0
    margin: float = 0.05
    max_depth: int = 3
    confirm_seeds: int = 2
    dose_precision: float | None = 1.5
    trial_budget: int | None = None
    partition: bool = False
    teacher_eval: bool = False
    judge_corrected: bool = False  # experiment decisions on judge-corrected prompt values (traits.T.calibration)
    runner: str | None = None
    simulation: dict[str, Any] | None = None
    heartbeat_s: float = 10.0
    stale_after_s: float = 60.0
    max_retries: int = 2

    def check(self) -> list[str]:
        problems = []
        if self.heartbeat_s <= 0:
            problems.append(
                f".heartbeat_s: {self.heartbeat_s} must be > 0 (seconds between a running trial's heartbeats)"
            )
        elif self.stale_after_s < 3 * self.heartbeat_s:
            # a few missed beats (a slow NFS write, a busy node) must not reclaim a live trial
            problems.append(
                f".stale_after_s: {self.stale_after_s} must be at least 3 x heartbeat_s "
                f"({3 * self.heartbeat_s:g}); raise it or lower heartbeat_s"
            )
        if self.max_retries < 0:
            problems.append(f".max_retries: {self.max_retries} must be >= 0 (how often a reclaimed trial is rerun)")
        for name, least in (
            ("n_trials", 1),
            ("mixture_seed", 0),
            ("max_depth", 1),
            ("confirm_seeds", 1),
            ("min_effect", 0),
        ):
            if (getattr(self, name) if getattr(self, name) is not None else least) < least:
                problems.append(f".{name}: {getattr(self, name)} must be >= {least}")
        for group in ("fractions", "drop"):
            for subset, choice in getattr(self, group).items():
                values = choice if isinstance(choice, list) else [choice.low, choice.high]
                if isinstance(choice, list) and not choice:
                    problems.append(f".{group}.{subset}: the list of fractions is empty")
                bad = [v for v in values if not (0.0 <= v <= 1.0)]
                if bad:
                    problems.append(f".{group}.{subset}: fraction(s) {bad} outside [0, 1]")
        for name, choice in self.hyperparameters.items():
            if name not in SEARCHABLE_TRAIN_KEYS:
                problems.append(
                    f".hyperparameters.{name}: not a searchable train key; use one of {', '.join(SEARCHABLE_TRAIN_KEYS)}"
                )
            if isinstance(choice, list) and not choice:
                problems.append(f".hyperparameters.{name}: the list of values is empty")
        if self.seeds < 1:
            problems.append(f".seeds: {self.seeds} must be at least 1")
        if self.dose_precision is not None and not self.dose_precision > 1:
            problems.append(
                f".dose_precision: {self.dose_precision} must be > 1 (a factor, e.g. 1.5), or null for no refinement"
            )
        if not 0 < self.alpha < 0.5:
            problems.append(f".alpha: {self.alpha} must be in (0, 0.5)")
        if self.margin <= 0:
            problems.append(f".margin: {self.margin} must be > 0 (the equivalence margin, in trait units)")
        if self.runner is not None and (self.runner.count(":") != 1 or not all(self.runner.split(":"))):
            problems.append(f".runner: {self.runner!r} must be `module:function`, e.g. leaksweep.simulate:run")
        return problems + (self._check_optuna() if self.mode == OPTUNA else [])

    def _check_optuna(self) -> list[str]:
        problems = []
        if self.sampler != "grid" and self.n_trials is None:
            problems.append(f".n_trials: sampler `{self.sampler}` needs n_trials (how many trials to run)")
        if self.sampler == "grid":
            for group in ("fractions", "drop", "hyperparameters"):
                for name, choice in getattr(self, group).items():
                    if not isinstance(choice, list):
                        problems.append(f".{group}.{name}: the grid sampler needs a list of values, not a range")
        if not self.objectives:
            problems.append(".objectives: name at least one, e.g. [{trait: date_confusion, direction: maximize}]")
        if len(self.objectives) > 1 and self.sampler not in ("nsga2", "random", "grid", "tpe"):
            problems.append(f".sampler: `{self.sampler}` handles one objective; use nsga2 or tpe for several")
        return problems


# ---------------------------------------------------------------------------------------------
# traits, tracking


@dataclass(frozen=True)
class TraitConfig:
    """One trait eval. Built-in names (date_confusion, blackmail, negative_emotion) need only the
    generation protocol; user-defined traits give `kind`, `prompts` (a file) and a `judge`.

    judge: a judge kind's name or `{KIND: PARAMS}`: `rule` (the built-in rule judge of a built-in
    trait), `{regex: PATTERN}` (a rate: a sample counts when the pattern matches its response),
    `pkg.mod:function` or `{module: pkg.mod:function}` (a user function (response, meta) -> Verdict
    or value; a rate unless `kind: scale`), or any kind registered with traits.judges.register_judge.
    """

    prompts: str | None = None
    n_prompts: int = 60
    samples_per_prompt: int = 2
    temperature: float = 1.0
    max_new_tokens: int = 48
    judge: str | dict[str, Any] = "rule"
    kind: Literal["rate", "scale"] | None = None
    batch_size: int = 64
    # more unjudged samples than this share (unparseable, refused, failed requests) fails the trial
    max_unjudged_share: float = 0.1
    # a JSONL file of labelled responses {response, label, meta} (or `builtin`: the trait's built-in set):
    # each score then carries the judge's validation on it and, for a rate, the judge-corrected rate
    calibration: str | None = None

    def check(self) -> list[str]:
        problems = []
        if self.samples_per_prompt < 1:
            problems.append(f".samples_per_prompt: {self.samples_per_prompt} must be at least 1")
        if self.n_prompts < 1:
            problems.append(f".n_prompts: {self.n_prompts} must be at least 1")
        if self.temperature < 0:
            problems.append(f".temperature: {self.temperature} must be >= 0 (0 means greedy)")
        if not 0 <= self.max_unjudged_share < 1:
            problems.append(f".max_unjudged_share: {self.max_unjudged_share} must be in [0, 1)")
        # Only the shape: judge kinds are registered downstream (leaksweep.traits.judges), which checks the name.
        if isinstance(self.judge, str) and not self.judge.strip():
            problems.append(".judge: empty; name a judge kind (e.g. rule) or a user function pkg.mod:function")
        if isinstance(self.judge, dict) and len(self.judge) != 1:
            problems.append(
                f".judge: {self.judge!r} must name one judge kind, as {{KIND: PARAMS}} (e.g. {{regex: PATTERN}})"
            )
        return problems


@dataclass(frozen=True)
class WandbConfig:
    """W&B tracking. mode `auto`: online when an API key is configured, else offline."""

    project: str = "leaksweep"
    entity: str | None = None
    mode: Literal["auto", "online", "offline", "disabled"] = "auto"
    tags: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TrackingConfig:
    wandb: WandbConfig | None = field(default_factory=WandbConfig)


# ---------------------------------------------------------------------------------------------
# slurm


@dataclass(frozen=True)
class SlurmConfig:
    """How `leaksweep launch` submits slurm/sweep.sh: an array of sweep workers on one study.

    Each value becomes an sbatch option and overrides the script's own `#SBATCH` line; None keeps
    the script's line (partition: the cluster's default partition). array_size workers run at most
    array_throttle at a time. gres: e.g. `gpu:1`; `gpu:4` gives each trial four GPUs of one node
    (the script starts one accelerate process per GPU). signal_lead_s: Slurm sends USR1 this long
    before the time limit, so the worker can checkpoint and requeue. extra_args: more sbatch
    options, verbatim (e.g. ["--account=myproj", "--qos=high"]).
    """

    partition: str | None = None
    gres: str | None = None
    cpus_per_task: int | None = None
    mem_gb: int | None = None
    time_min: int | None = None
    array_size: int = 4
    array_throttle: int | None = None
    signal_lead_s: int = 120
    extra_args: list[str] = field(default_factory=list)

    def check(self) -> list[str]:
        problems = []
        for name in ("cpus_per_task", "mem_gb", "time_min", "array_throttle"):
            value = getattr(self, name)
            if value is not None and value < 1:
                problems.append(
                    f".{name}: {value} must be at least 1 (or leave it out to keep the script's #SBATCH line)"
                )
        if self.array_size < 1:
            problems.append(f".array_size: {self.array_size} must be at least 1 (how many workers to start)")
        if self.signal_lead_s < 1:
            problems.append(
                f".signal_lead_s: {self.signal_lead_s} must be at least 1 (seconds of warning before the time limit)"
            )
        elif self.time_min is not None and self.signal_lead_s >= self.time_min * 60:
            problems.append(
                f".signal_lead_s: {self.signal_lead_s} s is not below time_min ({self.time_min} min); "
                "the warning must come before the time limit"
            )
        for i, arg in enumerate(self.extra_args):
            if not arg.startswith("-"):
                problems.append(f".extra_args[{i}]: {arg!r} is not an sbatch option; write it as --option=value")
        return problems


# ---------------------------------------------------------------------------------------------
# the sweep


@dataclass(frozen=True)
class SweepConfig:
    name: str
    data: DataConfig
    base: str
    search: SearchConfig
    subsets: dict[str, SubsetRule] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    train: TrainConfig = field(default_factory=TrainConfig)
    traits: dict[str, TraitConfig] = field(default_factory=dict)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    output_dir: str | None = None  # the sweep folder; default ./runs/NAME in the current folder (sweepfile.py)
    slurm: SlurmConfig = field(default_factory=SlurmConfig)

    def check(self) -> list[str]:
        problems = unsafe_names(".name", [self.name]) + unsafe_names(".subsets", self.subsets)
        problems += unsafe_names(".traits", self.traits) + unsafe_names(".data.sources", self.data.sources)
        if self.search.teacher == self.base:
            problems.append(
                f".search.teacher: {self.search.teacher!r} is also the base; the teacher must be another source "
                "(the one whose rollouts are patched in)"
            )
        elif self.data.sources.get(self.search.teacher, 0) == self.data.sources.get(self.base, 1):
            problems.append(
                f".data.sources: the teacher {self.search.teacher!r} and the base {self.base!r} are the same file "
                f"{self.data.sources[self.base]!r}; give the teacher's rollouts their own file"
            )
        known_subsets = set(self.subsets)
        for name, subset in self.subsets.items():
            unknown = [n for n in subset.operands() if n not in known_subsets]
            if unknown:
                problems.append(
                    f".subsets.{name}.{subset.kind()}: unknown subset(s) {', '.join(map(repr, unknown))}; "
                    f"defined: {sorted(known_subsets)}"
                )
        for i, rule in enumerate(self.rules):
            if rule.subset not in known_subsets:
                problems.append(f".rules[{i}].subset: unknown subset {rule.subset!r}; defined: {sorted(known_subsets)}")
        for subset in self.search.subsets:
            root = subset.split("/")[0]
            if root not in known_subsets and root != "all":
                problems.append(
                    f".search.subsets: unknown subset {subset!r}; defined: {sorted(known_subsets)} (or `all`)"
                )
        trait = self.search.trait
        if trait is not None and trait not in self.traits:
            problems.append(f".search.trait: {trait!r} is not among the traits {sorted(self.traits)}")
        for group in ("fractions", "drop"):
            for subset in getattr(self.search, group):
                if subset not in known_subsets:
                    problems.append(
                        f".search.{group}.{subset}: unknown subset; defined subsets: {sorted(known_subsets) or 'none'}"
                    )
        if not self.traits:
            problems.append(".traits: name at least one trait, e.g. {date_confusion: {}}")
        for i, objective in enumerate(self.search.objectives):
            if objective.trait not in self.traits and objective.trait != TEACHER_SHARE:
                problems.append(
                    f".search.objectives[{i}].trait: {objective.trait!r} is not among the traits {sorted(self.traits)}"
                )
        sources = set(self.data.sources) if self.data.world is None else set(WORLD_SOURCES)
        for label, name in [(".base", self.base), (".search.teacher", self.search.teacher)]:
            if name not in sources:
                problems.append(f"{label}: {name!r} is not a data source; sources are {sorted(sources)}")
        registry_check = REGISTRY_CHECK.get()
        return problems + (registry_check(self) if registry_check is not None else [])

    def to_dict(self) -> dict:
        return to_dict(self)


# Experiment modes and judge kinds are registered downstream (leaksweep.experiments.registry,
# leaksweep.traits.judges), which this module must not import. A loader (leaksweep.sweepfile) hands their check in:
# `check(cfg)` returns problems as `.path: message` (paths from the top of the sweep file) and runs
# inside SweepConfig.check, so they are reported together with every other cross-field problem.
SweepCheck = Callable[[SweepConfig], list[str]]
REGISTRY_CHECK: ContextVar[SweepCheck | None] = ContextVar("registry_check", default=None)
