"""The logistic dose-response curve: fit, ED10 / ED50 with intervals, and the curve itself.

tau(f) = bottom + (top - bottom) * expit(slope * (log10 f - log10 ED50)), fitted by least squares
in log-fraction on the rungs a fraction sweep ran, with a bootstrap over runs for the ED intervals
(the stats module's estimates). A curve that does not beat a constant (F-test) is reported flat.
scipy is imported inside the fitting helpers only, so reading the curve stays cheap for the report.
"""

from __future__ import annotations

import math

import numpy as np

from leaksweep.stats import Estimate, draw_means, run_sizes

# --- dose-response curve --------------------------------------------------------------------------

_FLAT_P = 0.05  # the curve counts as flat unless it beats a constant by an F-test at this level
_LOG10_9 = math.log10(9.0)


def _logistic_parts(params: np.ndarray, fractions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(share of the way from bottom to top, log10 f - log10 ED50, positive mask); share is 0 at f = 0."""
    from scipy.special import expit

    _, _, slope, log_ed50 = params
    positive = fractions > 0
    dx = np.zeros(len(fractions))
    dx[positive] = np.log10(fractions[positive]) - log_ed50
    share = np.where(positive, expit(slope * dx), 0.0)
    return share, dx, positive


def _logistic(params: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """tau(f) = bottom + (top - bottom) * expit(slope * (log10 f - log10 ED50)); tau(0) = bottom."""
    bottom, top = params[0], params[1]
    share, _, _ = _logistic_parts(params, fractions)
    return bottom + (top - bottom) * share


LOGISTIC_PARAMS = ("bottom", "top", "slope_per_decade", "log10_ed50")  # the fitted curve in fit_dose_response's params


def logistic(params: dict, fraction: float) -> float:
    """The fitted curve at one fraction, in plain floats (_logistic is its array form for the fit):
    tau(f) = bottom + (top - bottom) * expit(slope * (log10 f - log10 ED50)); tau(0) = bottom."""
    bottom, top = float(params["bottom"]), float(params["top"])
    if fraction <= 0:
        return bottom
    z = float(params["slope_per_decade"]) * (math.log10(fraction) - float(params["log10_ed50"]))
    return bottom + (top - bottom) * (1 / (1 + math.exp(-z)) if z > -700 else 0.0)


def _logistic_jacobian(params: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """d tau / d (bottom, top, slope, log10 ED50), one row per fraction."""
    bottom, top, slope, _ = params
    share, dx, positive = _logistic_parts(params, fractions)
    bend = np.where(positive, (top - bottom) * share * (1 - share), 0.0)
    return np.column_stack([1 - share, share, bend * dx, -bend * slope])


def _bounds(fractions: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Asymptotes within one data span of the data, slope 0.01..50 per decade, ED50 within a decade of the tested range."""
    log_f = np.log10(fractions[fractions > 0])
    span = max(float(np.ptp(scores)), 1e-9)
    low = np.array([scores.min() - span, scores.min() - span, 0.01, log_f.min() - 1])
    high = np.array([scores.max() + span, scores.max() + span, 50.0, log_f.max() + 1])
    return low, high


def _grid_start(
    fractions: np.ndarray, scores: np.ndarray, low: np.ndarray, high: np.ndarray, sw: np.ndarray
) -> np.ndarray:
    """Best (bottom, top, slope, log10 ED50) on a grid of slopes x ED50s, bottom and top solved by least squares
    (weighted: `sw` is the square root of each point's weight).

    For fixed slope and ED50 the curve is linear in bottom and top, so every grid cell is a 2x2
    solve; this finds the basin of the global optimum (rising or falling) without multi-starts.
    """
    from scipy.special import expit

    slopes = np.geomspace(max(low[2], 0.1), high[2], 16)
    centres = np.linspace(low[3], high[3], 41)
    slope, centre = (g.reshape(-1, 1) for g in np.meshgrid(slopes, centres))  # one row per grid cell
    positive = fractions > 0
    log_f = np.log10(np.where(positive, fractions, 1.0))
    up = np.where(positive, expit(slope * (log_f - centre)), 0.0)  # weight of top; 1 - up weighs bottom
    down = 1 - up
    up, down, scores = up * sw, down * sw, scores * sw  # weighted least squares: scale rows by sqrt(weight)
    # normal equations [[dd, du], [du, uu]] @ (bottom, top) = (down @ y, up @ y), solved per cell
    dd, du, uu = (down * down).sum(1), (down * up).sum(1), (up * up).sum(1)
    ry, uy = down @ scores, up @ scores
    det = dd * uu - du * du
    solvable = det > 1e-12 * np.maximum(dd * uu, 1e-300)
    det = np.where(solvable, det, 1.0)
    bottom = np.clip((uu * ry - du * uy) / det, low[0], high[0])
    top = np.clip((dd * uy - du * ry) / det, low[1], high[1])
    residual = scores - bottom[:, None] * down - top[:, None] * up
    sse = np.where(solvable, (residual**2).sum(1), np.inf)
    best = int(np.argmin(sse))
    return np.array([bottom[best], top[best], slope[best, 0], centre[best, 0]])


def _least_squares_logistic(fractions: np.ndarray, scores: np.ndarray, sw: np.ndarray, start: np.ndarray | None = None):
    """(params, weighted sse) of the bounded least-squares fit from `start` (default: the grid start), or None on
    failure; `sw` is the square root of each point's weight."""
    from scipy.optimize import least_squares

    low, high = _bounds(fractions, scores)
    x0 = _grid_start(fractions, scores, low, high, sw) if start is None else start
    inset = 1e-9 * (high - low)
    try:
        fit = least_squares(
            lambda p: (_logistic(p, fractions) - scores) * sw,
            np.clip(x0, low + inset, high - inset),
            jac=lambda p: _logistic_jacobian(p, fractions) * sw[:, None],
            bounds=(low, high),
            max_nfev=200,
        )
    except (ValueError, np.linalg.LinAlgError):
        return None
    sse = float(np.sum(fit.fun**2))
    return (fit.x, sse) if np.isfinite(sse) else None


def _flat_p(scores: np.ndarray, sse: float, w: np.ndarray) -> float:
    """Extra-sum-of-squares F-test p-value of the 4-parameter curve against a constant (both weighted by w;
    the degrees of freedom count points, not runs, which keeps the test conservative)."""
    from scipy.stats import f as f_dist

    sse_flat = float(np.sum(w * (scores - np.average(scores, weights=w)) ** 2))
    df_resid = len(scores) - 4
    if sse <= 1e-12 * max(sse_flat, 1e-300):
        return 0.0
    stat = max(sse_flat - sse, 0.0) / 3 / (sse / df_resid)
    return float(f_dist.sf(stat, 3, df_resid))


def _is_flat(scores: np.ndarray) -> bool:
    return float(np.ptp(scores)) <= 1e-12 * max(1.0, float(np.abs(scores).max()))


def log10_effect_dose(params: dict, min_effect: float) -> float:
    """log10 of the fraction where the fitted effect tau(f) - bottom reaches min_effect; inf when it never does.

    (top - bottom) * expit(slope * (log10 f - log10 ED50)) = min_effect, solved for f; min_effect must be > 0.
    """
    share = min_effect / (float(params["top"]) - float(params["bottom"])) if params["top"] > params["bottom"] else 2.0
    if not 0 < share < 1:
        return math.inf
    return float(params["log10_ed50"]) + math.log(share / (1 - share)) / float(params["slope_per_decade"])


def effect_dose_design(
    params: dict,
    doses: list[float],
    counts: list[int],
    candidates: list[float],
    min_effect: float,
    picks: int,
    batch: int,
) -> list[int]:
    """Where `picks` batches of `batch` more runs each best pin the min_effect dose: indices into `candidates`
    (a candidate may repeat), or [] when the fitted effect never reaches min_effect.

    A greedy, locally c-optimal design: under the fitted curve, each pick is the candidate dose whose runs
    most reduce the delta-method variance of log10 of the min_effect dose, with the runs so far (`counts`
    runs at `doses`; dose 0 is the all-clean baseline) and the earlier picks counted. On a shallow curve
    that is rarely the dose itself: the baseline and the rungs where the curve climbs fastest carry
    more about where it crosses min_effect than runs where the effect is buried in seed noise.
    """
    theta = np.array([float(params[k]) for k in LOGISTIC_PARAMS])
    bottom, top, slope, _ = theta
    q = min_effect / (top - bottom) if top > bottom else 2.0
    if not 0 < q < 1 or slope <= 0:
        return []
    grad = np.array(
        [
            1 / (slope * (1 - q) * (top - bottom)),
            -1 / (slope * (1 - q) * (top - bottom)),
            -math.log(q / (1 - q)) / slope**2,
            1.0,
        ]
    )
    seen = _logistic_jacobian(theta, np.asarray(doses, dtype=float))
    info = (seen * np.asarray(counts, dtype=float)[:, None]).T @ seen
    info += 1e-9 * max(float(np.trace(info)), 1e-12) * np.eye(4)  # a ridge: too few distinct doses leave it singular
    rows = _logistic_jacobian(theta, np.asarray(candidates, dtype=float))
    chosen = []
    for _ in range(picks):
        inverse = np.linalg.pinv(info)
        u = rows @ inverse @ grad  # per candidate j' M^-1 g
        v = np.einsum("ij,jk,ik->i", rows, inverse, rows)  # j' M^-1 j
        gain = batch * u**2 / (1 + batch * v)  # Sherman-Morrison: how much the variance g' M^-1 g drops
        best = int(np.argmax(gain))
        chosen.append(best)
        info += batch * np.outer(rows[best], rows[best])
    return chosen


def _fit_once(
    fractions: np.ndarray, scores: np.ndarray, w: np.ndarray, start: np.ndarray | None = None
) -> tuple[str, dict]:
    """("ok" | "flat" | "failed", params) for one data set (points weighted by w), fitted from `start` or the grid start."""
    if _is_flat(scores):
        return "flat", {"p_flat": 1.0}
    best = _least_squares_logistic(fractions, scores, np.sqrt(w), start)
    if best is None:
        return "failed", {}
    x, sse = best
    bottom, top, slope, log_ed50 = (float(v) for v in x)
    params = {
        "bottom": bottom,
        "top": top,
        "slope_per_decade": slope,
        "log10_ed50": log_ed50,
        "log10_ed10": log_ed50 - _LOG10_9 / slope,
        "sse": sse,
        "p_flat": _flat_p(scores, sse, w),
    }
    return ("flat" if params["p_flat"] > _FLAT_P else "ok"), params


def _bootstrap_scores(scores: np.ndarray, fitted: np.ndarray, score_runs, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_points) resampled curves: each point's runs by bootstrap_means, else fitted + resampled residuals.

    Residuals are inflated by sqrt(n / (n - 4)), since a 4-parameter fit leaves them too small.
    """
    rng = np.random.default_rng(seed)
    if score_runs is not None:
        return np.stack([draw_means(runs, n_boot, rng) for runs in score_runs], axis=1)
    n = len(scores)
    residuals = (scores - fitted) * math.sqrt(n / (n - 4))  # undo the shrinkage of fitting 4 parameters
    return fitted + residuals[rng.integers(0, n, size=(n_boot, n))]


def _ed_estimate(
    point_log10: float, boot_log10: np.ndarray, level: float, method: str, n_runs: int, n_prompts: int
) -> Estimate:
    """ED as a fraction; its interval is the percentile interval of the refits' log10 ED (inf: refit was flat)."""
    tail = (1 - level) / 2
    low, high = np.quantile(boot_log10, [tail, 1 - tail], method="inverted_cdf")
    return Estimate(10**point_log10, 10 ** float(low), 10 ** float(high), level, method, n_runs, n_prompts)


def fit_dose_response(
    fractions: list[float],
    scores: list[float],
    score_runs: list[list[list[float]]] | None = None,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
    min_effect: float | None = None,
    weights: list[float] | None = None,
) -> dict:
    """Logistic dose-response on log10(fraction), with ED10 / ED50 and bootstrap intervals.

    `weights` (default: equal) weigh each point in the least squares: pass its number of runs, so a
    rung run with 12 seeds counts four times one run with 3 (each point is a mean of its runs).

    With `min_effect` > 0, also "ed_min_effect": the fitted dose where tau(f) - tau0 (tau0 = the
    fitted bottom, what fraction 0 is fitted to) reaches min_effect, with the same refits' interval
    (a refit whose effect never reaches min_effect, or that is flat, leaves the interval unbounded
    above); None with "ed_min_effect_reason" when the fitted effect never reaches it.

    Fraction-0 points are fitted to the lower asymptote `bottom`. ED10 / ED50 are the fractions
    where the curve is 10% / 50% of the way from bottom to top. "fit" is "ok"; "flat" when the
    curve does not beat a constant (F-test at 0.05) or the scores do not vary; "failed" when the
    optimiser fails; "insufficient" with fewer than 5 points or 3 distinct positive fractions.
    EDs are None unless "ok". Intervals refit resampled curves (each point's runs resampled by
    bootstrap_means when `score_runs` is given, else residuals); a refit that comes out flat
    counts as an unbounded ED, a failed one is dropped ("n_boot_ok" counts the refits kept).
    Never raises on flat or noisy data; raises ValueError on malformed input.
    """
    f, y = np.asarray(fractions, dtype=float), np.asarray(scores, dtype=float)
    if f.shape != y.shape or f.ndim != 1 or not np.isfinite(y).all() or ((f < 0) | (f > 1)).any():
        raise ValueError("fit_dose_response: need matching finite scores and fractions in [0, 1]")
    if score_runs is not None and len(score_runs) != len(f):
        raise ValueError("fit_dose_response: score_runs needs one entry per point")
    w = np.ones(len(f)) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != f.shape or not (np.isfinite(w).all() and (w > 0).all()):
        raise ValueError("fit_dose_response: weights need one positive finite value per point")
    out: dict = {
        "fit": "insufficient",
        "ed10": None,
        "ed50": None,
        "params": {"n_points": len(f)},
        "extrapolated": False,
        "n_boot": n_boot,
        "n_boot_ok": 0,
    }
    if min_effect is not None:
        out["ed_min_effect"], out["min_effect"] = None, float(min_effect)
    if len(f) < 5 or len(np.unique(f[f > 0])) < 3:
        return out
    status, params = _fit_once(f, y, w)
    out["fit"], out["params"] = status, {**params, "n_points": len(f)}
    if status != "ok":
        return out
    x_hat = np.array([params[k] for k in ("bottom", "top", "slope_per_decade", "log10_ed50")])
    boot = _refit_eds(f, _bootstrap_scores(y, _logistic(x_hat, f), score_runs, n_boot, seed), w, x_hat, min_effect)
    log_f = np.log10(f[f > 0])
    out["extrapolated"] = not log_f.min() <= params["log10_ed50"] <= log_f.max()
    out["n_boot_ok"] = len(boot)
    if not len(boot):
        return out
    n_runs, n_prompts = run_sizes(*score_runs) if score_runs is not None else (0, 0)
    how = "runs then prompts" if score_runs is not None else "residuals"
    method = f"logistic fit on log10 dose; percentile bootstrap of refits ({how}, {len(boot)}/{n_boot} refits)"
    out["ed10"] = _ed_estimate(params["log10_ed10"], boot[:, 0], level, method, n_runs, n_prompts)
    out["ed50"] = _ed_estimate(params["log10_ed50"], boot[:, 1], level, method, n_runs, n_prompts)
    if min_effect is not None:
        _add_effect_dose(out, params, boot[:, 2], min_effect, level, method, n_runs, n_prompts)
    return out


def _add_effect_dose(out: dict, params: dict, boot: np.ndarray, min_effect: float, level, method, n_runs, n_prompts):
    """out["ed_min_effect"]: the fitted dose where the effect reaches min_effect, or None and the reason."""
    if min_effect <= 0:
        out["ed_min_effect_reason"] = "min_effect is 0: every dose above 0 reaches it; set search.min_effect"
        return
    point = log10_effect_dose(params, min_effect)
    if not math.isfinite(point):
        out["ed_min_effect_reason"] = (
            f"the fitted effect top - bottom = {params['top'] - params['bottom']:.4g} never reaches min_effect {min_effect:g}"
        )
        return
    out["ed_min_effect"] = _ed_estimate(
        point, boot, level, method + f"; dose where the effect reaches {min_effect:g}", n_runs, n_prompts
    )


def _refit_eds(
    fractions: np.ndarray, curves: np.ndarray, w: np.ndarray, x_hat: np.ndarray, min_effect: float | None = None
) -> np.ndarray:
    """(n_ok, 3) log10 ED10, ED50 and min-effect dose of each resampled curve, refitted from the full-data fit;
    inf where flat (and where the refit's effect never reaches min_effect; the third column is inf without one)."""
    rows = []
    for scores in curves:
        status, params = _fit_once(fractions, scores, w, x_hat)
        if status == "ok":
            dose = log10_effect_dose(params, min_effect) if min_effect else math.inf
            rows.append((params["log10_ed10"], params["log10_ed50"], dose))
        elif status == "flat":
            rows.append((math.inf, math.inf, math.inf))
    return np.array(rows, dtype=float).reshape(-1, 3)
