"""Report stage: one self-contained HTML page that answers a sweep's question from its folder.

The report reads only the sweep folder (DESIGN.md: "report reads trial dirs only"):

    sweep.json                     the resolved sweep config
    analysis.json                  an experiment mode's conclusions (leaksweep.experiments: a Search's `conclude`), when present
    trials/NNNNN/result.json       a complete trial (its presence means done)
    trials/NNNNN/train_log.jsonl   the training curve
    trials/NNNNN/samples.jsonl     every eval generation with its judge verdict
    trials/NNNNN/spec.json         a started trial; with error.json instead of result.json, a failed one

    trials/NNNNN/manifest.jsonl    hashed for provenance
    optuna.journal (or the RDB)    through study.status.study_summary(): Pareto front, parameter importances

The page is one file with inline CSS, inline SVG charts drawn here in Python (so it reads without
JS) and small hand-written inline JS (no library, nothing loaded from elsewhere): tooltips from each
mark's <title>, legend entries that toggle their series, sortable tables, and a filterable, paged
table of the generations embedded as JSON. Each chart carries a stable hook, `<svg data-plot=NAME>`
(trait-vs-share, dose-response, leak-map, offsets, pareto, importances, training-curves), for the JS
and tests/test_report_browser.py. All text taken from the folder is escaped: responses are untrusted
model output (HTML-escaped in markup; in the embedded JSON, `<`, `>` and `&` become JSON unicode escapes).
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import shlex
from dataclasses import dataclass
from pathlib import Path

from leaksweep.errors import UserError
from leaksweep.files import atomic_write_text, read_json, read_jsonl
from leaksweep.provenance import code_version, library_versions
from leaksweep.data.subsets import HALF_SEP

SWEEP_FILE, TRIALS_DIR, REPORT_FILE, ANALYSIS = "sweep.json", "trials", "report.html", "analysis.json"
SPEC, RESULT, ERROR = "spec.json", "result.json", "error.json"
TRAIN_LOG, SAMPLES, MANIFEST = "train_log.jsonl", "samples.jsonl", "manifest.jsonl"

SAMPLES_PER_TRAIT = 5  # generations shown per trait for the best and the worst trial
MAX_TEXT_CHARS = 1500  # longer prompts/responses are cut in the samples section
MAX_CURVE_POINTS = 300  # loss curves are thinned to at most this many points each
MAX_CURVE_POINTS_TOTAL = 12_000  # and to this many over all curves, so 200 trials stay a few hundred kB
MAX_LEGEND_ENTRIES = 24  # more series than this: no legend, hover a series for its name
MAX_SAMPLE_ROWS = 3000  # generations embedded in the samples table, spread evenly over trials and traits
MAX_TABLE_TEXT_CHARS = 400  # prompts and responses are cut to this in the samples table
SAMPLES_PAGE_ROWS = 50  # rows per page of the samples table

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
    analysis: dict | None = None  # analysis.json of an experiment mode; None for optuna sweeps
    study: dict | None = None  # study.status.study_summary(): the Optuna study's directions, Pareto front, importances
    study_error: str | None = None  # why the study could not be read, when it could not

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

    @property
    def mode(self) -> str:
        return str(self.analysis.get("mode") if self.analysis else self.config.get("search", {}).get("mode", "optuna"))

    @property
    def decision_trait(self) -> str:
        """The trait an experiment mode decides on, chosen as experiments.conditions.settings_for chooses it."""
        search = self.config.get("search", {})
        if search.get("trait"):
            return str(search["trait"])
        if search.get("objectives"):
            return str(search["objectives"][0].get("trait"))
        return self.traits[0] if self.traits else ""

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
    if x is None:
        return "–"
    return f"{x:.3f}" if math.isfinite(x) else "n/a"


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


def legend(items: list[tuple], top: int = PLOT_H + 6) -> tuple[list[str], int]:
    """Entries (label, colour, style in point|hollow|line|dashed|dotted[, series]) in rows below the plot.

    An entry naming a series is a toggle: INTERACT_JS hides and shows the chart's `<g data-series=...>`
    of that name on click. Returns (parts, height below PLOT_H).
    """
    parts, x, y = [], LEFT, top
    for item in items:
        label, col, style = item[:3]
        series = item[3] if len(item) > 3 else None
        width = 30 + 7 * len(label)
        if x + width > PLOT_W - RIGHT and x > LEFT:
            x, y = LEFT, y + 18
        parts.append(f'<g class="legend-item" data-series="{esc(series)}" tabindex="0" role="button" '
                     f'aria-pressed="true">' if series else "<g>")
        if style == "point":
            parts.append(f'<circle cx="{x + 9}" cy="{y}" r="4" fill="{col}"/>')
        elif style == "hollow":
            parts.append(f'<circle cx="{x + 9}" cy="{y}" r="4" fill="#fff" stroke="{col}" stroke-width="1.5"/>')
        else:
            dash = {"dashed": ' stroke-dasharray="6 4"', "dotted": ' stroke-dasharray="2 3"'}.get(style, "")
            parts.append(f'<line x1="{x}" y1="{y}" x2="{x + 18}" y2="{y}" stroke="{col}" stroke-width="2"{dash}/>')
        parts.append(f'<text x="{x + 24}" y="{y + 4}">{esc(label)}</text></g>')
        x += width
    return parts, y + 14 - PLOT_H if items else 0


def series(key: str, parts: list[str]) -> str:
    """Chart elements that one legend toggle hides and shows."""
    return f'<g data-series="{esc(key)}">' + "".join(parts) + "</g>"


def svg(parts: list[str], extra_height: int, title: str, plot: str, width: int = PLOT_W, height: int = PLOT_H) -> str:
    """An inline SVG chart; `plot` is its stable hook (`data-plot`) for the page's JS and the browser test."""
    height += extra_height
    return (f'<svg data-plot="{esc(plot)}" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'role="img" font-family="sans-serif" font-size="11" fill="#333" aria-label="{esc(title)}">'
            + "".join(parts) + "</svg>")


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
        parts.append(series(name, [
            f'<rect x="{x0:.1f}" y="{top:.1f}" width="{x1 - x0:.1f}" height="{bottom - top:.1f}" '
            f'fill="{col}" fill-opacity="0.12"><title>{esc(name)}: {esc(p.describe())}</title></rect>',
            f'<line x1="{x0:.1f}" y1="{frame.py(p.score):.1f}" x2="{x1:.1f}" y2="{frame.py(p.score):.1f}" '
            f'stroke="{col}" stroke-width="1.5" stroke-dasharray="6 4"/>']))
    marks = []
    for x, s, t in points:
        px = frame.px(x)
        marks.append(f'<line x1="{px:.1f}" y1="{frame.py(s["low"]):.1f}" x2="{px:.1f}" y2="{frame.py(s["high"]):.1f}" '
                     f'stroke="{POINT}" stroke-width="1.5"/>')
        marks.append(f'<circle cx="{px:.1f}" cy="{frame.py(s["score"]):.1f}" r="4" fill="{POINT}"><title>'
                     f'trial {t.number}: {esc(t.label)}: teacher share of {esc(subset)} {_pct(x)}, {esc(trait)} '
                     f'{_interval(s["score"], s["low"], s["high"])}</title></circle>')
    parts.append(series("mixture", marks))
    items = [("mixture trials (95% interval)", POINT, "point", "mixture")] + [
        (f"{name} baseline (band: interval)", col, "dashed", name) for name, col, _ in baselines]
    legend_parts, height = legend(items)
    return svg(parts + legend_parts, height, f"{trait} vs teacher share of {subset}", "trait-vs-share")


def loss_curve(trial: Trial, max_points: int = MAX_CURVE_POINTS) -> list[tuple[float, float]]:
    """(step, train/loss) pairs from the trial's train_log.jsonl, thinned to `max_points` (and the last)."""
    path = trial.dir / TRAIN_LOG
    if not path.is_file():
        return []
    points = [(float(r["step"]), float(r["train/loss"])) for r in read_jsonl(path)
              if "step" in r and isinstance(r.get("train/loss"), (int, float))]
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
        parts.append(series(f"trial-{number}", [
            f'<polyline points="{coords}" fill="none" stroke="{colour(i)}" stroke-width="1.5">'
            f'<title>trial {number}: final train loss {_num(last_loss)} at step {_tick(last_step)}</title></polyline>']))
        items.append((f"trial {number}", colour(i), "line", f"trial-{number}"))
    # a legend of hundreds of trials would be taller than the chart; hovering a curve names its trial
    legend_parts, height = legend(items) if len(items) <= MAX_LEGEND_ENTRIES else ([], 0)
    return svg(parts + legend_parts, height, "training loss per trial", "training-curves")


# --- sections ------------------------------------------------------------------------------------


def answer(view: SweepView) -> str:
    """The paragraph that answers the sweep's question: from analysis.json in an experiment mode, else the scores."""
    if view.analysis is not None:
        return analysis_answer(view)
    trait, _ = view.objective
    clean, teacher = pool(view.of("all_clean"), trait), pool(view.of("all_teacher"), trait)
    text = [] if view.mode == "optuna" else [
        f"This <code>{esc(view.mode)}</code> sweep has no {esc(ANALYSIS)} yet (its search writes one when it "
        f"finishes); until then, what the complete trials show."]
    text += [f"Which data carries <b>{esc(trait)}</b> from the teacher source <code>{esc(view.teacher)}</code> "
            f"into the student? Scores are {esc(trait)} with 95% intervals."]
    text.append(_baselines_sentence(clean, teacher))
    patched = view.patched_subsets()
    if not patched:
        text.append("No trial patched a subset with the teacher's rollouts, so this sweep tests no subset.")
    text += [_subset_sentence(view, subset, trait, clean) for subset in patched]
    text.append(_study_sentence(view.study))
    return '<p id="answer">' + " ".join(t for t in text if t) + "</p>"


def _objective_name(name: str, direction: str) -> str:
    """`trait (direction)`; study_summary already names a trait that way when it is both maximised and minimised."""
    return esc(name) if name.endswith(f"({direction})") else f"{esc(name)} ({esc(direction)})"


def _study_sentence(study: dict | None) -> str:
    """The Optuna study in a sentence: the Pareto front's size, the most important parameter per objective."""
    if not study:
        return ""
    text = []
    if len(study.get("directions", [])) > 1:
        text.append(f"{len(study.get('pareto', []))} of {study.get('n_complete', 0)} complete trials are on the "
                    f"Pareto front of {' and '.join(_objective_name(n, d) for n, d in zip(study['objectives'], study['directions']))}.")
    for objective, by_param in (study.get("importances") or {}).items():
        if len(by_param) > 1:
            top, value = max(by_param.items(), key=lambda kv: kv[1])
            text.append(f"For {esc(objective)}, Optuna ranks <code>{esc(top)}</code> the most important parameter "
                        f"(importance {value:.2f} of 1).")
    return " ".join(text)


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
    per_curve = max(20, min(MAX_CURVE_POINTS, MAX_CURVE_POINTS_TOTAL // max(1, len(view.trials))))
    curves = {t.number: c for t in view.trials if (c := loss_curve(t, per_curve))}
    missing = [str(t.number) for t in view.trials if t.number not in curves]
    note = f'<p class="small">No loss log for trial(s) {", ".join(missing)}.</p>' if missing else ""
    hint = ("" if len(curves) <= MAX_LEGEND_ENTRIES else
            f'<p class="small">{len(curves)} curves: hover one for its trial (no legend for this many).</p>')
    return (loss_chart(curves) + hint if curves else "<p>No trial has a loss log.</p>") + note


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT_CHARS else text[:MAX_TEXT_CHARS] + f" … [cut, {len(text)} characters]"


def samples_block(trial: Trial, role: str) -> str:
    """The first SAMPLES_PER_TRAIT generations per trait of one trial, everything escaped."""
    path = trial.dir / SAMPLES
    title = f"<h3>{esc(role)}: trial {trial.number}, {esc(trial.label)}</h3>"
    if not path.is_file():
        return title + "<p>No samples file (simulated trials and some runners write none).</p>"
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
    return title + ("".join(blocks) or "<p>The samples file is empty.</p>")


def samples_section(view: SweepView) -> str:
    picks = best_and_worst(view)
    if not picks:
        return "<p>No scored trial to show samples from.</p>"
    return "".join(samples_block(t, role) for role, t in picks)


def provenance(view: SweepView) -> str:
    fingerprints = sorted({str(t.result["data_fingerprint"]) for t in view.trials if t.result.get("data_fingerprint")})
    warn = "" if len(fingerprints) <= 1 else " <b>The trials used different data.</b>"
    runner = view.config.get("search", {}).get("runner")
    shown = (f"Data fingerprint(s): {', '.join(f'<code>{esc(f)}</code>' for f in fingerprints)}.{warn}" if fingerprints
             else "No trial recorded a data fingerprint"
             + (f" (trials ran through <code>{esc(str(runner))}</code>, not on real data)." if runner else "."))
    example = view.trials[0].dir
    config = json.dumps(view.config, indent=2, sort_keys=True, default=str)
    analysis = ("" if view.analysis is None else
                f"<details><summary>Conclusions ({esc(ANALYSIS)})</summary>"
                f"<pre>{esc(json.dumps(view.analysis, indent=2, sort_keys=True, default=str))}</pre></details>")
    versions = ", ".join(f"{esc(k)} <code>{esc(v)}</code>" for k, v in library_versions().items())
    return (f"<p>{shown}</p>"
            f'<p id="code-version">Code that wrote this report: leaksweep git commit <code>{esc(code_version())}</code>. '
            f"Libraries: {versions}.</p>"
            f"<p>Rerun a trial from its folder: <code>leaksweep trial &lt;trial dir&gt;</code>, e.g. "
            f"<code>leaksweep trial {esc(shlex.quote(str(example)))}</code>.</p>"
            f"<details><summary>Per trial: data and manifest hashes, the command that reproduces it "
            f"({len(view.trials)} trials)</summary>{provenance_trials_table(view)}</details>"
            f"<details><summary>Sweep config ({esc(SWEEP_FILE)}, resolved)</summary><pre>{esc(config)}</pre></details>"
            + analysis)


# --- experiment modes: sections computed from analysis.json ------------------------------------------
#
# The shapes are those of the experiment searches' `conclude`: decisions are stats.Decision.to_dict() ({test, alpha,
# margin, estimate, p_value, passed, trials, statement}), estimates {value, low, high, level, method,
# n_runs, n_prompts, trials}. Every number shown is read from analysis.json; nothing is recomputed.

LEAK_MAP_COLUMNS = (("sufficient", "sufficient"), ("necessary", "necessary"),
                    ("leak_in_refill_none", "leak-in, refill none"), ("leak_in_refill_same", "leak-in, refill same"),
                    ("leak_in_refill_clean", "leak-in, refill clean"))
LEAK_MAP_MODES = ("patch_insert", "patch_remove", "drop", "subset_scan")
ZERO_SLOT = 36  # px at the left of a log-x chart where fraction 0 (the clean baseline) is drawn
FIT, THRESHOLD, ED50 = "#9467bd", "#d62728", "#ff7f0e"


def _g(x: float | None) -> str:
    """A parameter as written (alpha, margin, a fraction): shortest round form."""
    return "–" if x is None else f"{round(float(x), 10):g}"


def _frac(f: float | None) -> str:
    """A fraction of a subset, with its percentage: `0.05 (5%)`."""
    return "–" if f is None else f"{_g(f)} ({_tick_pct(f)})"


def _est(e: dict | None) -> str:
    """`value [low, high]` of an estimate dict (an unbounded side, stored as null, shows as ∞); – when absent."""
    if not e or e.get("value") is None:
        return "–"
    low, high = e.get("low"), e.get("high")
    return (f'{_num(e["value"])} [{"−∞" if low is None else _num(low)}, '
            f'{"∞" if high is None else _num(high)}]')


def _est_runs(e: dict | None) -> str:
    if not e or e.get("value") is None:
        return "– (no trial)"
    runs = e.get("n_runs")
    return _est(e) + (f" over {runs} run{'s' if runs != 1 else ''}" if runs else "")


def _p(p: float | None) -> str:
    if p is None or not math.isfinite(p):
        return "p –"
    return "p &lt; 0.001" if p < 0.001 else f"p = {p:.3f}"


def _trial_list(numbers) -> str:
    return ", ".join(str(n) for n in numbers or []) or "none"


def decision_title(d: dict) -> str:
    """The hover text of a decision: its statement, then test, alpha, margin and trials."""
    return (f'{d.get("statement", "")} (test: {d.get("test", "?")}; alpha {_g(d.get("alpha"))}; '
            f'margin {_g(d.get("margin"))}; trials {_trial_list(d.get("trials"))})')


def _verdict(d: dict) -> str:
    return "✓ passed" if d.get("passed") else "✗ not passed"


def _decision_short(d: dict) -> str:
    """`estimate [low, high], p = x`."""
    return f'{_est(d.get("estimate"))}, {_p(d.get("p_value"))}'


def decision_cell(d: dict | None, extra: str = "") -> str:
    """A table cell: passed or not, the estimate with its interval and p; the statement on hover."""
    if not d:
        return '<td class="na">not tested</td>'
    cls = "pass" if d.get("passed") else "fail"
    return (f'<td class="{cls}" title="{esc(decision_title(d))}"><b>{_verdict(d)}</b><br>'
            f'{_decision_short(d)}{extra}</td>')


def _code_list(names: list[str]) -> str:
    return ", ".join(f"<code>{esc(n)}</code>" for n in names) if names else "none"


def _test_levels(analysis: dict, *, margin: bool = False) -> str:
    text = f'alpha {_g(analysis.get("alpha"))}, min effect {_g(analysis.get("min_effect"))}'
    return text + (f', margin {_g(analysis.get("margin"))}' if margin and "margin" in analysis else "")


def _baselines_from_analysis(analysis: dict, trait: str) -> str:
    b = analysis.get("baselines", {}).get(trait, {})
    clean, teacher = b.get("all_clean"), b.get("all_teacher")
    if not clean and not teacher:
        return ""
    text = f"The all-clean student scores τ0 = {_est_runs(clean)}"
    if teacher and teacher.get("value") is not None:
        text += f", the all-teacher student τ1 = {_est_runs(teacher)}"
        if clean and clean.get("value") is not None:
            text += f", D = τ1 − τ0 = {_num(teacher['value'] - clean['value'])}"
    return text + "."


# answers ------------------------------------------------------------------------------------------


def analysis_answer(view: SweepView) -> str:
    """The opening paragraph of an experiment mode, from analysis.json."""
    a, mode = view.analysis or {}, view.mode
    if mode == "leak_threshold":
        text = _threshold_answer(a)
    elif mode == "fraction_sweep":
        text = _fraction_sweep_answer(a)
    elif mode == "minimal_subset":
        text = _minimal_answer(a)
    elif mode in LEAK_MAP_MODES:
        text = _leak_map_answer(a, view.decision_trait) + [_drop_effect_sentence(view)]
    elif mode in ("full_swap", "teacher_eval"):
        text = _transfer_answer(a, view.decision_trait, view.config)
    else:
        text = [f"analysis.json holds conclusions of mode <code>{esc(mode)}</code>, which this report does not know."]
    return '<p id="answer">' + " ".join(t for t in text if t) + "</p>"


def _threshold_sentence(dr: dict, analysis: dict) -> str:
    """The threshold of one dose-response entry, with the test that found it and the fit's ED50/ED10."""
    subset, trait = dr.get("subset", "?"), dr.get("trait", "?")
    seq = dr.get("threshold") or {}
    f = seq.get("threshold")
    tested = dr.get("tested") or []
    test = (f'fixed-sequence sufficiency tests vs the all-clean baseline from the highest rung down at alpha '
            f'{_g(seq.get("alpha", analysis.get("alpha")))}, min effect {_g(seq.get("margin", analysis.get("min_effect")))}')
    name = f"<code>{esc(subset)}</code>"
    if f is not None:
        stop = seq.get("stopped_at")
        how = (f"testing stopped at the first rung not rejected, {_frac(stop)}" if stop is not None
               else "every rung tested was rejected")
        below = [r for r in sorted(float(x) for x in (dr.get("ladder") or tested)) if r < float(f)]
        if stop is not None:
            bracket = f"more than {_frac(stop)} and at most {_frac(f)}"
        elif below:
            bracket = f"at most {_frac(f)} (rungs below it were not tested)"
        else:
            bracket = f"at most {_frac(f)}, the lowest rung of the ladder"
        text = (f"The leak threshold of {esc(trait)} on {name} is <b>{_frac(f)}</b> of the subset from the teacher "
                f"({test}; {how}): the smallest dose that carries the trait lies in that ladder interval, "
                f"<b>{bracket}</b>.")
    else:
        top = max(tested) if tested else (dr.get("ladder") or [None])[-1]
        step = next((s.get("decision") for s in seq.get("steps", []) if s.get("fraction") == top), None)
        why = f" The top rung's test: {esc(step['statement'])}" if step and step.get("statement") else ""
        text = (f"<b>No leak</b> of {esc(trait)} on {name} up to the top rung, {_frac(top)} from the teacher "
                f"({test}).{why}")
    fit = dr.get("fit") or {}
    if fit.get("fit") == "ok":
        eds = [f"{name_} = {_est(fit.get(key))}" for key, name_ in (("ed50", "ED50"), ("ed10", "ED10")) if fit.get(key)]
        if eds:
            text += f" A logistic fit in log-fraction puts {' and '.join(eds)} (fractions of the subset)."
        if fit.get("extrapolated"):
            text += " (ED50 lies outside the tested fractions: extrapolated.)"
    elif fit.get("fit"):
        why = {"flat": "flat (it does not beat a constant)", "failed": "failed (no start converged)",
               "insufficient": "not possible (it needs 5 points and 3 distinct fractions above 0)",
               "skipped": "not made for this sweep"}
        text += f" A logistic dose-response fit is {why.get(fit['fit'], esc(str(fit['fit'])))}, so there is no ED50."
    return text


def _threshold_answer(a: dict) -> list[str]:
    text = []
    for subset, dr in (a.get("dose_response") or {}).items():
        text.append(_threshold_sentence(dr, a))
        text.append(_baselines_from_analysis(a, dr.get("trait", "")))
    spent, grid = a.get("trials_spent"), a.get("grid_trials")
    if spent is not None:
        text.append(f"Found with <b>{spent}</b> trials" + (f" (a full ladder needs {grid})." if grid else "."))
    return text or ["analysis.json holds no dose-response."]


def _fraction_sweep_answer(a: dict) -> list[str]:
    curves = a.get("dose_response") or {}
    if not curves:
        return ["analysis.json holds no dose-response."]
    text = [_threshold_sentence(dr, a) for dr in curves.values()]
    trait = next(iter(curves.values())).get("trait", "")
    return text + [_baselines_from_analysis(a, trait)]


def _minimal_answer(a: dict) -> list[str]:
    root, trait = a.get("subset", "?"), a.get("trait", "?")
    tests, minimal = a.get("tests", {}), a.get("minimal", [])
    levels = f"sufficiency tests at {_test_levels(a)}"
    spent = f"{a.get('trials_spent')} trials in all." if a.get("trials_spent") is not None else ""
    if a.get("no_leak"):
        d = tests.get(root)
        detail = f": {_decision_short(d)}" if d else ""
        return [f"<b>No leak</b>: patching all of <code>{esc(root)}</code> with the teacher is not sufficient for "
                f"{esc(trait)} ({levels}){detail}, so there is no leaking subset to narrow down.", spent]
    if not minimal:
        return [f"The bisection of <code>{esc(root)}</code> found no minimal leaking subset (the search did not "
                f"finish).", spent]
    text = [f"The minimal leaking subset{'s' if len(minimal) > 1 else ''} of <code>{esc(root)}</code> for "
            f"{esc(trait)} ({levels}): " + "; ".join(
                f"<b><code>{esc(n)}</code></b> ({_decision_short(tests[n])})" if n in tests else f"<b>{esc(n)}</b>"
                for n in minimal) + "."]
    distributed = [n for n in minimal if n in set(a.get("distributed", []))]
    at_depth = [n for n in minimal if n not in distributed]
    one = len(distributed) == 1
    if distributed:
        text.append(f"The trait is <b>distributed within</b> {_code_list(distributed)}: "
                    f"{'it is' if one else 'each is'} sufficient but neither of {'its' if one else 'their'} halves is.")
    if at_depth:
        text.append(f"{_code_list(at_depth)} {'is' if len(at_depth) == 1 else 'are'} at the maximum bisection depth, "
                    f"so minimal at that granularity only (halves not tested).")
    confirmations, confirmed = a.get("confirmations", {}), a.get("confirmed", {})
    verdicts = [f"<b>{'yes' if confirmed[n] else 'no'}</b> for <code>{esc(n)}</code>"
                + (f" ({_decision_short(confirmations[n])})" if n in confirmations else "")
                for n in minimal if n in confirmed]
    if verdicts:
        text.append("Confirmed on fresh seeds that played no part in the search: " + "; ".join(verdicts) + ".")
    unconfirmed = [n for n in minimal if n not in confirmed]
    if unconfirmed:
        text.append(f"No confirmation run on fresh seeds for {_code_list(unconfirmed)}.")
    return text + [_baselines_from_analysis(a, trait), spent]


def _leak_map_answer(a: dict, trait: str) -> list[str]:
    table = a.get("leak_map") or {}
    if trait not in table:
        trait = next(iter(table), trait)
    rows = table.get(trait, {})
    if not rows:
        return ["analysis.json holds no leak map."]
    text = [f"Which subsets carry <b>{esc(trait)}</b> from the teacher into the student?",
            _baselines_from_analysis(a, trait)]
    tested = [s for s, r in rows.items() if "sufficient" in r]
    if tested:
        holm = {s: rows[s].get("sufficient_holm", rows[s]["sufficient"]["passed"]) for s in tested}
        alone = [s for s in tested if rows[s]["sufficient"]["passed"] and not holm[s]]
        text.append(f"<b>Sufficient</b> (patching the teacher's rollouts into the subset alone raises the trait; "
                    f"{_test_levels(a)}, Holm across {len(tested)} subset{'s' if len(tested) > 1 else ''}): "
                    f"{_code_list([s for s in tested if holm[s]])}; not sufficient: "
                    f"{_code_list([s for s in tested if not holm[s]])}."
                    + (f" ({_code_list(alone)} passed alone but not after the Holm correction.)" if alone else ""))
    tested = [s for s, r in rows.items() if "necessary" in r]
    if tested:
        text.append(f"<b>Necessary</b> (clean rollouts patched into the subset bring the all-teacher student to the "
                    f"clean baseline within margin {_g(a.get('margin'))}, two one-sided tests at alpha "
                    f"{_g(a.get('alpha'))}): {_code_list([s for s in tested if rows[s]['necessary']['passed']])}; "
                    f"not shown necessary: {_code_list([s for s in tested if not rows[s]['necessary']['passed']])}.")
    leak_keys = [(k, label) for k, label in LEAK_MAP_COLUMNS if k.startswith("leak_in")]
    tested = [s for s, r in rows.items() if any(k in r for k, _ in leak_keys)]
    if tested:
        refills = {s: [label.removeprefix("leak-in, ") for k, label in leak_keys if rows[s].get(k, {}).get("passed")]
                   for s in tested}
        found = [f"<code>{esc(s)}</code> ({', '.join(r)})" for s, r in refills.items() if r]
        text.append("<b>Leak-in</b> (the subset is necessary, yet dropping it leaves the trait higher than patching "
                    "clean rollouts into it): " + (", ".join(found) if found else "none") + ".")
    return text


def _mean_score(trials: list[Trial], trait: str) -> float | None:
    scores = [t.score(trait)["score"] for t in trials if t.score(trait)]
    return sum(scores) / len(scores) if scores else None


def _drop_effect_sentence(view: SweepView) -> str:
    """How much of D = τ1 − τ0 is left when a subset is dropped (per refill), next to patching clean rollouts in.

    Means over the seeds' trials, from their result.json: analysis.json holds the decisions, not these means.
    """
    a, trait = view.analysis or {}, view.decision_trait
    b = (a.get("baselines") or {}).get(trait) or {}
    clean, teacher = (b.get("all_clean") or {}).get("value"), (b.get("all_teacher") or {}).get("value")
    if clean is None or teacher is None or abs(teacher - clean) < 1e-12:
        return ""
    effect = teacher - clean
    left = lambda v: f"{(v - clean) / effect:.0%}"  # noqa: E731
    parts = []
    for subset in view.subsets:
        drops: dict[str, list[Trial]] = {}
        for t in view.of("drop"):
            if t.result.get("params", {}).get("subset") == subset:
                drops.setdefault(str(t.result["params"].get("refill", "none")), []).append(t)
        if not drops:
            continue
        said = "; ".join(f"refill {esc(r)}: τ = {_num(m)}, <b>{left(m)}</b> of D left"
                         for r, ts in drops.items() if (m := _mean_score(ts, trait)) is not None)
        removed = _mean_score([t for t in view.of("patch_remove")
                               if t.result.get("params", {}).get("subset") == subset], trait)
        patched = (f"; patching clean rollouts into it instead (patch-remove): τ = {_num(removed)}, "
                   f"<b>{left(removed)}</b> of D left" if removed is not None else "")
        parts.append(f"dropping <code>{esc(subset)}</code> from the all-teacher data ({said}){patched}")
    if not parts:
        return ""
    return (f"How much of the all-teacher effect D = τ1 − τ0 = {_num(effect)} on {esc(trait)} is left (means over "
            f"seeds): " + "; ".join(parts) + ".")


def _transfer_answer(a: dict, trait: str, config: dict) -> list[str]:
    transfer = a.get("transfer") or {}
    text = []
    for key, what, symbol in (("teachers", "The teachers' own scores on the eval prompts (no training)", "τT"),
                              ("students", "Students trained on all of one source's rollouts", "τS")):
        if a.get(key):
            text.append(f"{what}: " + "; ".join(
                f"<code>{esc(src)}</code>: {esc(trait)} {symbol} = {_est(by_trait.get(trait))}"
                for src, by_trait in a[key].items()) + ".")
    for src, by_trait in transfer.items():
        for t, tr in by_trait.items():
            if t != trait and trait in by_trait:
                continue
            ratio = tr.get("ratio")
            text.append(
                f"Teacher <code>{esc(src)}</code> vs the student trained on all of its rollouts, on {esc(t)}: offset "
                f"τS − τT = <b>{_num(tr.get('offset'))}</b>, transfer ratio (τS − τ0)/(τT − τ0) = <b>"
                f"{_num(ratio) if ratio is not None else 'undefined (the teacher scores the same as τ0)'}</b>.")
    if not transfer:
        text.append("No teacher has both a teacher eval and a student trained on all of its rollouts (with the "
                    "all-clean baseline), so there is no offset or transfer ratio.")
    return text + [_baselines_from_analysis(a, trait)]


# budget, leak map, transfer -------------------------------------------------------------------------


def budget_line(analysis: dict) -> str:
    """Trials the search spent (and what the full grid would have needed, where stated)."""
    spent, grid = analysis.get("trials_spent"), analysis.get("grid_trials")
    if spent is None:
        return ""
    text = f"Trial budget: <b>{spent}</b> trials spent"
    if grid:
        text += f" of the {grid} a full ladder (every rung and the baseline, each seed) would need"
        if grid > spent:
            text += f", {1 - spent / grid:.0%} saved"
    confirm = sorted({t for d in (analysis.get("confirmations") or {}).values() for t in d.get("trials", [])})
    if confirm:
        text += f", of which {len(confirm)} on fresh confirmation seeds"
    per_subset = {s: dr.get("trials_spent") for s, dr in (analysis.get("dose_response") or {}).items()}
    if len(per_subset) > 1:
        text += " (" + ", ".join(f"{esc(s)}: {n}" for s, n in per_subset.items() if n is not None) + " incl. the baseline)"
    return f'<p id="budget">{text}.</p>'


def leak_map_section(analysis: dict) -> str:
    """Rows subset; columns trait × sufficient / necessary / leak-in per refill."""
    table = analysis.get("leak_map") or {}
    subsets = list(dict.fromkeys(s for rows in table.values() for s in rows))
    columns = {t: [(k, label) for k, label in LEAK_MAP_COLUMNS if any(k in rows.get(s, {}) for s in subsets)]
               for t, rows in table.items()}
    columns = {t: c for t, c in columns.items() if c}
    if not columns:
        return "<p>analysis.json has no leak-map decision.</p>"
    top = '<th rowspan="2">subset</th>' + "".join(f'<th colspan="{len(c)}">{esc(t)}</th>' for t, c in columns.items())
    sub = "".join(f"<th>{esc(label)}</th>" for c in columns.values() for _, label in c)
    rows = []
    for s in subsets:
        cells = [f"<th><code>{esc(s)}</code></th>"]
        for t, cols in columns.items():
            row = table[t].get(s, {})
            for key, _ in cols:
                extra = ""
                if key == "sufficient" and "sufficient_holm" in row:
                    extra = f'<br><span class="small">Holm: {"rejected" if row["sufficient_holm"] else "not rejected"}</span>'
                cells.append(decision_cell(row.get(key), extra))
        rows.append(f'<tr data-subset="{esc(s)}">' + "".join(cells) + "</tr>")
    note = (f'<p class="small">Sufficient: patch-insert of the subset vs the all-clean baseline, one-sided at '
            f'{_test_levels(analysis)}, Holm across subsets. Necessary: patch-remove vs all-clean equivalent within '
            f'margin {_g(analysis.get("margin"))} (two one-sided tests). Leak-in: the subset is necessary and drop '
            f'(with the stated refill) minus patch-remove has a lower bound above 0. Each cell: the estimate '
            f'[95% interval] and p; hover for the test\'s statement, alpha, margin and trials.</p>')
    return (f'<table class="leakmap"><thead><tr>{top}</tr><tr>{sub}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>{note}')


def transfer_section(analysis: dict, config: dict) -> str:
    transfer = analysis.get("transfer") or {}
    parts = []
    if transfer:
        rows = "".join(
            f"<tr><td><code>{esc(src)}</code></td><td>{esc(t)}</td><td>{_num(tr.get('offset'))}</td>"
            f"<td>{_num(tr.get('ratio')) if tr.get('ratio') is not None else 'undefined'}</td></tr>"
            for src, by_trait in transfer.items() for t, tr in by_trait.items())
        parts.append("<table><thead><tr><th>teacher</th><th>trait</th><th>offset τS − τT</th>"
                     "<th>transfer ratio (τS − τ0)/(τT − τ0)</th></tr></thead>"
                     f"<tbody>{rows}</tbody></table>")
    for key, what in (("teachers", "the teacher's own score τT (teacher eval, no training)"),
                      ("students", "the student trained on all of the source's rollouts")):
        sources = analysis.get(key) or {}
        if not sources:
            continue
        traits = list(dict.fromkeys(t for by_trait in sources.values() for t in by_trait))
        head = "".join(f"<th>{esc(t)} [low, high]</th>" for t in traits)
        rows = "".join(f"<tr><td><code>{esc(src)}</code></td>"
                       + "".join(f"<td title=\"trials {esc(_trial_list((by_trait.get(t) or {}).get('trials')))}\">"
                                 f"{_est(by_trait.get(t))}</td>" for t in traits) + "</tr>"
                       for src, by_trait in sources.items())
        parts.append(f"<p class=\"small\">Per source: {what}.</p><table><thead><tr><th>source</th>{head}</tr></thead>"
                     f"<tbody>{rows}</tbody></table>")
    return "".join(parts) or "<p>analysis.json has no teacher or transfer scores.</p>"


# dose-response ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogFrame(Frame):
    """Log10 x over [x_lo, x_hi] (both above 0), after a ZERO_SLOT strip at the left where x = 0 is drawn."""

    def px(self, x: float) -> float:
        if x <= 0:
            return LEFT + ZERO_SLOT / 2
        start, span = LEFT + ZERO_SLOT, PLOT_W - LEFT - RIGHT - ZERO_SLOT
        lo, hi = math.log10(self.x_lo), math.log10(self.x_hi)
        return start + (math.log10(x) - lo) / (hi - lo) * span


def log_ticks(lo: float, hi: float) -> list[float]:
    """Decades in [lo, hi]; 1-2-5 steps when fewer than three decades fit."""
    k0, k1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    inside = lambda v: lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9)  # noqa: E731
    decades = [10.0**k for k in range(k0, k1 + 1) if inside(10.0**k)]
    if len(decades) >= 3:
        return decades
    return [m * 10.0**k for k in range(k0, k1 + 1) for m in (1, 2, 5) if inside(m * 10.0**k)]


def fit_curve(fit: dict):
    """The fitted logistic tau(f) = bottom + (top - bottom) * expit(slope * (log10 f - log10 ED50)); None unless ok."""
    params = fit.get("params") or {}
    if fit.get("fit") != "ok" or not all(k in params for k in ("bottom", "top", "slope_per_decade", "log10_ed50")):
        return None
    bottom, top, slope, centre = (float(params[k]) for k in ("bottom", "top", "slope_per_decade", "log10_ed50"))

    def curve(f: float) -> float:
        if f <= 0:
            return bottom
        z = slope * (math.log10(f) - centre)
        return bottom + (top - bottom) * (1 / (1 + math.exp(-z)) if z > -700 else 0.0)

    return curve


def _key(f: float) -> float:
    return round(float(f), 12)


def dose_chart(dr: dict, analysis: dict) -> str:
    """Trait vs fraction of the subset from the teacher: rungs with intervals, fit, threshold and ED50."""
    subset, trait = str(dr.get("subset", "?")), str(dr.get("trait", "?"))
    points = [p for p in dr.get("points", []) if p.get("value") is not None]
    seq, fit = dr.get("threshold") or {}, dr.get("fit") or {}
    steps = {_key(s["fraction"]): s.get("decision") or {} for s in seq.get("steps", [])}
    threshold, curve = seq.get("threshold"), fit_curve(fit)
    ed50 = fit.get("ed50") if curve else None
    positive = sorted({float(p["fraction"]) for p in points if p["fraction"] > 0}
                      | {float(f) for f in dr.get("ladder", []) if f > 0})
    log_x = len(positive) >= 2 and positive[-1] / positive[0] >= 10
    if log_x:
        pad = 10 ** (0.04 * math.log10(positive[-1] / positive[0]))
        x_lo, x_hi = positive[0] / pad, positive[-1] * pad
        grid = [x_lo * (x_hi / x_lo) ** (i / 150) for i in range(151)]
        frame: Frame = LogFrame(x_lo, x_hi, 0, 1)
    else:
        x_lo, x_hi = padded([0.0] + (positive or [1.0]), 0.04)
        grid = [max(x_hi, 1e-9) * i / 150 for i in range(1, 151)]
    clean = next((p for p in points if p["fraction"] == 0), None)
    min_effect = float(analysis.get("min_effect") or 0.0)
    ys = [v for p in points for v in (p["value"], p.get("low"), p.get("high")) if v is not None]
    if clean and min_effect > 0:
        ys.append(clean["value"] + min_effect)
    curve_xy = [(x, curve(x)) for x in grid] if curve else []
    ys += [y for _, y in curve_xy]
    y_lo, y_hi = padded(ys or [0.0, 1.0])
    frame = LogFrame(x_lo, x_hi, y_lo, y_hi) if log_x else Frame(x_lo, x_hi, y_lo, y_hi)
    xticks = ([0.0] + log_ticks(x_lo, x_hi)) if log_x else nice_ticks(0.0, max(positive or [1.0]))
    xlabel = f"fraction of {subset} from the teacher" + (" (log scale; 0 = all-clean baseline)" if log_x else "")
    parts = axes(frame, xticks, nice_ticks(y_lo, y_hi), xlabel, trait, xfmt=_tick_pct)
    top, bottom = TOP, PLOT_H - BOTTOM
    clamp = lambda x: min(max(x, frame.x_lo), frame.x_hi)  # noqa: E731
    items = []
    if log_x:  # the axis is broken between fraction 0 and the log-scaled rungs
        bx = LEFT + ZERO_SLOT - 5
        parts.append(f'<rect x="{bx - 4}" y="{bottom - 6}" width="8" height="12" fill="#fff"/>'
                     f'<path class="axis-break" d="M{bx - 5},{bottom + 5} L{bx - 1},{bottom - 5} M{bx + 1},{bottom + 5} '
                     f'L{bx + 5},{bottom - 5}" stroke="#666"/>')
    if clean is not None:
        y0 = frame.py(clean["value"])
        parts.append(f'<line x1="{LEFT}" y1="{y0:.1f}" x2="{PLOT_W - RIGHT}" y2="{y0:.1f}" stroke="{CLEAN}" '
                     f'stroke-width="1" stroke-dasharray="6 4"/>')
        if min_effect > 0:
            ym = frame.py(clean["value"] + min_effect)
            parts.append(series("min-effect", [
                f'<line x1="{LEFT}" y1="{ym:.1f}" x2="{PLOT_W - RIGHT}" y2="{ym:.1f}" stroke="{CLEAN}" '
                f'stroke-width="1" stroke-dasharray="2 3"><title>τ0 + min effect {_g(min_effect)} = '
                f'{_num(clean["value"] + min_effect)}</title></line>']))
            items.append((f"τ0 + min effect ({_g(min_effect)})", CLEAN, "dotted", "min-effect"))
    for untested in (f for f in dr.get("ladder", []) if _key(f) not in {_key(p["fraction"]) for p in points}):
        px = frame.px(float(untested))
        parts.append(f'<line x1="{px:.1f}" y1="{bottom}" x2="{px:.1f}" y2="{bottom - 6}" stroke="#999">'
                     f'<title>rung {_tick_pct(untested)}: not run</title></line>')
    if curve_xy:
        coords = " ".join(f"{frame.px(x):.1f},{frame.py(y):.1f}" for x, y in curve_xy)
        parts.append(series("fit", [f'<polyline class="fit" points="{coords}" fill="none" stroke="{FIT}" '
                                    f'stroke-width="1.5"><title>logistic fit on log10 fraction</title></polyline>']))
        items.append(("logistic fit", FIT, "line", "fit"))
    if ed50 and ed50.get("value") is not None and ed50["value"] > 0:
        px = frame.px(clamp(ed50["value"]))
        lo_px = frame.px(clamp(ed50["low"])) if ed50.get("low") is not None else frame.px(frame.x_lo)
        hi_px = frame.px(clamp(ed50["high"])) if ed50.get("high") is not None else PLOT_W - RIGHT
        yb = top + 34
        anchor, dx = ("end", -4) if px > PLOT_W - RIGHT - 90 else ("start", 4)
        parts.append(f'<g class="ed50" data-series="ed50"><title>ED50 = {_est(ed50)}</title>'
                     f'<line x1="{px:.1f}" y1="{top}" x2="{px:.1f}" y2="{bottom}" stroke="{ED50}" stroke-dasharray="2 3"/>'
                     f'<line x1="{lo_px:.1f}" y1="{yb}" x2="{hi_px:.1f}" y2="{yb}" stroke="{ED50}" stroke-width="2"/>'
                     f'<text x="{px + dx:.1f}" y="{yb - 5}" text-anchor="{anchor}" fill="{ED50}">'
                     f'ED50 {ed50["value"] * 100:.3g}%</text></g>')
        items.append(("ED50 (bar: interval)", ED50, "dotted", "ed50"))
    if threshold is not None:
        px = frame.px(clamp(float(threshold)))
        anchor, dx = ("end", -4) if px > PLOT_W - RIGHT - 120 else ("start", 4)
        parts.append(f'<g class="threshold" data-series="threshold"><title>{esc(str(seq.get("statement", "")))}</title>'
                     f'<line x1="{px:.1f}" y1="{top}" x2="{px:.1f}" y2="{bottom}" stroke="{THRESHOLD}" '
                     f'stroke-width="2" stroke-dasharray="6 4"/>'
                     f'<text x="{px + dx:.1f}" y="{top + 14}" text-anchor="{anchor}" fill="{THRESHOLD}">'
                     f'threshold {esc(_tick_pct(float(threshold)))}</text></g>')
        items.append(("leak threshold (fixed sequence)", THRESHOLD, "dashed", "threshold"))
    kinds, marks = set(), {}
    for p in points:
        f = float(p["fraction"])
        px, decision = frame.px(f), steps.get(_key(f))
        if f == 0:
            col, fill, kind = CLEAN, CLEAN, "clean"
        elif decision is None:
            col, fill, kind = "#999", "#fff", "untested"
        elif decision.get("passed"):
            col, fill, kind = POINT, POINT, "passed"
        else:
            col, fill, kind = POINT, "#fff", "failed"
        kinds.add(kind)
        title = (f'{"all-clean baseline" if f == 0 else "fraction " + _tick_pct(f)}: {trait} {_est(p)} over '
                 f'{p.get("n_runs", "?")} run(s), trials {_trial_list(p.get("trials"))}')
        if decision:
            title += f'. {decision.get("statement", "")}'
        group = marks.setdefault(kind, [])
        if p.get("low") is not None and p.get("high") is not None:
            group.append(f'<line x1="{px:.1f}" y1="{frame.py(p["low"]):.1f}" x2="{px:.1f}" y2="{frame.py(p["high"]):.1f}" '
                         f'stroke="{col}" stroke-width="1.5"/>')
        group.append(f'<circle class="rung {kind}" cx="{px:.1f}" cy="{frame.py(p["value"]):.1f}" r="4" fill="{fill}" '
                     f'stroke="{col}" stroke-width="1.5"><title>{esc(title)}</title></circle>')
    parts += [series(f"rungs-{kind}", group) for kind, group in marks.items()]
    items = [(label, col, style, f"rungs-{kind}") for kind, label, col, style in (
        ("clean", "all-clean baseline (fraction 0)", CLEAN, "point"),
        ("passed", "rung shown sufficient", POINT, "point"),
        ("failed", "rung not shown sufficient (sequence stops)", POINT, "hollow"),
        ("untested", "rung below the stop (not tested in the sequence)", "#999", "hollow")) if kind in kinds] + items
    legend_parts, height = legend(items)
    return svg(parts + legend_parts, height, f"dose-response: {trait} vs fraction of {subset} from the teacher",
               "dose-response")


def dose_section(analysis: dict) -> str:
    """Per subset: the chart, then the fixed-sequence steps as a table."""
    out = []
    for subset, dr in (analysis.get("dose_response") or {}).items():
        seq = dr.get("threshold") or {}
        caption = (f'{esc(str(dr.get("trait", "")))} vs fraction of <code>{esc(subset)}</code> from the teacher: mean '
                   f'over seeds with {_level(dr)} intervals; {dr.get("trials_spent", "?")} trials.')
        steps = "".join(f'<tr><td>{_frac(s["fraction"])}</td>{decision_cell(s.get("decision"))}</tr>'
                        for s in seq.get("steps", []))
        table = (f'<table class="steps" data-subset="{esc(subset)}"><thead><tr><th>rung (highest first)</th>'
                 f'<th>sufficiency vs all-clean</th></tr></thead><tbody>{steps}</tbody></table>') if steps else ""
        statement = f'<p class="small">{esc(str(seq["statement"]))}</p>' if seq.get("statement") else ""
        out.append(f'<figure class="dose" data-subset="{esc(subset)}">{dose_chart(dr, analysis)}'
                   f"<figcaption>{caption}</figcaption></figure>{statement}{table}")
    return "".join(out) or "<p>analysis.json has no dose-response.</p>"


def _level(dr: dict) -> str:
    levels = {p.get("level") for p in dr.get("points", []) if p.get("level")}
    return f"{levels.pop():.0%}" if len(levels) == 1 else "bootstrap"


# minimal subset -----------------------------------------------------------------------------------


def minimal_section(analysis: dict) -> str:
    """The bisection tree (each node's sufficiency test), minimal nodes highlighted, then the confirmations."""
    tests = analysis.get("tests") or {}
    if not tests:
        return "<p>analysis.json has no bisection test.</p>"
    minimal, distributed = set(analysis.get("minimal", [])), set(analysis.get("distributed", []))

    def node_item(node: str) -> str:
        d = tests[node]
        children = [c for c in (f"{node}{HALF_SEP}0", f"{node}{HALF_SEP}1") if c in tests]
        tag = ""
        if node in minimal:
            tag = " — <b>minimal</b>, " + ("the trait is distributed within it" if node in distributed
                                            else "at the maximum depth")
        cls = "minimal" if node in minimal else ("pass" if d.get("passed") else "fail")
        below = f'<ul>{"".join(node_item(c) for c in children)}</ul>' if children else ""
        return (f'<li class="{cls}" data-node="{esc(node)}" title="{esc(decision_title(d))}"><code>{esc(node)}</code>: '
                f'{_verdict(d)}, {_decision_short(d)}{tag}{below}</li>')

    root = analysis.get("subset")
    roots = [root] if root in tests else sorted(n for n in tests if HALF_SEP not in n)
    tree = f'<ul class="tree">{"".join(node_item(r) for r in roots)}</ul>'
    note = (f'<p class="small">Each node: sufficiency of patch-insert(node) vs all-clean on the search seeds '
            f'({_test_levels(analysis)}); estimate = τ(insert) − τ0 [interval], p. <code>{esc(HALF_SEP)}0</code> and '
            f'<code>{esc(HALF_SEP)}1</code> are the stratified halves. Hover a node for its test and trials.</p>')
    confirmations = analysis.get("confirmations") or {}
    if confirmations:
        rows = "".join(f'<tr data-node="{esc(n)}"><td><code>{esc(n)}</code></td>{decision_cell(d)}</tr>'
                       for n, d in confirmations.items())
        confirm = ('<h3>Confirmation on fresh seeds</h3><table class="confirm"><thead><tr><th>minimal node</th>'
                   f'<th>sufficiency on seeds the search never used</th></tr></thead><tbody>{rows}</tbody></table>')
    else:
        confirm = "<p>No confirmation decision (no minimal node, or the confirmation runs are missing).</p>"
    return tree + note + confirm


def analysis_sections(view: SweepView) -> list[str]:
    """The sections an experiment mode's analysis.json supports, in page order."""
    a = view.analysis or {}
    out = []
    if a.get("leak_map"):
        chart = leak_map_chart(a)
        figure = (f'<figure>{chart}<figcaption>Red: the test passed (the subset carries the trait that way); green: '
                  f'not passed; grey: not tested. Cell text: the estimate. Hover a cell for its test.</figcaption>'
                  f'</figure>' if chart else "")
        out += ["<h2>Leak map</h2>", figure, leak_map_section(a)]
    if a.get("dose_response"):
        out += ["<h2>Dose-response</h2>", dose_section(a)]
    if view.mode == "minimal_subset":
        out += ["<h2>Minimal leaking subset</h2>", minimal_section(a)]
    if a.get("transfer") or a.get("teachers") or a.get("students"):
        chart = offsets_chart(a, view.decision_trait)
        figure = (f"<figure>{chart}<figcaption>{esc(view.decision_trait)}: each source's own score (τT, square) "
                  f"and the student trained on all of its rollouts (τS, circle) with intervals; the arrow is the "
                  f"offset.</figcaption></figure>" if chart else "")
        out += ["<h2>Teacher vs student</h2>", figure, transfer_section(a, view.config)]
    return out


# leak map, offsets: charts of analysis.json -----------------------------------------------------------

LEAK, NO_LEAK, NOT_TESTED = "#e57373", "#a5d6a7", "#eeeeee"


def leak_map_chart(analysis: dict) -> str:
    """The leak map as a grid: a row per subset, a column per trait × decision; red = the test passed."""
    table = analysis.get("leak_map") or {}
    subsets = list(dict.fromkeys(s for rows in table.values() for s in rows))
    columns = [(t, k, label) for t, rows in table.items() for k, label in LEAK_MAP_COLUMNS
               if any(k in rows.get(s, {}) for s in subsets)]
    if not columns:
        return ""
    cell_w, cell_h, label_w, head_h = 118, 34, max(90, 8 * max(len(s) for s in subsets) + 16), 40
    width, height = label_w + cell_w * len(columns) + RIGHT, head_h + cell_h * len(subsets) + 8
    parts = []
    for j, (t, _, label) in enumerate(columns):
        x = label_w + j * cell_w + cell_w / 2
        parts.append(f'<text x="{x:.0f}" y="14" text-anchor="middle" font-weight="bold">{esc(t)}</text>'
                     f'<text x="{x:.0f}" y="30" text-anchor="middle">{esc(label)}</text>')
    for i, s in enumerate(subsets):
        y = head_h + i * cell_h
        parts.append(f'<text x="{label_w - 8}" y="{y + cell_h / 2 + 4:.0f}" text-anchor="end">{esc(s)}</text>')
        for j, (t, key, label) in enumerate(columns):
            d = table[t].get(s, {}).get(key)
            x = label_w + j * cell_w
            if not d:
                parts.append(f'<rect x="{x + 1}" y="{y + 1}" width="{cell_w - 2}" height="{cell_h - 2}" fill="{NOT_TESTED}">'
                             f'<title>{esc(s)}, {esc(t)}, {esc(label)}: not tested</title></rect>')
                continue
            passed = table[t][s].get("sufficient_holm", d.get("passed")) if key == "sufficient" else d.get("passed")
            est = (d.get("estimate") or {}).get("value")
            parts.append(f'<g class="cell {"pass" if passed else "fail"}"><title>{esc(s)}, {esc(t)}, {esc(label)}: '
                         f'{"passed" if passed else "not passed"}. {esc(decision_title(d))}</title>'
                         f'<rect x="{x + 1}" y="{y + 1}" width="{cell_w - 2}" height="{cell_h - 2}" '
                         f'fill="{LEAK if passed else NO_LEAK}"/>'
                         f'<text x="{x + cell_w / 2:.0f}" y="{y + cell_h / 2 + 4:.0f}" text-anchor="middle">'
                         f'{"✓" if passed else "✗"} {esc(_num(est)) if est is not None else ""}</text></g>')
    return svg(parts, 0, "leak map: decisions per subset", "leak-map", width=width, height=height)


def _estimate_marks(e: dict, y: float, px, col: str, shape: str, title: str) -> list[str]:
    """A point estimate at height y with its interval as a horizontal bar; `px` maps a value to x."""
    x, out = px(e["value"]), []
    if e.get("low") is not None and e.get("high") is not None:
        out.append(f'<line x1="{px(e["low"]):.1f}" y1="{y:.1f}" x2="{px(e["high"]):.1f}" y2="{y:.1f}" '
                   f'stroke="{col}" stroke-width="2"/>')
    if shape == "square":
        out.append(f'<rect x="{x - 4.5:.1f}" y="{y - 4.5:.1f}" width="9" height="9" fill="{col}"><title>{esc(title)}</title></rect>')
    else:
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{col}"><title>{esc(title)}</title></circle>')
    return out


def offsets_chart(analysis: dict, trait: str) -> str:
    """Per source: the teacher's own score τT and the student's τS (intervals), an arrow from one to the other."""
    teachers, students = analysis.get("teachers") or {}, analysis.get("students") or {}
    clean = ((analysis.get("baselines") or {}).get(trait) or {}).get("all_clean")
    has = lambda e: bool(e) and e.get("value") is not None  # noqa: E731
    sources = [s for s in dict.fromkeys(list(teachers) + list(students))
               if has(teachers.get(s, {}).get(trait)) or has(students.get(s, {}).get(trait))]
    if not sources:
        return ""
    ests = [e for s in sources for e in (teachers.get(s, {}).get(trait), students.get(s, {}).get(trait)) if has(e)]
    xs = [v for e in ests for v in (e["value"], e.get("low"), e.get("high")) if v is not None]
    if has(clean):
        xs.append(clean["value"])
    x_lo, x_hi = padded(xs)
    row_h, label_w = 34, max(LEFT, 8 * max(len(s) for s in sources) + 16)
    bottom = TOP + row_h * len(sources)
    px = lambda v: label_w + (v - x_lo) / (x_hi - x_lo) * (PLOT_W - RIGHT - label_w)  # noqa: E731
    parts = ['<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>']
    for x in nice_ticks(x_lo, x_hi):
        parts.append(f'<line x1="{px(x):.1f}" y1="{TOP}" x2="{px(x):.1f}" y2="{bottom}" stroke="#e4e4e4"/>'
                     f'<text x="{px(x):.1f}" y="{bottom + 16}" text-anchor="middle">{esc(_tick(x))}</text>')
    parts.append(f'<rect x="{label_w}" y="{TOP}" width="{PLOT_W - RIGHT - label_w}" height="{bottom - TOP}" '
                 f'fill="none" stroke="#999"/><text x="{(label_w + PLOT_W - RIGHT) / 2:.0f}" y="{bottom + 34}" '
                 f'text-anchor="middle">{esc(trait)}</text>')
    teacher_marks, student_marks, arrows = [], [], []
    for i, src in enumerate(sources):
        y = TOP + row_h * i + row_h / 2
        parts.append(f'<text x="{label_w - 8}" y="{y + 4:.0f}" text-anchor="end">{esc(src)}</text>')
        t, st = teachers.get(src, {}).get(trait), students.get(src, {}).get(trait)
        if has(t):
            teacher_marks += _estimate_marks(t, y - 6, px, TEACHER, "square", f"teacher {src} itself: {trait} "
                                             f"τT = {_est(t)}, trials {_trial_list(t.get('trials'))}")
        if has(st):
            student_marks += _estimate_marks(st, y + 6, px, POINT, "circle", f"student trained on all of {src}: "
                                             f"{trait} τS = {_est(st)}, trials {_trial_list(st.get('trials'))}")
        if has(t) and has(st):
            arrows.append(f'<line x1="{px(t["value"]):.1f}" y1="{y:.1f}" x2="{px(st["value"]):.1f}" y2="{y:.1f}" '
                          f'stroke="#555" stroke-width="1.2" marker-end="url(#arrow)"><title>{esc(src)}: offset '
                          f'τS − τT = {_num(st["value"] - t["value"])}</title></line>')
    items = []
    if has(clean):
        x0 = px(clean["value"])
        parts.append(series("clean", [f'<line x1="{x0:.1f}" y1="{TOP}" x2="{x0:.1f}" y2="{bottom}" stroke="{CLEAN}" '
                                      f'stroke-width="1.5" stroke-dasharray="6 4"><title>all-clean student τ0 = '
                                      f'{esc(_est(clean))}</title></line>']))
        items.append(("all-clean student τ0", CLEAN, "dashed", "clean"))
    for key, marks, label, col in (("teacher", teacher_marks, "teacher's own score τT (interval)", TEACHER),
                                   ("student", student_marks, "student trained on the source τS (interval)", POINT),
                                   ("offset", arrows, "offset τT → τS", "#555")):
        if marks:
            parts.append(series(key, marks))
            items.append((label, col, "line" if key == "offset" else "point", key))
    legend_parts, extra = legend(items, top=bottom + 52)
    return svg(parts + legend_parts, extra, f"teacher vs student: {trait}", "offsets")


# optuna study: Pareto front, parameter importances --------------------------------------------------------


def _params_text(params: dict) -> str:
    return ", ".join(f"{k} = {_g(v) if isinstance(v, (int, float)) else v}" for k, v in params.items()) or "no params"


def pareto_chart(study: dict) -> str:
    """The first two objectives of every complete trial; the Pareto front filled and joined."""
    names, directions = study.get("objectives", []), study.get("directions", [])
    trials = [t for t in study.get("trials", []) if len(t.get("values") or []) >= 2
              and all(isinstance(v, (int, float)) and math.isfinite(v) for v in t["values"][:2])]
    if len(names) < 2 or not trials:
        return ""
    front = set(study.get("pareto", []))
    (x_lo, x_hi), (y_lo, y_hi) = padded([t["values"][0] for t in trials]), padded([t["values"][1] for t in trials])
    frame = Frame(x_lo, x_hi, y_lo, y_hi)
    parts = axes(frame, nice_ticks(x_lo, x_hi), nice_ticks(y_lo, y_hi), html.unescape(_objective_name(names[0], directions[0])),
                 html.unescape(_objective_name(names[1], directions[1])))
    on, off = [], []
    for t in trials:
        x, y = t["values"][:2]
        title = (f'trial {t["number"]}{" (Pareto front)" if t["number"] in front else ""}: {names[0]} {_num(x)}, '
                 f'{names[1]} {_num(y)}; {_params_text(t.get("params", {}))}')
        mark = (f'<circle cx="{frame.px(x):.1f}" cy="{frame.py(y):.1f}" r="{5 if t["number"] in front else 4}" '
                f'fill="{TEACHER if t["number"] in front else "#fff"}" stroke="{TEACHER if t["number"] in front else "#888"}" '
                f'stroke-width="1.5"><title>{esc(title)}</title></circle>')
        (on if t["number"] in front else off).append(mark)
    line = sorted((t["values"][0], t["values"][1]) for t in trials if t["number"] in front)
    if len(line) > 1:
        coords = " ".join(f"{frame.px(x):.1f},{frame.py(y):.1f}" for x, y in line)
        on.insert(0, f'<polyline points="{coords}" fill="none" stroke="{TEACHER}" stroke-width="1" stroke-dasharray="4 3"/>')
    parts += [series("dominated", off), series("pareto", on)]
    items = [(f"Pareto front ({len(front)} trials)", TEACHER, "point", "pareto"),
             (f"other trials ({len(off)})", "#888", "hollow", "dominated")]
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
        parts.append(f'<line x1="{px(x):.1f}" y1="{TOP}" x2="{px(x):.1f}" y2="{bottom}" stroke="#e4e4e4"/>'
                     f'<text x="{px(x):.1f}" y="{bottom + 16}" text-anchor="middle">{_tick(x)}</text>')
    parts.append(f'<text x="{(label_w + PLOT_W - RIGHT) / 2:.0f}" y="{bottom + 34}" text-anchor="middle">'
                 f'importance (normalised: sums to 1 per objective)</text>')
    bars: dict[str, list[str]] = {o: [] for o in objectives}
    for i, p in enumerate(params):
        y0 = TOP + i * group_h
        parts.append(f'<text x="{label_w - 8}" y="{y0 + group_h / 2:.0f}" text-anchor="end">{esc(p)}</text>')
        for j, o in enumerate(objectives):
            v = float(importances[o].get(p, 0.0))
            bars[o].append(f'<rect x="{label_w}" y="{y0 + j * bar_h}" width="{max(px(v) - label_w, 1):.1f}" '
                           f'height="{bar_h - 2}" fill="{colour(j)}"><title>{esc(p)}: importance {v:.3f} for '
                           f'{esc(o)}</title></rect>')
    parts += [series(f"objective-{j}", bars[o]) for j, o in enumerate(objectives)]
    items = [(o, colour(j), "point", f"objective-{j}") for j, o in enumerate(objectives)]
    legend_parts, extra = legend(items, top=bottom + 52)
    return svg(parts + legend_parts, extra, "parameter importances", "importances")


def study_section(view: SweepView) -> str:
    """Optuna's view of the study: Pareto front (several objectives) and parameter importances, or why not."""
    study = view.study or {}
    if view.study_error:
        return f'<p class="small">The Optuna study could not be read: {esc(view.study_error)}</p>'
    out = []
    if len(study.get("directions", [])) > 1:
        chart = pareto_chart(study)
        extra = (f" Only the first two of {len(study['directions'])} objectives are plotted."
                 if len(study["directions"]) > 2 else "")
        out.append("<h3>Pareto front</h3>" + (
            f"<figure>{chart}<figcaption>{len(study.get('pareto', []))} of {study.get('n_complete', 0)} complete "
            f"trials are on the Pareto front (filled). Hover a point for its trial, values and parameters; click "
            f"the legend to hide a group.{extra}</figcaption></figure>" if chart
            else "<p>No complete trial has values for two objectives.</p>"))
    chart = importance_chart(study)
    if chart:
        out.append(f"<h3>Parameter importances</h3><figure>{chart}<figcaption>"
                   f"{esc(study.get('importance_method', 'optuna.importance'))}: how much each suggested "
                   f"parameter matters for reaching the best values of each objective.</figcaption></figure>")
    elif study.get("importances_absent"):
        out.append(f"<h3>Parameter importances</h3><p>No importances: {esc(study['importances_absent'])}.</p>")
    return "".join(out)


# samples: every trial's generations, filtered in the page ------------------------------------------------


def _text_cut(text: str) -> str:
    return text if len(text) <= MAX_TABLE_TEXT_CHARS else text[:MAX_TABLE_TEXT_CHARS] + f" … [{len(text)} chars]"


def sample_rows(view: SweepView) -> tuple[dict, int]:
    """({"prompts": {id: text}, "rows": [[trial, condition, trait, prompt_id, sample, value, reason, response]]}, total).

    At most MAX_SAMPLE_ROWS rows, the same number per (trial, trait) (its first ones in the file), so every
    trial and trait is represented however many trials there are; `total` counts every generation on disk.
    """
    per = max(1, MAX_SAMPLE_ROWS // max(1, len(view.trials) * max(1, len(view.traits))))
    prompts: dict[str, str] = {}
    rows, total = [], 0
    for t in view.trials:
        path = t.dir / SAMPLES
        if not path.is_file():
            continue
        taken: dict[str, int] = {}
        for r in read_jsonl(path):
            total += 1
            trait = str(r.get("trait", ""))
            if taken.get(trait, 0) >= per or len(rows) >= MAX_SAMPLE_ROWS:
                continue
            taken[trait] = taken.get(trait, 0) + 1
            pid = str(r.get("prompt_id", ""))
            prompts.setdefault(pid, _text_cut(str(r.get("prompt", ""))))
            value = r.get("value")
            rows.append([t.number, t.condition, trait, pid, r.get("sample", 0),
                         value if isinstance(value, (int, float)) else str(value), _text_cut(str(r.get("reason", ""))),
                         _text_cut(str(r.get("response", "")))])
    return {"prompts": prompts, "rows": rows, "per_trial_trait": per}, total


def _json_for_script(data) -> str:
    """JSON that is safe inside <script>: ASCII only, and no `<`, `>` or `&` that could end the element."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def samples_table_section(view: SweepView) -> str:
    """A filterable, paged table of the embedded generations (rendered by SAMPLES_JS)."""
    data, total = sample_rows(view)
    shown = len(data["rows"])
    if not total:
        return "<p>No trial wrote a samples file (simulated trials and some runners write none).</p>"
    conditions = sorted({r[1] for r in data["rows"]})
    traits = sorted({r[2] for r in data["rows"]})
    options = lambda values: "".join(f'<option value="{esc(v)}">{esc(v)}</option>' for v in values)  # noqa: E731
    cap = ("" if shown == total else
           f" The page embeds {shown} of the {total} generations: the first {data['per_trial_trait']} per trial and "
           f"trait; every generation is in <code>trials/NNNNN/{esc(SAMPLES)}</code>.")
    return (f'<p class="small">{total} generations over {len(view.trials)} trials.{cap} Prompts and responses are cut '
            f'at {MAX_TABLE_TEXT_CHARS} characters here. Value: the judge\'s verdict (1 = shows the trait, 0 = does '
            f'not) or score.</p>'
            f'<div class="controls"><input id="samples-filter" type="search" placeholder="filter: text in prompt, '
            f'response, reason, condition" size="40" aria-label="filter samples"> '
            f'<label>trait <select id="samples-trait"><option value="">all</option>{options(traits)}</select></label> '
            f'<label>verdict <select id="samples-verdict"><option value="">all</option>'
            f'<option value="pos">shows the trait (value &gt; 0)</option>'
            f'<option value="zero">does not (value = 0)</option></select></label> '
            f'<label>condition <select id="samples-condition"><option value="">all</option>{options(conditions)}'
            f'</select></label></div>'
            f'<p id="samples-count" class="small">{shown} generations embedded (JavaScript renders the table).</p>'
            f'<table id="samples-table"><thead><tr><th>trial</th><th>condition</th><th>trait</th><th>prompt</th>'
            f'<th>response</th><th>value</th><th>judge reason</th></tr></thead><tbody></tbody></table>'
            f'<div class="controls"><button id="samples-prev" type="button">previous</button> '
            f'<button id="samples-next" type="button">next</button></div>'
            f'<script type="application/json" id="samples-data">{_json_for_script(data)}</script>')


# provenance -------------------------------------------------------------------------------------------

def _file_sha256(path: Path) -> str:
    if not path.is_file():
        return "–"
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def provenance_trials_table(view: SweepView) -> str:
    """Per trial: data fingerprint, manifest hash (ours and of the file on disk) and the command that reruns it."""
    rows = "".join(
        f"<tr><td>{t.number}</td><td>{esc(t.condition)}</td>"
        f"<td><code>{esc(str(t.result.get('data_fingerprint', '–')))}</code></td>"
        f"<td><code>{esc(str(t.result.get('manifest', {}).get('hash', '–')))}</code></td>"
        f"<td><code>{esc(_file_sha256(t.dir / MANIFEST))}</code></td>"
        f"<td><code>{esc(str(t.result.get('code', 'not recorded')))}</code></td>"
        f"<td><code>leaksweep trial {esc(shlex.quote(str(t.dir.resolve())))}</code></td></tr>"
        for t in view.trials)
    return ('<table class="sortable" id="provenance-trials"><thead><tr><th>trial</th><th>condition</th>'
            '<th>data fingerprint</th><th>manifest hash</th><th>manifest.jsonl sha256</th><th>code (git commit)</th>'
            f'<th>reproduce (reruns the trial from its spec.json)</th></tr></thead><tbody>{rows}</tbody></table>')


# --- the page's behaviour ------------------------------------------------------------------------------

INTERACT_JS = """
(function () {
  // Tooltips: each chart mark's <title> (the no-JS fallback) becomes data-tip, shown at the pointer.
  var tip = document.createElement("div");
  tip.id = "tip"; tip.setAttribute("role", "tooltip"); document.body.appendChild(tip);
  document.querySelectorAll("svg[data-plot] title").forEach(function (t) {
    var el = t.parentNode;
    el.setAttribute("data-tip", t.textContent); el.classList.add("has-tip"); t.remove();
  });
  function place(e) {
    var el = e.target.closest ? e.target.closest("[data-tip]") : null;
    if (!el) { tip.style.display = "none"; return; }
    tip.textContent = el.getAttribute("data-tip"); tip.style.display = "block";
    var x = e.clientX + 14, y = e.clientY + 14;
    if (x + tip.offsetWidth > window.innerWidth - 4) x = Math.max(4, e.clientX - tip.offsetWidth - 14);
    if (y + tip.offsetHeight > window.innerHeight - 4) y = Math.max(4, e.clientY - tip.offsetHeight - 14);
    tip.style.left = x + "px"; tip.style.top = y + "px";
  }
  document.querySelectorAll("svg[data-plot]").forEach(function (chart) {
    chart.addEventListener("mousemove", place);
    chart.addEventListener("mouseleave", function () { tip.style.display = "none"; });
  });
  // Legend entries toggle their series.
  document.querySelectorAll("svg[data-plot] .legend-item").forEach(function (item) {
    function toggle() {
      var off = item.classList.toggle("off"), key = item.getAttribute("data-series");
      item.setAttribute("aria-pressed", off ? "false" : "true");
      item.closest("svg").querySelectorAll("[data-series]").forEach(function (g) {
        if (g !== item && !g.classList.contains("legend-item") && g.getAttribute("data-series") === key) {
          g.style.display = off ? "none" : "";
        }
      });
    }
    item.addEventListener("click", toggle);
    item.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); toggle(); }
    });
  });
})();
"""

SAMPLES_JS = """
(function () {
  var source = document.getElementById("samples-data");
  if (!source) return;
  var data = JSON.parse(source.textContent), rows = data.rows, prompts = data.prompts;
  var PAGE = __PAGE_ROWS__, page = 0, matching = rows;
  var $ = function (id) { return document.getElementById(id); };
  var body = $("samples-table").tBodies[0];
  function haystack(r) {
    return [r[0], r[1], r[2], prompts[r[3]] || "", r[6], r[7]].join(" ").toLowerCase();
  }
  var texts = rows.map(haystack);
  function cell(tr, text, cls) {
    var td = document.createElement("td"); td.textContent = text; if (cls) td.className = cls; tr.appendChild(td);
  }
  function draw() {
    body.textContent = "";
    var first = page * PAGE, slice = matching.slice(first, first + PAGE);
    slice.forEach(function (r) {
      var tr = document.createElement("tr");
      cell(tr, r[0]); cell(tr, r[1]); cell(tr, r[2]); cell(tr, prompts[r[3]] || "", "text");
      cell(tr, r[7], "text"); cell(tr, r[5], typeof r[5] === "number" && r[5] > 0 ? "pos" : "");
      cell(tr, r[6]);
      body.appendChild(tr);
    });
    $("samples-count").textContent = matching.length + " of " + rows.length + " embedded generations match" +
      (matching.length ? "; showing " + (first + 1) + "-" + (first + slice.length) : "") + ".";
    $("samples-prev").disabled = page === 0;
    $("samples-next").disabled = first + PAGE >= matching.length;
  }
  function filter() {
    var q = $("samples-filter").value.trim().toLowerCase(), trait = $("samples-trait").value;
    var verdict = $("samples-verdict").value, cond = $("samples-condition").value;
    matching = rows.filter(function (r, i) {
      if (trait && r[2] !== trait) return false;
      if (cond && r[1] !== cond) return false;
      if (verdict === "pos" && !(typeof r[5] === "number" && r[5] > 0)) return false;
      if (verdict === "zero" && r[5] !== 0) return false;
      return !q || texts[i].indexOf(q) !== -1;
    });
    page = 0; draw();
  }
  $("samples-filter").addEventListener("input", filter);
  ["samples-trait", "samples-verdict", "samples-condition"].forEach(function (id) {
    $(id).addEventListener("change", filter);
  });
  $("samples-prev").addEventListener("click", function () { page = Math.max(0, page - 1); draw(); });
  $("samples-next").addEventListener("click", function () { page += 1; draw(); });
  draw();
})();
""".replace("__PAGE_ROWS__", str(SAMPLES_PAGE_ROWS))


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
#budget{font-size:13px;color:#444}
td.pass{background:#fdecea}
td.fail{background:#f4f8f4}
td.na{color:#999}
ul.tree{font-size:13px;list-style:none;padding-left:0}
ul.tree ul{list-style:none;border-left:1px dotted #aaa;padding-left:1.4em;margin-left:.4em}
ul.tree li.minimal>code{background:#ffd54f;font-weight:bold;padding:0 3px}
ul.tree li.fail{color:#666}
#tip{position:fixed;display:none;max-width:420px;background:#222;color:#fff;font-size:12px;padding:4px 7px;
 border-radius:3px;pointer-events:none;z-index:10;white-space:pre-wrap}
svg .has-tip{cursor:pointer}
svg .has-tip:hover{opacity:.75}
svg[data-plot="training-curves"] polyline:hover{stroke-width:4}
svg .legend-item{cursor:pointer}
svg .legend-item.off{opacity:.35}
.controls{margin:.4em 0;font-size:13px}
#samples-table td.text{white-space:pre-wrap;max-width:380px;font-family:monospace;font-size:12px}
#samples-table td.pos{background:#fdecea;font-weight:bold}
details{margin:.4em 0}
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
    if view.analysis is not None:  # an experiment mode: its conclusions first, then the trials behind them
        head = [answer(view), budget_line(view.analysis)] + analysis_sections(view)
        # experiment conditions are not mixtures; Optuna mixture trials in the same folder still get their charts
        charts = ["<h2>Trait score vs teacher share</h2>", charts_section(view)] if view.varied_subsets() else []
    else:
        head = [answer(view)]
        charts = ["<h2>Trait score vs teacher share</h2>", charts_section(view)]
    # the study is Optuna's in an optuna-mode sweep; an experiment mode only uses it to queue its conditions
    optuna_mode = view.config.get("search", {}).get("mode", "optuna") == "optuna"
    study = study_section(view) if optuna_mode or len((view.study or {}).get("directions", [])) > 1 else ""
    sections = [
        f"<h1>{esc(view.name)}</h1>", *head,
        "<h2>Trials</h2>", status_line(view.dir, len(view.trials)), trials_table(view),
        *charts,
        *(["<h2>Optuna study</h2>", study] if study else []),
        f"<h2>Best and worst {'mixtures' if view.analysis is None else 'trials'}</h2>", best_worst_section(view),
        "<h2>Training curves</h2>", curves_section(view),
        "<h2>Sample generations</h2>", samples_table_section(view),
        "<h3>Best and worst trial, first generations per trait</h3>", samples_section(view),
        "<h2>Provenance</h2>", provenance(view),
    ]
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(view.name)}: leaksweep report'
            f"</title><style>{CSS}</style></head><body>{''.join(sections)}"
            f"<script>{SORT_JS}{INTERACT_JS}{SAMPLES_JS}</script></body></html>\n")
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
    analysis = read_json(sweep_dir / ANALYSIS) if (sweep_dir / ANALYSIS).is_file() else None
    study, study_error = read_study(sweep_dir)
    atomic_write_text(out, render(SweepView(sweep_dir, read_json(sweep_dir / SWEEP_FILE), trials, analysis,
                                            study, study_error)))
    return out


def read_study(sweep_dir: Path) -> tuple[dict | None, str | None]:
    """(study.status.study_summary(sweep_dir), None), or (None, why not): the report is still written without it."""
    # Imported here, not at the top: the study stage imports optuna, which rendering a page from a dict does not need.
    from leaksweep.study.status import study_summary

    try:
        return study_summary(sweep_dir), None
    except UserError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - an unreachable RDB or a corrupt journal must not cost the whole report
        return None, f"{type(exc).__name__}: {exc}"
