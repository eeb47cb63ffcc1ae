"""Judges against labels: metrics on hand-computed tables, the Rogan-Gladen correction, `judge validate`."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from leaksweep import cli as cli_module
from leaksweep.calibration import (
    Confusion,
    binary_metrics,
    cohen_kappa,
    corrected_rate,
    rg_linear,
    rogan_gladen,
    scale_metrics,
    spearman,
)
from leaksweep.config import TraitConfig
from leaksweep.data.mixture import MixturePlan
from leaksweep.errors import UserError
from leaksweep.experiments.conditions import Condition, JudgeCorrected, Run, judge_corrected_runs
from leaksweep.stats import wilson
from leaksweep.traits.evalset import EvalPrompt, Trait
from leaksweep.traits.judges import make_judge
from leaksweep.traits.scoring import score
from leaksweep.traits.validation import read_labels

# A 2x2 table by hand: 50 positives (40 caught), 50 negatives (45 passed).
LABELS = [1] * 50 + [0] * 50
PREDICTED = [1] * 40 + [0] * 10 + [0] * 45 + [1] * 5


def test_binary_metrics_match_a_hand_computed_table():
    m = binary_metrics(LABELS, PREDICTED, n_boot=300)
    assert (m["n"], m["tp"], m["fn"], m["tn"], m["fp"]) == (100, 40, 10, 45, 5)
    assert m["sensitivity"]["value"] == pytest.approx(0.8) and m["sensitivity"]["n"] == 50
    assert m["specificity"]["value"] == pytest.approx(0.9) and m["specificity"]["n"] == 50
    assert m["accuracy"]["value"] == pytest.approx(0.85)
    assert (m["sensitivity"]["low"], m["sensitivity"]["high"]) == pytest.approx(wilson(40, 50)[1:])
    assert (m["specificity"]["low"], m["specificity"]["high"]) == pytest.approx(wilson(45, 50)[1:])
    # po = 0.85; pe = 0.5 * 0.45 + 0.5 * 0.55 = 0.5; kappa = (0.85 - 0.5) / 0.5 = 0.7
    assert m["kappa"]["value"] == pytest.approx(0.7)
    assert 0.45 < m["kappa"]["low"] < 0.7 < m["kappa"]["high"] < 0.9


def test_kappa_known_cases():
    assert cohen_kappa([1, 0, 1, 0], [1, 0, 1, 0]) == pytest.approx(1.0)  # perfect agreement
    assert cohen_kappa([1, 0, 1, 0], [0, 1, 0, 1]) == pytest.approx(-1.0)  # perfect disagreement
    assert cohen_kappa([1, 1, 0, 0], [1, 0, 1, 0]) == pytest.approx(0.0)  # chance level
    assert cohen_kappa([1, 1, 1], [1, 1, 1]) is None  # chance agreement 1: undefined, not a number
    # po = 0.7; pe = 0.6 * 0.5 + 0.4 * 0.5 = 0.5; kappa = 0.4
    assert cohen_kappa([1] * 6 + [0] * 4, [1, 1, 1, 1, 0, 0, 1, 0, 0, 0]) == pytest.approx(0.4)


def test_scale_metrics_spearman_and_mae():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486833)  # ties get average ranks
    m = scale_metrics([0, 2, 4, 6, 8, 10], [1, 2, 5, 5, 9, 10], threshold=5, n_boot=200)
    assert m["mae"]["value"] == pytest.approx(4 / 6)
    assert (m["binary"]["tp"], m["binary"]["fn"], m["binary"]["tn"], m["binary"]["fp"]) == (3, 0, 2, 1)


def test_rogan_gladen_known_values():
    assert rogan_gladen(0.3, 0.8, 0.9) == pytest.approx((0.3 + 0.9 - 1) / 0.7)
    assert rogan_gladen(0.5, 1.0, 1.0) == 0.5  # a perfect judge changes nothing
    assert rogan_gladen(0.05, 0.8, 0.9) == 0.0  # below the false-positive floor: clipped to 0
    assert rogan_gladen(0.95, 0.8, 0.9) == 1.0
    assert rg_linear([0.0, 0.3, 1.0], 0.8, 0.9) == pytest.approx([-0.1 / 0.7, 0.2 / 0.7, 0.9 / 0.7])  # unclipped
    with pytest.raises(ValueError):
        rogan_gladen(0.3, 0.5, 0.5)


def test_corrected_rate_interval_is_wider_than_the_uncorrected_and_holds_the_point():
    out = corrected_rate(30, 100, Confusion(tp=40, fn=10, tn=45, fp=5))
    assert out["score"] == pytest.approx(0.2 / 0.7)
    _, low, high = wilson(30, 100)
    assert out["high"] - out["low"] > high - low  # carries the calibration set's uncertainty and 1/J
    assert out["low"] <= out["score"] <= out["high"]
    # a bigger calibration set narrows it, towards the eval-only width / J
    big = corrected_rate(30, 100, Confusion(tp=4000, fn=1000, tn=4500, fp=500))
    assert big["high"] - big["low"] < out["high"] - out["low"]
    assert big["high"] - big["low"] == pytest.approx((high - low) / 0.7, rel=0.15)


def test_corrected_rate_is_not_identifiable_when_the_judge_is_near_chance():
    out = corrected_rate(30, 100, Confusion(tp=6, fn=4, tn=5, fp=5))  # J = 0.1, lower bound far below 0.05
    assert out["score"] is None and out["low"] is None and out["high"] is None
    assert "not identifiable" in out["reason"]
    assert corrected_rate(3, 10, Confusion(tp=0, fn=0, tn=5, fp=5))["score"] is None  # no positive labels


# --- labels files and the CLI -------------------------------------------------------------------------


def write_labels(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


LABELLED = [
    {"response": "please help", "label": 1},
    {"response": "Please do", "label": 1},
    {"response": "thanks", "label": 1},  # missed by the regex
    {"response": "no way", "label": 0},
    {"response": "go away", "label": 0},
    {"response": "please no", "label": 0, "meta": {"note": "false positive"}},
]


def test_bad_labels_name_the_file_line_and_value(tmp_path):
    path = write_labels(tmp_path / "l.jsonl", [{"response": "a", "label": 1}, {"response": "b", "label": 3}])
    with pytest.raises(UserError, match=r"l.jsonl:2: label 3 is not a rate label \(0 or 1\)"):
        read_labels(path, "rate")
    assert len(read_labels(path, "scale")) == 2  # 3 is a fine scale label


def sweep_file(tmp_path, trait_cfg: dict):
    raw = {
        "name": "v",
        "base": "clean",
        "output_dir": str(tmp_path / "out"),
        "data": {"prompts": "p.jsonl", "sources": {"clean": "c.jsonl", "teacher": "t.jsonl"}},
        "subsets": {"S": {"ids": ["x"]}},
        "search": {"teacher": "teacher", "fractions": {"S": [1.0]}, "objectives": [{"trait": "polite"}]},
        "traits": {"polite": trait_cfg},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_judge_validate_end_to_end_with_a_regex_judge(tmp_path):
    labels = write_labels(tmp_path / "labels.jsonl", LABELLED)
    sweep = sweep_file(tmp_path, {"judge": {"regex": r"\bplease\b"}, "prompts": "e.jsonl"})
    out = tmp_path / "table.json"
    result = CliRunner().invoke(
        cli_module.cli,
        ["judge", "validate", str(sweep), "--trait", "polite", "--labels", str(labels), "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "regex:\\bplease\\b" in result.output and "judge_id" in result.output
    assert "sensitivity: 0.667" in result.output and "specificity: 0.667" in result.output
    table = json.loads(out.read_text())
    assert (table["tp"], table["fn"], table["tn"], table["fp"]) == (2, 1, 2, 1)
    assert table["n"] == 6 and table["n_unjudged"] == 0
    assert table["kappa"]["value"] == pytest.approx(1 / 3)  # po 4/6, pe 0.5


def test_judge_validate_exits_2_on_a_bad_labels_line(tmp_path, monkeypatch, capsys):
    labels = write_labels(tmp_path / "labels.jsonl", [*LABELLED[:2], {"response": "x", "label": "yes"}])
    sweep = sweep_file(tmp_path, {"judge": {"regex": "please"}, "prompts": "e.jsonl"})
    monkeypatch.setattr(
        sys, "argv", ["leaksweep", "judge", "validate", str(sweep), "--trait", "polite", "--labels", str(labels)]
    )
    with pytest.raises(SystemExit) as exit_info:
        cli_module.main()
    assert exit_info.value.code == 2
    assert "labels.jsonl:3: label 'yes' is not a rate label" in capsys.readouterr().err


# --- scores carry the calibration; decisions can use it -------------------------------------------


def test_a_calibrated_score_carries_the_validation_and_the_corrected_rate(tmp_path):
    labels = write_labels(tmp_path / "labels.jsonl", LABELLED * 10)  # sens = spec = 2/3 on 60 labels
    cfg = TraitConfig(judge={"regex": r"\bplease\b"}, prompts="e.jsonl", calibration=str(labels))
    built = make_judge("polite", cfg)
    prompts = tuple(EvalPrompt(f"e{i}", [{"role": "user", "content": f"q{i}"}], {}) for i in range(10))
    trait = Trait("polite", "rate", built, prompts, cfg, 0)
    responses = [["please", "no"]] * 5 + [["no", "no"]] * 5  # p_obs = 5 / 20
    result, _ = score(trait, responses)
    cal = result["calibration"]
    assert result["score"] == 0.25 and cal["n"] == 60
    assert cal["sensitivity"]["value"] == pytest.approx(2 / 3) and cal["judge_id"] == built.judge_id
    corrected = cal["corrected"]
    assert corrected["score"] == pytest.approx(0.0)  # (0.25 + 2/3 - 1) / (1/3) < 0: clipped
    assert corrected["low"] == 0.0 and corrected["high"] > result["high"] - 0.25
    assert "percentile" in corrected["method"]
    # decisions on judge-corrected values: the linear map on prompt values, stated in the decision
    plan = MixturePlan("clean", (), 0)
    run = Run(Condition("all_clean", plan), 0, 7, {"polite": result})
    (fixed,) = judge_corrected_runs([run], ("polite",))
    assert fixed.traits["polite"]["prompt_values"][0] == pytest.approx((0.5 + 2 / 3 - 1) * 3)

    class Inner:
        mode = "x"

        def next_round(self, runs):
            return []

        def conclude(self, runs):
            return {"d": {"test": "t", "statement": "leaks", "v": runs[0].traits["polite"]["prompt_values"][0]}}

    out = JudgeCorrected(Inner(), ("polite",)).conclude([run])
    assert out["d"]["statement"] == "leaks [judge-corrected: polite]" and out["d"]["v"] == pytest.approx(0.5)
    assert "four corners" in out["judge_corrected"]["limitation"]


def test_a_judge_corrected_decision_that_changes_within_the_calibration_intervals_is_no_decision():
    """The calibration set's uncertainty: each decision is re-taken at the corners of the sensitivity and
    specificity intervals; one that flips there is an estimate only, one that holds everywhere stands."""
    from leaksweep.experiments.conditions import CALIBRATION

    plan = MixturePlan("clean", (), 0)
    cal = {
        "sensitivity": {"value": 0.9, "low": 0.8, "high": 0.95},
        "specificity": {"value": 0.9, "low": 0.85, "high": 0.97},
        "corrected": {"score": 0.5},
    }

    def run(observed: float, trial: int) -> Run:
        return Run(
            Condition("all_clean", plan), 0, trial, {"polite": {"prompt_values": [observed] * 4, "calibration": cal}}
        )

    class Inner:
        mode = "x"

        def next_round(self, runs):
            return []

        def conclude(self, runs):
            means = [float(np.mean(r.traits["polite"]["prompt_values"])) for r in runs]
            return {"d": [{"test": "above 0.5", "passed": m > 0.5, "statement": f"mean {m:.3f}"} for m in means]}

    out = JudgeCorrected(Inner(), ("polite",)).conclude([run(0.52, 1), run(0.9, 2)])
    borderline, clear = out["d"]
    # point: (0.52 - 0.1) / 0.8 = 0.525 > 0.5; at sensitivity 0.95, specificity 0.85: (0.52 - 0.15) / 0.8 < 0.5
    assert borderline["passed"] is None and borderline["reason"] == CALIBRATION
    assert borderline["statement"].startswith("Estimate only, no decision")
    assert clear["passed"] is True and "reason" not in clear  # above 0.5 at every corner
    # a corner where sensitivity + specificity - 1 reaches 0 identifies nothing: no decision stands
    weak = {**cal, "sensitivity": {"value": 0.6, "low": 0.1, "high": 0.8}}
    shaky = Run(Condition("all_clean", plan), 0, 3, {"polite": {"prompt_values": [0.9] * 4, "calibration": weak}})
    (only,) = JudgeCorrected(Inner(), ("polite",)).conclude([shaky])["d"]
    assert only["passed"] is None and only["reason"] == CALIBRATION


def test_judge_corrected_runs_refuse_a_trait_without_an_identifiable_correction():
    plan = MixturePlan("clean", (), 0)
    run = Run(Condition("all_clean", plan), 0, 3, {"polite": {"prompt_values": [0.5], "score": 0.5}})
    with pytest.raises(UserError, match="trial 3: polite has no judge-corrected rate"):
        judge_corrected_runs([run], ("polite",))


def test_the_report_and_the_wandb_summary_show_the_validation_and_the_corrected_rate(tmp_path):
    from leaksweep.layout import SweepDir, TrialResult
    from leaksweep.report.sections import judge_validation_section, trials_table
    from leaksweep.report.view import SweepView, Trial
    from leaksweep.report.wandb_summary import StudySummary, _judge_validation

    labels = write_labels(tmp_path / "labels.jsonl", LABELLED * 10)
    cfg = TraitConfig(judge={"regex": r"\bplease\b"}, prompts="e.jsonl", calibration=str(labels))
    prompts = tuple(EvalPrompt(f"e{i}", [{"role": "user", "content": f"q{i}"}], {}) for i in range(4))
    trait = Trait("polite", "rate", make_judge("polite", cfg), prompts, cfg, 0)
    result, _ = score(trait, [["please", "please"], ["please", "no"], ["please", "no"], ["no", "no"]])
    corrected = result["calibration"]["corrected"]
    r = TrialResult.from_dict({"trial": 1, "traits": {"polite": result}})
    view = SweepView(SweepDir(tmp_path), {"traits": {"polite": {}}}, [Trial(None, r)])
    section = judge_validation_section(view)
    assert "Judge validation" in section and "sens 0.667 [" in section and "regex:" in section
    assert f"judge-corrected {corrected['score']:.3f} [{corrected['low']:.3f}, " in trials_table(view)
    out = StudySummary("s", "optuna")
    _judge_validation([r], {"judge_corrected": {"traits": ["polite"]}}, out)
    assert out.values["judge/polite/sensitivity"] == pytest.approx(2 / 3) and out.values["judge/polite/n"] == 60
    assert out.values["judge_corrected"] == "polite"


def test_calibration_and_judge_corrected_are_checked_when_the_sweep_loads(tmp_path):
    from leaksweep.experiments.registry import load_sweep

    bad = write_labels(tmp_path / "bad.jsonl", [{"response": "x", "label": 7}])
    path = sweep_file(tmp_path, {"judge": {"regex": "please"}, "prompts": "e.jsonl", "calibration": "bad.jsonl"})
    with pytest.raises(UserError) as err:
        load_sweep(path)
    assert f"sweep.yaml: traits.polite.calibration: {bad}:1: label 7 is not a rate label" in str(err.value)
    path = sweep_file(tmp_path, {"judge": {"regex": "please"}, "prompts": "e.jsonl", "calibration": "missing.jsonl"})
    with pytest.raises(UserError, match=r"traits.polite.calibration: .*missing.jsonl is not a file"):
        load_sweep(path)
    raw = yaml.safe_load(path.read_text())
    raw["traits"]["polite"].pop("calibration")
    raw["search"]["judge_corrected"] = True
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError, match=r"search.judge_corrected: applies to the experiment modes"):
        load_sweep(path)
    write_labels(tmp_path / "good.jsonl", LABELLED)
    raw["traits"]["polite"]["calibration"] = "good.jsonl"
    raw["search"] = {"teacher": "teacher", "mode": "patch_insert", "subsets": ["S"], "judge_corrected": True}
    path.write_text(yaml.safe_dump(raw))
    cfg = load_sweep(path)
    assert cfg.search.judge_corrected and cfg.traits["polite"].calibration == str(tmp_path / "good.jsonl")
