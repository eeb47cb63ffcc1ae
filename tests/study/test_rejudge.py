"""`leaksweep rejudge`: a study's saved samples re-scored under a new judge, without training; a judge
already asked is not asked again. A teacher_eval sweep on the built-in world is real and needs no
training: its trials judge each teacher's own eval responses."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration


def sweep_file(tmp_path: Path, judge) -> Path:
    raw = {
        "name": "rj",
        "data": {"world": {"seed": 2, "n_prompts": 200}},
        "base": "clean",
        "search": {"teacher": "teacher", "mode": "teacher_eval"},
        "traits": {"date_confusion": {"n_prompts": 20, "samples_per_prompt": 1, "judge": judge}},
        "output_dir": str(tmp_path / "rj"),
    }
    path = tmp_path / f"rj-{len(list(tmp_path.glob('rj-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def cli(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "leaksweep.cli", *args], capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def teacher_scores(folder: Path) -> dict[str, float]:
    results = [json.loads(p.read_text()) for p in folder.glob("trials/*/result.json")]
    return {r["plan"]["base"]: r["traits"]["date_confusion"]["score"] for r in results}


def study_values(folder: Path) -> dict[int, list[float]]:
    """Each COMPLETE trial's values as the Optuna study holds them."""
    from leaksweep.study import storage
    from leaksweep.study.prepare import load_sweep_dir

    study = storage.load_study(folder, load_sweep_dir(folder))
    return {r.number: list(r.values) for r in storage.trials(study, "COMPLETE")}


def test_rejudge_rescores_saved_samples_and_asks_no_judge_twice(tmp_path):
    cli("sweep", str(sweep_file(tmp_path, "rule")), "--no-wandb")
    folder = tmp_path / "rj"
    before = teacher_scores(folder)
    assert before["teacher"] > before["clean"]

    same = cli("rejudge", str(folder), "--trait", "date_confusion", "--no-wandb").stdout
    assert "in 2 trial(s)" in same and re.search(r"\b0 judge call", same)  # the trials cached their verdicts
    assert teacher_scores(folder) == before

    regex = sweep_file(tmp_path, {"regex": "qqqq"})
    changed = cli("rejudge", str(folder), "--trait", "date_confusion", "--sweep-file", str(regex), "--no-wandb").stdout
    assert re.search(r"\b40 judge call", changed)  # 2 teachers x 20 eval responses, none judged by this judge yet
    after = teacher_scores(folder)
    for trial in folder.glob("trials/*"):
        samples = [json.loads(line) for line in (trial / "samples.jsonl").read_text().splitlines()]
        result = json.loads((trial / "result.json").read_text())
        matches = sum("qqqq" in s["response"] for s in samples)
        assert result["traits"]["date_confusion"]["score"] == pytest.approx(matches / len(samples))
        assert result["traits"]["date_confusion"]["judge"] == "regex:qqqq" and result["rejudged"]
    assert after != before
    analysis = json.loads((folder / "analysis.json").read_text())
    assert analysis["teachers"]["teacher"]["date_confusion"]["value"] == pytest.approx(after["teacher"])
    assert json.loads((folder / "sweep.json").read_text())["traits"]["date_confusion"]["judge"] == {"regex": "qqqq"}
    assert "regex:qqqq" in (folder / "report.html").read_text()
    # the Optuna study was rebuilt from the re-judged folders: its values are the new judge's
    assert "Optuna study: rebuilt from the trial folders" in changed
    assert list(folder.glob("optuna.journal.rejudged-*"))  # the old journal is kept
    assert study_values(folder) == {
        int(p.parent.name): json.loads(p.read_text())["objectives"] for p in folder.glob("trials/*/result.json")
    }

    again = cli("rejudge", str(folder), "--trait", "date_confusion", "--no-wandb").stdout
    assert re.search(r"\b0 judge call", again) and teacher_scores(folder) == after


def test_rejudge_refuses_a_changed_eval_protocol(tmp_path):
    cli("sweep", str(sweep_file(tmp_path, "rule")), "--no-wandb")
    raw = yaml.safe_load(sweep_file(tmp_path, "rule").read_text())
    raw["traits"]["date_confusion"]["n_prompts"] = 10
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(raw))
    proc = subprocess.run(
        [sys.executable, "-m", "leaksweep.cli", "rejudge", str(tmp_path / "rj"), "--trait", "date_confusion",
         "--sweep-file", str(other), "--no-wandb"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "n_prompts changed" in proc.stderr and "run a new sweep" in proc.stderr
