"""A real sweep: 3 trials, 2 worker processes on one journal storage, real TRL, real offline W&B, and a
trait judged by the openai_compatible judge on a real local server whose key must leak nowhere.

The sweep runs once per module (about a minute on 2 cores); the tests below read what it left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from judge_server import FaultProxy, JudgeServer, build_judge_model

from sweeps import tiny_sweep, write_sweep

pytestmark = pytest.mark.integration

SECRET = "sk-test-ABCDEF0123456789"
ENDPOINT: dict = {}  # what the judge endpoint saw during the sweep (filled by finished_sweep)


@pytest.fixture(scope="module")
def judge_endpoint(tmp_path_factory):
    """A real OpenAI-compatible server (transformers serve, tests/support/judge_server.py) behind a
    counting proxy, up for the whole module; yields the environment a sweep or a trial needs for it."""
    root = tmp_path_factory.mktemp("judge")
    with JudgeServer(build_judge_model(root / "model"), log_path=root / "server.log") as server:
        with FaultProxy(server.base_url) as proxy:
            yield {"model": server.model, "proxy": proxy, "env": {"JUDGE_URL": proxy.base_url, "JUDGE_API_KEY": SECRET}}


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory, judge_endpoint) -> Path:
    root = tmp_path_factory.mktemp("sweep")
    out = root / "out dir"  # a space in the path on purpose
    # A third trait is judged by the openai_compatible judge on that server, its API key SECRET read from
    # JUDGE_API_KEY: it must reach the server and appear in no file the sweep writes.
    (root / "says_2024.jsonl").write_text(
        "".join(
            json.dumps({"prompt_id": f"y{i}", "prompt": f"Which year is it now, friend number {i}?"}) + "\n"
            for i in range(4)
        )
    )
    (root / "says_2024.txt").write_text("The response names the current year.\n")
    sweep_file = write_sweep(
        root,
        tiny_sweep(
            "itest",
            out,
            n_prompts=400,
            train={"max_steps": 30, "batch_size": 8, "max_length_tokens": 96, "logging_steps": 5},
            traits={
                "date_confusion": {"n_prompts": 12, "max_new_tokens": 24},
                "negative_emotion": {"n_prompts": 8, "max_new_tokens": 16},
                "says_2024": {
                    "prompts": str(root / "says_2024.jsonl"),
                    "samples_per_prompt": 1,
                    "max_new_tokens": 16,
                    "judge": {
                        "openai_compatible": {
                            "model": judge_endpoint["model"],
                            "base_url_env": "JUDGE_URL",
                            "api_key_env": "JUDGE_API_KEY",
                            "rubric": str(root / "says_2024.txt"),
                        }
                    },
                },
            },
            wandb={"mode": "offline", "project": "itest"},
        ),
    )
    env = {**os.environ, **judge_endpoint["env"], "WANDB_API_KEY": "", "HOME": str(root)}
    env.pop("WANDB_API_KEY")
    proxy = judge_endpoint["proxy"]
    proxy.reset()
    proc = subprocess.run(
        [sys.executable, "-m", "leaksweep.cli", "sweep", str(sweep_file), "--workers", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    ENDPOINT.update(auth=set(proxy.auth_headers), n_chat=proxy.n_chat)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert SECRET not in proc.stdout + proc.stderr
    return out


def test_every_trial_ran_once_and_left_a_result(finished_sweep: Path):
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(finished_sweep / "optuna.journal"))
    )
    trials = optuna.load_study(study_name="itest", storage=storage).get_trials()
    assert len(trials) == 3
    assert sorted(t.number for t in trials) == [0, 1, 2]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    conditions = sorted(t.user_attrs["condition"] for t in trials)
    assert conditions == ["all_clean", "all_teacher", "mixture"]
    results = sorted(finished_sweep.glob("trials/*/result.json"))
    assert len(results) == 3
    for path in results:
        result = json.loads(path.read_text())
        assert result["status"] == "complete"
        assert result["train"]["steps"] == 30
        assert 0.0 <= result["traits"]["date_confusion"]["low"] <= result["traits"]["date_confusion"]["score"]
        assert (path.parent / "spec.json").exists() and (path.parent / "samples.jsonl").exists()
    # the two workers shared the work: each worker log says how many trials it finished
    finished = [
        int(line.split()[2])
        for log in finished_sweep.glob("logs/worker-*.log")
        for line in log.read_text().splitlines()
        if line.startswith("worker finished")
    ]
    assert sum(finished) == 3 and len(finished) == 2


def test_the_endpoint_judge_scored_every_trial_with_the_key_from_the_environment(finished_sweep: Path):
    assert ENDPOINT["auth"] == {f"Bearer {SECRET}"}  # the key was used (so the search below can find a leak)
    assert ENDPOINT["n_chat"] == 3 * 4  # 3 trials x 4 eval prompts, each response judged once
    for path in finished_sweep.glob("trials/*/result.json"):
        says = json.loads(path.read_text())["traits"]["says_2024"]
        assert says["judge"].startswith("openai_compatible:") and says["n_unjudged"] == 0
        assert says["n_samples"] == 4 and 0.0 <= says["score"] <= 1.0


def test_manifests_follow_the_plan(finished_sweep: Path):
    by_condition = {}
    for path in finished_sweep.glob("trials/*/result.json"):
        result = json.loads(path.read_text())
        by_condition[result["condition"]] = result["manifest"]["teacher_share"]
    assert by_condition["all_clean"]["all"] == 0.0
    assert by_condition["all_teacher"]["all"] == 1.0
    assert by_condition["mixture"]["date_mention"] == 1.0
    assert 0.0 < by_condition["mixture"]["all"] < 0.2


def _leet(args: list[str]) -> str:
    wandb_bin = Path(sys.executable).parent / "wandb"
    proc = subprocess.run([str(wandb_bin), "leet", "inspect", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_wandb_runs_hold_curve_scores_and_no_secret(finished_sweep: Path):
    run_files = sorted(finished_sweep.glob("trials/*/wandb/offline-run-*/run-*.wandb"))
    assert len(run_files) == 3
    for run_file in run_files:
        records = [json.loads(line) for line in _leet(["--json", str(run_file)]).splitlines() if line.strip()]
        history = [r["history"]["item"] for r in records if r.get("type") == "history"]
        losses = [h["train/loss"] for h in history if "train/loss" in h]
        assert len(losses) >= 5, f"loss curve missing in {run_file}"
        assert losses[-1] < losses[0]
        summary = json.loads(_leet(["--summary", "--json", str(run_file)]))
        score = summary["summary"]["trait/date_confusion/score"]
        trial_dir = run_file.parents[2]
        result = json.loads((trial_dir / "result.json").read_text())
        assert score == pytest.approx(result["traits"]["date_confusion"]["score"])
        assert summary["config"]["trial"] == result["trial"]
        assert summary["config"]["condition"] == result["condition"]
        assert SECRET.encode() not in run_file.read_bytes()
    for path in finished_sweep.rglob("*"):
        if path.is_file() and path.stat().st_size < 5_000_000:
            assert SECRET.encode() not in path.read_bytes(), f"secret leaked into {path}"


def test_report_and_status(finished_sweep: Path):
    report = finished_sweep / "report.html"
    assert report.exists() and "<svg" in report.read_text()
    proc = subprocess.run(
        [sys.executable, "-m", "leaksweep.cli", "status", str(finished_sweep), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["states"] == {"COMPLETE": 3} and info["budget"] == 3 and info["best"]["trait"] == "date_confusion"


def test_rerun_one_trial_from_its_spec(finished_sweep: Path, judge_endpoint, tmp_path: Path):
    trial_dir = finished_sweep / "trials" / "00000"
    before = json.loads((trial_dir / "result.json").read_text())
    proc = subprocess.run(
        [sys.executable, "-m", "leaksweep.cli", "trial", str(trial_dir), "--no-wandb"],
        capture_output=True,
        text=True,
        env={**os.environ, **judge_endpoint["env"]},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = json.loads((trial_dir / "result.json").read_text())
    assert after["manifest"]["hash"] == before["manifest"]["hash"]
    assert after["traits"]["date_confusion"]["score"] == pytest.approx(before["traits"]["date_confusion"]["score"])
