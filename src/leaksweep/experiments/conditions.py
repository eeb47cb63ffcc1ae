"""What every experiment mode shares: conditions, runs, the Search protocol, estimates and config checks.

A *condition* is one mixture plan (or a teacher eval); a *run* is one finished trial of a condition
with one seed. A search is a small state machine replayed from the runs so far:
`next_round(runs)` returns the (condition, seed) pairs still needed (empty when finished) and
`conclude(runs)` turns the runs into conclusions, each stating its test, alpha, margin and trials.
Because a search is replayed from runs rather than holding state, a sweep resumes after any stop.
This room never imports optuna or the model stack: the study room executes rounds, and benchmarks
execute them in memory against simulated surfaces.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Protocol

import numpy as np

from leaksweep import decisions, stats
from leaksweep.calibration import rg_linear
from leaksweep.config import Rule, SweepConfig
from leaksweep.data.mixture import MixturePlan
from leaksweep.errors import UserError
from leaksweep.schema import to_dict

# Analysis kinds: the keys of analysis.json a mode's conclusions carry (the report renders by kind).
LEAK_MAP = "leak_map"  # per trait and subset: sufficient / necessary / leak-in decisions
DOSE_RESPONSE = "dose_response"  # per subset: rungs, fixed-sequence threshold, logistic fit
THRESHOLD = "threshold"  # the leak threshold of one subset (with its dose_response)
MINIMAL = "minimal"  # minimal leaking subsets: tests, minimal, distributed, confirmed, confirmations, no_leak
TRANSFER = "transfer"  # teachers, students and the teacher-student transfer table


@dataclass(frozen=True)
class Condition:
    kind: str  # all_clean | all_teacher | full_swap | patch_insert | patch_remove | drop | teacher_eval
    plan: MixturePlan
    subset: str | None = None
    fraction: float | None = None
    refill: str | None = None
    source: str | None = None

    def key(self) -> str:
        """Identity of a condition: equal keys mean the same training data (and eval)."""
        return _condition_key(self)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "subset": self.subset,
            "fraction": self.fraction,
            "refill": self.refill,
            "source": self.source,
            "plan": {
                "base": self.plan.base,
                "mixture_seed": self.plan.mixture_seed,
                "rules": to_dict(list(self.plan.rules)),
            },
        }

    @staticmethod
    def from_dict(raw: dict) -> "Condition":
        plan = raw["plan"]
        rules = tuple(Rule(**r) for r in plan["rules"])
        return Condition(
            raw["kind"],
            MixturePlan(plan["base"], rules, plan["mixture_seed"]),
            raw.get("subset"),
            raw.get("fraction"),
            raw.get("refill"),
            raw.get("source"),
        )

    def label(self) -> str:
        if self.kind == "all_clean":
            return "all-clean baseline"
        if self.kind == "all_teacher":
            return "all-teacher baseline"
        if self.kind == "full_swap":
            return f"all from {self.source}"
        if self.kind == "teacher_eval":
            return f"teacher eval of {self.source}"
        if self.kind == "patch_insert":
            return f"patch-insert {self.subset} ({self.fraction:.3g})"
        if self.kind == "patch_remove":
            return f"patch-remove {self.subset}"
        return f"drop {self.subset} (refill {self.refill})"


@functools.lru_cache(maxsize=65536)
def _condition_key(condition: Condition) -> str:
    # searches look runs up by key many times per round; a condition is frozen, so its key is too
    return json.dumps(condition.to_dict(), sort_keys=True)


@dataclass(frozen=True)
class Run:
    """One finished trial: its condition, seed, trial number and trait results.

    traits[name] holds at least `score` and `prompt_values` (per eval prompt, the mean judge value).
    shares[subset] is the share of that subset's training rows the trial's compiled manifest gave the
    teacher (result.json: manifest.teacher_share): the dose the student saw, which at small fractions
    differs from the nominal fraction (a prompt is patched when its hash-uniform falls below it).
    """

    condition: Condition
    seed: int
    trial: int
    traits: dict[str, dict]
    shares: dict[str, float | None] = field(default_factory=dict)


Request = tuple[Condition, int]


class Search(Protocol):
    mode: str

    def next_round(self, runs: list[Run]) -> list[Request]: ...

    def conclude(self, runs: list[Run]) -> dict: ...


def drive(
    search: Search, execute: Callable[[list[Request]], list[Run]], max_rounds: int = 100
) -> tuple[list[Run], dict]:
    """Run a search to the end with `execute(requests) -> list[Run]`; returns all runs and conclusions."""
    runs: list[Run] = []
    for _ in range(max_rounds):
        requests = search.next_round(runs)
        if not requests:
            break
        runs += execute(requests)
    return runs, search.conclude(runs)


# --- conditions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Builder:
    """Builds the conditions of one sweep (base = the clean source, teacher = the trait carrier)."""

    clean: str
    teacher: str
    mixture_seed: int = 0
    fixed_rules: tuple[Rule, ...] = ()

    def _plan(self, base: str, *rules: Rule) -> MixturePlan:
        return MixturePlan(base, self.fixed_rules + rules, self.mixture_seed)

    def all_clean(self) -> Condition:
        return Condition("all_clean", self._plan(self.clean))

    def all_teacher(self) -> Condition:
        return Condition("all_teacher", self._plan(self.teacher))

    def full_swap(self, source: str) -> Condition:
        return Condition("full_swap", self._plan(source), source=source)

    def teacher_eval(self, source: str) -> Condition:
        return Condition("teacher_eval", self._plan(source), source=source)

    def patch_insert(self, subset: str, fraction: float = 1.0) -> Condition:
        rule = Rule(subset=subset, action="patch", source=self.teacher, fraction=fraction)
        return Condition("patch_insert", self._plan(self.clean, rule), subset=subset, fraction=fraction)

    def patch_remove(self, subset: str) -> Condition:
        rule = Rule(subset=subset, action="patch", source=self.clean, fraction=1.0)
        return Condition("patch_remove", self._plan(self.teacher, rule), subset=subset, fraction=1.0)

    def drop(self, subset: str, refill: str) -> Condition:
        rule = Rule(subset=subset, action="drop", fraction=1.0, refill=refill)
        return Condition("drop", self._plan(self.teacher, rule), subset=subset, fraction=1.0, refill=refill)


def refill_source(refill: str, builder: Builder) -> str:
    """`same` refills with the base's (teacher's) own rollouts, `clean` with the clean source."""
    return {"none": "none", "same": builder.teacher, "clean": builder.clean}[refill]


# --- helpers over runs ----------------------------------------------------------------------------


def runs_of(runs: list[Run], condition: Condition, purpose_seeds: range | None = None) -> list[Run]:
    key = condition.key()
    return [r for r in runs if r.condition.key() == key and (purpose_seeds is None or r.seed in purpose_seeds)]


def values(runs: list[Run], trait: str) -> list[list[float]]:
    return [list(r.traits[trait]["prompt_values"]) for r in runs]


def missing(runs: list[Run], condition: Condition, seeds: range) -> list[Request]:
    have = {r.seed for r in runs_of(runs, condition)}
    return [(condition, s) for s in seeds if s not in have]


@dataclass(frozen=True)
class Settings:
    """What every search shares: the trait it decides on, seeds, test levels and margins."""

    trait: str
    traits: tuple[str, ...]
    seeds: int
    alpha: float
    min_effect: float
    margin: float
    n_boot: int = 2000
    fit_curves: bool = True  # logistic dose-response fits (bootstrapped: the slow part of conclude)

    @property
    def seed_range(self) -> range:
        return range(self.seeds)


def pooled(runs: list[Run], trait: str) -> stats.SeedVariance | None:
    """Seed variance pooled over every condition of the search (seed noise is the trainer's, not a mixture's)."""
    groups: dict[str, list[list[float]]] = {}
    for r in runs:
        groups.setdefault(r.condition.key(), []).append(list(r.traits[trait]["prompt_values"]))
    return stats.pooled_seed_variance(list(groups.values()))


def samples(runs: list[Run], trait: str) -> int | None:
    """The judged samples behind runs' prompt values (their binomial floor's n); None when a run does not say."""
    counts = [r.traits[trait].get("n_samples") for r in runs]
    return sum(counts) if counts and all(isinstance(n, int) and n > 0 for n in counts) else None


def estimate(runs: list[Run], trait: str, s: Settings, seed_var: stats.SeedVariance | None = None) -> dict | None:
    if not runs:
        return None
    est = stats.estimate(
        values(runs, trait), n_boot=s.n_boot, pooled=seed_var, n_samples=samples(runs, trait)
    ).to_dict()
    return {**est, "trials": [r.trial for r in runs]}


def effect_shown(runs: list[Run], b: Builder, trait: str, s: Settings, seeds: range | None = None):
    """The all-teacher effect D = tau1 - tau0 tested like a subset (sufficiency at min_effect); None when
    either baseline has no runs."""
    if not (runs_of(runs, b.all_teacher(), seeds) and runs_of(runs, b.all_clean(), seeds)):
        return None
    return sufficiency(runs, b.all_teacher(), b.all_clean(), trait, s, seeds)  # no gate: this is the gate


def trait_gate(runs: list[Run], b: Builder, trait: str, s: Settings, seeds: range | None = None) -> str | None:
    """stats.NO_TRAIT when the all-teacher effect was run and is not shown: no subset then explains it."""
    d = effect_shown(runs, b, trait, s, seeds)
    return stats.NO_TRAIT if d is not None and d.passed is False else None


def sufficiency(
    runs: list[Run],
    node: Condition,
    clean: Condition,
    trait: str,
    s: Settings,
    seeds: range | None = None,
    builder: Builder | None = None,
):
    """Sufficiency of `node` against `clean`; with `builder`, gated on the all-teacher effect (trait_gate)."""
    a, b = runs_of(runs, node, seeds), runs_of(runs, clean, seeds)
    return decisions.sufficiency(
        values(a, trait),
        values(b, trait),
        s.min_effect,
        s.alpha,
        trials=tuple(r.trial for r in a + b),
        n_boot=s.n_boot,
        pooled=pooled(runs, trait),
        gate=trait_gate(runs, builder, trait, s, seeds) if builder is not None else None,
        n_samples=(samples(a, trait), samples(b, trait)),
    )


def baselines_summary(runs: list[Run], b: Builder, s: Settings) -> dict:
    out = {}
    for trait in s.traits:
        seed_var = pooled(runs, trait)
        out[trait] = {
            "all_clean": estimate(runs_of(runs, b.all_clean()), trait, s, seed_var),
            "all_teacher": estimate(runs_of(runs, b.all_teacher()), trait, s, seed_var),
        }
    return out


def jsonable(obj: Any) -> Any:
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


# --- judge-corrected decisions (search.judge_corrected) ---------------------------------------------

JUDGE_CORRECTED_LIMITATION = (
    "decisions use per-prompt values corrected for the judge's errors (Rogan-Gladen, linear and unclipped, "
    "with the point sensitivity and specificity of traits.T.calibration); their bootstrap resamples seeds "
    "and eval prompts. The calibration set's uncertainty enters by re-deciding at the four corners of the "
    "sensitivity and specificity 95% intervals: a decision that changes at any corner is reported as no "
    "decision. A threshold rung stands only where every corner gives the same rung, and a fitted dose's "
    "interval spans every corner's; so does a Holm verdict (sufficient_holm); the minimal subsets use the "
    "point values. "
    "Each trial's corrected score (result.json: traits.T.calibration.corrected) carries the uncertainty in "
    "its interval"
)
CALIBRATION = (
    "the decision changes within the judge's calibration intervals; label more responses for traits.T.calibration"
)
CORNERS = (("low", "low"), ("low", "high"), ("high", "low"), ("high", "high"))  # (sensitivity, specificity)


def judge_corrected_runs(runs: list[Run], traits: tuple[str, ...], corner: tuple[str, str] | None = None) -> list[Run]:
    """Runs whose `traits` scores hold judge-corrected prompt values and score (see JUDGE_CORRECTED_LIMITATION);
    `corner` ("low" or "high" ends of the sensitivity and specificity intervals) replaces the point values.
    A corner where sensitivity + specificity - 1 is not above 0 raises ValueError (nothing is identifiable)."""
    out = []
    for r in runs:
        scores = dict(r.traits)
        for t in traits:
            if t not in scores:
                continue
            cal = scores[t].get("calibration") or {}
            corrected = cal.get("corrected") or {}
            if corrected.get("score") is None:
                reason = corrected.get("reason") or "its score carries no calibration (traits.T.calibration unset)"
                raise UserError(
                    f"search.judge_corrected: trial {r.trial}: {t} has no judge-corrected rate: {reason}. "
                    f"Improve the judge or its calibration set, or set search.judge_corrected: false"
                )
            which = corner or ("value", "value")
            sens, spec = cal["sensitivity"][which[0]], cal["specificity"][which[1]]
            values = rg_linear(list(scores[t]["prompt_values"]), sens, spec)
            score = corrected["score"] if corner is None else float(np.mean(values)) if values else None
            scores[t] = {**scores[t], "prompt_values": values, "score": score, "judge_corrected": True}
        out.append(replace(r, traits=scores))
    return out


def _robust(node: Any, corners: list[Any]) -> Any:
    """`node` (the point values' conclusions) with every decision whose verdict differs in any corner's
    conclusions (None: that corner identifies nothing) turned into no decision, for CALIBRATION."""
    if isinstance(node, list):
        return [
            _robust(v, [c[i] if isinstance(c, list) and i < len(c) else None for c in corners])
            for i, v in enumerate(node)
        ]
    if not isinstance(node, dict):
        return node
    out = {k: _robust(v, [c.get(k) if isinstance(c, dict) else None for c in corners]) for k, v in node.items()}
    if "test" in out and out.get("passed") is not None:
        verdicts = [c.get("passed") if isinstance(c, dict) else None for c in corners]
        if any(v != out["passed"] for v in verdicts):
            out["passed"], out["reason"] = None, CALIBRATION
            out["statement"] = f"Estimate only, no decision ({CALIBRATION}): {out.get('statement', '')}"
    return out


def _mark(node: Any, note: str) -> Any:
    """Every decision (a dict with `test` and `statement`) says that it is judge-corrected."""
    if isinstance(node, dict):
        out = {k: _mark(v, note) for k, v in node.items()}
        if isinstance(out.get("statement"), str) and "test" in out:
            out["statement"] = f"{out['statement']} [{note}]"
        return out
    if isinstance(node, list):
        return [_mark(v, note) for v in node]
    return node


@dataclass(frozen=True)
class JudgeCorrected:
    """A search that decides on judge-corrected values of `traits` (search.judge_corrected: true)."""

    inner: Search
    traits: tuple[str, ...]

    @property
    def mode(self) -> str:
        return self.inner.mode

    def next_round(self, runs: list[Run]) -> list[Request]:
        return self.inner.next_round(judge_corrected_runs(runs, self.traits))

    def conclude(self, runs: list[Run]) -> dict:
        corners = []
        for corner in CORNERS:
            try:
                corners.append(self.inner.conclude(judge_corrected_runs(runs, self.traits, corner)))
            except ValueError:  # sensitivity + specificity - 1 reaches 0 there: that corner decides nothing
                corners.append(None)
        point = self.inner.conclude(judge_corrected_runs(runs, self.traits))
        robust = _robust(point, corners)
        if hasattr(self.inner, "robust_summaries"):  # summaries built from decisions (a threshold rung, a fitted dose)
            robust = self.inner.robust_summaries(robust, corners)
        out = _mark(robust, f"judge-corrected: {', '.join(self.traits)}")
        out["judge_corrected"] = {"traits": list(self.traits), "limitation": JUDGE_CORRECTED_LIMITATION}
        return out


def judge_corrected(cfg: SweepConfig, search: Search) -> Search:
    """The search itself, or wrapped to decide on judge-corrected values when search.judge_corrected is set."""
    if not cfg.search.judge_corrected:
        return search
    return JudgeCorrected(search, tuple(t for t, c in cfg.traits.items() if c.calibration))


def judge_corrected_problems(cfg: SweepConfig) -> list[str]:
    if not cfg.search.judge_corrected:
        return []
    if cfg.search.mode == "optuna":
        return [".search.judge_corrected: applies to the experiment modes, not optuna; remove it"]
    trait = settings_for(cfg).trait
    if trait in cfg.traits and not cfg.traits[trait].calibration:
        return [
            f".search.judge_corrected: the decided trait {trait!r} has no traits.{trait}.calibration "
            "(a labels file); set one or set judge_corrected: false"
        ]
    return []


# --- from a sweep's config ------------------------------------------------------------------------


def builder_for(cfg: SweepConfig) -> Builder:
    return Builder(cfg.base, cfg.search.teacher, cfg.search.mixture_seed, tuple(cfg.rules))


def settings_for(cfg: SweepConfig) -> Settings:
    s = cfg.search
    trait = s.trait or (s.objectives[0].trait if s.objectives else next(iter(cfg.traits)))
    return Settings(trait, tuple(cfg.traits), s.seeds, s.alpha, s.min_effect, s.margin)


# Config checks modes share. Each returns problems as `.search.KEY: ...` (paths from the top of the sweep file).


def needs_subsets(cfg: SweepConfig) -> list[str]:
    if cfg.search.subsets:
        return []
    return [f".search.subsets: mode {cfg.search.mode} needs `subsets:` (a list of subset names)"]


def one_subset(cfg: SweepConfig) -> list[str]:
    subsets = cfg.search.subsets
    return [f".search.subsets: mode {cfg.search.mode} works on one subset; got {subsets}"] if len(subsets) > 1 else []


def needs_ladder(cfg: SweepConfig) -> list[str]:
    ladder, mode = cfg.search.ladder, cfg.search.mode
    if not ladder:
        return [f".search.ladder: mode {mode} needs a ladder of fractions, e.g. [0.01, 0.1, 0.5, 1.0]"]
    if any(not 0.0 < f <= 1.0 for f in ladder):
        return [f".search.ladder: fractions must be in (0, 1]; got {ladder}"]
    if any(b <= a for a, b in zip(ladder, ladder[1:])):
        return [f".search.ladder: fractions must be strictly ascending (fixed in advance); got {ladder}"]
    return []
