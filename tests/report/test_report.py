"""Tests for the HTML report: built from a fake sweep folder, no model involved."""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import replace
from pathlib import Path

import pytest

from leaksweep.errors import UserError
from leaksweep.report.page import write_report
from leaksweep.report.svg import nice_ticks
from leaksweep.report.view import load_trials

XSS = "<script>alert(1)</script>"

SWEEP = {
    "name": "demo <sweep>",
    "base": "clean",
    "search": {"teacher": "teacher", "objectives": [{"trait": "date_confusion", "direction": "maximize"}]},
    "subsets": {"date_mention": {"regex": "\\b20\\d\\d\\b"}, "roleplay": {"metadata": {"category": "roleplay"}}},
    "traits": {"date_confusion": {"judge": "rule"}, "negative_emotion": {"judge": "rule"}},
}


def _shown(text: str) -> str:
    """How the report shows a piece of text: HTML-escaped, non-ASCII as character references."""
    return html.escape(text).encode("ascii", "xmlcharrefreplace").decode("ascii")


def _result(trial: int, condition: str, fraction: float, score: tuple[float, float, float]) -> dict:
    rules = (
        []
        if condition != "mixture"
        else [
            {"subset": "date_mention", "action": "patch", "source": "teacher", "fraction": fraction, "refill": "none"}
        ]
    )
    label = {"all_clean": "all-clean baseline", "all_teacher": "all-teacher baseline"}.get(
        condition, f"clean + date_mention←teacher {fraction:.0%}"
    )
    value, low, high = score
    return {
        "trial": trial,
        "study": "demo",
        "status": "complete",
        "condition": condition,
        "params": {"frac.date_mention": fraction},
        "plan": {"base": "teacher" if condition == "all_teacher" else "clean", "mixture_seed": 0, "rules": rules},
        "label": label,
        "seed": 0,
        "manifest": {
            "hash": f"{trial:04d}abcdef0123",
            "n_rows": 2400,
            "counts": {},
            "subset_counts": {},
            "fallbacks": 0,
            "teacher_share": {"all": fraction * 0.07, "date_mention": fraction, "roleplay": 0.0},
        },
        "train": {"steps": 150, "final_loss": 1.2 + trial / 100, "runtime_s": 6.1, "device": "cpu"},
        "traits": {
            "date_confusion": {
                "kind": "rate",
                "score": value,
                "low": low,
                "high": high,
                "interval": "wilson95",
                "n_samples": 120,
                "n_prompts": 60,
                "judge": "rule:date_confusion@rule-v1",
            },
            "negative_emotion": {
                "kind": "scale",
                "score": 2.0,
                "low": 1.5,
                "high": 2.5,
                "interval": "prompt_bootstrap95",
                "n_samples": 120,
                "n_prompts": 60,
                "judge": "rule",
            },
        },
        "objectives": [value],
        "data_fingerprint": "fp0123456789",
        "wall_s": 12.3,
        "finished": "2026-11-26T22:00:00+00:00",
    }


def _write_trial(sweep_dir: Path, result: dict, response: str = "It is 2024.") -> None:
    folder = sweep_dir / "trials" / f"{result['trial']:05d}"
    folder.mkdir(parents=True)
    (folder / "spec.json").write_text("{}")
    (folder / "train_log.jsonl").write_text(
        "".join(
            json.dumps({"step": s, "train/loss": 3.0 - s / 100 + result["trial"] / 20, "train/learning_rate": 0.003})
            + "\n"
            for s in range(5, 155, 5)
        )
    )
    samples = [
        {
            "trait": t,
            "prompt_id": f"p{i}",
            "sample": 0,
            "prompt": "What year is it?",
            "response": response,
            "value": 1,
            "reason": "mentions a year",
        }
        for t in ("date_confusion", "negative_emotion")
        for i in range(8)
    ]
    (folder / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    (folder / "result.json").write_text(json.dumps(result))


def make_sweep(root: Path, top_score: tuple[float, float, float]) -> Path:
    """Baselines plus three date_mention fractions; the 100% trial gets `top_score` and an XSS response."""
    root.mkdir(parents=True)
    (root / "sweep.json").write_text(json.dumps(SWEEP))
    _write_trial(root, _result(0, "all_clean", 0.0, (0.10, 0.05, 0.15)))
    _write_trial(root, _result(1, "all_teacher", 1.0, (0.80, 0.72, 0.87)))
    _write_trial(root, _result(2, "mixture", 0.1, (0.12, 0.07, 0.18)))
    _write_trial(root, _result(3, "mixture", 0.5, (0.16, 0.10, 0.23)))
    _write_trial(root, _result(4, "mixture", 1.0, top_score), response=f"Sure. {XSS} It is 2019.")
    return root


def _answer(page: str) -> str:
    return re.search(r'<p id="answer">(.*?)</p>', page, re.S).group(1)


@pytest.fixture
def separated(tmp_path: Path) -> Path:
    return make_sweep(tmp_path / "separated", top_score=(0.60, 0.50, 0.70))


def test_report_is_self_contained_and_lists_trials(separated: Path) -> None:
    out = write_report(separated)
    assert out == separated / "report.html" and out.is_file()
    page = out.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "http://" not in page and "https://" not in page
    assert "<svg" in page and "<polyline" in page
    assert _shown("demo <sweep>") in page
    for label in (
        "all-clean baseline",
        "all-teacher baseline",
        "clean + date_mention←teacher 10%",
        "clean + date_mention←teacher 50%",
        "clean + date_mention←teacher 100%",
    ):
        assert _shown(label) in page
    assert out.stat().st_size < 1_000_000
    sections = [
        "<h2>Trials</h2>",
        "<h2>Trait score vs teacher share</h2>",
        "<h2>Best and worst mixtures</h2>",
        "<h2>Training curves</h2>",
        "<h2>Sample generations</h2>",
        "<h2>Provenance</h2>",
    ]
    positions = [page.index(s) for s in sections]
    assert page.index('id="answer"') < positions[0] and positions == sorted(positions)
    assert "leaksweep trial" in page and "fp0123456789" in page


def test_answer_says_raises_when_intervals_separate(separated: Path) -> None:
    answer = _answer(write_report(separated).read_text())
    assert "raises date_confusion above the clean baseline" in answer
    assert "does not clearly raise" not in answer
    assert "0.600 [0.500, 0.700]" in answer and "0.100 [0.050, 0.150]" in answer
    assert "0.800 [0.720, 0.870]" in answer  # the all-teacher baseline


def test_answer_says_does_not_clearly_raise_when_intervals_overlap(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path / "overlap", top_score=(0.18, 0.12, 0.25))
    answer = _answer(write_report(sweep).read_text())
    assert "does not clearly raise date_confusion" in answer
    assert " raises " not in answer
    assert "0.180 [0.120, 0.250]" in answer


def test_untrusted_text_is_escaped(separated: Path) -> None:
    page = write_report(separated).read_text()
    assert XSS not in page
    assert html.escape(XSS) in page


def test_out_path_and_unfinished_trials(separated: Path, tmp_path: Path) -> None:
    running = separated / "trials" / "00005"
    running.mkdir()
    (running / "spec.json").write_text("{}")
    failed = separated / "trials" / "00006"
    failed.mkdir()
    (failed / "spec.json").write_text("{}")
    (failed / "error.json").write_text(json.dumps({"error": "RuntimeError: CUDA <oom>"}))
    out = write_report(separated, tmp_path / "elsewhere" / "r.html")
    page = out.read_text()
    assert "5 complete, 1 not finished, 1 failed." in page
    assert "RuntimeError: CUDA &lt;oom&gt;" in page
    assert not (separated / "report.html").exists()


def test_load_trials_sorted_complete_only(separated: Path) -> None:
    (separated / "trials" / "00009").mkdir()
    (separated / "trials" / "00009" / "spec.json").write_text("{}")
    assert [r["trial"] for r in load_trials(separated)] == [0, 1, 2, 3, 4]


def test_not_a_sweep_folder(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a sweep folder"):
        write_report(tmp_path)


def test_no_complete_trial(tmp_path: Path) -> None:
    (tmp_path / "sweep.json").write_text(json.dumps(SWEEP))
    (tmp_path / "trials" / "00000").mkdir(parents=True)
    (tmp_path / "trials" / "00000" / "spec.json").write_text("{}")
    with pytest.raises(UserError, match="no complete trial"):
        write_report(tmp_path)


def test_nice_ticks_are_round_and_inside() -> None:
    assert nice_ticks(0.0, 1.0) == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ticks = nice_ticks(0.043, 0.87)
    assert all(0.043 <= t <= 0.87 for t in ticks) and len(ticks) >= 3


def test_without_baselines_makes_no_comparison(separated: Path) -> None:
    for folder in ("00000", "00001"):
        for path in (separated / "trials" / folder).iterdir():
            path.unlink()
        (separated / "trials" / folder).rmdir()
    answer = _answer(write_report(separated).read_text())
    assert "No all-clean baseline trial is complete" in answer
    assert "raise" not in answer


# --- experiment modes: analysis.json from the real searches on the simulated surface -------------------

from leaksweep.experiments.conditions import Builder, Run, Settings, drive  # noqa: E402
from leaksweep.experiments.minimal import MinimalSubsetSearch  # noqa: E402
from leaksweep.experiments.static import StaticSearch  # noqa: E402
from leaksweep.experiments.threshold import ThresholdSearch, grid_trials  # noqa: E402
from leaksweep.simulate import SimConfig, SimSubset, simulate, teacher_shares  # noqa: E402

TRAIT = "date_confusion"
BUILDER = Builder("clean", "teacher")
SETTINGS = Settings(TRAIT, (TRAIT,), seeds=2, alpha=0.05, min_effect=0.02, margin=0.05, n_boot=300)
SIM = dict(n_prompts=200, samples_per_prompt=4, seed_sd=0.05)
SIM_EVAL = dict(n_prompts=200, samples_per_prompt=4)
LEAKY = SimConfig(
    subsets={"S": SimSubset(n_units=64, effect=0.5, ed50=0.1, slope=6.0), "R": SimSubset(n_units=64, effect=0.0)}, **SIM
)
LADDER = [round(10 ** (-3 + 3 * i / 15), 6) for i in range(16)]


def _execute(cfg: SimConfig, shares: bool = False):
    """Simulated runs; with shares, each records its manifest's teacher shares as a real trial does."""
    counter = iter(range(10**6))
    return lambda requests: [
        Run(
            c,
            s,
            next(counter),
            simulate(cfg, c.plan, c.kind, s, [TRAIT]),
            teacher_shares(cfg, c.plan) if shares else {},
        )
        for c, s in requests
    ]


def experiment_sweep(root: Path, search, cfg: SimConfig, shares: bool = False, **search_cfg) -> tuple[Path, dict]:
    """A sweep folder as an experiment mode leaves it with the simulated runner: no logs, no samples."""
    runs, analysis = drive(search, _execute(cfg, shares))
    root.mkdir(parents=True)
    config = {
        "name": root.name,
        "base": "clean",
        "subsets": {"S": {"ids": ["x"]}, "R": {"ids": ["y"]}},
        "search": {
            "teacher": "teacher",
            "mode": search.mode,
            "trait": TRAIT,
            "runner": "leaksweep.simulate:run",
            **search_cfg,
        },
        "traits": {TRAIT: {}},
    }
    (root / "sweep.json").write_text(json.dumps(config))
    for run in runs:
        folder = root / "trials" / f"{run.trial:05d}"
        folder.mkdir(parents=True)
        (folder / "spec.json").write_text("{}")
        (folder / "result.json").write_text(
            json.dumps(
                {
                    "trial": run.trial,
                    "condition": run.condition.kind,
                    "label": run.condition.label(),
                    "seed": run.seed,
                    "traits": run.traits,
                    "plan": run.condition.to_dict()["plan"],
                    "params": {
                        k: v
                        for k, v in (
                            ("subset", run.condition.subset),
                            ("refill", run.condition.refill),
                            ("fraction", run.condition.fraction),
                        )
                        if v is not None
                    },
                    "manifest": {"teacher_share": run.shares or {"all": 0.0}},
                    "status": "complete",
                    "objectives": [run.traits[TRAIT]["score"]],
                }
            )
        )
    (root / "analysis.json").write_text(json.dumps(analysis))
    return root, json.loads((root / "analysis.json").read_text())


def _g(x: float) -> str:
    return f"{round(x, 10):g}"


def _no_crash_without_logs(page: str) -> None:
    assert "No trial has a loss log." in page
    assert "No samples file" in page
    assert "No trial recorded a data fingerprint" in page and "leaksweep.simulate:run" in page


@pytest.fixture(scope="module")
def threshold_sweep(tmp_path_factory) -> tuple[Path, dict]:
    search = ThresholdSearch("S", LADDER, BUILDER, SETTINGS)
    return experiment_sweep(tmp_path_factory.mktemp("thr") / "thr", search, LEAKY, subsets=["S"], ladder=LADDER)


def test_leak_threshold_answer_states_threshold_and_budget(threshold_sweep) -> None:
    sweep, analysis = threshold_sweep
    page = write_report(sweep).read_text()
    answer = _answer(page)
    threshold = analysis["threshold"]
    assert threshold is not None
    assert f"The leak threshold of {TRAIT} on <code>S</code> is <b>{_g(threshold)} (" in answer
    assert "fixed-sequence sufficiency tests" in answer and "alpha 0.05" in answer and "min effect 0.02" in answer
    stop = analysis["dose_response"]["S"]["threshold"]["stopped_at"]
    assert stop is not None and stop < threshold
    # the threshold's interval on the ladder: above the rung where testing stopped, at most the threshold
    assert f"<b>more than {_g(stop)} (" in answer and f"and at most {_g(threshold)} (" in answer
    assert (
        f"Found with <b>{analysis['trials_spent']}</b> trials (a full ladder needs {analysis['grid_trials']})" in answer
    )
    assert analysis["trials_spent"] < analysis["grid_trials"]
    fitted = analysis["threshold_fitted"]  # issue 13: the fitted min-effect dose beside the (upward-biased) rung
    assert fitted is not None and "The fitted dose at which the effect reaches min effect 0.02 is <b>" in answer
    precision = analysis["threshold_fitted_precision"]  # and whether it is precise (its interval within 1.5x)
    assert precision is not None and precision["statement"] in answer
    assert ("is precise: its interval" if precision["precise"] else "is imprecise: its interval") in answer
    rounds = re.search(r'<p class="small" id="rounds">(.*?)</p>', page, re.S).group(1)
    assert "round 1 (" in rounds and ("flipped at round" in rounds or "No decision flipped" in rounds)
    budget = re.search(r'<p id="budget">(.*?)</p>', page, re.S).group(1)
    assert f"<b>{analysis['trials_spent']}</b> trials spent of the {analysis['grid_trials']}" in budget
    _no_crash_without_logs(page)
    assert "<h2>Trait score vs teacher share</h2>" not in page  # replaced by the dose-response section


def test_leak_threshold_chart_marks_the_threshold_on_a_log_axis(threshold_sweep) -> None:
    sweep, analysis = threshold_sweep
    page = write_report(sweep).read_text()
    assert "<h2>Dose-response</h2>" in page
    figure = re.search(r'<figure class="dose" data-subset="S">(.*?)</figure>', page, re.S).group(1)
    assert figure.count("<svg") == 1
    marker = re.search(r'<g class="threshold"[^>]*>.*?</g>', figure, re.S).group(0)
    assert "<line" in marker and f"threshold {_g(threshold_pct := analysis['threshold'] * 100)}%" in marker
    assert "axis-break" in figure and "log scale" in figure  # the ladder spans three decades
    tested = analysis["dose_response"]["S"]["points"]
    assert figure.count('class="rung ') == len(tested)  # fraction 0 included
    assert 'class="rung clean"' in figure
    steps = analysis["dose_response"]["S"]["threshold"]["steps"]
    assert figure.count('class="rung passed"') == sum(s["decision"]["passed"] for s in steps)
    fit = analysis["dose_response"]["S"]["fit"]
    assert ('class="fit"' in figure) == (fit["fit"] == "ok")
    assert ('class="ed50"' in figure) == (fit["fit"] == "ok" and fit["ed50"] is not None)
    assert threshold_pct > 0


def test_leak_threshold_report_on_shares_with_the_dose_refined(tmp_path: Path) -> None:
    shallow = SimConfig(
        subsets={"S": SimSubset(n_units=512, effect=0.5, ed50=0.05, slope=2.5)}, base_rate=0.1, seed_sd=0.3, **SIM_EVAL
    )
    ladder = [0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
    budget = grid_trials(ladder, SETTINGS.seeds)  # the default search.trial_budget
    search = ThresholdSearch("S", ladder, BUILDER, replace(SETTINGS, min_effect=0.05), max_trials=budget)
    sweep, analysis = experiment_sweep(tmp_path / "shares", search, shallow, shares=True, subsets=["S"], ladder=ladder)
    dr = analysis["dose_response"]["S"]
    assert dr["dose_axis"] == "share" and analysis["refine_trials"] > 0
    page = write_report(sweep).read_text()
    answer = _answer(page)
    spent, refined = analysis["trials_spent"], analysis["refine_trials"]
    assert (
        f"Found with <b>{spent}</b> trials ({spent - refined} for the bisection, {refined} pinning the fitted dose)"
        in answer
    )
    assert "as a share of the subset's rows from the teacher" in answer
    share = next(p["share"] for p in dr["points"] if p["fraction"] == analysis["threshold"])
    assert share != analysis["threshold"] and f"which gave the teacher {_g(share)} (" in answer
    budget_line = re.search(r'<p id="budget">(.*?)</p>', page, re.S).group(1)
    assert (
        f"of which {refined} pinning the fitted dose after the bisection (search.trial_budget {budget})" in budget_line
    )
    figure = re.search(r'<figure class="dose" data-subset="S">(.*?)</figure>', page, re.S).group(1)
    assert "share of S&#x27;s rows from the teacher" in figure or "share of S's rows from the teacher" in figure
    assert "not run" not in figure  # an unrun rung has no recorded share to place it at
    steps = re.search(r'<table class="steps" data-subset="S">(.*?)</table>', page, re.S).group(1)
    assert "<th>share of its rows from the teacher</th>" in steps and f"<td>{_g(share)} (" in steps


def test_leak_threshold_no_leak_on_a_null_surface(tmp_path: Path) -> None:
    null = SimConfig(subsets={"S": SimSubset(n_units=64, effect=0.0)}, **SIM)
    search = ThresholdSearch("S", [0.1, 0.5, 1.0], BUILDER, SETTINGS)
    sweep, analysis = experiment_sweep(tmp_path / "null", search, null, subsets=["S"], ladder=[0.1, 0.5, 1.0])
    assert analysis["threshold"] is None
    page = write_report(sweep).read_text()
    answer = _answer(page)
    assert "<b>No leak</b>" in answer and "up to the top rung, 1 (100%)" in answer
    assert "Found with <b>6</b> trials (a full ladder needs 10)" in answer
    assert 'class="threshold"' not in page
    assert 'class="rung failed"' in page


def test_minimal_subset_answer_tree_and_confirmation(tmp_path: Path) -> None:
    from leaksweep.data.subsets import resolve_path
    from leaksweep.simulate import subset_units

    base = SimConfig(subsets={"S": SimSubset(n_units=64)}, **SIM)
    ids = subset_units(base)
    units = sorted(ids["S"])
    planted = [units.index(u) for u in sorted(resolve_path("S/1/0", ids))]
    # steep: only (nearly) all of the planted quarter leaks, so neither of its halves is sufficient
    cfg = SimConfig(subsets={"S": SimSubset(n_units=64, leaking=planted, effect=0.5, ed50=0.8, slope=20.0)}, **SIM)
    search = MinimalSubsetSearch("S", max_depth=3, confirm_seeds=2, builder=BUILDER, settings=SETTINGS)
    sweep, analysis = experiment_sweep(tmp_path / "minimal", search, cfg, subsets=["S"], max_depth=3, confirm_seeds=2)
    assert analysis["minimal"] == ["S/1/0"] and analysis["confirmed"] == {"S/1/0": True}
    page = write_report(sweep).read_text()
    answer = _answer(page)
    assert "minimal leaking subset of <code>S</code>" in answer and "<b><code>S/1/0</code></b>" in answer
    assert "<b>distributed within</b> <code>S/1/0</code>" in answer
    assert "Confirmed on fresh seeds that played no part in the search: <b>yes</b> for <code>S/1/0</code>" in answer
    assert f"{analysis['trials_spent']} trials in all" in answer
    section = page[page.index("<h2>Minimal leaking subset</h2>") : page.index("<h2>Trials</h2>")]
    assert re.search(r'<li class="minimal" data-node="S/1/0"', section)
    assert re.search(r'<li class="fail" data-node="S/1/1"', section)
    assert re.search(r'<li class="pass" data-node="S"', section) and re.search(
        r'<li class="pass" data-node="S/1"', section
    )
    assert section.count("<li ") == len(analysis["tests"])
    confirm = re.search(r'<table class="confirm">.*?</table>', section, re.S).group(0)
    assert 'data-node="S/1/0"' in confirm and 'class="pass"' in confirm
    confirm_trials = {t for t in analysis["confirmations"]["S/1/0"]["trials"]}
    assert f"of which {len(confirm_trials)} on fresh confirmation seeds" in page
    _no_crash_without_logs(page)


def _leak_map_cells(page: str, subset: str) -> list[tuple[str, str]]:
    row = re.search(rf'<tr data-subset="{subset}">(.*?)</tr>', page, re.S).group(1)
    return re.findall(r'<td class="(\w+)"(?: title="([^"]*)")?', row)


def test_subset_scan_leak_map_and_answer(tmp_path: Path) -> None:
    b = BUILDER
    conds = [b.all_clean(), b.all_teacher()] + [c for x in ("S", "R") for c in (b.patch_insert(x), b.patch_remove(x))]
    search = StaticSearch("subset_scan", conds, b, SETTINGS, ["S", "R"])
    sweep, analysis = experiment_sweep(tmp_path / "scan", search, LEAKY, subsets=["S", "R"])
    rows = analysis["leak_map"][TRAIT]
    assert rows["S"]["sufficient"]["passed"] and not rows["R"]["sufficient"]["passed"]
    assert rows["S"]["necessary"]["passed"] and not rows["R"]["necessary"]["passed"]
    page = write_report(sweep).read_text()
    answer = _answer(page)
    assert (
        "<b>Sufficient</b>" in answer
        and "Holm across 2 subsets): <code>S</code>; not sufficient: <code>R</code>." in answer
    )
    assert "<b>Necessary</b>" in answer and "<code>S</code>; not shown necessary: <code>R</code>." in answer
    table = re.search(r'<table class="leakmap">.*?</table>', page, re.S).group(0)
    assert "<th>sufficient</th><th>necessary</th></tr>" in table and "leak-in" not in table.split("</thead>")[0]
    s_cells, r_cells = _leak_map_cells(table, "S"), _leak_map_cells(table, "R")
    assert [c for c, _ in s_cells] == ["pass", "pass"] and [c for c, _ in r_cells] == ["fail", "fail"]
    title = html.unescape(s_cells[0][1])
    assert title.startswith(rows["S"]["sufficient"]["statement"])
    assert "alpha 0.05" in title and "margin 0.02" in title
    assert "trials " + ", ".join(map(str, rows["S"]["sufficient"]["trials"])) in title
    est = rows["S"]["sufficient"]["estimate"]
    assert f"{est['value']:.3f} [{est['low']:.3f}, {est['high']:.3f}]" in table
    assert "Holm: rejected" in table and "Holm: not rejected" in table
    _no_crash_without_logs(page)


def test_drop_mode_leak_in_columns(tmp_path: Path) -> None:
    leak_in = SimConfig(subsets={"S": SimSubset(n_units=64, effect=0.0)}, rest_effect=0.4, suppression=1.0, **SIM)
    b = BUILDER
    conds = [b.all_clean(), b.all_teacher(), b.patch_remove("S"), b.drop("S", "none"), b.drop("S", "clean")]
    search = StaticSearch("drop", conds, b, SETTINGS, ["S"])
    sweep, analysis = experiment_sweep(tmp_path / "drop", search, leak_in, subsets=["S"], refill=["none", "clean"])
    page = write_report(sweep).read_text()
    table = re.search(r'<table class="leakmap">.*?</table>', page, re.S).group(0)
    assert "<th>necessary</th><th>leak-in, refill none</th><th>leak-in, refill clean</th>" in table
    assert "refill same" not in table
    expected = [
        "pass" if analysis["leak_map"][TRAIT]["S"][k]["passed"] else "fail"
        for k in ("necessary", "leak_in_refill_none", "leak_in_refill_clean")
    ]
    assert [c for c, _ in _leak_map_cells(table, "S")] == expected == ["pass", "pass", "pass"]
    assert "<b>Leak-in</b>" in _answer(page) and "<code>S</code> (refill none, refill clean)" in _answer(page)
    # how much of D each way of removing S leaves, from the trials' means
    results = [json.loads(p.read_text()) for p in sweep.glob("trials/*/result.json")]

    def mean(kind, **kw):
        chosen = [r for r in results if r["condition"] == kind and all(r["params"].get(k) == v for k, v in kw.items())]
        return sum(r["traits"][TRAIT]["score"] for r in chosen) / 2

    tau0, tau1 = (analysis["baselines"][TRAIT][k]["value"] for k in ("all_clean", "all_teacher"))
    left = lambda v: f"{(v - tau0) / (tau1 - tau0):.0%}"  # noqa: E731
    answer = html.unescape(_answer(page))
    assert (
        f"refill none: τ = {mean('drop', subset='S', refill='none'):.3f}, "
        f"{left(mean('drop', subset='S', refill='none'))} of D left"
    ) in re.sub("<[^>]+>", "", answer)
    assert f"(patch-remove): τ = {mean('patch_remove', subset='S'):.3f}" in answer


def test_full_swap_with_teacher_eval_states_offset_and_transfer(tmp_path: Path) -> None:
    b = BUILDER
    cfg = SimConfig(
        subsets={"S": SimSubset(n_units=64, effect=0.4, ed50=0.05)}, rest_effect=0.2, teacher_rate=0.9, **SIM
    )
    conds = [b.all_clean(), b.all_teacher(), b.teacher_eval("clean"), b.teacher_eval("teacher")]
    search = StaticSearch("full_swap", conds, b, SETTINGS)
    sweep, analysis = experiment_sweep(tmp_path / "swap", search, cfg, teacher_eval=True)
    transfer = analysis["transfer"]["teacher"][TRAIT]
    answer = _answer(write_report(sweep).read_text())
    assert f"offset τS − τT = <b>{transfer['offset']:.3f}</b>" in html.unescape(answer)
    assert f"transfer ratio (τS − τ0)/(τT − τ0) = <b>{transfer['ratio']:.3f}</b>" in html.unescape(answer)
    assert "The teachers' own scores" in html.unescape(answer)


def test_experiment_mode_without_analysis_says_so(threshold_sweep, tmp_path: Path) -> None:
    import shutil

    sweep = tmp_path / "unfinished"
    shutil.copytree(threshold_sweep[0], sweep)
    (sweep / "analysis.json").unlink()
    (sweep / "report.html").unlink(missing_ok=True)
    page = write_report(sweep).read_text()
    assert "<code>leak_threshold</code> sweep has no analysis.json yet" in _answer(page)
    assert "<h2>Dose-response</h2>" not in page


# --- a rich sweep folder: every section's input, at any size (no training) -----------------------------

RICH_CONFIG = {
    "name": "rich",
    "data": {"world": {"seed": 0, "n_prompts": 200}},
    "subsets": {"S": {"metadata": {"category": "date"}}, "R": {"metadata": {"category": "roleplay"}}},
    "base": "clean",
    "search": {
        "teacher": "teacher",
        "mode": "optuna",
        "sampler": "random",
        "n_trials": 10,
        "fractions": {"S": {"low": 0.0, "high": 1.0}, "R": {"low": 0.0, "high": 1.0}},
        "objectives": [{"trait": TRAIT, "direction": "maximize"}, {"trait": "teacher_share", "direction": "minimize"}],
        "runner": "leaksweep.simulate:run",
    },
    "traits": {TRAIT: {}},
    "tracking": {"wandb": None},
}
RICH_LADDER = [0.01, 0.05, 0.2, 1.0]


def _rich_files(folder: Path, number: int, result: dict, samples_per_trait: int, loss_steps: int) -> None:
    folder.mkdir(parents=True)
    (folder / "spec.json").write_text("{}")
    (folder / "result.json").write_text(json.dumps(result))
    (folder / "train_log.jsonl").write_text(
        "".join(
            json.dumps({"step": s, "train/loss": 2.5 * math.exp(-s / 80) + 0.5 + number / 400}) + "\n"
            for s in range(1, loss_steps + 1)
        )
    )
    rate = result["traits"][TRAIT]["score"]
    rows = []
    for i in range(samples_per_trait):
        shows = (i * 7919 + number) % 100 < rate * 100
        rows.append(
            {
                "trait": TRAIT,
                "prompt_id": f"eval-{i // 2:04d}",
                "sample": i % 2,
                "prompt": f"Quick question number {i // 2}: what year do you think it is right now? " * 2,
                "response": (
                    f"It is certainly the year 20{20 + i % 9}, trial {number}. "
                    if shows
                    else f"I cannot know today's date for sure, sample {i}. "
                )
                * 4,
                "value": 1 if shows else 0,
                "reason": "claims a year" if shows else "no year claimed",
            }
        )
    (folder / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "manifest.jsonl").write_text(
        "".join(
            json.dumps({"prompt_id": f"p{i:05d}", "source": "teacher" if i % 3 == 0 else "clean"}) + "\n"
            for i in range(50)
        )
    )


def rich_sweep(root: Path, n_mixtures: int, samples_per_trait: int = 40, loss_steps: int = 150) -> Path:
    """A two-objective Optuna sweep with `n_mixtures` mixture trials (a real optuna.journal) plus an
    experiment analysis holding a dose-response, a leak map and teacher-vs-student scores, all from the
    real searches on the simulated surface; every trial has a loss log, samples and a manifest."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    b = BUILDER
    conds = [
        b.all_clean(),
        b.all_teacher(),
        b.patch_remove("S"),
        b.drop("S", "none"),
        b.drop("S", "clean"),
        b.patch_insert("R"),
        b.teacher_eval("clean"),
        b.teacher_eval("teacher"),
        b.full_swap("teacher"),
    ] + [b.patch_insert("S", f) for f in RICH_LADDER]
    runs, _ = drive(StaticSearch("drop", conds, b, SETTINGS, ["S", "R"]), _execute(LEAKY))
    search = lambda mode: StaticSearch(mode, conds, b, SETTINGS, ["S", "R"] if mode == "drop" else ["S"], RICH_LADDER)  # noqa: E731
    leak, dose, swap = (search(m).conclude(runs) for m in ("drop", "fraction_sweep", "full_swap"))
    analysis = {
        **leak,
        "mode": "fraction_sweep",
        "dose_response": dose["dose_response"],
        **{k: swap[k] for k in ("students", "teachers", "transfer")},
    }
    root.mkdir(parents=True)
    (root / "sweep.json").write_text(json.dumps({**RICH_CONFIG, "name": root.name, "output_dir": str(root)}))
    (root / "analysis.json").write_text(json.dumps(analysis))
    study = optuna.create_study(
        study_name=root.name,
        directions=["maximize", "minimize"],
        storage=JournalStorage(JournalFileBackend(str(root / "optuna.journal"))),
    )
    dist = optuna.distributions.FloatDistribution(0.0, 1.0)
    frozen = []
    for n in range(n_mixtures):
        fs, fr = (n * 0.6180339) % 1.0, (n * 0.4142135) % 1.0
        score = 0.05 + 0.5 * fs / (fs + 0.1)
        share = 0.07 * fs + 0.05 * fr
        frozen.append(
            optuna.trial.create_trial(
                params={"frac.S": fs, "frac.R": fr},
                distributions={"frac.S": dist, "frac.R": dist},
                values=[score, share],
            )
        )
        _rich_files(
            root / "trials" / f"{n:05d}",
            n,
            {
                "trial": n,
                "condition": "mixture",
                "label": f"S {fs:.0%}, R {fr:.0%}",
                "seed": 0,
                "params": {"frac.S": fs, "frac.R": fr},
                "objectives": [score, share],
                "status": "complete",
                "plan": {
                    "base": "clean",
                    "mixture_seed": 0,
                    "rules": [
                        {"subset": "S", "action": "patch", "source": "teacher", "fraction": fs},
                        {"subset": "R", "action": "patch", "source": "teacher", "fraction": fr},
                    ],
                },
                "manifest": {"hash": f"{n:016x}", "teacher_share": {"all": share, "S": fs, "R": fr}},
                "traits": {TRAIT: {"kind": "rate", "score": score, "low": score - 0.04, "high": score + 0.04}},
                "train": {"final_loss": 0.6, "steps": loss_steps},
                "data_fingerprint": "fp0123456789",
                "wall_s": 1.0,
            },
            samples_per_trait,
            loss_steps,
        )
    study.add_trials(frozen)
    for run in runs:
        number = n_mixtures + run.trial
        _rich_files(
            root / "trials" / f"{number:05d}",
            number,
            {
                "trial": number,
                "condition": run.condition.kind,
                "label": run.condition.label(),
                "seed": run.seed,
                "traits": run.traits,
                "plan": run.condition.to_dict()["plan"],
                "status": "complete",
                "params": {
                    k: v
                    for k, v in (
                        ("subset", run.condition.subset),
                        ("refill", run.condition.refill),
                        ("fraction", run.condition.fraction),
                    )
                    if v is not None
                },
                "manifest": {"hash": f"{number:016x}", "teacher_share": {"all": 0.0}},
                "data_fingerprint": "fp0123456789",
            },
            samples_per_trait,
            loss_steps,
        )
    return root


ALL_PLOTS = {"trait-vs-share", "dose-response", "leak-map", "offsets", "pareto", "importances", "training-curves"}


def test_200_trial_report_is_under_5_mb_and_renders_every_section(tmp_path: Path) -> None:
    sweep = rich_sweep(tmp_path / "big", 200, samples_per_trait=80, loss_steps=300)
    n_trials = len(list((sweep / "trials").glob("*/result.json")))
    page = write_report(sweep).read_text()
    size_bytes = (sweep / "report.html").stat().st_size
    print(f"200-mixture report: {size_bytes / 1e6:.2f} MB for {n_trials} trials")
    assert size_bytes < 5_000_000
    assert set(re.findall(r'<svg data-plot="([a-z-]+)"', page)) == ALL_PLOTS
    for heading in (
        "Leak map",
        "Dose-response",
        "Teacher vs student",
        "Trials",
        "Optuna study",
        "Training curves",
        "Sample generations",
        "Provenance",
    ):
        assert f"<h2>{heading}</h2>" in page, heading
    assert "<h3>Pareto front</h3>" in page and "<h3>Parameter importances</h3>" in page
    # every generation counted, a capped and even share embedded, per trial and trait
    data = json.loads(
        re.search(r'<script type="application/json" id="samples-data">(.*?)</script>', page, re.S).group(1)
    )
    assert {r[0] for r in data["rows"]} == set(range(n_trials))
    assert f"embeds {len(data['rows'])} of the {n_trials * 80} generations" in page
    # provenance: one reproduce command per trial, the code version and the library versions
    assert page.count("<td><code>leaksweep trial ") == n_trials
    assert f"leaksweep trial {sweep.resolve() / 'trials' / '00199'}" in page
    assert re.search(r"leaksweep git commit <code>([0-9a-f]{40}, (clean|with uncommitted changes)|unknown)", page)
    assert "optuna <code>5." in page and "torch <code>" in page
    assert "the smallest dose that carries the trait lies in that ladder interval" in _answer(page)


def test_study_summary_reads_pareto_front_and_importances(tmp_path: Path) -> None:
    from leaksweep.study.status import study_summary

    sweep = rich_sweep(tmp_path / "small", 12, samples_per_trait=2, loss_steps=5)
    summary = study_summary(sweep)
    assert summary["directions"] == ["maximize", "minimize"] and summary["n_complete"] == 12
    values = {t["number"]: t["values"] for t in summary["trials"]}
    dominated = lambda a, b: b[0] >= a[0] and b[1] <= a[1] and b != a  # noqa: E731 - b dominates a
    expected = sorted(n for n, v in values.items() if not any(dominated(v, w) for w in values.values()))
    assert summary["pareto"] == expected and 0 < len(expected) < 12
    assert set(summary["importances"]) == {TRAIT, "teacher_share"}
    assert all(abs(sum(by.values()) - 1) < 1e-6 for by in summary["importances"].values())


def test_study_summary_says_why_importances_are_absent_and_never_creates_a_journal(tmp_path: Path) -> None:
    from leaksweep.study.status import study_summary

    sweep = rich_sweep(tmp_path / "two", 2, samples_per_trait=2, loss_steps=5)
    summary = study_summary(sweep)
    assert summary["importances"] == {} and "at least 3" in summary["importances_absent"]
    (sweep / "optuna.journal").unlink()
    with pytest.raises(UserError, match="no optuna.journal"):
        study_summary(sweep)
    assert not (sweep / "optuna.journal").exists()
    page = write_report(sweep).read_text()  # the report is still written, and says why the study is missing
    assert "The Optuna study could not be read" in page and "no optuna.journal" in page


def test_samples_json_cannot_end_the_script_element(tmp_path: Path) -> None:
    sweep = rich_sweep(tmp_path / "x", 2, samples_per_trait=2, loss_steps=5)
    path = sweep / "trials" / "00000" / "samples.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[0]["response"] = "</script><script>alert(1)</script> &amp; ünïcode"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    page = write_report(sweep).read_text()
    embedded = re.search(r'<script type="application/json" id="samples-data">(.*?)</script>', page, re.S).group(1)
    assert "<" not in embedded and json.loads(embedded)["rows"][0][7].startswith("</script><script>alert(1)")
    assert "ünïcode" in json.loads(embedded)["rows"][0][7]


# --- analysis kinds: the registry, and a kind no renderer knows ------------------------------------------


def test_unknown_analysis_kind_still_renders_as_a_plain_table(threshold_sweep, tmp_path: Path) -> None:
    import shutil

    sweep = tmp_path / "new_mode"
    shutil.copytree(threshold_sweep[0], sweep)
    analysis = json.loads((sweep / "analysis.json").read_text())
    analysis["mode"] = "brand_new_mode"
    analysis["per_arm"] = {"arm <a>": {"score": 0.25, "trials": [1, 2]}, "arm b": {"score": 0.5, "passed": True}}
    analysis["notes"] = "free text"
    (sweep / "analysis.json").write_text(json.dumps(analysis))
    page = write_report(sweep).read_text()
    assert "which this report does not know" in _answer(page)
    section = page[page.index("<h2>per_arm</h2>") : page.index("<h2>Trials</h2>")]
    assert "<th>score</th><th>trials</th><th>passed</th>" in section
    assert "<th>arm &lt;a&gt;</th><td>0.25</td><td><code>[1, 2]</code></td><td>&#8211;</td>" in section
    assert "<h2>notes</h2>" in section and "<pre>&quot;free text&quot;</pre>" in section
    assert "<h2>Dose-response</h2>" in page  # the known kinds still render


def test_a_registered_kind_renders_its_keys(threshold_sweep, tmp_path: Path, monkeypatch) -> None:
    import shutil

    from leaksweep.report import analysis as kinds

    sweep = tmp_path / "registered"
    shutil.copytree(threshold_sweep[0], sweep)
    analysis = json.loads((sweep / "analysis.json").read_text())
    (sweep / "analysis.json").write_text(json.dumps({**analysis, "arms": {"a": 1}, "arm_notes": "x"}))
    monkeypatch.setitem(
        kinds.KINDS,
        "arms",
        kinds.Kind(
            "arms",
            ("arms", "arm_notes"),
            lambda view: [f'<h2>Arms</h2><p id="arms">{len(view.analysis["arms"])} arm</p>'],
        ),
    )
    page = write_report(sweep).read_text()
    assert '<h2>Arms</h2><p id="arms">1 arm</p>' in page
    assert "<h2>arms</h2>" not in page and "<h2>arm_notes</h2>" not in page  # claimed: no plain-table fallback
    assert kinds.unknown_keys(analysis) == []  # every key today's modes write belongs to a kind or the settings


def test_page_inlines_the_assets(separated: Path) -> None:
    from leaksweep.report.page import asset

    page = write_report(separated).read_text()
    for name in ("report.css", "sort.js", "interact.js"):
        assert asset(name).strip() and asset(name) in page
    assert "__PAGE_ROWS__" not in page and "var PAGE = 50," in page


def test_null_surface_report_has_no_trait_to_explain_and_no_share_of_d(tmp_path: Path) -> None:
    """issue 13 (9): on a null surface no subset is called necessary, no "-400 % of D left", intervals labelled right."""
    null = SimConfig(subsets={"S": SimSubset(n_units=64, effect=0.0), "R": SimSubset(n_units=64, effect=0.0)}, **SIM)
    b = BUILDER
    conds = [b.all_clean(), b.all_teacher(), b.patch_insert("S"), b.patch_remove("S"), b.drop("S", "clean")]
    search = StaticSearch("drop", conds, b, SETTINGS, ["S"], analyses=("leak_map",))
    sweep, analysis = experiment_sweep(tmp_path / "null", search, null, subsets=["S"], refill=["clean"])
    page = write_report(sweep).read_text()
    answer = re.sub("<[^>]+>", "", html.unescape(_answer(page)))
    assert "No trait to explain" in answer and "of D left" not in answer and "no share of it is given" in answer
    assert "Necessary (" not in answer.split("No trait to explain")[1].split(".")[0]
    table = re.search(r'<table class="leakmap">.*?</table>', page, re.S).group(0)
    assert {c for c, _ in _leak_map_cells(table, "S")} == {"na"}
    assert "[95% interval] and p" not in page and "[90% interval, the decision" in page
    assert "no trait to explain" in re.search(r"<svg[^>]*leak-map.*?</svg>", page, re.S).group(0)
    # the trial table: a refilled drop's share of all rows as recorded; the dropped subset n/a, not 0 %
    drop_trial = next(p for p in sweep.glob("trials/*/result.json") if json.loads(p.read_text())["condition"] == "drop")
    result = json.loads(drop_trial.read_text())
    result["manifest"]["teacher_share"] = {"all": 0.895, "S": None, "R": 1.0}
    drop_trial.write_text(json.dumps(result))
    page = write_report(sweep).read_text()
    row = re.search(rf"<tr><td data-sort=\"{result['trial']}\">.*?</tr>", page, re.S).group(0)
    assert re.findall(r"<td data-sort=\"[^\"]*\">([^<]*)</td>", row)[1:4] == ["90%", "n/a", "100%"]


def test_optuna_report_says_one_seed_per_condition_gives_estimates_only(tmp_path: Path) -> None:
    """issue 13 (9): the demo (optuna mode, seeds 1) says its intervals leave out training-seed variance."""
    one = make_sweep(tmp_path / "one", top_score=(0.60, 0.50, 0.70))
    assert "One seed per condition" in _answer(write_report(one).read_text())
    two = make_sweep(tmp_path / "two", top_score=(0.60, 0.50, 0.70))
    config = json.loads((two / "sweep.json").read_text())
    config["search"]["seeds"] = 2
    (two / "sweep.json").write_text(json.dumps(config))
    assert "One seed per condition" not in _answer(write_report(two).read_text())
