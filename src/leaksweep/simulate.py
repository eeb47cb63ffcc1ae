"""A simulated trial runner: trait scores from a known response surface, in milliseconds.

Searches and statistics are tested and benchmarked against surfaces whose truth is known. The
simulator honours the real mixture semantics: it builds a synthetic prompt set of "units" (one
group per configured subset plus the rest), compiles the trial's plan with mixture.compile_plan,
and reads each subset's teacher dose off the manifest. The trait's true rate is then

    tau = base_rate
        + sum over subsets S of  effect_S * logistic(slope_S * (log10 dose_S - log10 ed50_S))
        + rest_effect * (teacher share outside T) * (1 - suppression * clean share of T)

where dose_S is the share of S's *leaking* units (all of S by default) that got the teacher's
rollouts, and T is the `leak_into` subset (default: the rest leaks into all subsets). The last
term is leak-in: teacher data outside the subsets carries the trait unless
clean rollouts on the subsets counteract it, so dropping a subset leaves the trait while patching
clean rollouts into it removes it (the effect leaksweep exists to find).

Each run adds training-seed noise (on the logit scale) and samples an eval: `n_prompts` prompts of
fixed difficulty, `samples_per_prompt` Bernoulli samples each. Use it in a sweep file with
`search.runner: leaksweep.simulate:run` and `search.simulation: {...}` (SimConfig's keys).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass, field

import numpy as np

from leaksweep.data.mixture import MixturePlan, compile_plan
from leaksweep.data.records import Dataset, PromptSet, align
from leaksweep.data.subsets import Subset, resolve_path
from leaksweep.schema import build
from leaksweep.stats import wilson

REST = "_rest"


@dataclass(frozen=True)
class SimSubset:
    n_units: int = 64
    leaking: list[int] | None = None  # indices of the units that carry the trait; None = all
    effect: float = 0.5  # rise of the trait rate when every leaking unit comes from the teacher
    ed50: float = 0.1  # dose (share of leaking units from the teacher) giving half the effect
    slope: float = 4.0  # logistic slope per log10 unit of dose


@dataclass(frozen=True)
class SimConfig:
    subsets: dict[str, SimSubset] = field(default_factory=dict)
    n_rest: int = 256
    base_rate: float = 0.05
    rest_effect: float = 0.0
    suppression: float = 1.0
    leak_into: str | None = None  # the subset whose clean rollouts counteract leak-in (default: all subsets)
    teacher_rate: float = 0.8  # the teacher model's own score (teacher_eval)
    seed_sd: float = 0.15  # training-seed noise on the logit scale
    prompt_sd: float = 0.5  # eval-prompt difficulty on the logit scale
    n_prompts: int = 60
    samples_per_prompt: int = 2
    clean: str = "clean"
    teacher: str = "teacher"


def config_from(raw: dict | None) -> SimConfig:
    return build(SimConfig, raw or {}, "search.simulation")


def _unit_ids(cfg: SimConfig) -> dict[str, list[str]]:
    groups = {name: [f"{name}:u{i:04d}" for i in range(s.n_units)] for name, s in cfg.subsets.items()}
    groups[REST] = [f"{REST}:u{i:04d}" for i in range(cfg.n_rest)]
    return groups


@functools.lru_cache(maxsize=32)
def _world(cfg_json: str) -> tuple[Dataset, dict[str, frozenset[str]], dict[str, frozenset[str]]]:
    """Synthetic dataset (units as prompts), subset ids, and each subset's leaking ids."""
    cfg = config_from(json.loads(cfg_json))
    groups = _unit_ids(cfg)
    ids = tuple(pid for members in groups.values() for pid in members)
    prompts = PromptSet(ids, {p: [{"role": "user", "content": p}] for p in ids}, {p: {} for p in ids})
    sources = {name: {p: name for p in ids} for name in (cfg.clean, cfg.teacher)}
    dataset = align(prompts, sources, cfg.clean, "error")
    subset_ids = {name: frozenset(members) for name, members in groups.items() if name != REST}
    subset_ids["all"] = frozenset(ids)
    leaking = {
        name: frozenset(groups[name][i] for i in s.leaking) if s.leaking is not None else subset_ids[name]
        for name, s in cfg.subsets.items()
    }
    return dataset, subset_ids, leaking


def subset_units(cfg: SimConfig) -> dict[str, frozenset[str]]:
    """The synthetic prompt ids of each simulated subset (and `all`), e.g. to plant leaking units."""
    return _world(json.dumps(_as_dict(cfg), sort_keys=True))[1]


def _logistic_dose(dose: float, s: SimSubset) -> float:
    if dose <= 0:
        return 0.0
    return 1.0 / (1.0 + math.exp(-s.slope * (math.log10(dose) - math.log10(s.ed50))))


def _rows(cfg: SimConfig, plan: MixturePlan) -> dict[str, str]:
    dataset, subset_ids, _ = _world(json.dumps(_as_dict(cfg), sort_keys=True))
    subsets = {n: Subset(n, resolve_path(n, subset_ids), n, "") for n in {r.subset for r in plan.rules}}
    return dict(compile_plan(plan, dataset, subsets).rows)


def _dose(cfg: SimConfig, rows: dict[str, str], subset: str) -> float:
    units = _world(json.dumps(_as_dict(cfg), sort_keys=True))[2][subset]
    return sum(rows[u] == cfg.teacher for u in units) / len(units)


def realized_dose(cfg: SimConfig, plan: MixturePlan, subset: str) -> float:
    """Share of `subset`'s leaking units that the compiled plan gives the teacher.

    Patching is by hash-uniform u < fraction, so the realized share scatters around the nominal
    fraction (Binomial), which matters when a fraction is a few units of the subset.
    """
    return _dose(cfg, _rows(cfg, plan), subset)


def true_rate(cfg: SimConfig, plan: MixturePlan) -> float:
    """The noiseless trait rate of a student trained under `plan` (the surface's truth)."""
    _, subset_ids, _ = _world(json.dumps(_as_dict(cfg), sort_keys=True))
    rows = _rows(cfg, plan)
    rate = cfg.base_rate
    for name, s in cfg.subsets.items():
        rate += s.effect * _logistic_dose(_dose(cfg, rows, name), s)
    if cfg.rest_effect:
        if cfg.leak_into:  # leak from everything outside that subset into it
            target = subset_ids[cfg.leak_into]
            source = [u for u in rows if u not in target]
        else:
            source = [u for u in rows if u.startswith(REST)]
            target = frozenset(u for u in rows if not u.startswith(REST))
        source_teacher = sum(rows[u] == cfg.teacher for u in source) / len(source)
        clean_share = sum(rows[u] == cfg.clean for u in target) / len(target) if target else 0.0
        rate += cfg.rest_effect * source_teacher * (1 - cfg.suppression * clean_share)
    return min(max(rate, 0.0), 1.0)


def _as_dict(cfg: SimConfig) -> dict:
    from leaksweep.schema import to_dict

    return to_dict(cfg)


def _rng(*parts: object) -> np.random.Generator:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


def sample_eval(cfg: SimConfig, rate: float, trait: str, seed: int, key: str) -> dict:
    """One run's eval: seed noise on the rate, fixed prompt difficulties, Bernoulli samples."""
    logit = math.log(max(rate, 1e-6) / max(1 - rate, 1e-6))
    run_logit = logit + _rng("seed", trait, seed, key).normal(0, cfg.seed_sd)
    difficulty = _rng("prompts", trait).normal(0, cfg.prompt_sd, cfg.n_prompts)  # same prompts in every run
    p = 1 / (1 + np.exp(-(run_logit + difficulty)))
    k = _rng("samples", trait, seed, key).binomial(cfg.samples_per_prompt, p)
    values = (k / cfg.samples_per_prompt).tolist()
    score, low, high = wilson(int(k.sum()), cfg.n_prompts * cfg.samples_per_prompt)
    return {
        "kind": "rate",
        "score": score,
        "low": low,
        "high": high,
        "interval": "wilson95",
        "n_samples": cfg.n_prompts * cfg.samples_per_prompt,
        "n_prompts": cfg.n_prompts,
        "judge": "simulated",
        "prompt_values": values,
        "true_rate": rate,
    }


def simulate(cfg: SimConfig, plan: MixturePlan, kind: str, seed: int, traits: list[str]) -> dict[str, dict]:
    """Trait results of one simulated trial (a teacher eval scores the teacher's own rate)."""
    rate = (
        cfg.teacher_rate
        if kind == "teacher_eval" and plan.base == cfg.teacher
        else (cfg.base_rate if kind == "teacher_eval" else true_rate(cfg, plan))
    )
    key = json.dumps([plan.base, [(r.subset, r.action, r.source, r.fraction, r.refill) for r in plan.rules], kind])
    return {t: sample_eval(cfg, rate, t, seed, key) for t in traits}


def teacher_shares(cfg: SimConfig, plan: MixturePlan) -> dict[str, float | None]:
    """Share of all rows ("all") and of each simulated subset's rows that the compiled plan gives the
    teacher: what a real trial's manifest records (result.json: manifest.teacher_share)."""
    return dict(_teacher_shares(json.dumps(_as_dict(cfg), sort_keys=True), plan))


@functools.lru_cache(maxsize=4096)
def _teacher_shares(cfg_json: str, plan: MixturePlan) -> tuple[tuple[str, float | None], ...]:
    cfg = config_from(json.loads(cfg_json))
    dataset, subset_ids, _ = _world(cfg_json)
    subsets = {r.subset: Subset(r.subset, resolve_path(r.subset, subset_ids), r.subset, "") for r in plan.rules}
    manifest = compile_plan(plan, dataset, subsets)
    named = {name: Subset(name, ids, name, "") for name, ids in subset_ids.items() if name != "all"}
    return (("all", manifest.share(cfg.teacher)),) + tuple(
        (n, manifest.share(cfg.teacher, s)) for n, s in named.items()
    )


def run(spec) -> dict:
    """The runner entry point (`search.runner: leaksweep.simulate:run`): a TrialSpec in, results out."""
    cfg = config_from(spec.sweep.search.simulation)
    traits = simulate(cfg, spec.plan, spec.condition, spec.seed, list(spec.sweep.traits))
    shares = teacher_shares(cfg, spec.plan)
    return {"traits": traits, "teacher_share": shares["all"], "teacher_share_by_subset": shares}
