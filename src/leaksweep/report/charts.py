"""The report's charts, drawn on svg.py: trait vs teacher share, loss curves, dose-response, leak map,
teacher-vs-student offsets, the Pareto front and parameter importances.

Each chart is one function returning an inline <svg data-plot=NAME> (or "" when there is nothing to
draw); NAME is its stable hook for the page's script and tests/report/test_report_browser.py. Dose-response,
leak map and offsets are drawn from analysis.json records as written; nothing is recomputed here except
the fitted logistic curve through the fit's parameters (report/dose_chart.py draws the dose-response).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Callable

from leaksweep.report.fmt import (
    decision_title,
    esc,
    est,
    g,
    interval,
    num,
    objective_name,
    pct,
    short_reason,
    tick,
    tick_pct,
    trial_list,
)
from leaksweep.report.svg import (
    LEFT,
    PLOT_W,
    RIGHT,
    TOP,
    Frame,
    axes,
    colour,
    legend,
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
    value = (d.get("estimate") or {}).get("value")
    if key == "sufficient" and "sufficient_holm" in row and row["sufficient_holm"] is None:
        d = {**d, "passed": None, "reason": row.get("sufficient_holm_reason") or d.get("reason")}
    if d.get("passed") is None:
        return (
            f'<g class="cell na"><title>{name}: no decision ({esc(short_reason(d))}). {esc(decision_title(d))}</title>'
            f'<rect x="{x + 1}" y="{y + 1}" width="{cell_w - 2}" height="{cell_h - 2}" fill="{NOT_TESTED}"/>'
            f'<text x="{x + cell_w / 2:.0f}" y="{y + cell_h / 2 + 4:.0f}" text-anchor="middle">'
            f"– {esc(short_reason(d)) if d.get('reason', '').startswith('no trait') else esc(num(value))}</text></g>"
        )
    passed = row.get("sufficient_holm", d.get("passed")) if key == "sufficient" else d.get("passed")
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
