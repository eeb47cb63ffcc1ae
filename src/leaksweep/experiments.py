"""Experiment types as conditions, and the searches that choose which conditions to run.

A *condition* is one mixture plan (or a teacher eval); a *run* is one finished trial of a condition
with one seed. A search is a small state machine replayed from the runs so far:
`next_round(runs)` returns the (condition, seed) pairs still needed (empty when finished) and
`conclude(runs)` turns the runs into conclusions, each stating its test, alpha, margin and trials.
Because a search is replayed from runs rather than holding state, a sweep resumes after any stop.

Static modes (every condition known up front): teacher_eval, full_swap, patch_insert,
patch_remove, drop, fraction_sweep, subset_scan. Adaptive modes: leak_threshold (bisection on the
ladder, then fixed-sequence testing on the rungs it ran) and minimal_subset (group bisection with
confirmation on fresh seeds). The all-clean (and, where useful, all-teacher) baselines are
always included. This module never imports optuna or the model stack: sweep.py executes rounds,
and benchmarks execute them in memory against simulated surfaces.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from leaksweep import stats
from leaksweep.config import Rule, SweepConfig
from leaksweep.data.mixture import MixturePlan
from leaksweep.schema import to_dict
from leaksweep.data.subsets import HALF_SEP

ALL = "all"  # the implicit subset of every prompt, for global fraction sweeps
CONFIRM_SEED_OFFSET = 1000  # confirmation seeds never overlap the search's seeds


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
        return json.dumps(self.to_dict(), sort_keys=True)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind, "subset": self.subset, "fraction": self.fraction, "refill": self.refill,
            "source": self.source, "plan": {"base": self.plan.base, "mixture_seed": self.plan.mixture_seed,
                                            "rules": to_dict(list(self.plan.rules))},
        }

    @staticmethod
    def from_dict(raw: dict) -> "Condition":
        plan = raw["plan"]
        rules = tuple(Rule(**r) for r in plan["rules"])
        return Condition(raw["kind"], MixturePlan(plan["base"], rules, plan["mixture_seed"]), raw.get("subset"),
                         raw.get("fraction"), raw.get("refill"), raw.get("source"))

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


@dataclass(frozen=True)
class Run:
    """One finished trial: its condition, seed, trial number and trait results.

    traits[name] holds at least `score` and `prompt_values` (per eval prompt, the mean judge value).
    """

    condition: Condition
    seed: int
    trial: int
    traits: dict[str, dict]


Request = tuple[Condition, int]


class Search(Protocol):
    mode: str

    def next_round(self, runs: list[Run]) -> list[Request]: ...

    def conclude(self, runs: list[Run]) -> dict: ...


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


def _estimate(runs: list[Run], trait: str, s: Settings, seed_var: stats.SeedVariance | None = None) -> dict | None:
    if not runs:
        return None
    est = stats.estimate(values(runs, trait), n_boot=s.n_boot, pooled=seed_var).to_dict()
    return {**est, "trials": [r.trial for r in runs]}


def sufficiency(runs: list[Run], node: Condition, clean: Condition, trait: str, s: Settings, seeds: range | None = None):
    a, b = runs_of(runs, node, seeds), runs_of(runs, clean, seeds)
    return stats.sufficiency(values(a, trait), values(b, trait), s.min_effect, s.alpha,
                             trials=tuple(r.trial for r in a + b), n_boot=s.n_boot, pooled=pooled(runs, trait))


def baselines_summary(runs: list[Run], b: Builder, s: Settings) -> dict:
    out = {}
    for trait in s.traits:
        seed_var = pooled(runs, trait)
        out[trait] = {"all_clean": _estimate(runs_of(runs, b.all_clean()), trait, s, seed_var),
                      "all_teacher": _estimate(runs_of(runs, b.all_teacher()), trait, s, seed_var)}
    return out


# --- static searches ------------------------------------------------------------------------------


@dataclass
class StaticSearch:
    """Every condition is known up front: one round of conditions x seeds, then conclusions."""

    mode: str
    conditions: list[Condition]
    builder: Builder
    settings: Settings
    subsets: list[str] = field(default_factory=list)
    ladder: list[float] = field(default_factory=list)

    def next_round(self, runs: list[Run]) -> list[Request]:
        seeds = self.settings.seed_range
        if self.mode == "teacher_eval":
            seeds = range(1)  # no training: a teacher's rollouts are judged once
        return [req for c in self.conditions for req in missing(runs, c, seeds)]

    def conclude(self, runs: list[Run]) -> dict:
        s, b = self.settings, self.builder
        out: dict[str, Any] = {"mode": self.mode, "trials_spent": len(runs), "baselines": baselines_summary(runs, b, s),
                               "alpha": s.alpha, "min_effect": s.min_effect, "margin": s.margin}
        if self.mode in ("patch_insert", "patch_remove", "drop", "subset_scan"):
            out["leak_map"] = leak_map(runs, b, s, self.subsets)
        if self.mode == "fraction_sweep":
            out["dose_response"] = {sub: dose_response(runs, b, s, sub, self.ladder) for sub in self.subsets}
        if self.mode in ("full_swap", "teacher_eval"):
            by_source = lambda kind: {  # noqa: E731
                c.source: {t: _estimate(runs_of(runs, c), t, s, pooled(runs, t)) for t in s.traits}
                for c in self.conditions if c.kind == kind
            }
            out["students"] = by_source("full_swap")  # a student trained on all of one source's rollouts
            out["teachers"] = by_source("teacher_eval")  # the teacher's own score, no training
            out["transfer"] = transfer_table(runs, b, s, self.conditions)
        return out


def leak_map(runs: list[Run], b: Builder, s: Settings, subsets: list[str]) -> dict:
    """Per subset and trait: sufficient, necessary and leak-in decisions (Holm across subsets)."""
    clean = b.all_clean()
    table: dict[str, dict] = {}
    for trait in s.traits:
        table[trait] = {}
        for sub in subsets:
            row: dict[str, Any] = {}
            insert, remove = b.patch_insert(sub), b.patch_remove(sub)
            if runs_of(runs, insert) and runs_of(runs, clean):
                row["sufficient"] = sufficiency(runs, insert, clean, trait, s).to_dict()
            if runs_of(runs, remove) and runs_of(runs, clean):
                a, c = runs_of(runs, remove), runs_of(runs, clean)
                necessary = stats.necessity(values(a, trait), values(c, trait), s.margin, s.alpha,
                                            trials=tuple(r.trial for r in a + c), n_boot=s.n_boot,
                                            pooled=pooled(runs, trait))
                row["necessary"] = necessary.to_dict()
                for refill in ("none", "same", "clean"):
                    drop = b.drop(sub, refill_source(refill, b))
                    d = runs_of(runs, drop)
                    if d:
                        row[f"leak_in_refill_{refill}"] = stats.leak_in(
                            values(d, trait), values(a, trait), necessary, s.alpha,
                            trials=tuple(r.trial for r in d + a), n_boot=s.n_boot, pooled=pooled(runs, trait)).to_dict()
            table[trait][sub] = row
        p_values = {sub: row["sufficient"]["p_value"] for sub, row in table[trait].items() if "sufficient" in row}
        if p_values:
            for sub, rejected in stats.holm(p_values, s.alpha).items():
                table[trait][sub]["sufficient_holm"] = rejected
    return table


def dose_response(runs: list[Run], b: Builder, s: Settings, subset: str, ladder: list[float]) -> dict:
    """Fixed-sequence threshold over the rungs that were run, plus a logistic fit with ED10/ED50."""
    trait = s.trait
    clean = b.all_clean()
    present = {f: runs_of(runs, b.patch_insert(subset, f)) for f in ladder}
    present = {f: r for f, r in present.items() if r}
    seq = stats.fixed_sequence_threshold(
        sorted(present), {f: values(r, trait) for f, r in present.items()}, values(runs_of(runs, clean), trait),
        s.min_effect, s.alpha, trials_by_fraction={f: [x.trial for x in r] for f, r in present.items()}, n_boot=s.n_boot,
        pooled=pooled(runs, trait),
    )
    points = [(0.0, runs_of(runs, clean))] + sorted(present.items())
    fit = stats.fit_dose_response(
        [f for f, _ in points], [float(sum(x.traits[trait]["score"] for x in r) / len(r)) for _, r in points],
        score_runs=[values(r, trait) for _, r in points], seed=0,
    ) if s.fit_curves and len(points) >= 3 else {"fit": "skipped"}
    return {
        "subset": subset, "trait": trait, "ladder": ladder, "tested": sorted(present),
        "points": [{"fraction": f, **(_estimate(r, trait, s, pooled(runs, trait)) or {})} for f, r in points],
        "threshold": seq, "fit": _jsonable(fit),
        "trials_spent": sum(len(r) for _, r in points),
    }


def transfer_table(runs: list[Run], b: Builder, s: Settings, conditions: list[Condition]) -> dict:
    """Teacher vs student: offset tau_S - tau_T and transfer ratio (tau_S - tau_0)/(tau_T - tau_0).

    tau_T is the teacher's own score (teacher_eval), tau_S the student trained on all of that
    teacher's rollouts (full_swap or the all-teacher baseline), tau_0 the all-clean student.
    """
    out: dict[str, dict] = {}
    clean_runs = runs_of(runs, b.all_clean())
    for c in conditions:
        if c.kind != "teacher_eval":
            continue
        student_runs = runs_of(runs, b.full_swap(c.source)) or (runs_of(runs, b.all_teacher()) if c.source == b.teacher else [])
        teacher_runs = runs_of(runs, c)
        if not (student_runs and teacher_runs and clean_runs):
            continue
        out[c.source] = {}
        for t in s.traits:
            mean = lambda rs: sum(r.traits[t]["score"] for r in rs) / len(rs)  # noqa: E731
            out[c.source][t] = stats.transfer(mean(student_runs), mean(teacher_runs), mean(clean_runs))
    return out


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


# --- adaptive: leak threshold ---------------------------------------------------------------------


@dataclass
class ThresholdSearch:
    """Bisection on a ladder fixed in advance (ascending fractions).

    Test the top rung first (no leak there: stop, "no leak"); then bisect between the highest
    rung known not to leak and the lowest known to leak, assuming a monotone dose-response.
    Each test is a sufficiency test of patch_insert(subset, f) against the all-clean baseline.
    The threshold is then reported by fixed-sequence testing over the rungs actually run.
    """

    subset: str
    ladder: list[float]
    builder: Builder
    settings: Settings
    mode: str = "leak_threshold"

    def _passed(self, runs: list[Run], f: float) -> bool:
        return sufficiency(runs, self.builder.patch_insert(self.subset, f), self.builder.all_clean(),
                           self.settings.trait, self.settings).passed

    def next_round(self, runs: list[Run]) -> list[Request]:
        b, seeds = self.builder, self.settings.seed_range
        first = [req for c in (b.all_clean(), b.all_teacher(), b.patch_insert(self.subset, self.ladder[-1]))
                 for req in missing(runs, c, seeds)]
        if first:
            return first
        if not self._passed(runs, self.ladder[-1]):
            return []  # no leak even with the whole subset from the teacher
        lo, hi = -1, len(self.ladder) - 1  # ladder[lo] assumed not to leak (lo = -1: fraction 0), ladder[hi] leaks
        while hi - lo > 1:
            mid = (lo + hi) // 2
            need = missing(runs, b.patch_insert(self.subset, self.ladder[mid]), seeds)
            if need:
                return need
            lo, hi = (lo, mid) if self._passed(runs, self.ladder[mid]) else (mid, hi)
        return []

    def conclude(self, runs: list[Run]) -> dict:
        s, b = self.settings, self.builder
        grid_trials = (len(self.ladder) + 2) * s.seeds  # every rung plus both baselines
        result = dose_response(runs, b, s, self.subset, self.ladder)
        return {
            "mode": self.mode, "trials_spent": len(runs), "grid_trials": grid_trials,
            "baselines": baselines_summary(runs, b, s), "dose_response": {self.subset: result},
            "threshold": result["threshold"]["threshold"], "alpha": s.alpha, "min_effect": s.min_effect,
        }


# --- adaptive: minimal leaking subset -------------------------------------------------------------


@dataclass
class MinimalSubsetSearch:
    """Group bisection: test S, split it in stratified halves, test each, recurse into sufficient ones.

    A sufficient node whose halves are both insufficient is minimal at that granularity (the trait
    is "distributed within" it); at `max_depth` a sufficient node is minimal by fiat. Each minimal
    node is then confirmed on fresh seeds that played no part in the search.
    """

    subset: str
    max_depth: int
    confirm_seeds: int
    builder: Builder
    settings: Settings
    mode: str = "minimal_subset"

    def _confirm_range(self) -> range:
        return range(CONFIRM_SEED_OFFSET, CONFIRM_SEED_OFFSET + self.confirm_seeds)

    def _walk(self, runs: list[Run]) -> tuple[list[Request], dict[str, bool], list[str]]:
        """Replay the bisection: (requests still needed, decisions so far, minimal nodes when done)."""
        b, s, seeds = self.builder, self.settings, self.settings.seed_range
        need = missing(runs, b.all_clean(), seeds) + missing(runs, b.all_teacher(), seeds)
        decided: dict[str, bool] = {}
        frontier = [self.subset]
        while frontier:
            wanted = [req for node in frontier for req in missing(runs, b.patch_insert(node), seeds)]
            if need or wanted:
                return need + wanted, decided, []
            for node in frontier:
                decided[node] = sufficiency(runs, b.patch_insert(node), b.all_clean(), s.trait, s, seeds).passed
            frontier = [child for node in frontier if decided[node] and _depth(node) < self.max_depth
                        for child in _children(node)]
        minimal = [
            node for node, passed in decided.items()
            if passed and (_depth(node) >= self.max_depth or not any(decided[c] for c in _children(node)))
        ]
        return [], decided, sorted(minimal)

    def next_round(self, runs: list[Run]) -> list[Request]:
        need, _, minimal = self._walk(runs)
        if need:
            return need
        fresh = self._confirm_range()
        confirm = missing(runs, self.builder.all_clean(), fresh)
        for node in minimal:
            confirm += missing(runs, self.builder.patch_insert(node), fresh)
        return confirm

    def conclude(self, runs: list[Run]) -> dict:
        b, s = self.builder, self.settings
        _, decided, minimal = self._walk(runs)
        search_runs = [r for r in runs if r.seed < CONFIRM_SEED_OFFSET]
        tests = {
            node: sufficiency(search_runs, b.patch_insert(node), b.all_clean(), s.trait, s, s.seed_range).to_dict()
            for node in decided
        }
        confirmations = {
            node: sufficiency(runs, b.patch_insert(node), b.all_clean(), s.trait, s, self._confirm_range()).to_dict()
            for node in minimal
        }
        return {
            "mode": self.mode, "subset": self.subset, "trait": s.trait, "trials_spent": len(runs),
            "baselines": baselines_summary(runs, b, s), "tests": tests, "minimal": minimal,
            "distributed": [n for n in minimal if _depth(n) < self.max_depth],
            "confirmed": {n: c["passed"] for n, c in confirmations.items()}, "confirmations": confirmations,
            "no_leak": not decided.get(self.subset, False), "alpha": s.alpha, "min_effect": s.min_effect,
        }


def _depth(node: str) -> int:
    return node.count(HALF_SEP)


def _children(node: str) -> list[str]:
    return [f"{node}{HALF_SEP}0", f"{node}{HALF_SEP}1"]


# --- choosing the search --------------------------------------------------------------------------


def builder_for(cfg: SweepConfig) -> Builder:
    return Builder(cfg.base, cfg.search.teacher, cfg.search.mixture_seed, tuple(cfg.rules))


def settings_for(cfg: SweepConfig) -> Settings:
    s = cfg.search
    trait = s.trait or (s.objectives[0].trait if s.objectives else next(iter(cfg.traits)))
    return Settings(trait, tuple(cfg.traits), s.seeds, s.alpha, s.min_effect, s.margin)


def make_search(cfg: SweepConfig, sources: list[str]) -> Search:
    """The search for a sweep's `search.mode` (all modes but `optuna`, which sweep.py runs itself)."""
    s, b, st = cfg.search, builder_for(cfg), settings_for(cfg)
    base = [b.all_clean(), b.all_teacher()]
    subsets = list(s.subsets)
    if s.mode == "teacher_eval":
        return StaticSearch(s.mode, [b.teacher_eval(src) for src in sources], b, st)
    if s.mode == "full_swap":
        conds = [b.all_clean(), b.all_teacher()] + [b.full_swap(src) for src in sources if src not in (b.clean, b.teacher)]
        conds += [b.teacher_eval(src) for src in sources] if s.teacher_eval else []
        return StaticSearch(s.mode, conds, b, st)
    if s.mode == "patch_insert":
        return StaticSearch(s.mode, base + [b.patch_insert(x) for x in subsets], b, st, subsets)
    if s.mode == "patch_remove":
        return StaticSearch(s.mode, base + [b.patch_remove(x) for x in subsets], b, st, subsets)
    if s.mode == "drop":
        conds = base + [b.patch_remove(x) for x in subsets]
        conds += [b.drop(x, refill_source(r, b)) for x in subsets for r in s.refill]
        return StaticSearch(s.mode, conds, b, st, subsets)
    if s.mode == "subset_scan":
        conds = base + [c for x in subsets for c in (b.patch_insert(x), b.patch_remove(x))]
        return StaticSearch(s.mode, conds, b, st, subsets)
    if s.mode == "fraction_sweep":
        conds = base + [b.patch_insert(x, f) for x in subsets for f in s.ladder]
        return StaticSearch(s.mode, conds, b, st, subsets, list(s.ladder))
    if s.mode == "leak_threshold":
        return ThresholdSearch(subsets[0], list(s.ladder), b, st)
    if s.mode == "minimal_subset":
        return MinimalSubsetSearch(subsets[0], s.max_depth, s.confirm_seeds, b, st)
    raise ValueError(f"no search for mode {s.mode!r}")  # config validation lists the modes


def drive(search: Search, execute, max_rounds: int = 100) -> tuple[list[Run], dict]:
    """Run a search to the end with `execute(requests) -> list[Run]`; returns all runs and conclusions."""
    runs: list[Run] = []
    for _ in range(max_rounds):
        requests = search.next_round(runs)
        if not requests:
            break
        runs += execute(requests)
    return runs, search.conclude(runs)
