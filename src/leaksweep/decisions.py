"""Decisions built on the stats module's estimates: sufficiency, necessity (two one-sided tests),
leak-in, Holm across subsets, the fixed-sequence leak threshold, and teacher-vs-student transfer.

Every decision states its test, alpha, margin and trials. It is made only where the data can make
it: with one seed per condition and no pooled seed variance, or when the all-teacher effect itself
is not shown (a `gate`), a decision is an estimate only (`passed` None, with the reason). Rate
intervals are floored at the binomial width of the pooled samples (leaksweep.binomial).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from leaksweep.stats import (
    ONE_SEED,
    Counts,
    Estimate,
    SeedVariance,
    condition_mean,
    condition_n,
    condition_newcombe,
    condition_newcombe_p,
    contrast,
    is_rate,
    percentile_interval,
    run_sizes,
    seed_variance_known,
    tiny_eval_note,
    z_for,
)

# --- decisions ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """The outcome of one pre-stated test, with the numbers behind it."""

    test: str
    alpha: float
    margin: float  # the min_effect or equivalence margin the test used
    estimate: Estimate  # of the difference the test is about; interval at level 1 - 2 * alpha
    p_value: float
    passed: bool | None  # None: no decision, an estimate only (`reason` says why)
    trials: tuple[int, ...]
    statement: str
    reason: str | None = None  # why there is no decision (ONE_SEED, NO_TRAIT), when there is none

    def to_dict(self) -> dict:
        return {**asdict(self), "estimate": self.estimate.to_dict(), "trials": list(self.trials)}


def _share_at_or_below(draws: np.ndarray, x: float) -> float:
    """Bootstrap p-value: share of draws <= x, with +1 smoothing so it is never 0."""
    return (1 + int(np.count_nonzero(draws <= x))) / (len(draws) + 1)


def _share_at_or_above(draws: np.ndarray, x: float) -> float:
    return (1 + int(np.count_nonzero(draws >= x))) / (len(draws) + 1)


def _difference(
    a_runs, b_runs, alpha: float, n_boot: int, seed: int, pooled: SeedVariance | None = None, counts: Counts = ()
) -> tuple[Estimate, np.ndarray]:
    """Estimate of mean(a) - mean(b) with its (1 - 2 alpha) interval, and the bootstrap draws.

    The interval's low end is the one-sided (1 - alpha) lower bound, its high end the upper bound.
    """
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha {alpha} outside (0, 0.5)")
    draws = contrast(a_runs, b_runs, n_boot, seed, pooled)
    level = 1 - 2 * alpha
    low, high = percentile_interval(draws, level)
    n_runs, n_prompts = run_sizes(a_runs, b_runs)
    method = f"percentile bootstrap of the difference, runs then prompts, conditions independent ({n_boot} draws)"
    value = condition_mean(a_runs) - condition_mean(b_runs)
    note = None
    if is_rate(a_runs, b_runs):
        n_low, n_high = condition_newcombe(a_runs, b_runs, z_for(level), counts)
        if n_low < low or n_high > high:
            low, high = min(low, n_low), max(high, n_high)
            method += "; floored at Newcombe's binomial interval of the pooled samples"
        note = tiny_eval_note(condition_n(a_runs, counts, 0), condition_n(b_runs, counts, 1))
    return Estimate(value, low, high, level, method, n_runs, n_prompts, note), draws


def _binomial_p(a_runs, b_runs, x: float, above: bool, counts: Counts = ()) -> float:
    """The binomial floor's one-sided p (0 when the values are not rates: the bootstrap's p stands)."""
    return condition_newcombe_p(a_runs, b_runs, x, above, counts) if is_rate(a_runs, b_runs) else 0.0


def _undecided(a_runs, b_runs, pooled: SeedVariance | None, gate: str | None) -> str | None:
    """Why a decision is not made (estimate only), or None: no trait to explain, or one seed per condition."""
    if gate is not None:
        return gate
    return None if seed_variance_known(a_runs, b_runs, pooled) else ONE_SEED


def _statement(verdict: str, reason: str | None, est: Estimate, rest: str) -> str:
    head = f"Estimate only, no decision ({reason})" if reason else verdict
    tail = f" Warning: {est.note}." if est.note and "tiny eval" in est.note else ""
    return f"{head}: {rest}{tail}"


def _describe(name: str, est: Estimate) -> str:
    return f"{name} = {est.value:.4g} ({est.level:.0%} interval {est.low:.4g} to {est.high:.4g})"


def sufficiency(
    insert_runs,
    clean_runs,
    min_effect: float = 0.0,
    alpha: float = 0.05,
    trials=(),
    n_boot: int = 2000,
    seed: int = 0,
    pooled: SeedVariance | None = None,
    gate: str | None = None,
    n_samples: Counts = (),
) -> Decision:
    """Passes when the one-sided (1 - alpha) lower bound of tau(insert) - tau0 exceeds min_effect.

    The bound is the bootstrap's, floored for rates at Newcombe's binomial one; p is the larger of
    the smoothed bootstrap share at or below min_effect and the binomial p. No decision (passed
    None) when `gate` names a reason (e.g. NO_TRAIT) or the seed variance is unestimable (ONE_SEED).
    """
    est, draws = _difference(insert_runs, clean_runs, alpha, n_boot, seed, pooled, n_samples)
    p = max(_share_at_or_below(draws, min_effect), _binomial_p(insert_runs, clean_runs, min_effect, True, n_samples))
    reason = _undecided(insert_runs, clean_runs, pooled, gate)
    passed = None if reason else bool(est.low > min_effect)
    verdict = "Sufficient" if passed else "Not shown sufficient"
    relation = ">" if est.low > min_effect else "<="
    rest = (
        f"{_describe('tau(insert) - tau0', est)}; one-sided {1 - alpha:.0%} lower bound "
        f"{est.low:.4g} {relation} min_effect {min_effect:.4g}, p = {p:.3g} at alpha {alpha:g}."
    )
    return Decision(
        "sufficiency: one-sided lower bound (bootstrap, binomial floor) of tau(insert) - tau0 > min_effect",
        alpha,
        float(min_effect),
        est,
        p,
        passed,
        tuple(trials),
        _statement(verdict, reason, est, rest),
        reason,
    )


def necessity(
    remove_runs,
    clean_runs,
    margin: float,
    alpha: float = 0.05,
    trials=(),
    n_boot: int = 2000,
    seed: int = 0,
    pooled: SeedVariance | None = None,
    gate: str | None = None,
    n_samples: Counts = (),
) -> Decision:
    """Two one-sided tests: passes when the (1 - 2 alpha) interval of tau(remove) - tau0 lies in (-margin, margin).

    The interval is the bootstrap's, floored for rates at Newcombe's binomial one; p is the larger of
    the two one-sided p-values (each the larger of bootstrap and binomial). No decision as in sufficiency.
    """
    if margin <= 0:
        raise ValueError("necessity: the equivalence margin must be positive")
    est, draws = _difference(remove_runs, clean_runs, alpha, n_boot, seed, pooled, n_samples)
    p = max(
        _share_at_or_below(draws, -margin),
        _share_at_or_above(draws, margin),
        _binomial_p(remove_runs, clean_runs, -margin, True, n_samples),
        _binomial_p(remove_runs, clean_runs, margin, False, n_samples),
    )
    inside = -margin < est.low and est.high < margin
    reason = _undecided(remove_runs, clean_runs, pooled, gate)
    passed = None if reason else bool(inside)
    verdict = "Necessary (equivalent to clean)" if passed else "Not shown necessary"
    where = "inside" if inside else "not inside"
    rest = (
        f"{_describe('tau(remove) - tau0', est)}, {where} (-{margin:.4g}, +{margin:.4g}); "
        f"TOST p = {p:.3g} at alpha {alpha:g}."
    )
    return Decision(
        "necessity: two one-sided tests (bootstrap, binomial floor), tau(remove) - tau0 within (-margin, +margin)",
        alpha,
        float(margin),
        est,
        p,
        passed,
        tuple(trials),
        _statement(verdict, reason, est, rest),
        reason,
    )


def leak_in(
    drop_runs,
    remove_runs,
    necessary: Decision | None = None,
    alpha: float = 0.05,
    trials=(),
    n_boot: int = 2000,
    seed: int = 0,
    pooled: SeedVariance | None = None,
    gate: str | None = None,
    n_samples: Counts = (),
    min_effect: float = 0.0,
) -> Decision:
    """Passes when the one-sided (1 - alpha) lower bound of tau(drop) - tau(remove) exceeds min_effect.

    Leak-in is the comparison itself: dropping S leaves more of the trait than patching clean
    rollouts into S (clean data on S counteracts teacher data elsewhere). It does not require S
    to be necessary on its own: when a second subset also leaks, patch_remove(S) keeps that
    subset's effect and S is never equivalent to clean, yet the comparison is still meaningful.
    `necessary` (S's necessity decision, when run) is reported beside it in the statement, not
    required; the caller records its outcome next to the decision (static.py: subset_necessary).
    The margin is the search's min_effect, as for sufficiency. The interval is the bootstrap's,
    floored at the binomial width of the pooled samples; p is the larger of the bootstrap's and the
    binomial floor's. No decision (estimate only) as in sufficiency: D not shown, or one seed.
    """
    est, draws = _difference(drop_runs, remove_runs, alpha, n_boot, seed, pooled, n_samples)
    above = est.low > min_effect
    p = max(_share_at_or_below(draws, min_effect), _binomial_p(drop_runs, remove_runs, min_effect, True, n_samples))
    reason = _undecided(drop_runs, remove_runs, pooled, gate)
    passed = None if reason else bool(above)
    if passed:
        verdict = "Leak-in: dropping the subset leaves more of the trait than patching clean rollouts into it"
    else:
        verdict = "No leak-in shown: tau(drop) is not shown above tau(remove)"
    beside = ""
    if necessary is not None:
        alone = {True: "necessary", False: "not shown necessary", None: "undecided"}[necessary.passed]
        beside = f" The subset alone is {alone} (TOST p = {necessary.p_value:.3g}, margin {necessary.margin:.4g})."
    rest = (
        f"{_describe('tau(drop) - tau(remove)', est)}, one-sided {1 - alpha:.0%} lower "
        f"bound {est.low:.4g} {'>' if above else '<='} min_effect {min_effect:.4g}; p = {p:.3g} at "
        f"alpha {alpha:g}.{beside}"
    )
    return Decision(
        "leak-in: one-sided lower bound (bootstrap, binomial floor) of tau(drop) - tau(remove) > min_effect "
        "(necessity beside it)",
        alpha,
        float(min_effect),
        est,
        p,
        passed,
        tuple(trials),
        _statement(verdict, reason, est, rest),
        reason,
    )


def holm(p_values: dict[str, float], alpha: float = 0.05) -> dict[str, bool]:
    """Holm step-down: the i-th smallest p (i from 0) is rejected while p <= alpha / (m - i); stop at the first miss."""
    m = len(p_values)
    rejected = dict.fromkeys(p_values, False)
    for i, (name, p) in enumerate(sorted(p_values.items(), key=lambda kv: kv[1])):
        if p > alpha / (m - i):
            break
        rejected[name] = True
    return rejected


# --- leak threshold -------------------------------------------------------------------------------

FIXED_SEQUENCE_TEST = (
    "fixed-sequence: sufficiency tested from the highest fraction downward at level alpha, "
    "stopping at the first non-significant step"
)


def _check_ladder(ladder: list[float], tested: list[float]) -> None:
    """The ladder is fixed in advance: strictly ascending fractions in (0, 1], covering every tested fraction."""
    if not ladder:
        raise ValueError("empty ladder")
    if any(not 0 < f <= 1 for f in ladder) or any(a >= b for a, b in zip(ladder, ladder[1:])):
        raise ValueError(f"ladder {ladder} must be strictly ascending fractions in (0, 1]")
    off_ladder = sorted(set(tested) - set(ladder))
    if off_ladder:
        raise ValueError(f"fractions {off_ladder} were tested but are not on the ladder fixed in advance")


def fixed_sequence_threshold(
    ladder: list[float],
    runs_by_fraction: dict[float, list[list[float]]],
    clean_runs,
    min_effect: float = 0.0,
    alpha: float = 0.05,
    trials_by_fraction=None,
    n_boot: int = 2000,
    seed: int = 0,
    pooled: SeedVariance | None = None,
    samples_by_fraction: dict | None = None,
    clean_samples: int | None = None,
) -> dict:
    """Leak threshold (minimum effective dose) by fixed-sequence testing of sufficiency.

    Walks the rungs present in `runs_by_fraction` from the highest down, each tested at level alpha
    with no multiplicity correction, and stops at the first rung not shown sufficient. The
    threshold is the smallest rung rejected before the stop; None ("no leak shown") when the
    highest present rung is not significant. Rungs below the stop are never tested.
    """
    _check_ladder(ladder, list(runs_by_fraction))
    trials_by_fraction = trials_by_fraction or {}
    steps, threshold, stopped_at = [], None, None
    for f in (f for f in reversed(ladder) if f in runs_by_fraction):
        d = sufficiency(
            runs_by_fraction[f],
            clean_runs,
            min_effect,
            alpha,
            trials=tuple(trials_by_fraction.get(f, ())),
            n_boot=n_boot,
            seed=seed,
            pooled=pooled,
            n_samples=((samples_by_fraction or {}).get(f), clean_samples),
        )
        steps.append({"fraction": f, "decision": d.to_dict()})
        if not d.passed:
            stopped_at = f
            break
        threshold = f
    reason = steps[0]["decision"]["reason"] if steps else None
    statement = _threshold_statement(threshold, stopped_at, alpha, min_effect)
    return {
        "threshold": threshold,
        "stopped_at": stopped_at,
        "steps": steps,
        "untested": [f for f in ladder if f not in runs_by_fraction],
        "test": FIXED_SEQUENCE_TEST,
        "alpha": alpha,
        "margin": float(min_effect),
        "statement": f"Estimate only, no threshold ({reason})." if reason else statement,
        "reason": reason,
    }


def _threshold_statement(threshold: float | None, stopped_at: float | None, alpha: float, min_effect: float) -> str:
    tail = f" (fixed-sequence sufficiency tests at alpha {alpha:g}, min_effect {min_effect:.4g})."
    if threshold is None:
        return f"No leak shown: the highest tested fraction {stopped_at} is not sufficient" + tail
    stop = f"the next lower rung {stopped_at} is not" if stopped_at is not None else "every tested rung is"
    return f"Leak threshold {threshold}: sufficient at {threshold} and every higher tested rung; {stop}" + tail


# --- teacher vs student ---------------------------------------------------------------------------


def transfer(student: float, teacher: float, base: float) -> dict:
    """Offset tau_S - tau_T and transfer ratio (tau_S - tau_base) / (tau_T - tau_base); ratio None when tau_T == tau_base."""
    same = math.isclose(teacher, base, rel_tol=1e-12, abs_tol=1e-12)
    return {"offset": student - teacher, "ratio": None if same else (student - base) / (teacher - base)}
