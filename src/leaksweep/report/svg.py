"""A small inline-SVG chart kit: frames (linear, square-root or log x), ticks, axes, legends, series groups.

It knows nothing of leaksweep, only of numbers and marks, so any chart can be drawn with it. A chart is
a list of SVG element strings placed in a PLOT_W x PLOT_H box (plus room below for the legend) by
`svg()`. `series(key, parts)` groups marks that a legend entry naming the same key toggles; the page's
script does the toggling, and each mark's <title> is its tooltip (and the no-script fallback).
All text passed in is escaped here.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Callable

esc = html.escape

PLOT_W, PLOT_H = 640, 320  # px: the chart box; legends go below it
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 12, 46  # px: margins of the plot area inside the box
ZERO_SLOT = 36  # px at the left of a log-x chart where x = 0 is drawn
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def colour(i: int) -> str:
    """The i-th series colour: a fixed palette, then evenly spread hues."""
    return PALETTE[i] if i < len(PALETTE) else f"hsl({(i * 137.5) % 360:.0f},65%,42%)"


def tick(value: float) -> str:
    """A tick label: the shortest round form of the value."""
    return f"{round(value, 10):g}"


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About `count` round tick values (steps of 1, 2, 2.5 or 5 times a power of ten) in [lo, hi]."""
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step - 1e-9)
    return [(first + i) * step for i in range(int((hi - first * step) / step + 1e-9) + 1)]


def log_ticks(lo: float, hi: float) -> list[float]:
    """Decades in [lo, hi]; 1-2-5 steps when fewer than three decades fit."""
    k0, k1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    inside = lambda v: lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9)  # noqa: E731
    decades = [10.0**k for k in range(k0, k1 + 1) if inside(10.0**k)]
    if len(decades) >= 3:
        return decades
    return [m * 10.0**k for k in range(k0, k1 + 1) for m in (1, 2, 5) if inside(m * 10.0**k)]


def padded(values: list[float], fraction: float = 0.06) -> tuple[float, float]:
    """A domain holding `values` with a margin; a single value gets a small span around it."""
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        half = max(abs(lo) * 0.1, 0.05)
        return lo - half, hi + half
    pad = (hi - lo) * fraction
    return lo - pad, hi + pad


@dataclass(frozen=True)
class Frame:
    """Maps data coordinates onto the plot area of a PLOT_W x PLOT_H chart (x optionally sqrt-scaled)."""

    x_lo: float
    x_hi: float
    y_lo: float
    y_hi: float
    sqrt_x: bool = False

    def _tx(self, x: float) -> float:
        return math.sqrt(max(x, 0.0)) if self.sqrt_x else x

    def px(self, x: float) -> float:
        lo, hi = self._tx(self.x_lo), self._tx(self.x_hi)
        return LEFT + (self._tx(x) - lo) / (hi - lo) * (PLOT_W - LEFT - RIGHT)

    def py(self, y: float) -> float:
        return TOP + (self.y_hi - y) / (self.y_hi - self.y_lo) * (PLOT_H - TOP - BOTTOM)


@dataclass(frozen=True)
class LogFrame(Frame):
    """Log10 x over [x_lo, x_hi] (both above 0), after a `zero_slot` strip at the left where x = 0 is drawn."""

    zero_slot: int = ZERO_SLOT

    def px(self, x: float) -> float:
        if x <= 0:
            return LEFT + self.zero_slot / 2
        start, span = LEFT + self.zero_slot, PLOT_W - LEFT - RIGHT - self.zero_slot
        lo, hi = math.log10(self.x_lo), math.log10(self.x_hi)
        return start + (math.log10(x) - lo) / (hi - lo) * span


def axes(
    frame: Frame,
    xticks: list[float],
    yticks: list[float],
    xlabel: str,
    ylabel: str,
    xfmt: Callable[[float], str] = tick,
) -> list[str]:
    """Grid lines, tick labels, the plot box and both axis labels."""
    right, bottom = PLOT_W - RIGHT, PLOT_H - BOTTOM
    parts = []
    for y in yticks:
        py = frame.py(y)
        parts.append(f'<line x1="{LEFT}" y1="{py:.1f}" x2="{right}" y2="{py:.1f}" stroke="#e4e4e4"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{py + 4:.1f}" text-anchor="end">{esc(tick(y))}</text>')
    for x in xticks:
        px = frame.px(x)
        parts.append(f'<line x1="{px:.1f}" y1="{bottom}" x2="{px:.1f}" y2="{bottom + 5}" stroke="#666"/>')
        parts.append(f'<text x="{px:.1f}" y="{bottom + 18}" text-anchor="middle">{esc(xfmt(x))}</text>')
    parts.append(
        f'<rect x="{LEFT}" y="{TOP}" width="{right - LEFT}" height="{bottom - TOP}" fill="none" stroke="#999"/>'
    )
    parts.append(f'<text x="{(LEFT + right) / 2:.0f}" y="{PLOT_H - 6}" text-anchor="middle">{esc(xlabel)}</text>')
    mid = (TOP + bottom) / 2
    parts.append(
        f'<text x="14" y="{mid:.0f}" text-anchor="middle" transform="rotate(-90 14 {mid:.0f})">{esc(ylabel)}</text>'
    )
    return parts


def legend_mark(x: float, y: float, col: str, style: str) -> str:
    """The swatch of a legend entry: a point, a hollow point, or a solid, dashed or dotted line."""
    if style == "point":
        return f'<circle cx="{x + 9}" cy="{y}" r="4" fill="{col}"/>'
    if style == "hollow":
        return f'<circle cx="{x + 9}" cy="{y}" r="4" fill="#fff" stroke="{col}" stroke-width="1.5"/>'
    dash = {"dashed": ' stroke-dasharray="6 4"', "dotted": ' stroke-dasharray="2 3"'}.get(style, "")
    return f'<line x1="{x}" y1="{y}" x2="{x + 18}" y2="{y}" stroke="{col}" stroke-width="2"{dash}/>'


def legend(items: list[tuple], top: int = PLOT_H + 6) -> tuple[list[str], int]:
    """Entries (label, colour, style in point|hollow|line|dashed|dotted[, series]) in rows below the plot.

    An entry naming a series is a toggle: the page's script hides and shows the chart's
    `<g data-series=...>` of that name on click. Returns (parts, height below PLOT_H).
    """
    parts, x, y = [], LEFT, top
    for item in items:
        label, col, style = item[:3]
        key = item[3] if len(item) > 3 else None
        width = 30 + 7 * len(label)
        if x + width > PLOT_W - RIGHT and x > LEFT:
            x, y = LEFT, y + 18
        parts.append(
            f'<g class="legend-item" data-series="{esc(key)}" tabindex="0" role="button" aria-pressed="true">'
            if key
            else "<g>"
        )
        parts.append(legend_mark(x, y, col, style))
        parts.append(f'<text x="{x + 24}" y="{y + 4}">{esc(label)}</text></g>')
        x += width
    return parts, y + 14 - PLOT_H if items else 0


def series(key: str, parts: list[str]) -> str:
    """Chart elements that one legend toggle hides and shows."""
    return f'<g data-series="{esc(key)}">' + "".join(parts) + "</g>"


def svg(parts: list[str], extra_height: int, title: str, plot: str, width: int = PLOT_W, height: int = PLOT_H) -> str:
    """An inline SVG chart; `plot` is its stable hook (`data-plot`) for the page's script and for tests."""
    height += extra_height
    return (
        f'<svg data-plot="{esc(plot)}" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" font-family="sans-serif" font-size="11" fill="#333" aria-label="{esc(title)}">'
        + "".join(parts)
        + "</svg>"
    )
