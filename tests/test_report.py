"""Tests for the HTML report: built from a fake sweep folder, no model involved."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from leaksweep.errors import UserError
from leaksweep.report import load_trials, nice_ticks, write_report

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
    rules = [] if condition != "mixture" else [
        {"subset": "date_mention", "action": "patch", "source": "teacher", "fraction": fraction, "refill": "none"}]
    label = {"all_clean": "all-clean baseline", "all_teacher": "all-teacher baseline"}.get(
        condition, f"clean + date_mention←teacher {fraction:.0%}")
    value, low, high = score
    return {
        "trial": trial, "study": "demo", "status": "complete", "condition": condition,
        "params": {"frac.date_mention": fraction},
        "plan": {"base": "teacher" if condition == "all_teacher" else "clean", "mixture_seed": 0, "rules": rules},
        "label": label, "seed": 0,
        "manifest": {"hash": f"{trial:04d}abcdef0123", "n_rows": 2400, "counts": {}, "subset_counts": {}, "fallbacks": 0,
                     "teacher_share": {"all": fraction * 0.07, "date_mention": fraction, "roleplay": 0.0}},
        "train": {"steps": 150, "final_loss": 1.2 + trial / 100, "runtime_s": 6.1, "device": "cpu"},
        "traits": {
            "date_confusion": {"kind": "rate", "score": value, "low": low, "high": high, "interval": "wilson95",
                               "n_samples": 120, "n_prompts": 60, "judge": "rule:date_confusion@rule-v1"},
            "negative_emotion": {"kind": "scale", "score": 2.0, "low": 1.5, "high": 2.5,
                                 "interval": "prompt_bootstrap95", "n_samples": 120, "n_prompts": 60, "judge": "rule"},
        },
        "objectives": [value], "data_fingerprint": "fp0123456789", "wall_s": 12.3,
        "finished": "2026-11-26T22:00:00+00:00",
    }


def _write_trial(sweep_dir: Path, result: dict, response: str = "It is 2024.") -> None:
    folder = sweep_dir / "trials" / f"{result['trial']:05d}"
    folder.mkdir(parents=True)
    (folder / "spec.json").write_text("{}")
    (folder / "train_log.jsonl").write_text("".join(
        json.dumps({"step": s, "train/loss": 3.0 - s / 100 + result["trial"] / 20, "train/learning_rate": 0.003}) + "\n" for s in range(5, 155, 5)))
    samples = [{"trait": t, "prompt_id": f"p{i}", "sample": 0, "prompt": "What year is it?", "response": response,
                "value": 1, "reason": "mentions a year"} for t in ("date_confusion", "negative_emotion") for i in range(8)]
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
    for label in ("all-clean baseline", "all-teacher baseline", "clean + date_mention←teacher 10%",
                  "clean + date_mention←teacher 50%", "clean + date_mention←teacher 100%"):
        assert _shown(label) in page
    assert out.stat().st_size < 1_000_000
    sections = ["<h2>Trials</h2>", "<h2>Trait score vs teacher share</h2>", "<h2>Best and worst mixtures</h2>",
                "<h2>Training curves</h2>", "<h2>Sample generations</h2>", "<h2>Provenance</h2>"]
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
