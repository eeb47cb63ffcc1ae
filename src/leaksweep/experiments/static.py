"""Static modes: every condition is known up front, run as one round of conditions x seeds.

teacher_eval (the teachers' own scores, no training), full_swap (a student per source, and the
transfer table), patch_insert / patch_remove / drop / subset_scan (the leak map over a subset
family), fraction_sweep (a dose-response per subset over a fixed ladder). The all-clean (and, where
useful, all-teacher) baselines are always included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from leaksweep import decisions, dose
from leaksweep.config import SweepConfig
from leaksweep.experiments.conditions import (
    CALIBRATION,
    DOSE_RESPONSE,
    LEAK_MAP,
    TRANSFER,
    Builder,
    Condition,
    Request,
    Run,
    Settings,
    baselines_summary,
    builder_for,
    effect_shown,
    estimate,
    jsonable,
    missing,
    needs_subsets,
    pooled,
    refill_source,
    runs_of,
    samples,
    settings_for,
    sufficiency,
    trait_gate,
    values,
)

# What each built-in static mode concludes (analysis kinds); a StaticSearch of another mode names its own.
ANALYSES = {
    "teacher_eval": (TRANSFER,),
    "full_swap": (TRANSFER,),
    "patch_insert": (LEAK_MAP,),
    "patch_remove": (LEAK_MAP,),
    "drop": (LEAK_MAP,),
    "subset_scan": (LEAK_MAP,),
    "fraction_sweep": (DOSE_RESPONSE,),
}


@dataclass
class StaticSearch:
    """Every condition is known up front: one round of conditions x seeds, then conclusions."""

    mode: str
    conditions: list[Condition]
    builder: Builder
    settings: Settings
    subsets: list[str] = field(default_factory=list)
    ladder: list[float] = field(default_factory=list)
    analyses: tuple[str, ...] = ()  # what conclude computes; default: ANALYSES[mode]
    seeds: int | None = None  # seeds per condition; default: the settings' seeds

    def __post_init__(self) -> None:
        self.analyses = self.analyses or ANALYSES.get(self.mode, ())

    def next_round(self, runs: list[Run]) -> list[Request]:
        seeds = range(self.seeds) if self.seeds is not None else self.settings.seed_range
        return [req for c in self.conditions for req in missing(runs, c, seeds)]

    def conclude(self, runs: list[Run]) -> dict:
        s, b = self.settings, self.builder
        out: dict[str, Any] = {
            "mode": self.mode,
            "trials_spent": len(runs),
            "baselines": baselines_summary(runs, b, s),
            "alpha": s.alpha,
            "min_effect": s.min_effect,
            "margin": s.margin,
        }
        if LEAK_MAP in self.analyses:
            out["leak_map"] = leak_map(runs, b, s, self.subsets)
            out["all_teacher_effect"] = {t: jsonable(effect_shown(runs, b, t, s)) for t in s.traits}
        if DOSE_RESPONSE in self.analyses:
            out["dose_response"] = {sub: dose_response(runs, b, s, sub, self.ladder) for sub in self.subsets}
        if TRANSFER in self.analyses:
            out["students"] = self._by_source(runs, "full_swap")  # a student trained on all of one source's rollouts
            out["teachers"] = self._by_source(runs, "teacher_eval")  # the teacher's own score, no training
            out["transfer"] = transfer_table(runs, b, s, self.conditions)
        return out

    def robust_summaries(self, out: dict, corners: list[dict | None]) -> dict:
        """Judge-corrected conclusions (conditions.JudgeCorrected): see robust_dose_responses, robust_holm."""
        return robust_holm(robust_dose_responses(out, corners), corners)

    def _by_source(self, runs: list[Run], kind: str) -> dict:
        s = self.settings
        return {
            c.source: {t: estimate(runs_of(runs, c), t, s, pooled(runs, t)) for t in s.traits}
            for c in self.conditions
            if c.kind == kind
        }


def leak_map(runs: list[Run], b: Builder, s: Settings, subsets: list[str]) -> dict:
    """Per subset and trait: sufficient, necessary and leak-in decisions (Holm across subsets)."""
    table: dict[str, dict] = {}
    for trait in s.traits:
        table[trait] = {sub: _leak_map_row(runs, b, s, trait, sub) for sub in subsets}
        p_values = {
            sub: row["sufficient"]["p_value"]
            for sub, row in table[trait].items()
            if "sufficient" in row and row["sufficient"]["passed"] is not None
        }
        if p_values:
            for sub, rejected in decisions.holm(p_values, s.alpha).items():
                table[trait][sub]["sufficient_holm"] = rejected
    return table


def _leak_map_row(runs: list[Run], b: Builder, s: Settings, trait: str, sub: str) -> dict:
    row: dict[str, Any] = {}
    clean = b.all_clean()
    insert, remove = b.patch_insert(sub), b.patch_remove(sub)
    gate = trait_gate(runs, b, trait, s)  # no subset is necessary or sufficient for an effect not shown
    if runs_of(runs, insert) and runs_of(runs, clean):
        row["sufficient"] = sufficiency(runs, insert, clean, trait, s, builder=b).to_dict()
    if runs_of(runs, remove) and runs_of(runs, clean):
        a, c = runs_of(runs, remove), runs_of(runs, clean)
        necessary = decisions.necessity(
            values(a, trait),
            values(c, trait),
            s.margin,
            s.alpha,
            trials=tuple(r.trial for r in a + c),
            n_boot=s.n_boot,
            pooled=pooled(runs, trait),
            gate=gate,
            n_samples=(samples(a, trait), samples(c, trait)),
        )
        row["necessary"] = necessary.to_dict()
        for refill in ("none", "same", "clean"):
            d = runs_of(runs, b.drop(sub, refill_source(refill, b)))
            if d:
                leak = decisions.leak_in(
                    values(d, trait),
                    values(a, trait),
                    necessary,
                    s.alpha,
                    trials=tuple(r.trial for r in d + a),
                    n_boot=s.n_boot,
                    pooled=pooled(runs, trait),
                    gate=gate,
                    n_samples=(samples(d, trait), samples(a, trait)),
                    min_effect=s.min_effect,
                )
                # leak-in is the comparison itself; S's own necessity is reported beside it, not required
                row[f"leak_in_refill_{refill}"] = {**leak.to_dict(), "subset_necessary": necessary.passed}
    return row


def dose_response(runs: list[Run], b: Builder, s: Settings, subset: str, ladder: list[float]) -> dict:
    """Fixed-sequence threshold over the rungs that were run, plus a logistic fit with ED10/ED50.

    The rungs are tested at their nominal fractions; the fit is on the dose the students saw (see
    dose_points), so its doses (ED10, ED50, the min_effect dose) are shares of the subset's rows.
    """
    trait = s.trait
    clean = b.all_clean()
    present = {f: runs_of(runs, b.patch_insert(subset, f)) for f in ladder}
    present = {f: r for f, r in present.items() if r}
    seq = decisions.fixed_sequence_threshold(
        sorted(present),
        {f: values(r, trait) for f, r in present.items()},
        values(runs_of(runs, clean), trait),
        s.min_effect,
        s.alpha,
        trials_by_fraction={f: [x.trial for x in r] for f, r in present.items()},
        n_boot=s.n_boot,
        pooled=pooled(runs, trait),
        samples_by_fraction={f: samples(r, trait) for f, r in present.items()},
        clean_samples=samples(runs_of(runs, clean), trait),
    )
    points = [(0.0, runs_of(runs, clean))] + sorted(present.items())
    axis, doses = dose_points(points, subset)
    fit = fit_points(list(zip(doses, (r for _, r in points))), s)
    if fit.get("fit") != "skipped":
        fit["dose_axis"] = axis
    return {
        "subset": subset,
        "trait": trait,
        "ladder": ladder,
        "tested": sorted(present),
        "dose_axis": axis,
        "points": [
            {
                "fraction": f,
                "share": share(r, subset) if f else 0.0,
                **(estimate(r, trait, s, pooled(runs, trait)) or {}),
            }
            for f, r in points
        ],
        "threshold": seq,
        "fit": jsonable(fit),
        "trials_spent": sum(len(r) for _, r in points),
    }


def robust_holm(out: dict, corners: list[dict | None]) -> dict:
    """`out` with each leak map's Holm verdict (sufficient_holm) held to every calibration corner: one that
    differs at a corner (or a corner of None, which identifies nothing) becomes None, reason CALIBRATION."""
    table = out.get("leak_map") or {}
    if not table:
        return out
    out = {**out, "leak_map": {t: {sub: dict(row) for sub, row in rows.items()} for t, rows in table.items()}}
    for trait, rows in out["leak_map"].items():
        for sub, row in rows.items():
            if "sufficient_holm" not in row:
                continue
            at = [(((c or {}).get("leak_map") or {}).get(trait) or {}).get(sub) if c else None for c in corners]
            if any(a is None or a.get("sufficient_holm") != row["sufficient_holm"] for a in at):
                row["sufficient_holm"], row["sufficient_holm_reason"] = None, CALIBRATION
    return out


def robust_dose_responses(out: dict, corners: list[dict | None]) -> dict:
    """`out` with each dose-response's summaries held to every calibration corner's conclusions.

    Judge-corrected decisions are re-taken at the corners of the judge's sensitivity and specificity
    intervals (conditions.JudgeCorrected); the summaries built from them must hold there too. A threshold
    rung that is not the same at every corner (a corner of None identifies nothing) becomes no threshold,
    reason CALIBRATION, with each corner's rung; a fitted dose's interval is widened to span every
    corner's interval (a corner without a fitted dose leaves it unbounded above).
    """
    curves = out.get("dose_response") or {}
    if not curves:
        return out
    out = {**out, "dose_response": dict(curves)}
    for subset, dr in curves.items():
        at = [((c or {}).get("dose_response") or {}).get(subset) if c else None for c in corners]
        dr = out["dose_response"][subset] = {
            **dr,
            "threshold": dict(dr.get("threshold") or {}),
            "fit": dict(dr.get("fit") or {}),
        }
        seq = dr["threshold"]
        rungs = [(c.get("threshold") or {}).get("threshold") if c else None for c in at]
        if seq.get("threshold") is not None and any(c is None or r != seq["threshold"] for c, r in zip(at, rungs)):
            seq["statement"] = (
                f"Estimate only, no threshold ({CALIBRATION}): the rung is {seq['threshold']:g} at the point "
                f"values, " + ", ".join("none" if r is None else f"{r:g}" for r in rungs) + " at the corners"
            )
            seq.update(threshold=None, reason=CALIBRATION, threshold_point=seq["threshold"], threshold_by_corner=rungs)
        ed = dr["fit"].get("ed_min_effect")
        if isinstance(ed, dict):
            eds = [((c.get("fit") or {}).get("ed_min_effect") if c else None) for c in at]
            lows = [e.get("low") for e in eds if isinstance(e, dict) and e.get("low") is not None]
            highs = [e.get("high") if isinstance(e, dict) else None for e in eds]
            low = min([ed["low"], *lows]) if ed.get("low") is not None else None
            high = None if ed.get("high") is None or any(h is None for h in highs) else max([ed["high"], *highs])
            dr["fit"]["ed_min_effect"] = {
                **ed,
                "low": low,
                "high": high,
                "method": f"{ed.get('method', '')}; interval spans the judge calibration corners' intervals",
            }
    if "threshold" in out and len(curves) == 1:  # leak_threshold repeats its one curve's summaries at the top
        (dr,) = out["dose_response"].values()
        out["threshold"] = dr["threshold"].get("threshold")
        out["threshold_fitted"] = dr["fit"].get("ed_min_effect")
    return out


SHARE, FRACTION = "share", "fraction"  # dose axes: the realized share of the subset's rows, or the nominal fraction


def share(runs: list[Run], subset: str) -> float | None:
    """The share of `subset`'s rows from the teacher that these runs' manifests record (one condition: one
    manifest), or None when a run lacks it or they disagree."""
    seen = {r.shares.get(subset) for r in runs}
    return seen.pop() if len(seen) == 1 and None not in seen else None


def dose_points(points: list[tuple[float, list[Run]]], subset: str) -> tuple[str, list[float]]:
    """The dose of each (nominal fraction, runs) point: (SHARE, realized shares) when every point's runs
    record one, else (FRACTION, the nominal fractions).

    A prompt is patched when its hash-uniform falls below the fraction, so a subset of n prompts gets
    Binomial(n, f) of them: at a few prompts the share the student saw can be twice the fraction (7 of 512
    prompts at fraction 0.005), and a curve fitted on fractions puts its doses where no student trained.
    """
    shares = [0.0 if f == 0 else share(r, subset) for f, r in points]
    if all(x is not None for x in shares):
        return SHARE, [float(x) for x in shares]
    return FRACTION, [f for f, _ in points]


def fit_points(points: list[tuple[float, list[Run]]], s: Settings) -> dict:
    """The logistic fit (with the min_effect dose) over (dose, runs) points; {"fit": "skipped"} when off."""
    if not (s.fit_curves and len(points) >= 3):
        return {"fit": "skipped"}
    return dose.fit_dose_response(
        [f for f, _ in points],
        [float(sum(x.traits[s.trait]["score"] for x in r) / len(r)) for _, r in points],
        score_runs=[values(r, s.trait) for _, r in points],
        seed=0,
        min_effect=s.min_effect,
        weights=[len(r) for _, r in points],  # each point is the mean of its runs
    )


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
        student_runs = runs_of(runs, b.full_swap(c.source)) or (
            runs_of(runs, b.all_teacher()) if c.source == b.teacher else []
        )
        teacher_runs = runs_of(runs, c)
        if not (student_runs and teacher_runs and clean_runs):
            continue
        out[c.source] = {}
        for t in s.traits:
            mean = lambda rs: sum(r.traits[t]["score"] for r in rs) / len(rs)  # noqa: E731
            out[c.source][t] = decisions.transfer(mean(student_runs), mean(teacher_runs), mean(clean_runs))
    return out


# --- the static modes: each builds its conditions from the sweep's config (see registry.py) ---------


def _search(cfg: SweepConfig, conditions: list[Condition], with_subsets: bool = True, **more) -> StaticSearch:
    subsets = list(cfg.search.subsets) if with_subsets else []
    return StaticSearch(cfg.search.mode, conditions, builder_for(cfg), settings_for(cfg), subsets, **more)


def _baselines(b: Builder) -> list[Condition]:
    return [b.all_clean(), b.all_teacher()]


def teacher_eval(cfg: SweepConfig, sources: list[str]) -> StaticSearch:
    # seeds=1: nothing is trained, a teacher's rollouts are judged once
    return _search(cfg, [builder_for(cfg).teacher_eval(src) for src in sources], with_subsets=False, seeds=1)


def full_swap(cfg: SweepConfig, sources: list[str]) -> StaticSearch:
    b = builder_for(cfg)
    conds = _baselines(b) + [b.full_swap(src) for src in sources if src not in (b.clean, b.teacher)]
    conds += [b.teacher_eval(src) for src in sources] if cfg.search.teacher_eval else []
    return _search(cfg, conds, with_subsets=False)


def patch_insert(cfg: SweepConfig, sources: list[str]) -> StaticSearch:
    b = builder_for(cfg)
    return _search(cfg, _baselines(b) + [b.patch_insert(x) for x in cfg.search.subsets])


def patch_remove(cfg: SweepConfig, sources: list[str]) -> StaticSearch:
    b = builder_for(cfg)
    return _search(cfg, _baselines(b) + [b.patch_remove(x) for x in cfg.search.subsets])


def drop(cfg: SweepConfig, sources: list[str]) -> StaticSearch:
    b, subsets = builder_for(cfg), cfg.search.subsets
    conds = _baselines(b) + [b.patch_remove(x) for x in subsets]
    conds += [b.drop(x, refill_source(r, b)) for x in subsets for r in cfg.search.refill]
    return _search(cfg, conds)


def subset_scan(cfg: SweepConfig, sources: list[str]) -> StaticSearch:
    b = builder_for(cfg)
    return _search(cfg, _baselines(b) + [c for x in cfg.search.subsets for c in (b.patch_insert(x), b.patch_remove(x))])


def fraction_sweep(cfg: SweepConfig, sources: list[str]) -> StaticSearch:
    b, s = builder_for(cfg), cfg.search
    return _search(
        cfg, _baselines(b) + [b.patch_insert(x, f) for x in s.subsets for f in s.ladder], ladder=list(s.ladder)
    )


def check_drop(cfg: SweepConfig) -> list[str]:
    problems = needs_subsets(cfg)
    if not cfg.search.refill:
        problems.append(".search.refill: give at least one of none, same, clean")
    if cfg.train.max_steps is None:
        problems.append(
            ".train.max_steps: mode drop compares datasets of different sizes; set a fixed number "
            "of optimizer steps (e.g. max_steps: 300)"
        )
    return problems
