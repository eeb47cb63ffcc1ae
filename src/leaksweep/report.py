"""Report stage: one self-contained HTML page that answers a sweep's question from its folder.

The report reads only the sweep folder (DESIGN.md: "report reads trial dirs only"):

    sweep.json                     the resolved sweep config
    trials/NNNNN/result.json       a complete trial (its presence means done)
    trials/NNNNN/train_log.jsonl   the training curve
    trials/NNNNN/samples.jsonl     every eval generation with its judge verdict
    trials/NNNNN/spec.json         a started trial; with error.json instead of result.json, a failed one

The page has inline CSS, inline SVG charts drawn by the small helpers below and a few lines of
inline JS that sort the table; it loads nothing from elsewhere. All text taken from the folder is
HTML-escaped: responses are untrusted model output.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from pathlib import Path

from leaksweep.errors import UserError
from leaksweep.files import atomic_write_text, read_json, read_jsonl

SWEEP_FILE, TRIALS_DIR, REPORT_FILE = "sweep.json", "trials", "report.html"
SPEC, RESULT, ERROR = "spec.json", "result.json", "error.json"
TRAIN_LOG, SAMPLES = "train_log.jsonl", "samples.jsonl"

SAMPLES_PER_TRAIT = 5  # generations shown per trait for the best and the worst trial
MAX_TEXT_CHARS = 1500  # longer prompts/responses are cut in the samples section
MAX_CURVE_POINTS = 300  # loss curves are thinned to at most this many points each

esc = html.escape


# --- reading the sweep folder --------------------------------------------------------------------


@dataclass(frozen=True)
class Trial:
    """One complete trial: its folder and its result.json."""

    dir: Path
    result: dict

    @property
    def number(self) -> int:
        return int(self.result["trial"])

    @property
    def condition(self) -> str:
        return self.result.get("condition", "mixture")

    @property
    def label(self) -> str:
        return str(self.result.get("label", f"trial {self.number}"))

    def share(self, subset: str) -> float:
        """The teacher's share of `subset`'s prompts in this trial's manifest (0 when not recorded)."""
        return float(self.result.get("manifest", {}).get("teacher_share", {}).get(subset, 0.0))

    def score(self, trait: str) -> dict | None:
        """The trait's {score, low, high, ...} record, or None when the trial did not score it."""
        return self.result.get("traits", {}).get(trait)

    def patches(self, subset: str, teacher: str) -> bool:
        """Whether the plan patches `subset` with the teacher's rollouts (at a fraction above 0)."""
        return any(_is_teacher_patch(rule, teacher) and rule.get("subset") == subset for rule in self._rules())

    def patches_only(self, subset: str, teacher: str) -> bool:
        """Whether every rule of the plan patches `subset` with the teacher (no other subsets, no drops)."""
        rules = self._rules()
        return bool(rules) and all(_is_teacher_patch(r, teacher) and r.get("subset") == subset for r in rules)

    def _rules(self) -> list[dict]:
        return self.result.get("plan", {}).get("rules", [])


def _is_teacher_patch(rule: dict, teacher: str) -> bool:
    return rule.get("action") == "patch" and rule.get("source") == teacher and float(rule.get("fraction", 0)) > 0


def _require_sweep_folder(sweep_dir: Path) -> None:
    if not (sweep_dir / SWEEP_FILE).is_file():
        raise UserError(
            f"{sweep_dir}: not a sweep folder (no {SWEEP_FILE} in it); "
            f"pass the folder a sweep writes, the one holding {SWEEP_FILE} and {TRIALS_DIR}/"
        )


def _complete_trials(sweep_dir: Path) -> list[Trial]:
    _require_sweep_folder(sweep_dir)
    trials = [Trial(p.parent, read_json(p)) for p in (sweep_dir / TRIALS_DIR).glob(f"*/{RESULT}")]
    return sorted(trials, key=lambda t: t.number)


def load_trials(sweep_dir: Path) -> list[dict]:
    """The result.json dicts of the sweep's complete trials, sorted by trial number.

    Raises UserError when `sweep_dir` has no sweep.json; returns [] while no trial is complete.
    """
    return [t.result for t in _complete_trials(Path(sweep_dir))]


def _unfinished(sweep_dir: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """Trial folders started but without a result: (running or stopped, [(failed, error message)])."""
    running, failed = [], []
    for spec in sorted((sweep_dir / TRIALS_DIR).glob(f"*/{SPEC}")):
        folder = spec.parent
        if (folder / RESULT).exists():
            continue
        if (folder / ERROR).exists():
            failed.append((folder.name, str(read_json(folder / ERROR).get("error", "(no message)"))))
        else:
            running.append(folder.name)
    return running, failed


@dataclass(frozen=True)
class Pooled:
    """Trials of one condition summarised conservatively: mean score, lowest low, highest high."""

    trials: tuple[Trial, ...]
    score: float
    low: float
    high: float

    def describe(self) -> str:
        if len(self.trials) == 1:
            return f"{_interval(self.score, self.low, self.high)} (trial {self.trials[0].number})"
        numbers = ", ".join(str(t.number) for t in self.trials)
        return (f"mean {_num(self.score)} over {len(self.trials)} trials ({numbers}), "
                f"their intervals within [{_num(self.low)}, {_num(self.high)}]")


def pool(trials: list[Trial], trait: str) -> Pooled | None:
    """Pool the trials that scored `trait`; None when none did."""
    scored = [(t, t.score(trait)) for t in trials if t.score(trait)]
    if not scored:
        return None
    return Pooled(
        trials=tuple(t for t, _ in scored),
        score=sum(s["score"] for _, s in scored) / len(scored),
        low=min(s["low"] for _, s in scored),
        high=max(s["high"] for _, s in scored),
    )


@dataclass(frozen=True)
class SweepView:
    """Everything the sections need: the config, the complete trials and names derived from them."""

    dir: Path
    config: dict
    trials: list[Trial]

    @property
    def name(self) -> str:
        return str(self.config.get("name", self.dir.name))

    @property
    def teacher(self) -> str:
        return str(self.config.get("search", {}).get("teacher", "teacher"))

    @property
    def traits(self) -> list[str]:
        """Trait names: the config's order first, then any other trait a trial scored."""
        names = list(self.config.get("traits", {}))
        return names + sorted({n for t in self.trials for n in t.result.get("traits", {})} - set(names))

    @property
    def subsets(self) -> list[str]:
        """Subset names: the config's order first, then any other subset a manifest reports."""
        names = list(self.config.get("subsets", {}))
        seen = {k for t in self.trials for k in t.result.get("manifest", {}).get("teacher_share", {})}
        return names + sorted(seen - set(names) - {"all"})

    @property
    def objective(self) -> tuple[str, str]:
        """(trait, direction) of the first objective; the first trait, maximised, when none is usable."""
        for obj in self.config.get("search", {}).get("objectives", []):
            if obj.get("trait") in self.traits:
                return obj["trait"], obj.get("direction", "maximize")
        return (self.traits[0] if self.traits else "", "maximize")

    def of(self, condition: str) -> list[Trial]:
        return [t for t in self.trials if t.condition == condition]

    def patched_subsets(self) -> list[str]:
        """Subsets that at least one trial patched with the teacher."""
        return [s for s in self.subsets if any(t.patches(s, self.teacher) for t in self.trials)]

    def varied_subsets(self) -> list[str]:
        """Subsets where some mixture trial gave the teacher a nonzero share."""
        return [s for s in self.subsets if any(t.share(s) > 0 for t in self.of("mixture"))]

    def ranked(self) -> list[Trial]:
        """Mixture trials (all trials when there are none) best first by the first objective."""
        trait, direction = self.objective
        candidates = [t for t in (self.of("mixture") or self.trials) if t.score(trait)]
        return sorted(candidates, key=lambda t: t.score(trait)["score"], reverse=direction == "maximize")


# --- formatting ----------------------------------------------------------------------------------


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def _interval(score: float, low: float, high: float) -> str:
    return f"{_num(score)} [{_num(low)}, {_num(high)}]"


def _pct(share: float) -> str:
    return f"{share:.1%}" if 0 < share < 0.1 else f"{share:.0%}"


def _tick(value: float) -> str:
    return f"{round(value, 10):g}"


def _tick_pct(share: float) -> str:
    return f"{round(share * 100, 6):g}%"


# --- SVG charts ----------------------------------------------------------------------------------

PLOT_W, PLOT_H = 640, 320
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 12, 46
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
POINT, CLEAN, TEACHER = "#1f77b4", "#2ca02c", "#d62728"


def colour(i: int) -> str:
    """The i-th series colour: a fixed palette, then evenly spread hues."""
    return PALETTE[i] if i < len(PALETTE) else f"hsl({(i * 137.5) % 360:.0f},65%,42%)"


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About `count` round tick values (steps of 1, 2, 2.5 or 5 times a power of ten) in [lo, hi]."""
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step - 1e-9)
    return [(first + i) * step for i in range(int((hi - first * step) / step + 1e-9) + 1)]


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
    """Maps data coordinates onto the plot area of a PLOT_W × PLOT_H chart (x optionally sqrt-scaled)."""

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


def axes(frame: Frame, xticks: list[float], yticks: list[float], xlabel: str, ylabel: str,
         xfmt=_tick) -> list[str]:
    """Grid lines, tick labels, the plot box and both axis labels."""
    right, bottom = PLOT_W - RIGHT, PLOT_H - BOTTOM
    parts = []
    for y in yticks:
        py = frame.py(y)
        parts.append(f'<line x1="{LEFT}" y1="{py:.1f}" x2="{right}" y2="{py:.1f}" stroke="#e4e4e4"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{py + 4:.1f}" text-anchor="end">{esc(_tick(y))}</text>')
    for x in xticks:
        px = frame.px(x)
        parts.append(f'<line x1="{px:.1f}" y1="{bottom}" x2="{px:.1f}" y2="{bottom + 5}" stroke="#666"/>')
        parts.append(f'<text x="{px:.1f}" y="{bottom + 18}" text-anchor="middle">{esc(xfmt(x))}</text>')
    parts.append(f'<rect x="{LEFT}" y="{TOP}" width="{right - LEFT}" height="{bottom - TOP}" fill="none" stroke="#999"/>')
    parts.append(f'<text x="{(LEFT + right) / 2:.0f}" y="{PLOT_H - 6}" text-anchor="middle">{esc(xlabel)}</text>')
    mid = (TOP + bottom) / 2
    parts.append(f'<text x="14" y="{mid:.0f}" text-anchor="middle" transform="rotate(-90 14 {mid:.0f})">'
                 f'{esc(ylabel)}</text>')
    return parts


def legend(items: list[tuple[str, str, str]]) -> tuple[list[str], int]:
    """Entries (label, colour, style in point|line|dashed) in rows below the plot; (parts, height)."""
    parts, x, y = [], LEFT, PLOT_H + 6
    for label, col, style in items:
        width = 30 + 7 * len(label)
        if x + width > PLOT_W - RIGHT and x > LEFT:
            x, y = LEFT, y + 18
        if style == "point":
            parts.append(f'<circle cx="{x + 9}" cy="{y}" r="4" fill="{col}"/>')
        else:
            dash = ' stroke-dasharray="6 4"' if style == "dashed" else ""
            parts.append(f'<line x1="{x}" y1="{y}" x2="{x + 18}" y2="{y}" stroke="{col}" stroke-width="2"{dash}/>')
        parts.append(f'<text x="{x + 24}" y="{y + 4}">{esc(label)}</text>')
        x += width
    return parts, y + 14 - PLOT_H if items else 0


def svg(parts: list[str], extra_height: int, title: str) -> str:
    height = PLOT_H + extra_height
    return (f'<svg viewBox="0 0 {PLOT_W} {height}" width="{PLOT_W}" height="{height}" role="img" '
            f'font-family="sans-serif" font-size="11" fill="#333" aria-label="{esc(title)}">' + "".join(parts) + "</svg>")


def share_axis(shares: list[float]) -> tuple[float, float, list[float], bool]:
    """(x_lo, x_hi, ticks, sqrt_x) for teacher shares; sqrt scale when small shares (a ladder) would bunch up."""
    positive = [s for s in shares if s > 0]
    top = max(shares + [0.05])
    if positive and min(positive) < top / 10:
        return 0.0, top * 1.03, [t for t in (0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0) if t <= top + 1e-9], True
    lo, hi = padded([0.0, top], 0.04)
    return lo, hi, nice_ticks(0.0, top), False


def trait_chart(view: SweepView, subset: str, trait: str) -> str:
    """Trait score vs the teacher's share of `subset`: mixture points with interval bars, baselines as bands."""
    points = [(t.share(subset), t.score(trait), t) for t in view.of("mixture") if t.score(trait)]
    baselines = [(name, col, p) for name, col, p in
                 (("all-clean", CLEAN, pool(view.of("all_clean"), trait)),
                  ("all-teacher", TEACHER, pool(view.of("all_teacher"), trait))) if p]
    ys = [v for _, s, _ in points for v in (s["low"], s["high"])] + [v for _, _, p in baselines for v in (p.low, p.high)]
    x_lo, x_hi, xticks, sqrt_x = share_axis([x for x, _, _ in points])
    y_lo, y_hi = padded(ys)
    frame = Frame(x_lo, x_hi, y_lo, y_hi, sqrt_x)
    xlabel = f"teacher share of {subset}" + (" (square-root scale)" if sqrt_x else "")
    parts = axes(frame, xticks, nice_ticks(y_lo, y_hi), xlabel, trait, xfmt=_tick_pct)
    x0, x1 = frame.px(frame.x_lo), frame.px(frame.x_hi)
    for name, col, p in baselines:
        top, bottom = frame.py(p.high), frame.py(p.low)
        parts.append(f'<rect x="{x0:.1f}" y="{top:.1f}" width="{x1 - x0:.1f}" height="{bottom - top:.1f}" '
                     f'fill="{col}" fill-opacity="0.12"><title>{esc(name)}: {esc(p.describe())}</title></rect>')
        parts.append(f'<line x1="{x0:.1f}" y1="{frame.py(p.score):.1f}" x2="{x1:.1f}" y2="{frame.py(p.score):.1f}" '
                     f'stroke="{col}" stroke-width="1.5" stroke-dasharray="6 4"/>')
    for x, s, t in points:
        px = frame.px(x)
        parts.append(f'<line x1="{px:.1f}" y1="{frame.py(s["low"]):.1f}" x2="{px:.1f}" y2="{frame.py(s["high"]):.1f}" '
                     f'stroke="{POINT}" stroke-width="1.5"/>')
        parts.append(f'<circle cx="{px:.1f}" cy="{frame.py(s["score"]):.1f}" r="4" fill="{POINT}"><title>'
                     f'trial {t.number}: {esc(t.label)}: {_interval(s["score"], s["low"], s["high"])}</title></circle>')
    items = [("mixture trials (95% interval)", POINT, "point")] + [
        (f"{name} baseline (band: interval)", col, "dashed") for name, col, _ in baselines]
    legend_parts, height = legend(items)
    return svg(parts + legend_parts, height, f"{trait} vs teacher share of {subset}")


def loss_curve(trial: Trial) -> list[tuple[float, float]]:
    """(step, train/loss) pairs from the trial's train_log.jsonl, thinned to MAX_CURVE_POINTS."""
    path = trial.dir / TRAIN_LOG
    if not path.is_file():
        return []
    points = [(float(r["step"]), float(r["train/loss"])) for r in read_jsonl(path)
              if "step" in r and isinstance(r.get("train/loss"), (int, float))]
    stride = max(1, math.ceil(len(points) / MAX_CURVE_POINTS))
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
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{colour(i)}" stroke-width="1.5">'
                     f'<title>trial {number}</title></polyline>')
        items.append((f"trial {number}", colour(i), "line"))
    legend_parts, height = legend(items)
    return svg(parts + legend_parts, height, "training loss per trial")


# --- sections ------------------------------------------------------------------------------------


def answer(view: SweepView) -> str:
    """The paragraph that answers the sweep's question, computed from the scores."""
    trait, _ = view.objective
    clean, teacher = pool(view.of("all_clean"), trait), pool(view.of("all_teacher"), trait)
    text = [f"Which data carries <b>{esc(trait)}</b> from the teacher <code>{esc(view.teacher)}</code> "
            f"into the student? Scores are {esc(trait)} with 95% intervals."]
    text.append(_baselines_sentence(clean, teacher))
    patched = view.patched_subsets()
    if not patched:
        text.append("No trial patched a subset with the teacher's rollouts, so this sweep tests no subset.")
    text += [_subset_sentence(view, subset, trait, clean) for subset in patched]
    return '<p id="answer">' + " ".join(text) + "</p>"


def _baselines_sentence(clean: Pooled | None, teacher: Pooled | None) -> str:
    if clean is None:
        missing = "" if teacher is None else f" The all-teacher student scores τ1 = {teacher.describe()}."
        return f"No all-clean baseline trial is complete, so nothing can be compared with it.{missing}"
    text = f"The all-clean student scores τ0 = {clean.describe()}"
    if teacher is None:
        return text + "; no all-teacher baseline trial is complete."
    if teacher.low > clean.high:
        verdict = "the all-teacher interval lies above the all-clean one: the teacher's data carries the trait"
    elif teacher.high < clean.low:
        verdict = "the all-teacher interval lies below the all-clean one: the teacher's data lowers the trait"
    else:
        verdict = "the two intervals overlap: even all-teacher data does not clearly move the trait"
    return (f"{text}; the all-teacher student scores τ1 = {teacher.describe()}, "
            f"D = τ1 − τ0 = {_num(teacher.score - clean.score)}; {verdict}.")


def _subset_sentence(view: SweepView, subset: str, trait: str, clean: Pooled | None) -> str:
    """Whether the highest teacher share tested on `subset` lifts the trait clearly above τ0."""
    patching = [t for t in view.trials if t.patches(subset, view.teacher) and t.score(trait)]
    alone = [t for t in patching if t.patches_only(subset, view.teacher)]
    trials = alone or patching
    if not trials:
        return f"{esc(subset)}: no trial that patched it scored {esc(trait)}."
    caveat = "" if alone else " (these trials always patched other subsets too)"
    top_share = max(t.share(subset) for t in trials)
    top = pool([t for t in trials if abs(t.share(subset) - top_share) < 1e-9], trait)
    doses = "; ".join(f"{_pct(share)}: {_num(pool(group, trait).score)}" for share, group in _by_share(trials, subset))
    dose_text = f" Scores by teacher share of {esc(subset)}: {doses}."
    name = f"<code>{esc(subset)}</code>"
    at_top = f"at the highest teacher share tested ({_pct(top_share)}) the student scores {top.describe()}"
    if clean is None:
        return f"Patching {name} with the teacher{caveat}: {at_top}; there is no clean baseline to compare.{dose_text}"
    if top.low > clean.high:
        return (f"Patching {name} with the teacher raises {esc(trait)} above the clean baseline{caveat}: {at_top}, "
                f"lower bound {_num(top.low)} above the clean baseline's upper bound {_num(clean.high)}.{dose_text}")
    return (f"Patching {name} with the teacher does not clearly raise {esc(trait)} above the clean baseline{caveat}: "
            f"{at_top}, lower bound {_num(top.low)} not above the clean baseline's upper bound "
            f"{_num(clean.high)}.{dose_text}")


def _by_share(trials: list[Trial], subset: str) -> list[tuple[float, list[Trial]]]:
    groups: dict[float, list[Trial]] = {}
    for t in trials:
        groups.setdefault(round(t.share(subset), 9), []).append(t)
    return sorted(groups.items())


def status_line(sweep_dir: Path, n_complete: int) -> str:
    """A count of complete, not finished and failed trials, with each failure's message."""
    running, failed = _unfinished(sweep_dir)
    line = f'<p class="small">{n_complete} complete, {len(running)} not finished, {len(failed)} failed.</p>'
    if not failed:
        return line
    rows = "".join(f"<li>trial {esc(name)} failed: <code>{esc(msg[:MAX_TEXT_CHARS])}</code></li>" for name, msg in failed)
    return line + f'<ul class="small">{rows}</ul>'


def _cell(text: str, sort: float | str | None = None) -> str:
    key = "" if sort is None else f' data-sort="{esc(str(sort))}"'
    return f"<td{key}>{text}</td>"


def trials_table(view: SweepView) -> str:
    """Every complete trial as one row; clicking a header sorts by that column."""
    shares = ["all"] + view.subsets
    head = (["trial", "condition", "label"] + [f"teacher share: {s}" for s in shares]
            + [f"{t} [low, high]" for t in view.traits] + ["final loss", "steps", "wall s", "manifest"])
    rows = []
    for t in view.trials:
        train, manifest = t.result.get("train", {}), t.result.get("manifest", {})
        cells = [_cell(str(t.number), t.number), _cell(esc(t.condition)), _cell(esc(t.label))]
        cells += [_cell(_pct(t.share(s)), t.share(s)) for s in shares]
        for trait in view.traits:
            s = t.score(trait)
            cells.append(_cell(_interval(s["score"], s["low"], s["high"]), s["score"]) if s else _cell("–", ""))
        loss, steps = train.get("final_loss"), train.get("steps")
        cells += [_cell(_num(loss), "" if loss is None else loss), _cell("–" if steps is None else str(steps), steps),
                  _cell(f'{t.result.get("wall_s", 0):.1f}', t.result.get("wall_s", 0)),
                  _cell(f'<code>{esc(str(manifest.get("hash", ""))[:8])}</code>')]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    header = "".join(f"<th>{esc(h)}</th>" for h in head)
    return (f'<table class="sortable"><thead><tr>{header}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def charts_section(view: SweepView) -> str:
    subsets = view.varied_subsets()
    if not subsets:
        return "<p>No mixture trial gave the teacher a share of any subset, so there is nothing to plot.</p>"
    figures = [f"<figure>{trait_chart(view, s, trait)}<figcaption>{esc(trait)} vs teacher share of "
               f"{esc(s)}</figcaption></figure>"
               for s in subsets for trait in view.traits if any(t.score(trait) for t in view.of("mixture"))]
    return "".join(figures)


def best_and_worst(view: SweepView) -> list[tuple[str, Trial]]:
    """[("best", trial), ("worst", trial)] by the first objective; just the best when one trial is ranked."""
    ranked = view.ranked()
    if not ranked:
        return []
    return [("best", ranked[0])] + ([("worst", ranked[-1])] if len(ranked) > 1 else [])


def best_worst_section(view: SweepView) -> str:
    trait, direction = view.objective
    picks = best_and_worst(view)
    if not picks:
        return f"<p>No trial scored {esc(trait)}.</p>"
    kind = "mixture trial(s)" if view.of("mixture") else "trial(s) (there are no mixture trials)"
    intro = f"<p>By {esc(trait)} ({esc(direction)}) among {len(view.ranked())} {kind}."
    if len(picks) == 1:
        intro += " Only one trial is scored, so there is no ranking."
    else:
        (_, best), (_, worst) = picks
        b, w = best.score(trait), worst.score(trait)
        if max(b["low"], w["low"]) <= min(b["high"], w["high"]):
            intro += " The best and worst intervals overlap, so the ranking between them is not clear."
    rows = "".join(
        f"<tr><td>{role}</td><td>{t.number}</td><td>{esc(t.label)}</td>"
        f"<td>{_interval(t.score(trait)['score'], t.score(trait)['low'], t.score(trait)['high'])}</td></tr>"
        for role, t in picks)
    return (f"{intro}</p><table><thead><tr><th></th><th>trial</th><th>label</th>"
            f"<th>{esc(trait)} [low, high]</th></tr></thead><tbody>{rows}</tbody></table>")


def curves_section(view: SweepView) -> str:
    curves = {t.number: c for t in view.trials if (c := loss_curve(t))}
    missing = [str(t.number) for t in view.trials if t.number not in curves]
    note = f'<p class="small">No loss log for trial(s) {", ".join(missing)}.</p>' if missing else ""
    return (loss_chart(curves) if curves else "<p>No trial has a loss log.</p>") + note


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT_CHARS else text[:MAX_TEXT_CHARS] + f" … [cut, {len(text)} characters]"


def samples_block(trial: Trial, role: str) -> str:
    """The first SAMPLES_PER_TRAIT generations per trait of one trial, everything escaped."""
    path = trial.dir / SAMPLES
    title = f"<h3>{esc(role)}: trial {trial.number}, {esc(trial.label)}</h3>"
    if not path.is_file():
        return title + "<p>No samples file.</p>"
    by_trait: dict[str, list[dict]] = {}
    for row in read_jsonl(path):
        group = by_trait.setdefault(str(row.get("trait", "")), [])
        if len(group) < SAMPLES_PER_TRAIT:
            group.append(row)
    blocks = []
    for trait, rows in by_trait.items():
        items = "".join(
            f'<div class="sample"><div class="small">prompt {esc(str(r.get("prompt_id", "")))}, '
            f'sample {esc(str(r.get("sample", "")))}: value <b>{esc(str(r.get("value", "")))}</b>'
            f' ({esc(str(r.get("reason", "")))})</div>'
            f'<pre class="prompt">{esc(_clip(str(r.get("prompt", ""))))}</pre>'
            f'<pre>{esc(_clip(str(r.get("response", ""))))}</pre></div>'
            for r in rows)
        blocks.append(f"<h4>{esc(trait)}</h4>{items}")
    return title + "".join(blocks)


def samples_section(view: SweepView) -> str:
    picks = best_and_worst(view)
    if not picks:
        return "<p>No scored trial to show samples from.</p>"
    return "".join(samples_block(t, role) for role, t in picks)


def provenance(view: SweepView) -> str:
    fingerprints = sorted({str(t.result.get("data_fingerprint", "")) for t in view.trials})
    warn = "" if len(fingerprints) == 1 else " <b>The trials used different data.</b>"
    example = view.trials[0].dir
    config = json.dumps(view.config, indent=2, sort_keys=True, default=str)
    return (f"<p>Data fingerprint(s): {', '.join(f'<code>{esc(f)}</code>' for f in fingerprints)}.{warn}</p>"
            f"<p>Rerun a trial from its folder: <code>leaksweep trial &lt;trial dir&gt;</code>, e.g. "
            f"<code>leaksweep trial {esc(str(example))}</code>.</p>"
            f"<details><summary>Sweep config ({esc(SWEEP_FILE)})</summary><pre>{esc(config)}</pre></details>")


# --- the page ------------------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;font-size:13px;margin:.5em 0}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}
table.sortable th{cursor:pointer;background:#f3f3f3}
pre{white-space:pre-wrap;word-break:break-word;background:#f7f7f7;padding:6px;margin:2px 0;font-size:12px}
pre.prompt{background:#eef3fb}
.sample{margin:.6em 0}
.small{font-size:12px;color:#555}
figure{margin:1em 0}
svg{display:block}
#answer{background:#fafaf0;border-left:4px solid #bb9;padding:.6em 1em}
"""

SORT_JS = """
document.querySelectorAll("table.sortable th").forEach(function (th, col) {
  th.addEventListener("click", function () {
    var body = th.closest("table").tBodies[0], up = th.dataset.dir !== "up";
    th.dataset.dir = up ? "up" : "down";
    var key = function (row) {
      var cell = row.cells[col], v = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent;
      return v !== "" && !isNaN(v) ? Number(v) : v;
    };
    Array.from(body.rows).sort(function (a, b) {
      var x = key(a), y = key(b);
      var c = typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
      return up ? c : -c;
    }).forEach(function (row) { body.appendChild(row); });
  });
});
"""


def render(view: SweepView) -> str:
    """The whole page as a string (ASCII: other characters become HTML character references)."""
    sections = [
        f"<h1>{esc(view.name)}</h1>", answer(view),
        "<h2>Trials</h2>", status_line(view.dir, len(view.trials)), trials_table(view),
        "<h2>Trait score vs teacher share</h2>", charts_section(view),
        "<h2>Best and worst mixtures</h2>", best_worst_section(view),
        "<h2>Training curves</h2>", curves_section(view),
        "<h2>Sample generations</h2>", samples_section(view),
        "<h2>Provenance</h2>", provenance(view),
    ]
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(view.name)}: leaksweep report'
            f"</title><style>{CSS}</style></head><body>{''.join(sections)}<script>{SORT_JS}</script></body></html>\n")
    # ASCII keeps the file correct whatever encoding the writer's locale picks.
    return page.encode("ascii", "xmlcharrefreplace").decode("ascii")


def write_report(sweep_dir: Path, out_path: Path | None = None) -> Path:
    """Write the sweep's HTML report (default `sweep_dir/report.html`) atomically; return its path."""
    sweep_dir = Path(sweep_dir)
    trials = _complete_trials(sweep_dir)
    if not trials:
        running, failed = _unfinished(sweep_dir)
        raise UserError(
            f"{sweep_dir}: no complete trial yet (no {TRIALS_DIR}/*/{RESULT}; {len(running)} not finished, "
            f"{len(failed)} failed); run the sweep until a trial finishes, then make the report again"
        )
    out = Path(out_path) if out_path is not None else sweep_dir / REPORT_FILE
    atomic_write_text(out, render(SweepView(sweep_dir, read_json(sweep_dir / SWEEP_FILE), trials)))
    return out
