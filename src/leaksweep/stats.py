"""Intervals for trait scores (DESIGN.md, Statistics).

Binary traits: a Wilson score interval per run. Ordinal traits (0-10): the mean with a bootstrap
interval that resamples eval prompts (clusters of samples), not single samples, because samples
of one prompt are correlated and resampling them would understate the uncertainty.
"""

from __future__ import annotations

import math

import numpy as np

Z_95 = 1.959963984540054


def wilson(successes: int, n: int, z: float = Z_95) -> tuple[float, float, float]:
    """(rate, low, high) for `successes` out of `n`; the Wilson score interval stays in [0, 1]."""
    if n <= 0:
        raise ValueError("wilson: n must be positive")
    if not 0 <= successes <= n:
        raise ValueError(f"wilson: successes {successes} outside [0, {n}]")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # The exact interval always contains p (and is [0, x] at 0/n, [x, 1] at n/n); clamp away rounding.
    return p, max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def cluster_bootstrap(clusters: list[list[float]], n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): percentile bootstrap of the sample mean, resampling whole clusters.

    Each cluster (one eval prompt) contributes all of its samples; the statistic is the mean over
    all samples in the resampled clusters, so prompts with more samples weigh more, as in the point
    estimate.
    """
    clusters = [c for c in clusters if len(c)]
    if not clusters:
        raise ValueError("cluster_bootstrap: no samples")
    sums = np.array([sum(c) for c in clusters], dtype=float)
    sizes = np.array([len(c) for c in clusters], dtype=float)
    mean = float(sums.sum() / sizes.sum())
    if len(clusters) == 1:
        return mean, mean, mean
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(clusters), size=(n_boot, len(clusters)))
    boot = sums[picks].sum(axis=1) / sizes[picks].sum(axis=1)
    alpha = (1 - level) / 2
    low, high = np.quantile(boot, [alpha, 1 - alpha])
    return mean, float(low), float(high)
