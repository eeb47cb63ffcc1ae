"""The study-level view in W&B: the summary run of a finished sweep, and the spec of a W&B Report.

Like the HTML report this reads only the sweep folder (through leaksweep.layout: sweep.json,
analysis.json of an experiment mode, the trials' result.json, report.html) and builds plain rows; the
W&B objects are made by the tracking stage, behind the Run protocol, so this module never imports wandb.

* `study_summary(sweep_dir)`: the leak map, baselines, dose-response points and logistic fits,
  thresholds and other conclusions as tables and charts, plus scalar values (mode, trial budget,
  alpha, thresholds). Experiment modes read analysis.json, by kind of conclusion (TABLES, the same
  kinds as the HTML report's analysis.KINDS; a kind without an entry is logged as a JSON value); an
  Optuna sweep (no analysis.json) reads the trials' results: trait score against teacher share, per trial.
* `log_study_summary(sweep_dir, tracker)`: one run with job_type "summary" in the study's group
  holding all of that and report.html as an artifact. Its run id is fixed per sweep folder, so a
  later `leaksweep report` resumes the same run instead of adding another.
* `report_spec(sweep_dir)`: blocks and panels of a W&B Report on the study's group (trait scores,
  loss curves, the summary tables), rendered by the tracking stage's `create_wandb_report`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from leaksweep import dose
from leaksweep.config import SweepConfig
from leaksweep.errors import UserError
from leaksweep.files import read_json
from leaksweep.layout import SweepDir, TrialResult
from leaksweep.report.analysis import unknown_keys
from leaksweep.sweepfile import sweep_from_dict

FIT_CURVE_POINTS = 50  # points on the fitted logistic curve, log-spaced over the tested fractions


@dataclass(frozen=True)
class Table:
    key: str
    columns: list[str]
    rows: list[list[Any]]


@dataclass(frozen=True)
class Chart:
    key: str
    kind: str  # "line" or "scatter"
    columns: list[str]
    rows: list[list[Any]]
    x: str
    y: str
    title: str


@dataclass(frozen=True)
class StudySummary:
    study: str
    mode: str
    tables: list[Table] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)


def load_config(sweep_dir: Path) -> SweepConfig:
    path = SweepDir(sweep_dir).sweep_file
    if not path.exists():
        raise UserError(
            f"{sweep_dir}: not a sweep folder (no {SweepDir.SWEEP}); run `leaksweep sweep SWEEP.yaml` first"
        )
    return sweep_from_dict(SweepDir(sweep_dir).read_config(), str(path))


def _num(x: Any) -> float | None:
    """A finite float, or None: W&B tables and JSON have no place for inf (an unbounded ED)."""
    if x is None or isinstance(x, bool):
        return None
    try:
        value = float(x)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _trials(numbers: Any) -> str:
    return ", ".join(str(n) for n in numbers or [])


def _estimate(e: dict | None) -> list[Any]:
    e = e or {}
    return [_num(e.get("value")), _num(e.get("low")), _num(e.get("high"))]


# --- experiment modes: analysis.json, by kind of conclusion ------------------------------------------------


def _baselines(analysis: dict, out: StudySummary) -> None:
    rows = []
    for trait, by_condition in analysis.get("baselines", {}).items():
        for condition, e in by_condition.items():
            if not isinstance(e, dict):
                continue
            rows.append([trait, condition, *_estimate(e), e.get("n_runs"), _trials(e.get("trials"))])
            out.values[f"baseline/{trait}/{condition}"] = _num(e.get("value"))
    if rows:
        out.tables.append(Table("baselines", ["trait", "condition", "value", "low", "high", "n_runs", "trials"], rows))


def _leak_map(analysis: dict, out: StudySummary) -> None:
    rows = []
    for trait, by_subset in analysis.get("leak_map", {}).items():
        for subset, tests in by_subset.items():
            for test, d in tests.items():
                if not (isinstance(d, dict) and "passed" in d):
                    continue  # sufficient_holm is a flag on the sufficient row
                holm = tests.get("sufficient_holm") if test == "sufficient" else None
                e = d.get("estimate") or {}
                rows.append(
                    [
                        trait,
                        subset,
                        test,
                        None if d["passed"] is None else bool(d["passed"]),  # None: no decision (statement says why)
                        holm,
                        *_estimate(e),
                        _num(e.get("level")),
                        _num(d.get("p_value")),
                        _num(d.get("alpha")),
                        _num(d.get("margin")),
                        _trials(d.get("trials")),
                        d.get("statement", ""),
                    ]
                )
                if d["passed"] is not None:
                    out.values[f"leak_map/{trait}/{subset}/{test}"] = bool(d["passed"])
    if rows:
        out.tables.append(
            Table(
                "leak_map",
                [
                    "trait",
                    "subset",
                    "test",
                    "passed",
                    "holm",
                    "difference",
                    "low",
                    "high",
                    "level",
                    "p_value",
                    "alpha",
                    "margin",
                    "trials",
                    "statement",
                ],
                rows,
            )
        )


def _fit_chart(subset: str, trait: str, fit: dict, points: list[list[Any]]) -> Chart | None:
    """The fitted logistic over the tested fractions, log-spaced; None unless the fit is ok."""
    params = fit.get("params") or {}
    if fit.get("fit") != "ok" or not set(dose.LOGISTIC_PARAMS) <= set(params):
        return None
    positive = [p[0] for p in points if p[0]]
    lo, hi = math.log10(min(positive)), math.log10(max(positive))
    grid = [10 ** (lo + (hi - lo) * i / (FIT_CURVE_POINTS - 1)) for i in range(FIT_CURVE_POINTS)]
    return Chart(
        f"dose_fit/{subset}",
        "line",
        ["fraction", "fitted"],
        [[f, dose.logistic(params, f)] for f in grid],
        "fraction",
        "fitted",
        f"logistic fit of {trait} on {subset}",
    )


def _dose_response(analysis: dict, out: StudySummary) -> None:
    thresholds = []
    for subset, dr in analysis.get("dose_response", {}).items():
        trait = dr.get("trait", "")
        points = [
            [_num(p.get("fraction")), *_estimate(p), p.get("n_runs"), _trials(p.get("trials"))]
            for p in dr.get("points", [])
        ]
        columns = ["fraction", "value", "low", "high", "n_runs", "trials"]
        out.charts.append(
            Chart(
                f"dose_response/{subset}",
                "scatter",
                columns,
                points,
                "fraction",
                "value",
                f"{trait} vs teacher fraction on {subset}",
            )
        )
        fit = dr.get("fit") or {}
        if (chart := _fit_chart(subset, trait, fit, points)) is not None:
            out.charts.append(chart)
        seq = dr.get("threshold") or {}
        ed10, ed50, fitted = fit.get("ed10"), fit.get("ed50"), fit.get("ed_min_effect")
        thresholds.append(
            [
                subset,
                trait,
                _num(seq.get("threshold")),
                _num(seq.get("stopped_at")),
                *_estimate(fitted),
                *_estimate(ed10),
                *_estimate(ed50),
                fit.get("fit"),
                seq.get("statement", ""),
            ]
        )
        out.values[f"threshold/{subset}"] = _num(seq.get("threshold"))
        if fitted:  # the fitted dose where the effect reaches min_effect, beside the (upward-biased) rung
            out.values[f"threshold_fitted/{subset}"] = _num(fitted.get("value"))
    if "flipped" in analysis:  # leak_threshold: decisions that changed as runs arrived ("flipped at round k")
        out.values["threshold_flips"] = len(analysis["flipped"])
        out.values["threshold_flip_statements"] = " ".join(f["statement"] for f in analysis["flipped"])
    if thresholds:
        out.tables.append(
            Table(
                "thresholds",
                [
                    "subset",
                    "trait",
                    "threshold",
                    "stopped_at",
                    "fitted_dose",
                    "fitted_dose_low",
                    "fitted_dose_high",
                    "ed10",
                    "ed10_low",
                    "ed10_high",
                    "ed50",
                    "ed50_low",
                    "ed50_high",
                    "fit",
                    "statement",
                ],
                thresholds,
            )
        )


def _minimal(analysis: dict, out: StudySummary) -> None:
    tests = analysis.get("tests")
    if isinstance(tests, dict) and tests:
        rows = []
        for subset, d in tests.items():
            if isinstance(d, dict) and "passed" in d:
                rows.append(
                    [
                        subset,
                        bool(d["passed"]),
                        *_estimate(d.get("estimate")),
                        _num(d.get("p_value")),
                        _trials(d.get("trials")),
                        d.get("statement", ""),
                    ]
                )
        out.tables.append(
            Table(
                "subset_tests",
                ["subset", "sufficient", "difference", "low", "high", "p_value", "trials", "statement"],
                rows,
            )
        )
    if "minimal" in analysis:
        out.values["minimal"] = ", ".join(analysis["minimal"]) or "none"
    for subset, confirmed in (analysis.get("confirmed") or {}).items():
        out.values[f"confirmed/{subset}"] = bool(confirmed)


def _transfer(analysis: dict, out: StudySummary) -> None:
    rows = []
    for teacher, by_trait in (analysis.get("transfer") or {}).items():
        for trait, t in by_trait.items():
            if isinstance(t, dict):
                rows.append([teacher, trait, _num(t.get("offset")), _num(t.get("ratio"))])
    if rows:
        out.tables.append(Table("transfer", ["teacher", "trait", "offset", "ratio"], rows))
    rows = []
    for teacher, by_trait in (analysis.get("teachers") or {}).items():
        for trait, e in by_trait.items():
            if isinstance(e, dict):
                rows.append([teacher, trait, *_estimate(e)])
    if rows:
        out.tables.append(Table("teachers", ["teacher", "trait", "value", "low", "high"], rows))


# analysis kind (as in analysis.KINDS) -> what it adds to the summary run: tables, charts, values
TABLES: dict[str, Callable[[dict, StudySummary], None]] = {
    "baselines": _baselines,
    "leak_map": _leak_map,
    "dose_response": _dose_response,
    "minimal": _minimal,
    "transfer": _transfer,
}


def _analysis(analysis: dict, out: StudySummary) -> None:
    for key in ("trials_spent", "rung_trials", "refine_trials", "grid_trials", "alpha", "min_effect", "margin"):
        if key in analysis:
            out.values[key] = analysis[key]
    for tabulate in TABLES.values():
        tabulate(analysis, out)
    for key in unknown_keys(analysis):  # a kind the report does not know yet: kept, as JSON
        out.values[f"analysis/{key}"] = json.dumps(analysis[key], sort_keys=True, default=str)


# --- optuna mode: the trials' results ------------------------------------------------------------------------


def _score(r: TrialResult, trait: str, key: str) -> float | None:
    """`key` (score, low or high) of the trial's score of `trait`; None when it did not score it."""
    s = r.score(trait)
    return _num(getattr(s, key)) if s else None


def _optuna(cfg: SweepConfig, results: list[TrialResult], out: StudySummary) -> None:
    traits = list(cfg.traits)
    columns = ["trial", "condition", "label", "seed", "teacher_share"]
    columns += [f"{t}_{k}" for t in traits for k in ("score", "low", "high")] + ["params"]
    rows = []
    for r in results:
        rows.append(
            [r.trial, r.condition, r.label, r.seed, _num(r.teacher_share.get("all"))]
            + [_score(r, t, k) for t in traits for k in ("score", "low", "high")]
            + [json.dumps(r.params, sort_keys=True)]
        )
    out.tables.append(Table("trials", columns, rows))
    baselines = [
        [t, r.condition, *[_score(r, t, k) for k in ("score", "low", "high")], 1, str(r.trial)]
        for r in results
        if r.condition in ("all_clean", "all_teacher")
        for t in traits
    ]
    if baselines:
        columns = ["trait", "condition", "value", "low", "high", "n_runs", "trials"]
        out.tables.append(Table("baselines", columns, baselines))
    for trait in traits:
        for subset in ["all", *cfg.search.fractions]:
            points = [[r.trial, _num(r.teacher_share.get(subset)), _score(r, trait, "score")] for r in results]
            points = [p for p in points if p[1] is not None and p[2] is not None]
            if points:
                out.charts.append(
                    Chart(
                        f"dose_response/{trait}/{subset}",
                        "scatter",
                        ["trial", "teacher_share", "score"],
                        points,
                        "teacher_share",
                        "score",
                        f"{trait} vs teacher share {'overall' if subset == 'all' else 'on ' + subset}",
                    )
                )


def study_summary(sweep_dir: Path, budget: int | None = None) -> StudySummary:
    """Everything the summary run logs, from the sweep folder alone."""
    sweep = SweepDir(sweep_dir)
    cfg = load_config(sweep.path)
    results = sweep.read_results()
    mode = cfg.search.mode
    out = StudySummary(cfg.name, mode)
    out.values.update({"mode": mode, "trials_complete": len(results)})
    if budget is not None:
        out.values["trial_budget"] = budget
    analysis = sweep.read_analysis()
    if analysis is not None:
        _analysis(analysis, out)
    else:
        _optuna(cfg, results, out)
    _judge_validation(results, analysis, out)
    return out


def _judge_validation(results: list[TrialResult], analysis: dict | None, out: StudySummary) -> None:
    """Each calibrated trait's judge validation (traits.T.calibration): sensitivity, specificity, n."""
    for r in results:
        for trait, s in r.traits.items():
            c = s.calibration
            if not c or f"judge/{trait}/n" in out.values:
                continue
            b = c if c.get("kind") == "rate" else c.get("binary", {})
            out.values[f"judge/{trait}/n"] = c.get("n")
            for metric in ("sensitivity", "specificity", "kappa"):
                for key in ("value", "low", "high"):
                    out.values[f"judge/{trait}/{metric}" + ("" if key == "value" else f"_{key}")] = _num(
                        (b.get(metric) or {}).get(key)
                    )
    if analysis and analysis.get("judge_corrected"):
        out.values["judge_corrected"] = ", ".join(analysis["judge_corrected"].get("traits", []))


def summary_run_id(study: str, sweep_dir: Path) -> str:
    """One summary run per sweep folder: resumed, not duplicated, when the summary is logged again."""
    digest = hashlib.sha256(str(Path(sweep_dir).resolve()).encode()).hexdigest()[:8]
    return f"summary-{re.sub(r'[^A-Za-z0-9_-]', '-', study)[:40]}-{digest}"


def log_study_summary(sweep_dir: Path, tracker, budget: int | None = None, report: Path | None = None) -> str | None:
    """Start the study's summary run (job_type "summary", group = study), log it all, finish it.

    `report`: the HTML report to attach as an artifact (None: none, e.g. `sweep --no-report`).
    Returns the run id (None when tracking is off)."""
    sweep = SweepDir(sweep_dir)
    summary = study_summary(sweep.path, budget)
    run = tracker.start_run(
        name=f"{summary.study}-summary",
        group=summary.study,
        config=read_json(sweep.sweep_file),
        tags=[summary.mode, "summary"],
        run_dir=sweep.summary,
        run_id=summary_run_id(summary.study, sweep.path),
        job_type="summary",
    )
    try:
        for table in summary.tables:
            run.table(table.key, table.columns, table.rows)
        for chart in summary.charts:
            run.chart(chart.key, chart.kind, chart.columns, chart.rows, chart.x, chart.y, chart.title)
        run.summary(summary.values)
        if report is not None:
            run.artifact(
                f"report-{summary.study}", "report", [Path(report)], {"study": summary.study, "mode": summary.mode}
            )
    except BaseException:
        run.finish(exit_code=1)
        raise
    run.finish(exit_code=0)
    return run.run_id


def report_spec(sweep_dir: Path) -> dict:
    """The W&B Report of a study as plain data (see the tracking stage's create_wandb_report for the format)."""
    sweep_dir = Path(sweep_dir)
    summary = study_summary(sweep_dir)
    cfg = load_config(sweep_dir)
    study, traits = summary.study, list(cfg.traits)
    statements = [
        row[-1]
        for t in summary.tables
        if t.key in ("thresholds", "leak_map", "subset_tests")
        for row in t.rows
        if row[-1]
    ]
    blocks: list[dict] = [
        {"kind": "h1", "text": f"Study {study}"},
        {
            "kind": "p",
            "text": f"Search mode {summary.mode}; {summary.values['trials_complete']} complete trials. "
            f"Trial runs are grouped as {study!r} (job type trial, tagged with the mode and the "
            "condition); the conclusions are in the summary run (job type summary).",
        },
    ]
    if statements:
        blocks.append({"kind": "markdown", "text": "\n".join(f"- {s}" for s in statements)})
    blocks += [
        {"kind": "h2", "text": "Trait scores and training curves"},
        {
            "kind": "panels",
            "name": f"{study} trials",
            "group": study,
            "job_type": "trial",
            "panels": [
                *({"kind": "bar", "title": f"{t} per trial", "metrics": [f"trait/{t}/score"]} for t in traits),
                {"kind": "line", "title": "training loss", "x": "Step", "y": ["train/loss"]},
                {"kind": "compare"},
            ],
        },
        {"kind": "h2", "text": "Conclusions"},
        {
            "kind": "panels",
            "name": f"{study} summary",
            "group": study,
            "job_type": "summary",
            "panels": [
                *({"kind": "table", "table": t.key} for t in summary.tables),
                # a plot logs its rows as "<key>_table" (wandb.plot), so each chart's data is a table too
                *({"kind": "table", "table": f"{c.key}_table"} for c in summary.charts),
            ],
        },
    ]
    return {
        "title": f"leaksweep: {study}",
        "description": f"{summary.mode} study {study}, from {sweep_dir}",
        "blocks": blocks,
    }
