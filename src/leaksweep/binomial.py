"""Binomial floors: no rate interval narrower than what its samples support (README: Statistics).

A percentile bootstrap of all-zero data is [0, 0]: it says nothing about what a few samples cannot
rule out. For rates (every value in [0, 1]) stats floors every interval at the binomial one of the
pooled prompt values (a prompt value counts as one observation: samples of one prompt are
correlated, so this is the conservative count): Wilson for a condition, Newcombe's hybrid score
interval (from the two Wilson intervals) for a difference, with the matching one-sided p-values.
Runs are lists of per-prompt values, as in stats.
"""

from __future__ import annotations

import math
from statistics import NormalDist

TINY_EVAL = 30  # fewer pooled samples than this in a condition: the conclusion warns


def z_for(level: float) -> float:
    """The two-sided normal quantile for `level` (1.96 at 95 %)."""
    return NormalDist().inv_cdf(0.5 + level / 2)


def is_rate(*conditions: list[list[float]]) -> bool:
    """Every value is in [0, 1]: the trait is a rate, and binomial floors apply."""
    return all(0.0 <= v <= 1.0 for runs in conditions for run in runs for v in run)


def pooled_n(runs: list[list[float]]) -> int:
    """Prompt values over all runs of a condition."""
    return sum(len(r) for r in runs)


def tiny_eval_note(*samples: int) -> str | None:
    """A warning when a condition rests on fewer than TINY_EVAL samples (runs x prompts x samples)."""
    small = min(samples)
    if small >= TINY_EVAL:
        return None
    return (
        f"tiny eval: a condition rests on only {small} samples (runs x prompts x samples per prompt); its "
        f"interval is at least the binomial one, wide; raise traits.T.n_prompts, samples_per_prompt or search.seeds"
    )


def wilson_rate(p: float, n: int, z: float) -> tuple[float, float, float]:
    """(p, low, high): the Wilson score interval for a rate p observed over n values (p need not be k/n)."""
    p = min(max(p, 0.0), 1.0)
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return p, max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def newcombe(pa: float, na: int, pb: float, nb: int, z: float) -> tuple[float, float]:
    """Newcombe's hybrid score interval for pa - pb (rates over na and nb values) at `z`."""
    pa, la, ua = wilson_rate(pa, na, z)
    pb, lb, ub = wilson_rate(pb, nb, z)
    d = pa - pb
    return d - math.hypot(pa - la, ub - pb), d + math.hypot(ua - pa, pb - lb)


def newcombe_p(pa: float, na: int, pb: float, nb: int, x: float, above: bool) -> float:
    """One-sided p for 'pa - pb is above x' (or below x): the tail at which Newcombe's bound reaches x."""
    side = 0 if above else 1
    inside = (lambda b: b > x) if above else (lambda b: b < x)  # noqa: E731
    if not inside(newcombe(pa, na, pb, nb, 0.0)[side]):
        return 0.5
    lo, hi = 0.0, 12.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if inside(newcombe(pa, na, pb, nb, mid)[side]) else (lo, mid)
    return 1 - NormalDist().cdf(lo)
