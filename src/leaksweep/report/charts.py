"""The report's charts, drawn on svg.py: trait vs teacher share, loss curves, dose-response, leak map,
teacher-vs-student offsets, the Pareto front and parameter importances.

Each chart is one function returning an inline <svg data-plot=NAME> (or "" when there is nothing to
draw); NAME is its stable hook for the page's script and tests/report/test_report_browser.py. Dose-response,
leak map and offsets are drawn from analysis.json records as written; nothing is recomputed here except
the fitted logistic curve (leaksweep.dose.logistic) through the fit's parameters.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Callable

from leaksweep.dose import LOGISTIC_PARAMS, logistic
from leaksweep.report.fmt import (
    decision_title,
    esc,
    est,
    g,
    interval,
    num,
    objective_name,
    pct,
    tick,
    tick_pct,
    trial_list,
)
from leaksweep.report.svg import (
    BOTTOM,
    LEFT,
    PLOT_H,
    PLOT_W,
    RIGHT,
    TOP,
    Frame,
    LogFrame,
    axes,
    colour,
    legend,
    log_ticks,
    nice_ticks,
    padded,
    series,
    svg,
)
from leaksweep.report.view import LEAK_MAP_COLUMNS, SweepView, Trial, pool

MAX_CURVE_POINTS = 300  # loss curves are thinned to at most this many points each
MAX_LEGEND_ENTRIES = 24  # more series than this: no legend, hover a series for its name
POINT, CLEAN, TEACHER = "#1f77b4", "#2ca02c", "#d62728"
FIT, THRESHOLD, ED50 = "#9467bd", "#d62728", "#ff7f0e"
LEAK, NO_LEAK, NOT_TESTED = "#e57373", "#a5d6a7", "#eeeeee"


# --- trait vs teacher share, training loss ------------------------------------------------------------


def share_axis(shares: list[float]) -> tuple[float, float, list[float], bool]:
    """(x_lo, x_hi, ticks, sqrt_x) for teacher shares; sqrt scale when small shares (a ladder) would bunch up."""
    positive = [s for s in shares if s > 0]
    top = max(shares + [0.05])
    if positive and min(positive) < top / 10:
        return 0.0, top * 1.03, [t for t in (0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0) if t <= top + 1e-9], True
    lo, hi = padded([0.0, top], 0.04)
    return lo, hi, nice_ticks(0.0, top), False


def _baseline_band(frame: Frame, name: str, col: str, p) -> str:
    """A pooled baseline across the chart: its interval as a band, its score as a dashed line."""
    x0, x1 = frame.px(frame.x_lo), frame.px(frame.x_hi)
    top, bottom = frame.py(p.high), frame.py(p.low)
    return series(
        name,
        [
            f'<rect x="{x0:.1f}" y="{top:.1f}" width="{x1 - x0:.1f}" height="{bottom - top:.1f}" '
            f'fill="{col}" fill-opacity="0.12"><title>{esc(name)}: {esc(p.describe())}</title></rect>',
            f'<line x1="{x0:.1f}" y1="{frame.py(p.score):.1f}" x2="{x1:.1f}" y2="{frame.py(p.score):.1f}" '
            f'stroke="{col}" stroke-width="1.5" stroke-dasharray="6 4"/>',
        ],
    )


def trait_chart(view: SweepView, subset: str, trait: str) -> str:
    """Trait score vs the teacher's share of `subset`: mixture points with interval bars, baselines as bands."""
    points = [(t.share(subset), s, t) for t in view.of("mixture") if (s := t.score(trait))]
    baselines = [
        (name, col, p)
        for name, col, p in (
            ("all-clean", CLEAN, pool(view.of("all_clean"), trait)),
            ("all-teacher", TEACHER, pool(view.of("all_teacher"), trait)),
        )
        if p
    ]
    ys = [v for _, s, _ in points for v in (s.low, s.high)] + [v for _, _, p in baselines for v in (p.low, p.high)]
    x_lo, x_hi, xticks, sqrt_x = share_axis([x for x, _, _ in points])
    y_lo, y_hi = padded(ys)
    frame = Frame(x_lo, x_hi, y_lo, y_hi, sqrt_x)
    xlabel = f"teacher share of {subset}" + (" (square-root scale)" if sqrt_x else "")
    parts = axes(frame, xticks, nice_ticks(y_lo, y_hi), xlabel, trait, xfmt=tick_pct)
    parts += [_baseline_band(frame, name, col, p) for name, col, p in baselines]
    marks = []
    for x, s, t in points:
        px = frame.px(x)
        marks.append(
            f'<line x1="{px:.1f}" y1="{frame.py(s.low):.1f}" x2="{px:.1f}" y2="{frame.py(s.high):.1f}" '
            f'stroke="{POINT}" stroke-width="1.5"/>'
        )
        marks.append(
            f'<circle cx="{px:.1f}" cy="{frame.py(s.score):.1f}" r="4" fill="{POINT}"><title>'
            f"trial {t.number}: {esc(t.label)}: teacher share of {esc(subset)} {pct(x)}, {esc(trait)} "
            f"{interval(s.score, s.low, s.high)}</title></circle>"
        )
    parts.append(series("mixture", marks))
    items = [("mixture trials (95% interval)", POINT, "point", "mixture")] + [
        (f"{name} baseline (band: interval)", col, "dashed", name) for name, col, _ in baselines
    ]
    legend_parts, height = legend(items)
    return svg(parts + legend_parts, height, f"{trait} vs teacher share of {subset}", "trait-vs-share")


def loss_curve(trial: Trial, max_points: int = MAX_CURVE_POINTS) -> list[tuple[float, float]]:
    """(step, train/loss) pairs from the trial's training log, thinned to `max_points` (and the last)."""
    points = [
        (float(r["step"]), float(r["train/loss"]))
        for r in trial.dir.read_train_log()
        if "step" in r and isinstance(r.get("train/loss"), (int, float))
    ]
    stride = max(1, math.ceil(len(points) / max_points))
    thinned = points[::stride]
    return thinned if not points or thinned[-1] == points[-1] else thinned + points[-1:]


def loss_chart(curves: dict[int, list[tuple[float, float]]]) -> str:
    """Every trial's loss curve in one chart, one colour per trial."""
    xs = [x for c in curves.values() for x, _ in c]
    ys = [y for c in curves.values() for _, y in c]
    (x_lo, x_hi), (y_lo, y_hi) = padded(xs, 0.02), padded(ys)
    frame = Frame(x_lo, x_hi, y_lo, y_hi)
    parts = axes(frame, nice_ticks(x_lo, x_hi), nice_ticks(y_lo, y_hi), "step", "train loss")
    items = []
    for i, (number, curve) in enumerate(curves.items()):
        coords = " ".join(f"{frame.px(x):.1f},{frame.py(y):.1f}" for x, y in curve)
        last_step, last_loss = curve[-1]
        parts.append(
            series(
                f"trial-{number}",
                [
                    f'<polyline points="{coords}" fill="none" stroke="{colour(i)}" stroke-width="1.5">'
                    f"<title>trial {number}: final train loss {num(last_loss)} at step {tick(last_step)}</title></polyline>"
                ],
            )
        )
        items.append((f"trial {number}", colour(i), "line", f"trial-{number}"))
    # a legend of hundreds of trials would be taller than the chart; hovering a curve names its trial
    legend_parts, height = legend(items) if len(items) <= MAX_LEGEND_ENTRIES else ([], 0)
    return svg(parts + legend_parts, height, "training loss per trial", "training-curves")


# --- dose-response (analysis.json dose_response entries) -----------------------------------------------


def _key(f: float) -> float:
    return round(float(f), 12)


@dataclass(frozen=True)
class Dose:
    """One dose_response entry of analysis.json, as the chart needs it."""

    subset: str
    trait: str
    points: list[dict]  # rungs with a value: {fraction, value, low, high, n_runs, trials, level}
    ladder: list[float]
    steps: dict[float, dict]  # the fixed-sequence decision per rung (keyed by _key(fraction))
    threshold: float | None
    statement: str
    fit_params: dict | None  # the logistic fit's parameters when the fit is ok
    ed50: dict | None
    min_effect: float

    @staticmethod
    def read(dr: dict, analysis: dict) -> "Dose":
        seq, fit = dr.get("threshold") or {}, dr.get("fit") or {}
        params = fit.get("params") or {}
        ok = fit.get("fit") == "ok" and all(k in params for k in LOGISTIC_PARAMS)
        return Dose(
            str(dr.get("subset", "?")),
            str(dr.get("trait", "?")),
            [p for p in dr.get("points", []) if p.get("value") is not None],
            list(dr.get("ladder", [])),
            {_key(s["fraction"]): s.get("decision") or {} for s in seq.get("steps", [])},
            seq.get("threshold"),
            str(seq.get("statement", "")),
            params if ok else None,
            fit.get("ed50") if ok else None,
            float(analysis.get("min_effect") or 0.0),
        )

    @property
    def clean(self) -> dict | None:
        """The all-clean baseline: the point at fraction 0."""
        return next((p for p in self.points if p["fraction"] == 0), None)

    @property
    def positive(self) -> list[float]:
        """The fractions above 0, run or on the ladder, ascending."""
        return sorted(
            {float(p["fraction"]) for p in self.points if p["fraction"] > 0} | {float(f) for f in self.ladder if f > 0}
        )


def _dose_frame(dose: Dose) -> tuple[Frame, list[float], list[tuple[float, float]]]:
    """(frame, x ticks, fitted curve points): log x when the fractions span a decade or more."""
    positive = dose.positive
    log_x = len(positive) >= 2 and positive[-1] / positive[0] >= 10
    if log_x:
        pad = 10 ** (0.04 * math.log10(positive[-1] / positive[0]))
        x_lo, x_hi = positive[0] / pad, positive[-1] * pad
        grid = [x_lo * (x_hi / x_lo) ** (i / 150) for i in range(151)]
    else:
        x_lo, x_hi = padded([0.0] + (positive or [1.0]), 0.04)
        grid = [max(x_hi, 1e-9) * i / 150 for i in range(1, 151)]
    ys = [v for p in dose.points for v in (p["value"], p.get("low"), p.get("high")) if v is not None]
    if dose.clean and dose.min_effect > 0:
        ys.append(dose.clean["value"] + dose.min_effect)
    curve_xy = [(x, logistic(dose.fit_params, x)) for x in grid] if dose.fit_params else []
    ys += [y for _, y in curve_xy]
    y_lo, y_hi = padded(ys or [0.0, 1.0])
    if log_x:
        return LogFrame(x_lo, x_hi, y_lo, y_hi), [0.0] + log_ticks(x_lo, x_hi), curve_xy
    return Frame(x_lo, x_hi, y_lo, y_hi), nice_ticks(0.0, max(positive or [1.0])), curve_xy


def _axis_break(frame: LogFrame) -> str:
    """The x axis is broken between fraction 0 and the log-scaled rungs."""
    bx, bottom = LEFT + frame.zero_slot - 5, PLOT_H - BOTTOM
    return (
        f'<rect x="{bx - 4}" y="{bottom - 6}" width="8" height="12" fill="#fff"/>'
        f'<path class="axis-break" d="M{bx - 5},{bottom + 5} L{bx - 1},{bottom - 5} M{bx + 1},{bottom + 5} '
        f'L{bx + 5},{bottom - 5}" stroke="#666"/>'
    )


def _clean_lines(frame: Frame, dose: Dose) -> tuple[list[str], list[tuple]]:
    """The all-clean score τ0 across the chart, and τ0 + min effect (the sufficiency bar) when set."""
    clean, parts, items = dose.clean, [], []
    if clean is None:
        return parts, items
    y0 = frame.py(clean["value"])
    parts.append(
        f'<line x1="{LEFT}" y1="{y0:.1f}" x2="{PLOT_W - RIGHT}" y2="{y0:.1f}" stroke="{CLEAN}" '
        f'stroke-width="1" stroke-dasharray="6 4"/>'
    )
    if dose.min_effect > 0:
        ym = frame.py(clean["value"] + dose.min_effect)
        parts.append(
            series(
                "min-effect",
                [
                    f'<line x1="{LEFT}" y1="{ym:.1f}" x2="{PLOT_W - RIGHT}" y2="{ym:.1f}" stroke="{CLEAN}" '
                    f'stroke-width="1" stroke-dasharray="2 3"><title>τ0 + min effect {g(dose.min_effect)} = '
                    f"{num(clean['value'] + dose.min_effect)}</title></line>"
                ],
            )
        )
        items.append((f"τ0 + min effect ({g(dose.min_effect)})", CLEAN, "dotted", "min-effect"))
    return parts, items


def _untested_rungs(frame: Frame, dose: Dose) -> list[str]:
    """A tick on the x axis for each ladder rung that was not run."""
    run = {_key(p["fraction"]) for p in dose.points}
    bottom = PLOT_H - BOTTOM
    return [
        f'<line x1="{frame.px(float(f)):.1f}" y1="{bottom}" x2="{frame.px(float(f)):.1f}" y2="{bottom - 6}" '
        f'stroke="#999"><title>rung {tick_pct(f)}: not run</title></line>'
        for f in dose.ladder
        if _key(f) not in run
    ]


def _clamp(frame: Frame, x: float) -> float:
    return min(max(x, frame.x_lo), frame.x_hi)


def _ed50_marker(frame: Frame, ed50: dict) -> str:
    """A dotted line at ED50 and its interval as a bar (an unbounded side runs to the chart's edge)."""
    top, bottom = TOP, PLOT_H - BOTTOM
    px = frame.px(_clamp(frame, ed50["value"]))
    lo_px = frame.px(_clamp(frame, ed50["low"])) if ed50.get("low") is not None else frame.px(frame.x_lo)
    hi_px = frame.px(_clamp(frame, ed50["high"])) if ed50.get("high") is not None else PLOT_W - RIGHT
    yb = top + 34
    anchor, dx = ("end", -4) if px > PLOT_W - RIGHT - 90 else ("start", 4)
    return (
        f'<g class="ed50" data-series="ed50"><title>ED50 = {est(ed50)}</title>'
        f'<line x1="{px:.1f}" y1="{top}" x2="{px:.1f}" y2="{bottom}" stroke="{ED50}" stroke-dasharray="2 3"/>'
        f'<line x1="{lo_px:.1f}" y1="{yb}" x2="{hi_px:.1f}" y2="{yb}" stroke="{ED50}" stroke-width="2"/>'
        f'<text x="{px + dx:.1f}" y="{yb - 5}" text-anchor="{anchor}" fill="{ED50}">'
        f"ED50 {ed50['value'] * 100:.3g}%</text></g>"
    )


def _threshold_marker(frame: Frame, threshold: float, statement: str) -> str:
    """A dashed line at the fixed-sequence leak threshold; its statement on hover."""
    top, bottom = TOP, PLOT_H - BOTTOM
    px = frame.px(_clamp(frame, float(threshold)))
    anchor, dx = ("end", -4) if px > PLOT_W - RIGHT - 120 else ("start", 4)
    return (
        f'<g class="threshold" data-series="threshold"><title>{esc(statement)}</title>'
        f'<line x1="{px:.1f}" y1="{top}" x2="{px:.1f}" y2="{bottom}" stroke="{THRESHOLD}" '
        f'stroke-width="2" stroke-dasharray="6 4"/>'
        f'<text x="{px + dx:.1f}" y="{top + 14}" text-anchor="{anchor}" fill="{THRESHOLD}">'
        f"threshold {esc(tick_pct(float(threshold)))}</text></g>"
    )


def _fit_and_markers(frame: Frame, dose: Dose, curve_xy: list[tuple[float, float]]) -> tuple[list[str], list[tuple]]:
    """The fitted curve, ED50 and the threshold, each with its legend entry when drawn."""
    parts, items = [], []
    if curve_xy:
        coords = " ".join(f"{frame.px(x):.1f},{frame.py(y):.1f}" for x, y in curve_xy)
        parts.append(
            series(
                "fit",
                [
                    f'<polyline class="fit" points="{coords}" fill="none" stroke="{FIT}" '
                    f'stroke-width="1.5"><title>logistic fit on log10 fraction</title></polyline>'
                ],
            )
        )
        items.append(("logistic fit", FIT, "line", "fit"))
    if dose.ed50 and dose.ed50.get("value") is not None and dose.ed50["value"] > 0:
        parts.append(_ed50_marker(frame, dose.ed50))
        items.append(("ED50 (bar: interval)", ED50, "dotted", "ed50"))
    if dose.threshold is not None:
        parts.append(_threshold_marker(frame, dose.threshold, dose.statement))
        items.append(("leak threshold (fixed sequence)", THRESHOLD, "dashed", "threshold"))
    return parts, items


RUNG_KINDS = (
    ("clean", "all-clean baseline (fraction 0)", CLEAN, "point"),
    ("passed", "rung shown sufficient", POINT, "point"),
    ("failed", "rung not shown sufficient (sequence stops)", POINT, "hollow"),
    ("untested", "rung below the stop (not tested in the sequence)", "#999", "hollow"),
)


def _rung_style(f: float, decision: dict | None) -> tuple[str, str, str]:
    """(stroke, fill, kind) of a rung: the clean baseline, not tested, shown sufficient, or not."""
    if f == 0:
        return CLEAN, CLEAN, "clean"
    if decision is None:
        return "#999", "#fff", "untested"
    if decision.get("passed"):
        return POINT, POINT, "passed"
    return POINT, "#fff", "failed"


def _rung_marks(frame: Frame, dose: Dose) -> dict[str, list[str]]:
    """Each rung's mean with its interval bar, grouped by kind (see RUNG_KINDS)."""
    marks: dict[str, list[str]] = {}
    for p in dose.points:
        f = float(p["fraction"])
        px, decision = frame.px(f), dose.steps.get(_key(f))
        col, fill, kind = _rung_style(f, decision)
        title = (
            f"{'all-clean baseline' if f == 0 else 'fraction ' + tick_pct(f)}: {dose.trait} {est(p)} over "
            f"{p.get('n_runs', '?')} run(s), trials {trial_list(p.get('trials'))}"
        )
        if decision:
            title += f". {decision.get('statement', '')}"
        group = marks.setdefault(kind, [])
        if p.get("low") is not None and p.get("high") is not None:
            group.append(
                f'<line x1="{px:.1f}" y1="{frame.py(p["low"]):.1f}" '
                f'x2="{px:.1f}" y2="{frame.py(p["high"]):.1f}" '
                f'stroke="{col}" stroke-width="1.5"/>'
            )
        group.append(
            f'<circle class="rung {kind}" cx="{px:.1f}" cy="{frame.py(p["value"]):.1f}" r="4" fill="{fill}" '
            f'stroke="{col}" stroke-width="1.5"><title>{esc(title)}</title></circle>'
        )
    return marks


def dose_chart(dr: dict, analysis: dict) -> str:
    """Trait vs fraction of the subset from the teacher: rungs with intervals, fit, threshold and ED50."""
    dose = Dose.read(dr, analysis)
    frame, xticks, curve_xy = _dose_frame(dose)
    log_x = isinstance(frame, LogFrame)
    xlabel = f"fraction of {dose.subset} from the teacher" + (" (log scale; 0 = all-clean baseline)" if log_x else "")
    parts = axes(frame, xticks, nice_ticks(frame.y_lo, frame.y_hi), xlabel, dose.trait, xfmt=tick_pct)
    if log_x:
        parts.append(_axis_break(frame))
    clean_parts, clean_items = _clean_lines(frame, dose)
    fit_parts, fit_items = _fit_and_markers(frame, dose, curve_xy)
    marks = _rung_marks(frame, dose)
    parts += clean_parts + _untested_rungs(frame, dose) + fit_parts
    parts += [series(f"rungs-{kind}", group) for kind, group in marks.items()]
    items = [(label, col, style, f"rungs-{kind}") for kind, label, col, style in RUNG_KINDS if kind in marks]
    legend_parts, height = legend(items + clean_items + fit_items)
    title = f"dose-response: {dose.trait} vs fraction of {dose.subset} from the teacher"
    return svg(parts + legend_parts, height, title, "dose-response")


# --- leak map, offsets (analysis.json leak_map, teachers / students) ---------------------------------------


def leak_map_chart(analysis: dict) -> str:
    """The leak map as a grid: a row per subset, a column per trait × decision; red = the test passed."""
    table = analysis.get("leak_map") or {}
    subsets = list(dict.fromkeys(s for rows in table.values() for s in rows))
    columns = [
        (t, k, label)
        for t, rows in table.items()
        for k, label in LEAK_MAP_COLUMNS
        if any(k in rows.get(s, {}) for s in subsets)
    ]
    if not columns:
        return ""
    cell_w, cell_h, label_w, head_h = 118, 34, max(90, 8 * max(len(s) for s in subsets) + 16), 40
    width, height = label_w + cell_w * len(columns) + RIGHT, head_h + cell_h * len(subsets) + 8
    parts = []
    for j, (t, _, label) in enumerate(columns):
        x = label_w + j * cell_w + cell_w / 2
        parts.append(
            f'<text x="{x:.0f}" y="14" text-anchor="middle" font-weight="bold">{esc(t)}</text>'
            f'<text x="{x:.0f}" y="30" text-anchor="middle">{esc(label)}</text>'
        )
    for i, s in enumerate(subsets):
        y = head_h + i * cell_h
        parts.append(f'<text x="{label_w - 8}" y="{y + cell_h / 2 + 4:.0f}" text-anchor="end">{esc(s)}</text>')
        for j, (t, key, label) in enumerate(columns):
            parts.append(
                _leak_cell(
                    table[t].get(s, {}),
                    key,
                    f"{esc(s)}, {esc(t)}, {esc(label)}",
                    label_w + j * cell_w,
                    y,
                    cell_w,
                    cell_h,
                )
            )
    return svg(parts, 0, "leak map: decisions per subset", "leak-map", width=width, height=height)


def _leak_cell(row: dict, key: str, name: str, x: float, y: float, cell_w: int, cell_h: int) -> str:
    """One cell of the leak map: grey when not tested, else red (passed) or green with the estimate."""
    d = row.get(key)
    if not d:
        return (
            f'<rect x="{x + 1}" y="{y + 1}" width="{cell_w - 2}" height="{cell_h - 2}" fill="{NOT_TESTED}">'
            f"<title>{name}: not tested</title></rect>"
        )
    passed = row.get("sufficient_holm", d.get("passed")) if key == "sufficient" else d.get("passed")
    value = (d.get("estimate") or {}).get("value")
    return (
        f'<g class="cell {"pass" if passed else "fail"}"><title>{name}: '
        f"{'passed' if passed else 'not passed'}. {esc(decision_title(d))}</title>"
        f'<rect x="{x + 1}" y="{y + 1}" width="{cell_w - 2}" height="{cell_h - 2}" '
        f'fill="{LEAK if passed else NO_LEAK}"/>'
        f'<text x="{x + cell_w / 2:.0f}" y="{y + cell_h / 2 + 4:.0f}" text-anchor="middle">'
        f"{'✓' if passed else '✗'} {esc(num(value)) if value is not None else ''}</text></g>"
    )


def _estimate_marks(e: dict, y: float, px: Callable[[float], float], col: str, shape: str, title: str) -> list[str]:
    """A point estimate at height y with its interval as a horizontal bar; `px` maps a value to x."""
    x, out = px(e["value"]), []
    if e.get("low") is not None and e.get("high") is not None:
        out.append(
            f'<line x1="{px(e["low"]):.1f}" y1="{y:.1f}" x2="{px(e["high"]):.1f}" y2="{y:.1f}" '
            f'stroke="{col}" stroke-width="2"/>'
        )
    if shape == "square":
        out.append(
            f'<rect x="{x - 4.5:.1f}" y="{y - 4.5:.1f}" width="9" height="9" fill="{col}">'
            f"<title>{esc(title)}</title></rect>"
        )
    else:
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{col}"><title>{esc(title)}</title></circle>')
    return out


def _has(e: dict | None) -> bool:
    return bool(e) and e.get("value") is not None


@dataclass(frozen=True)
class _Rows:
    """The offsets chart's geometry: a row per source, a value axis from label_w to the right edge."""

    x_lo: float
    x_hi: float
    label_w: int
    bottom: int

    row_h = 34

    def px(self, v: float) -> float:
        return self.label_w + (v - self.x_lo) / (self.x_hi - self.x_lo) * (PLOT_W - RIGHT - self.label_w)

    def y(self, i: int) -> float:
        return TOP + self.row_h * i + self.row_h / 2


def _offsets_grid(rows: _Rows, trait: str) -> list[str]:
    """The arrow head, vertical grid lines with their labels, the plot box and the axis label."""
    px, bottom, label_w = rows.px, rows.bottom, rows.label_w
    parts = [
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>'
    ]
    for x in nice_ticks(rows.x_lo, rows.x_hi):
        parts.append(
            f'<line x1="{px(x):.1f}" y1="{TOP}" x2="{px(x):.1f}" y2="{bottom}" stroke="#e4e4e4"/>'
            f'<text x="{px(x):.1f}" y="{bottom + 16}" text-anchor="middle">{esc(tick(x))}</text>'
        )
    parts.append(
        f'<rect x="{label_w}" y="{TOP}" width="{PLOT_W - RIGHT - label_w}" height="{bottom - TOP}" '
        f'fill="none" stroke="#999"/><text x="{(label_w + PLOT_W - RIGHT) / 2:.0f}" y="{bottom + 34}" '
        f'text-anchor="middle">{esc(trait)}</text>'
    )
    return parts


def _offset_marks(rows: _Rows, sources: list[str], teachers: dict, students: dict, trait: str):
    """(source labels, teacher marks, student marks, arrows): τT above the row, τS below, an arrow from τT to τS."""
    labels, teacher_marks, student_marks, arrows = [], [], [], []
    for i, src in enumerate(sources):
        y, px = rows.y(i), rows.px
        labels.append(f'<text x="{rows.label_w - 8}" y="{y + 4:.0f}" text-anchor="end">{esc(src)}</text>')
        t, st = teachers.get(src, {}).get(trait), students.get(src, {}).get(trait)
        if _has(t):
            teacher_marks += _estimate_marks(
                t,
                y - 6,
                px,
                TEACHER,
                "square",
                f"teacher {src} itself: {trait} τT = {est(t)}, trials {trial_list(t.get('trials'))}",
            )
        if _has(st):
            student_marks += _estimate_marks(
                st,
                y + 6,
                px,
                POINT,
                "circle",
                f"student trained on all of {src}: {trait} τS = {est(st)}, trials {trial_list(st.get('trials'))}",
            )
        if _has(t) and _has(st):
            arrows.append(
                f'<line x1="{px(t["value"]):.1f}" y1="{y:.1f}" x2="{px(st["value"]):.1f}" y2="{y:.1f}" '
                f'stroke="#555" stroke-width="1.2" marker-end="url(#arrow)"><title>{esc(src)}: offset '
                f"τS − τT = {num(st['value'] - t['value'])}</title></line>"
            )
    return labels, teacher_marks, student_marks, arrows


def offsets_chart(analysis: dict, trait: str) -> str:
    """Per source: the teacher's own score τT and the student's τS (intervals), an arrow from one to the other."""
    teachers, students = analysis.get("teachers") or {}, analysis.get("students") or {}
    clean = ((analysis.get("baselines") or {}).get(trait) or {}).get("all_clean")
    sources = [
        s
        for s in dict.fromkeys(list(teachers) + list(students))
        if _has(teachers.get(s, {}).get(trait)) or _has(students.get(s, {}).get(trait))
    ]
    if not sources:
        return ""
    ests = [e for s in sources for e in (teachers.get(s, {}).get(trait), students.get(s, {}).get(trait)) if _has(e)]
    xs = [v for e in ests for v in (e["value"], e.get("low"), e.get("high")) if v is not None]
    if _has(clean):
        xs.append(clean["value"])
    x_lo, x_hi = padded(xs)
    label_w = max(LEFT, 8 * max(len(s) for s in sources) + 16)
    rows = _Rows(x_lo, x_hi, label_w, TOP + _Rows.row_h * len(sources))
    labels, teacher_marks, student_marks, arrows = _offset_marks(rows, sources, teachers, students, trait)
    parts, items = _offsets_grid(rows, trait) + labels, []
    if _has(clean):
        x0 = rows.px(clean["value"])
        parts.append(
            series(
                "clean",
                [
                    f'<line x1="{x0:.1f}" y1="{TOP}" x2="{x0:.1f}" y2="{rows.bottom}" '
                    f'stroke="{CLEAN}" '
                    f'stroke-width="1.5" stroke-dasharray="6 4"><title>all-clean student τ0 = '
                    f"{esc(est(clean))}</title></line>"
                ],
            )
        )
        items.append(("all-clean student τ0", CLEAN, "dashed", "clean"))
    for key, marks, label, col in (
        ("teacher", teacher_marks, "teacher's own score τT (interval)", TEACHER),
        ("student", student_marks, "student trained on the source τS (interval)", POINT),
        ("offset", arrows, "offset τT → τS", "#555"),
    ):
        if marks:
            parts.append(series(key, marks))
            items.append((label, col, "line" if key == "offset" else "point", key))
    legend_parts, extra = legend(items, top=rows.bottom + 52)
    return svg(parts + legend_parts, extra, f"teacher vs student: {trait}", "offsets")


# --- the Optuna study: Pareto front, parameter importances --------------------------------------------------


def _params_text(params: dict) -> str:
    return ", ".join(f"{k} = {g(v) if isinstance(v, (int, float)) else v}" for k, v in params.items()) or "no params"


def pareto_chart(study: dict) -> str:
    """The first two objectives of every complete trial; the Pareto front filled and joined."""
    names, directions = study.get("objectives", []), study.get("directions", [])
    trials = [
        t
        for t in study.get("trials", [])
        if len(t.get("values") or []) >= 2
        and all(isinstance(v, (int, float)) and math.isfinite(v) for v in t["values"][:2])
    ]
    if len(names) < 2 or not trials:
        return ""
    front = set(study.get("pareto", []))
    (x_lo, x_hi), (y_lo, y_hi) = padded([t["values"][0] for t in trials]), padded([t["values"][1] for t in trials])
    frame = Frame(x_lo, x_hi, y_lo, y_hi)
    xlabel, ylabel = (html.unescape(objective_name(n, d)) for n, d in zip(names[:2], directions[:2]))
    parts = axes(frame, nice_ticks(x_lo, x_hi), nice_ticks(y_lo, y_hi), xlabel, ylabel)
    on, off = [], []
    for t in trials:
        x, y = t["values"][:2]
        title = (
            f"trial {t['number']}{' (Pareto front)' if t['number'] in front else ''}: {names[0]} {num(x)}, "
            f"{names[1]} {num(y)}; {_params_text(t.get('params', {}))}"
        )
        mark = (
            f'<circle cx="{frame.px(x):.1f}" cy="{frame.py(y):.1f}" r="{5 if t["number"] in front else 4}" '
            f'fill="{TEACHER if t["number"] in front else "#fff"}" '
            f'stroke="{TEACHER if t["number"] in front else "#888"}" '
            f'stroke-width="1.5"><title>{esc(title)}</title></circle>'
        )
        (on if t["number"] in front else off).append(mark)
    line = sorted((t["values"][0], t["values"][1]) for t in trials if t["number"] in front)
    if len(line) > 1:
        coords = " ".join(f"{frame.px(x):.1f},{frame.py(y):.1f}" for x, y in line)
        on.insert(
            0, f'<polyline points="{coords}" fill="none" stroke="{TEACHER}" stroke-width="1" stroke-dasharray="4 3"/>'
        )
    parts += [series("dominated", off), series("pareto", on)]
    items = [
        (f"Pareto front ({len(front)} trials)", TEACHER, "point", "pareto"),
        (f"other trials ({len(off)})", "#888", "hollow", "dominated"),
    ]
    legend_parts, height = legend(items)
    return svg(parts + legend_parts, height, "Pareto front of the first two objectives", "pareto")


def importance_chart(study: dict) -> str:
    """A horizontal bar per parameter and objective: Optuna's importance (they sum to 1 per objective)."""
    importances = study.get("importances") or {}
    if not importances:
        return ""
    params = list(dict.fromkeys(p for by_param in importances.values() for p in by_param))
    objectives = list(importances)
    bar_h, gap = 14, 10
    label_w = max(LEFT, 7 * max(len(p) for p in params) + 16)
    group_h = bar_h * len(objectives) + gap
    bottom = TOP + group_h * len(params)
    px = lambda v: label_w + v * (PLOT_W - RIGHT - label_w)  # noqa: E731
    parts = []
    for x in (0, 0.25, 0.5, 0.75, 1.0):
        parts.append(
            f'<line x1="{px(x):.1f}" y1="{TOP}" x2="{px(x):.1f}" y2="{bottom}" stroke="#e4e4e4"/>'
            f'<text x="{px(x):.1f}" y="{bottom + 16}" text-anchor="middle">{tick(x)}</text>'
        )
    parts.append(
        f'<text x="{(label_w + PLOT_W - RIGHT) / 2:.0f}" y="{bottom + 34}" text-anchor="middle">'
        f"importance (normalised: sums to 1 per objective)</text>"
    )
    bars: dict[str, list[str]] = {o: [] for o in objectives}
    for i, p in enumerate(params):
        y0 = TOP + i * group_h
        parts.append(f'<text x="{label_w - 8}" y="{y0 + group_h / 2:.0f}" text-anchor="end">{esc(p)}</text>')
        for j, o in enumerate(objectives):
            v = float(importances[o].get(p, 0.0))
            bars[o].append(
                f'<rect x="{label_w}" y="{y0 + j * bar_h}" width="{max(px(v) - label_w, 1):.1f}" '
                f'height="{bar_h - 2}" fill="{colour(j)}"><title>{esc(p)}: importance {v:.3f} for '
                f"{esc(o)}</title></rect>"
            )
    parts += [series(f"objective-{j}", bars[o]) for j, o in enumerate(objectives)]
    items = [(o, colour(j), "point", f"objective-{j}") for j, o in enumerate(objectives)]
    legend_parts, extra = legend(items, top=bottom + 52)
    return svg(parts + legend_parts, extra, "parameter importances", "importances")
