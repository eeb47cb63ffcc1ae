"""Intervals for trait scores and the decisions built on them (README: Statistics).

Binary traits: a Wilson score interval per run. Ordinal traits (0-10): the mean with a bootstrap
interval that resamples eval prompts (clusters of samples), not single samples, because samples
of one prompt are correlated and resampling them would understate the uncertainty.

Across seeds (runs): a two-stage bootstrap, runs then prompts, for condition means and their
differences; the decision rules built on it (sufficiency, necessity, leak-in, Holm, the
fixed-sequence leak threshold); a logistic dose-response fit with ED10 / ED50; transfer ratios.
scipy is imported inside the dose-response helpers only, so importing this module stays cheap
for callers that need just the intervals.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from leaksweep.binomial import is_rate, newcombe, newcombe_p, pooled_n, tiny_eval_note, wilson_rate, z_for

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


def cluster_bootstrap(
    clusters: list[list[float]], n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
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


# --- estimates across seeds -------------------------------------------------------------------------
#
# A run is one trained student (one seed); its data are per-prompt values (the mean judge value over
# that prompt's samples). A condition has k runs. The condition mean is the mean of the run means.


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a two-sided interval at `level`; `method` says how it was made."""

    value: float
    low: float
    high: float
    level: float
    method: str
    n_runs: int
    n_prompts: int  # prompts per run (the largest if runs differ); 0 when not known
    note: str | None = None  # what limits the interval (a binomial floor, a tiny eval), when something does

    def to_dict(self) -> dict:
        """JSON-friendly: non-finite bounds (an unbounded side) become None."""
        out = asdict(self)
        for key in ("value", "low", "high"):
            out[key] = _finite_or_none(out[key])
        return out


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _run_matrix(runs: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Runs padded into a (k, max prompts) matrix, and each run's prompt count."""
    if not runs:
        raise ValueError("no runs")
    lengths = np.array([len(r) for r in runs])
    if lengths.min() == 0:
        raise ValueError("a run has no prompt values")
    values = np.zeros((len(runs), int(lengths.max())))
    for i, run in enumerate(runs):
        values[i, : len(run)] = run
    if not np.isfinite(values).all():
        raise ValueError("prompt values must be finite")
    return values, lengths


def condition_mean(runs: list[list[float]]) -> float:
    """Mean over runs of each run's mean prompt value (every seed weighs the same)."""
    values, lengths = _run_matrix(runs)
    return float((values.sum(axis=1) / lengths).mean())


_MAX_DRAWS_PER_CHUNK = 1 << 22  # bounds memory: ~16 MiB of prompt indices per chunk


def _prompt_draws(rng: np.random.Generator, n: np.ndarray, width: int) -> np.ndarray:
    """Uniform prompt indices in [0, n) for every slot, shape n.shape[:-1] + (width,), as int32.

    Equal run lengths (n == width everywhere) take the fast integer path; otherwise a slot with
    fewer prompts uses only its first n draws (the rest are masked by the caller).
    """
    shape = n.shape[:-1] + (width,)
    if (n == width).all():
        return rng.integers(0, width, size=shape, dtype=np.int32)
    return np.minimum(rng.random(shape) * n, n - 1).astype(np.int32)  # min: u * n can round up to n


# Student t 0.975 quantiles for 1..30 degrees of freedom (beyond 30, 2.04 is within 4% of normal).
_T_975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


@dataclass(frozen=True)
class SeedVariance:
    """A pooled estimate of the training-seed variance of a run mean, with its degrees of freedom.

    Seed noise is a property of the training procedure, not of a mixture, so a search pools it over
    every condition it ran: with 2 seeds per condition one condition alone gives 1 degree of
    freedom, which forces a uselessly wide (t with 1 df) or an overconfident interval.
    """

    variance: float
    df: int
    logit_scale: bool = False  # variance is on the logit scale: rescale by (p(1-p))^2 for a rate p

    def at(self, mean: float) -> float:
        """The seed variance of a run mean for a condition whose mean is `mean`."""
        if not self.logit_scale:
            return self.variance
        p = min(max(mean, 0.0), 1.0)
        return self.variance * (p * (1 - p)) ** 2


def _seed_moments(runs: list[list[float]]) -> tuple[float, float]:
    """(S, W): the sample variance of the run means and the mean squared standard error of a run mean."""
    values, lengths = _run_matrix(runs)
    slots = np.arange(values.shape[1])[None, :] < lengths[:, None]
    run_means = values.sum(axis=1) / lengths
    squares = np.where(slots, (values - run_means[:, None]) ** 2, 0.0).sum(axis=1)
    within = float(np.mean(np.where(lengths > 1, squares / np.maximum(lengths - 1, 1), 0.0) / lengths))
    return float(np.var(run_means, ddof=1)), within


def pooled_seed_variance(conditions: list[list[list[float]]]) -> SeedVariance | None:
    """Pool the seed variance S - W over conditions with at least 2 runs (k - 1 df each).

    Rates (every value in [0, 1]): training-seed noise moves a rate on the logit scale, so a
    condition at p = 0.5 shows ~8x the rate-scale seed variance of one at p = 0.1. Pooling rate-scale
    variances would make tests near a low threshold far too conservative. So for rates the pooled
    quantity is the logit-scale variance (delta method: var_rate = var_logit * (p(1-p))^2),
    estimated by weighted least squares: sum d (S - W) / sum d (p(1-p))^2, which gives conditions
    near 0 or 1 (little information about the logit scale) little weight. Other traits pool S - W.
    """
    parts = [(len(runs) - 1, _seed_moments(runs), condition_mean(runs)) for runs in conditions if len(runs) >= 2]
    df = sum(d for d, _, _ in parts)
    if df == 0:
        return None
    rates = all(0.0 <= v <= 1.0 for runs in conditions for run in runs for v in run)
    excess = sum(d * (s_b - w) for d, (s_b, w), _ in parts)
    if not rates:
        return SeedVariance(max(0.0, excess / df), df)
    weight = sum(d * (p * (1 - p)) ** 2 for d, _, p in parts)
    if weight == 0.0:  # every condition at 0 or 1: nothing to learn about seed noise
        return SeedVariance(0.0, df)
    return SeedVariance(max(0.0, excess / weight), df, logit_scale=True)


def _rescale_run_effects(values: np.ndarray, lengths: np.ndarray, pooled: SeedVariance | None = None) -> np.ndarray:
    """Rescale each run's offset from the grand mean so a two-stage bootstrap has the right variance.

    Plain two-stage resampling counts prompt noise twice (a run mean already carries it, and the
    prompt stage adds it again) and shrinks the seed variance by (k-1)/k. With W the mean squared
    standard error of a run mean and S the sample variance of the run means, the seed variance is
    estimated as max(0, S - W) (the usual variance-components moment estimate); the run offsets are
    scaled so that resampling runs reproduces exactly that, and the prompt stage supplies W. The
    bootstrap variance of the condition mean is then (max(0, S - W) + W) / k, the moment estimate
    of Var(mean) for k seeds and n prompts each.
    """
    k = len(lengths)
    if k < 2:
        return values
    slots = np.arange(values.shape[1])[None, :] < lengths[:, None]
    run_means = values.sum(axis=1) / lengths
    grand = float(run_means.mean())
    plug_in = float(np.mean((run_means - grand) ** 2))  # what resampling runs reproduces
    if plug_in == 0.0:
        return values
    if pooled is None:
        s_b, within = _seed_moments([list(values[i, : lengths[i]]) for i in range(k)])
        pooled = SeedVariance(max(0.0, s_b - within), k - 1)
    # The seed variance rests on `df` degrees of freedom: widen its part by the t/normal quantile
    # ratio, so a few seeds give a t-like interval instead of an overconfident normal one.
    scale = math.sqrt(pooled.at(grand) / plug_in) * _T_975[min(pooled.df, len(_T_975)) - 1] / Z_95
    shift = (grand + scale * (run_means - grand)) - run_means
    return np.where(slots, values + shift[:, None], values)


def draw_means(
    runs: list[list[float]], n_boot: int, rng: np.random.Generator, pooled: SeedVariance | None = None
) -> np.ndarray:
    """`n_boot` two-stage bootstrap condition means drawn from `rng` (see bootstrap_means)."""
    if n_boot < 1:
        raise ValueError("n_boot must be at least 1")
    values, lengths = _run_matrix(runs)
    values = _rescale_run_effects(values, lengths, pooled)
    k, width = values.shape
    if k * width >= 2**31:
        raise ValueError("too many prompt values for int32 indices")
    flat, slots, equal = values.ravel(), np.arange(width), bool((lengths == width).all())
    chunk = max(1, _MAX_DRAWS_PER_CHUNK // (k * width))
    out = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        picked = rng.integers(0, k, size=(m, k), dtype=np.int32)  # stage 1: runs with replacement
        n = lengths[picked][..., None]  # (m, k, 1): prompts in each drawn run
        index = _prompt_draws(rng, n, width)  # stage 2: prompts within each drawn run
        index += (picked * width)[..., None]
        drawn = flat[index]
        if equal:
            run_means = drawn.mean(axis=2)
        else:
            run_means = np.where(slots < n, drawn, 0.0).sum(axis=2) / n[..., 0]
        out[start : start + m] = run_means.mean(axis=1)
    return out


def bootstrap_means(
    runs: list[list[float]], n_boot: int = 2000, seed: int = 0, pooled: SeedVariance | None = None
) -> np.ndarray:
    """Two-stage bootstrap distribution of the condition mean, shape (n_boot,).

    Each replicate draws k runs with replacement, then in each drawn run as many prompts as it has,
    with replacement; the statistic is the mean over drawn runs of each run's mean. Run offsets are
    first rescaled to the estimated seed variance (see _rescale_run_effects), so prompt noise is not
    counted twice. With one run it is a prompt bootstrap. Seeded: the same inputs give the same array.
    """
    return draw_means(runs, n_boot, np.random.default_rng(seed), pooled)


def percentile_interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    if not 0 < level < 1:
        raise ValueError(f"level {level} outside (0, 1)")
    tail = (1 - level) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return float(low), float(high)


def run_sizes(*conditions: list[list[float]]) -> tuple[int, int]:
    """(runs over all conditions, the most prompts in any run)."""
    return sum(len(c) for c in conditions), max(len(r) for c in conditions for r in c)


ONE_SEED = "one seed per condition: estimate only; set search.seeds: 2 or more"
NO_TRAIT = "no trait to explain: the all-teacher effect D = tau1 - tau0 is not shown"


Counts = tuple  # (samples behind condition a, behind b): judged samples; () or None: one per prompt value


def condition_n(runs: list[list[float]], counts: Counts, i: int) -> int:
    """The samples behind a condition: as given (judged samples), else its prompt values (the conservative count)."""
    given = counts[i] if counts and len(counts) > i else None
    return int(given) if given else pooled_n(runs)


def condition_newcombe(a_runs, b_runs, z: float, counts: Counts = ()) -> tuple[float, float]:
    pa, pb = condition_mean(a_runs), condition_mean(b_runs)
    return newcombe(pa, condition_n(a_runs, counts, 0), pb, condition_n(b_runs, counts, 1), z)


def condition_newcombe_p(a_runs, b_runs, x: float, above: bool, counts: Counts = ()) -> float:
    pa, pb = condition_mean(a_runs), condition_mean(b_runs)
    return newcombe_p(pa, condition_n(a_runs, counts, 0), pb, condition_n(b_runs, counts, 1), x, above)


def seed_variance_known(a_runs, b_runs, pooled: SeedVariance | None) -> bool:
    """Whether the intervals can carry training-seed variance: a pooled estimate, or 2+ runs in each condition."""
    return (pooled is not None and pooled.df >= 1) or min(len(a_runs), len(b_runs)) >= 2


def estimate(
    runs: list[list[float]],
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    pooled: SeedVariance | None = None,
    n_samples: int | None = None,
) -> Estimate:
    """The condition mean (mean of run means) with a two-stage percentile bootstrap interval; for rates
    floored at the Wilson interval of `n_samples` (the judged samples; default: one per prompt value)."""
    low, high = percentile_interval(bootstrap_means(runs, n_boot, seed, pooled), level)
    n_runs, n_prompts = run_sizes(runs)
    method = f"percentile bootstrap, runs then prompts ({n_boot} draws)"
    value = condition_mean(runs)
    note = None
    if is_rate(runs):
        n = condition_n(runs, (n_samples,), 0)
        _, w_low, w_high = wilson_rate(value, n, z_for(level))
        if w_low < low or w_high > high:
            low, high = min(low, w_low), max(high, w_high)
            method += f"; floored at the Wilson interval of the {n} pooled samples"
        note = tiny_eval_note(n)
    return Estimate(value, low, high, level, method, n_runs, n_prompts, note)


def contrast(
    a_runs: list[list[float]],
    b_runs: list[list[float]],
    n_boot: int = 2000,
    seed: int = 0,
    pooled: SeedVariance | None = None,
) -> np.ndarray:
    """Bootstrap distribution of mean(a) - mean(b), the two conditions resampled independently."""
    rng = np.random.default_rng(seed)
    return draw_means(a_runs, n_boot, rng, pooled) - draw_means(b_runs, n_boot, rng, pooled)
