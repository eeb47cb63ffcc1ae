"""Unit tests for leaksweep.report.wandb_summary: the study summary run's tables and the W&B Report spec, built
from sweep folders whose analysis.json comes from the real searches on the simulator."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from leaksweep import dose
from leaksweep.dose import logistic
from leaksweep.experiments.conditions import Run, Settings, drive
from leaksweep.experiments.registry import make_search
from leaksweep.files import write_json
from leaksweep.report.wandb_summary import log_study_summary, report_spec, study_summary, summary_run_id
from leaksweep.schema import to_dict
from leaksweep.simulate import SimConfig, SimSubset, simulate
from leaksweep.tracking.protocol import NullRun
from sweeps import unit_cfg

TRAIT = "date_confusion"
SETTINGS = Settings(TRAIT, (TRAIT,), seeds=2, alpha=0.05, min_effect=0.02, margin=0.05, n_boot=300)
SIM = SimConfig(
    subsets={"S": SimSubset(n_units=64, effect=0.5, ed50=0.08, slope=3.0), "R": SimSubset(n_units=64, effect=0.0)},
    n_prompts=200,
    samples_per_prompt=4,
    seed_sd=0.05,
)


def make_cfg(name: str, **search):
    return unit_cfg(name, TRAIT, **search)


def experiment_folder(tmp_path: Path, name: str, **search) -> tuple[Path, dict]:
    """A sweep folder holding sweep.json and the analysis.json of a real search on the simulator."""
    cfg = make_cfg(name, **search)
    search_obj = make_search(cfg, ["clean", "teacher"])
    search_obj.settings = SETTINGS
    counter = itertools.count()
    _, analysis = drive(
        search_obj, lambda reqs: [Run(c, s, next(counter), simulate(SIM, c.plan, c.kind, s, [TRAIT])) for c, s in reqs]
    )
    folder = tmp_path / name
    write_json(folder / "sweep.json", to_dict(cfg))
    write_json(folder / "analysis.json", analysis)
    return folder, json.loads((folder / "analysis.json").read_text())


def table(summary, key):
    (found,) = [t for t in summary.tables if t.key == key]
    return [dict(zip(found.columns, row)) for row in found.rows]


def test_leak_map_rows_carry_each_decision_with_its_interval(tmp_path):
    folder, analysis = experiment_folder(tmp_path, "scan", mode="subset_scan", subsets=["S", "R"], seeds=2)
    summary = study_summary(folder, budget=None)
    assert summary.study == "scan" and summary.mode == "subset_scan"
    rows = {(r["subset"], r["test"]): r for r in table(summary, "leak_map")}
    assert set(rows) == {("S", "sufficient"), ("S", "necessary"), ("R", "sufficient"), ("R", "necessary")}
    s_suff = rows[("S", "sufficient")]
    truth = analysis["leak_map"][TRAIT]["S"]["sufficient"]
    assert s_suff["passed"] is True and s_suff["holm"] is True
    assert (s_suff["difference"], s_suff["low"], s_suff["high"]) == (
        truth["estimate"]["value"],
        truth["estimate"]["low"],
        truth["estimate"]["high"],
    )
    assert s_suff["statement"] == truth["statement"] and s_suff["alpha"] == 0.05
    assert rows[("R", "sufficient")]["passed"] is False and rows[("R", "necessary")]["holm"] is None
    assert summary.values[f"leak_map/{TRAIT}/S/sufficient"] is True
    assert summary.values["trials_spent"] == analysis["trials_spent"]
    baselines = {r["condition"]: r for r in table(summary, "baselines")}
    assert baselines["all_clean"]["value"] == analysis["baselines"][TRAIT]["all_clean"]["value"]
    assert summary.values[f"baseline/{TRAIT}/all_teacher"] == analysis["baselines"][TRAIT]["all_teacher"]["value"]


def test_dose_response_points_fit_and_threshold(tmp_path):
    ladder = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
    folder, analysis = experiment_folder(
        tmp_path, "ladder", mode="fraction_sweep", subsets=["S"], ladder=ladder, seeds=2
    )
    dr = analysis["dose_response"]["S"]
    assert dr["fit"]["fit"] == "ok", dr["fit"]  # the surface is a clean logistic: the fit must succeed
    summary = study_summary(folder, budget=None)
    charts = {c.key: c for c in summary.charts}
    points = charts["dose_response/S"]
    assert points.kind == "scatter" and (points.x, points.y) == ("fraction", "value")
    assert [r[0] for r in points.rows] == [0.0, *ladder]
    assert [r[1] for r in points.rows] == [p["value"] for p in dr["points"]]
    fit = charts["dose_fit/S"]
    fractions = [r[0] for r in fit.rows]
    assert fit.kind == "line" and fractions[0] == pytest.approx(0.01) and fractions[-1] == pytest.approx(1.0)
    fitted = [r[1] for r in fit.rows]
    assert fitted == sorted(fitted)  # top > bottom: the fitted curve rises with the fraction
    (thr,) = table(summary, "thresholds")
    assert thr["threshold"] == dr["threshold"]["threshold"] == summary.values["threshold/S"]
    assert thr["ed50"] == pytest.approx(dr["fit"]["ed50"]["value"])
    assert thr["ed50_low"] <= thr["ed50"] <= thr["ed50_high"]
    # issue 13: the fitted dose where the effect reaches min_effect, beside the rung
    fitted = dr["fit"]["ed_min_effect"]
    assert thr["fitted_dose"] == pytest.approx(fitted["value"]) == summary.values["threshold_fitted/S"]
    assert thr["fitted_dose_low"] <= thr["fitted_dose"]


def test_logistic_matches_the_fitted_model_of_the_dose_fit():
    params = {"bottom": 0.05, "top": 0.6, "slope_per_decade": 2.5, "log10_ed50": -1.2}
    f = np.array([0.0, 0.001, 0.01, 0.063, 0.5, 1.0])
    expected = dose._logistic(np.array([params[k] for k in ("bottom", "top", "slope_per_decade", "log10_ed50")]), f)
    assert [logistic(params, x) for x in f] == pytest.approx(list(expected))


def test_optuna_sweep_summary_reads_the_trials(tmp_path):
    cfg = make_cfg("opt", fractions={"S": [0.0, 0.5, 1.0]}, objectives=[{"trait": TRAIT}])
    folder = tmp_path / "opt"
    write_json(folder / "sweep.json", to_dict(cfg))
    trials = [
        ("all_clean", {"all": 0.0, "S": 0.0}, 0.05),
        ("all_teacher", {"all": 1.0, "S": 1.0}, 0.6),
        ("mixture", {"all": 0.1, "S": 0.5}, 0.3),
    ]
    for i, (condition, share, score) in enumerate(trials):
        write_json(
            folder / "trials" / f"{i:05d}" / "result.json",
            {
                "trial": i,
                "condition": condition,
                "label": condition,
                "seed": 0,
                "params": {"frac.S": share["S"]},
                "manifest": {"teacher_share": share},
                "traits": {TRAIT: {"score": score, "low": score - 0.05, "high": score + 0.05}},
            },
        )
    summary = study_summary(folder, budget=5)
    assert summary.values["trial_budget"] == 5 and summary.values["trials_complete"] == 3
    rows = table(summary, "trials")
    assert (
        [r["trial"] for r in rows] == [0, 1, 2] and rows[2][f"{TRAIT}_score"] == 0.3 and rows[2]["teacher_share"] == 0.1
    )
    assert {r["condition"] for r in table(summary, "baselines")} == {"all_clean", "all_teacher"}
    charts = {c.key: c for c in summary.charts}
    assert set(charts) == {f"dose_response/{TRAIT}/all", f"dose_response/{TRAIT}/S"}
    assert charts[f"dose_response/{TRAIT}/S"].rows == [[0, 0.0, 0.05], [1, 1.0, 0.6], [2, 0.5, 0.3]]


class RecordingRun(NullRun):
    """Records what the summary logs through the Run protocol (our logic only; no W&B)."""

    def __init__(self, run_id, calls, fail_on):
        self.run_id, self.calls, self.fail_on = run_id, calls, fail_on

    def _record(self, name, *args, **kwargs):
        if name == self.fail_on:
            raise RuntimeError("boom")
        self.calls.append((name, args, kwargs))

    def table(self, *a, **k):
        self._record("table", *a, **k)

    def chart(self, *a, **k):
        self._record("chart", *a, **k)

    def summary(self, *a, **k):
        self._record("summary", *a, **k)

    def artifact(self, *a, **k):
        self._record("artifact", *a, **k)

    def finish(self, *a, **k):
        self._record("finish", *a, **k)


class RecordingTracker:
    mode = "offline"

    def __init__(self, fail_on: str | None = None):
        self.calls: list[tuple] = []
        self.fail_on = fail_on

    def start_run(self, **kwargs):
        self.calls.append(("start", (), kwargs))
        return RecordingRun(kwargs["run_id"], self.calls, self.fail_on)


def test_log_study_summary_starts_one_summary_run_in_the_group(tmp_path):
    folder, _ = experiment_folder(tmp_path, "scan", mode="subset_scan", subsets=["S", "R"], seeds=2)
    (folder / "report.html").write_text("<html></html>")
    tracker = RecordingTracker()
    run_id = log_study_summary(folder, tracker, budget=None, report=folder / "report.html")
    start = tracker.calls[0][2]
    assert start["job_type"] == "summary" and start["group"] == "scan" and start["tags"] == ["subset_scan", "summary"]
    assert start["run_dir"] == folder / "summary" and run_id == start["run_id"] == summary_run_id("scan", folder)
    assert summary_run_id("scan", folder) != summary_run_id("scan", tmp_path / "elsewhere")  # one per sweep folder
    assert start["config"]["name"] == "scan"
    names = [c[0] for c in tracker.calls]
    assert [c[1][0] for c in tracker.calls if c[0] == "table"] == ["baselines", "leak_map"]
    assert "summary" in names and names[-1] == "finish"
    (artifact,) = [c[1] for c in tracker.calls if c[0] == "artifact"]
    assert artifact[1] == "report" and artifact[2] == [folder / "report.html"]
    assert tracker.calls[-1][2].get("exit_code", 0) == 0

    no_report = RecordingTracker()
    log_study_summary(folder, no_report, report=None)
    assert "artifact" not in [c[0] for c in no_report.calls]

    failing = RecordingTracker(fail_on="summary")
    with pytest.raises(RuntimeError):
        log_study_summary(folder, failing)
    assert failing.calls[-1] == ("finish", (), {"exit_code": 1})  # the run is closed as failed


def test_report_spec_panels_cover_the_study(tmp_path):
    folder, _ = experiment_folder(
        tmp_path, "ladder", mode="fraction_sweep", subsets=["S"], ladder=[0.05, 0.2, 1.0], seeds=2
    )
    spec = report_spec(folder)
    assert spec["title"] == "leaksweep: ladder"
    kinds = [b["kind"] for b in spec["blocks"]]
    assert kinds[0] == "h1" and "markdown" in kinds  # the threshold statement is quoted
    panels = [b for b in spec["blocks"] if b["kind"] == "panels"]
    trials, summary = panels
    assert (trials["group"], trials["job_type"]) == ("ladder", "trial")
    assert {"kind": "bar", "title": f"{TRAIT} per trial", "metrics": [f"trait/{TRAIT}/score"]} in trials["panels"]
    assert any(p["kind"] == "line" and p["y"] == ["train/loss"] for p in trials["panels"])
    assert (summary["group"], summary["job_type"]) == ("ladder", "summary")
    tables = [p["table"] for p in summary["panels"] if p["kind"] == "table"]
    assert tables == ["baselines", "thresholds", "dose_response/S_table"]


def test_tables_use_the_report_kinds_and_keep_an_unknown_kind_as_json(tmp_path):
    from leaksweep.report import analysis as kinds
    from leaksweep.report.wandb_summary import TABLES

    assert set(TABLES) <= set(kinds.KINDS)
    folder, analysis = experiment_folder(tmp_path, "scan", mode="subset_scan", subsets=["S", "R"], seeds=2)
    assert not any(key.startswith("analysis/") for key in study_summary(folder, budget=None).values)
    write_json(folder / "analysis.json", {**analysis, "per_arm": {"a": {"score": 0.5}}})
    summary = study_summary(folder, budget=None)
    assert json.loads(summary.values["analysis/per_arm"]) == {"a": {"score": 0.5}}


def test_leak_threshold_summary_carries_the_fitted_dose_and_flips(tmp_path):
    """Issue 13: the W&B summary shows the fitted min_effect dose beside the rung, and how many decisions flipped."""
    ladder = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
    folder, analysis = experiment_folder(tmp_path, "thr", mode="leak_threshold", subsets=["S"], ladder=ladder, seeds=2)
    summary = study_summary(folder, budget=None)
    assert summary.values["threshold_flips"] == len(analysis["flipped"])
    if analysis["threshold_fitted"] is not None:
        assert summary.values["threshold_fitted/S"] == pytest.approx(analysis["threshold_fitted"]["value"])
