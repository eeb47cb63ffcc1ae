"""The dose-response chart: the teacher's dose on a log axis (the clean baseline at a break left of
it), each rung's estimate with its interval coloured by its fixed-sequence decision, rungs the search
never ran, the fitted logistic curve (leaksweep.dose.logistic) with ED50, and the threshold.

The dose is the axis the fit used (analysis: dose_response.dose_axis): the share of the subset's rows
the trials' manifests gave the teacher, or for older analyses the rungs' nominal fractions.

`dose_chart` is the recipe; each step below draws one layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from leaksweep.dose import LOGISTIC_PARAMS, logistic
from leaksweep.report.charts import CLEAN, ED50, FIT, POINT, THRESHOLD
from leaksweep.report.fmt import esc, est, g, num, tick_pct, trial_list
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
    legend,
    log_ticks,
    nice_ticks,
    padded,
    series,
    svg,
)


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
    axis: str = "fraction"  # "share": points sit at their manifests' teacher share (the fit's axis)

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
            "share" if dr.get("dose_axis") == "share" else "fraction",
        )

    def x(self, p: dict) -> float:
        """Where a point sits on the x axis: its share on the share axis, else its fraction."""
        return float(p["share"] if self.axis == "share" and p.get("share") is not None else p["fraction"])

    def dose_of(self, fraction: float) -> float:
        """The x of the rung at `fraction` (its recorded share on the share axis)."""
        return next((self.x(p) for p in self.points if _key(p["fraction"]) == _key(fraction)), float(fraction))

    @property
    def clean(self) -> dict | None:
        """The all-clean baseline: the point at fraction 0."""
        return next((p for p in self.points if p["fraction"] == 0), None)

    @property
    def positive(self) -> list[float]:
        """The doses above 0: of the points run, and on the fraction axis of every ladder rung, ascending."""
        rungs = {float(f) for f in self.ladder if f > 0} if self.axis == "fraction" else set()
        return sorted({self.x(p) for p in self.points if p["fraction"] > 0 and self.x(p) > 0} | rungs)


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
    """A tick on the x axis for each ladder rung that was not run (fraction axis only: an unrun rung has no
    recorded share)."""
    if dose.axis == "share":
        return []
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


def _threshold_marker(frame: Frame, threshold: float, x: float, statement: str) -> str:
    """A dashed line at the fixed-sequence leak threshold (its rung's dose x); its statement on hover."""
    top, bottom = TOP, PLOT_H - BOTTOM
    px = frame.px(_clamp(frame, x))
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
                    f'stroke-width="1.5"><title>logistic fit on log10 {dose.axis}</title></polyline>'
                ],
            )
        )
        items.append(("logistic fit", FIT, "line", "fit"))
    if dose.ed50 and dose.ed50.get("value") is not None and dose.ed50["value"] > 0:
        parts.append(_ed50_marker(frame, dose.ed50))
        items.append(("ED50 (bar: interval)", ED50, "dotted", "ed50"))
    if dose.threshold is not None:
        parts.append(_threshold_marker(frame, dose.threshold, dose.dose_of(dose.threshold), dose.statement))
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
        x = dose.x(p)
        px, decision = frame.px(x if f else 0.0), dose.steps.get(_key(f))
        col, fill, kind = _rung_style(f, decision)
        where = "all-clean baseline" if f == 0 else "fraction " + tick_pct(f)
        if f and dose.axis == "share":
            where += f" (share {tick_pct(x)} of {dose.subset}'s rows from the teacher)"
        title = (
            f"{where}: {dose.trait} {est(p)} over {p.get('n_runs', '?')} run(s), trials {trial_list(p.get('trials'))}"
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
    what = "share of {}'s rows from the teacher" if dose.axis == "share" else "fraction of {} from the teacher"
    xlabel = what.format(dose.subset) + (" (log scale; 0 = all-clean baseline)" if log_x else "")
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
    title = f"dose-response: {dose.trait} vs " + what.format(dose.subset)
    return svg(parts + legend_parts, height, title, "dose-response")
