"""How well a judge agrees with human labels, and trait rates corrected for the judge's errors.

Validation metrics (a judge's verdicts against labels):
* binary: the 2x2 table, sensitivity, specificity and accuracy with Wilson 95% intervals, Cohen's
  kappa with a percentile bootstrap 95% interval over the labelled responses;
* scale (0..10): Spearman's rho and the mean absolute error, each with a bootstrap 95% interval.

Misclassification correction (Rogan & Gladen 1978): a judge with sensitivity `se` and specificity
`sp` reports a positive with probability p_obs = se * p + (1 - sp) * (1 - p), so the true rate is
p = (p_obs + sp - 1) / (se + sp - 1), clipped to [0, 1]. Its 95% interval is a parametric bootstrap
that carries both sources of uncertainty: each draw takes se and sp from the Beta posteriors of the
calibration counts and p_obs from the Beta posterior of the eval counts (Jeffreys priors, Beta(x +
1/2, n - x + 1/2)), maps them through the formula and clips; the interval is the draws' 2.5th and
97.5th percentiles. When Youden's J = se + sp - 1 is not clearly above 0 (its lower 95% bound at or
below MIN_YOUDEN) the judge cannot tell the classes apart well enough to invert, and the corrected
rate is "not identifiable": None with the reason, never a number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from leaksweep.stats import wilson

MIN_YOUDEN = 0.05  # the lower 95% bound of se + sp - 1 must exceed this for a corrected rate
N_DRAWS = 4000  # parametric bootstrap draws of the corrected rate
N_BOOT = 2000  # bootstrap resamples of the labelled set (kappa, Spearman, MAE)
RG_METHOD = "rogan_gladen; parametric bootstrap 95% (Jeffreys Beta draws of sens, spec and p_obs), percentile"


@dataclass(frozen=True)
class Confusion:
    """The 2x2 table of judge verdicts (predicted) against labels (truth)."""

    tp: int
    fn: int
    tn: int
    fp: int

    @staticmethod
    def of(labels: list[int], predicted: list[int]) -> "Confusion":
        if len(labels) != len(predicted):
            raise ValueError(f"confusion: {len(labels)} labels but {len(predicted)} verdicts")
        pairs = list(zip(labels, predicted))
        return Confusion(
            tp=sum(1 for y, p in pairs if y and p),
            fn=sum(1 for y, p in pairs if y and not p),
            tn=sum(1 for y, p in pairs if not y and not p),
            fp=sum(1 for y, p in pairs if not y and p),
        )

    @property
    def n(self) -> int:
        return self.tp + self.fn + self.tn + self.fp

    def to_dict(self) -> dict:
        return {"tp": self.tp, "fn": self.fn, "tn": self.tn, "fp": self.fp}


def _proportion(successes: int, n: int) -> dict:
    """{value, low, high, n} with a Wilson 95% interval; value None when n is 0."""
    if n == 0:
        return {"value": None, "low": None, "high": None, "n": 0}
    value, low, high = wilson(successes, n)
    return {"value": value, "low": low, "high": high, "n": n}


def cohen_kappa(labels: list[int] | np.ndarray, predicted: list[int] | np.ndarray) -> float | None:
    """Cohen's kappa of two binary raters; None when chance agreement is 1 (both rate one class only)."""
    y, p = np.asarray(labels, dtype=float), np.asarray(predicted, dtype=float)
    if len(y) == 0:
        return None
    observed = float(np.mean(y == p))
    chance = float(np.mean(y) * np.mean(p) + (1 - np.mean(y)) * (1 - np.mean(p)))
    if chance >= 1.0:
        return None
    return (observed - chance) / (1 - chance)


def _percentiles(draws: np.ndarray, level: float = 0.95) -> tuple[float, float] | tuple[None, None]:
    draws = draws[np.isfinite(draws)]
    if len(draws) == 0:
        return None, None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def _paired_bootstrap(x: np.ndarray, y: np.ndarray, statistic, n_boot: int, seed: int) -> tuple:
    """Percentile 95% interval of statistic(x, y) over resampled pairs (undefined draws left out)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(n_boot, len(x)))
    draws = np.array([np.nan if (v := statistic(x[i], y[i])) is None else v for i in idx], dtype=float)
    return _percentiles(draws)


def _with_interval(point: float | None, interval: tuple) -> dict:
    low, high = interval
    if point is None or low is None:
        return {"value": point, "low": None, "high": None, "method": "bootstrap95"}
    return {"value": point, "low": min(low, point), "high": max(high, point), "method": "bootstrap95"}


def binary_metrics(labels: list[int], predicted: list[int], n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """n, the 2x2 table, sensitivity, specificity, accuracy (Wilson 95%) and Cohen's kappa (bootstrap 95%)."""
    table = Confusion.of(labels, predicted)
    y, p = np.asarray(labels, dtype=float), np.asarray(predicted, dtype=float)
    kappa = cohen_kappa(y, p)
    return {
        "n": table.n,
        **table.to_dict(),
        "sensitivity": _proportion(table.tp, table.tp + table.fn),
        "specificity": _proportion(table.tn, table.tn + table.fp),
        "accuracy": _proportion(table.tp + table.tn, table.n),
        "kappa": _with_interval(kappa, _paired_bootstrap(y, p, cohen_kappa, n_boot, seed) if table.n else (None, None)),
    }


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=float)
    ranks[order] = np.arange(1, len(x) + 1)
    for value in np.unique(x):
        tied = x == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(x: list[float] | np.ndarray, y: list[float] | np.ndarray) -> float | None:
    """Spearman's rho (Pearson on average ranks); None when either side is constant."""
    rx, ry = _ranks(np.asarray(x, dtype=float)), _ranks(np.asarray(y, dtype=float))
    if len(rx) < 2 or rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def mean_abs_error(x: list[float] | np.ndarray, y: list[float] | np.ndarray) -> float | None:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    return float(np.mean(np.abs(x - y))) if len(x) else None


def scale_metrics(
    labels: list[float], predicted: list[float], threshold: float = 5.0, n_boot: int = N_BOOT, seed: int = 0
) -> dict:
    """n, Spearman's rho and MAE (bootstrap 95%), and the binary metrics of `value >= threshold`."""
    y, p = np.asarray(labels, dtype=float), np.asarray(predicted, dtype=float)
    none = (None, None)
    return {
        "n": len(y),
        "spearman": _with_interval(spearman(y, p), _paired_bootstrap(y, p, spearman, n_boot, seed) if len(y) else none),
        "mae": _with_interval(
            mean_abs_error(y, p), _paired_bootstrap(y, p, mean_abs_error, n_boot, seed) if len(y) else none
        ),
        "threshold": threshold,
        "binary": binary_metrics(
            [int(v >= threshold) for v in y], [int(v >= threshold) for v in p], n_boot=n_boot, seed=seed
        ),
    }


# --- the Rogan-Gladen correction -------------------------------------------------------------------


def rogan_gladen(p_obs: float, sensitivity: float, specificity: float) -> float:
    """The true rate behind an observed rate, clipped to [0, 1]; ValueError when se + sp - 1 <= 0."""
    youden = sensitivity + specificity - 1
    if youden <= 0:
        raise ValueError(f"rogan_gladen: sensitivity + specificity - 1 = {youden:.3g} is not above 0")
    return min(1.0, max(0.0, (p_obs + specificity - 1) / youden))


def rg_linear(values: list[float], sensitivity: float, specificity: float) -> list[float]:
    """The Rogan-Gladen map on per-prompt values, NOT clipped: the linear map keeps the mean of the
    mapped values equal to the mapped mean, which clipping each value would bias upwards."""
    youden = sensitivity + specificity - 1
    if youden <= 0:
        raise ValueError(f"rg_linear: sensitivity + specificity - 1 = {youden:.3g} is not above 0")
    return [(v + specificity - 1) / youden for v in values]


def _jeffreys(rng: np.random.Generator, successes: int, n: int, size: int) -> np.ndarray:
    return rng.beta(successes + 0.5, n - successes + 0.5, size=size)


def corrected_rate(
    positives: int,
    n: int,
    table: Confusion,
    n_draws: int = N_DRAWS,
    seed: int = 0,
    min_youden: float = MIN_YOUDEN,
) -> dict:
    """The misclassification-corrected rate of `positives` out of `n` judged samples, given the judge's
    2x2 table on a labelled set: {score, low, high, method, youden: {value, low}, reason}; score, low
    and high are None (with the reason) when the correction is not identifiable."""
    out: dict = {"score": None, "low": None, "high": None, "method": RG_METHOD, "reason": ""}
    if n <= 0:
        return {**out, "reason": "no judged eval samples"}
    if table.tp + table.fn == 0 or table.tn + table.fp == 0:
        missing = "positive" if table.tp + table.fn == 0 else "negative"
        return {**out, "reason": f"the calibration set has no {missing} labels, so the judge's errors are unknown"}
    rng = np.random.default_rng(seed)
    sens = _jeffreys(rng, table.tp, table.tp + table.fn, n_draws)
    spec = _jeffreys(rng, table.tn, table.tn + table.fp, n_draws)
    p_obs = _jeffreys(rng, positives, n, n_draws)
    youden_draws = sens + spec - 1
    se_hat, sp_hat = table.tp / (table.tp + table.fn), table.tn / (table.tn + table.fp)
    youden = {"value": se_hat + sp_hat - 1, "low": float(np.percentile(youden_draws, 2.5))}
    out["youden"] = youden
    if youden["low"] <= min_youden or youden["value"] <= 0:
        return {
            **out,
            "reason": (
                f"not identifiable: sensitivity + specificity - 1 = {youden['value']:.3f} (lower 95% bound "
                f"{youden['low']:.3f}) is not clearly above 0 (needs > {min_youden:g}); the judge does not "
                "separate the classes well enough to invert its errors"
            ),
        }
    point = rogan_gladen(positives / n, se_hat, sp_hat)
    with np.errstate(divide="ignore", invalid="ignore"):
        draws = np.clip((p_obs + spec - 1) / youden_draws, 0.0, 1.0)
    low, high = _percentiles(draws)
    return {**out, "score": point, "low": min(low, point), "high": max(high, point)}


def identifiable(corrected: dict) -> bool:
    return corrected.get("score") is not None and not math.isnan(corrected["score"])
