"""A simulated-runner sweep with offline W&B, read back with W&B's own reader (`wandb leet inspect`):
trial runs grouped by study and tagged, their data lineage, the study summary run, and the
`leaksweep sync` / `leaksweep wandb-report` refusals without an API key."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from leaksweep.tracking.sync import find_offline_runs
from sweeps import sr_sweep, write_sweep

pytestmark = pytest.mark.integration

SECRET = "judge-sk-ZYXWVU9876543210"
WANDB_EXE = Path(sys.executable).parent / "wandb"


# WANDB_SERVICE: the wandb-core service of this test process (left by an in-process test), which the
# commands under test would otherwise share
NOT_INHERITED = ("WANDB_API_KEY", "WANDB_MODE", "NETRC", "WANDB_BASE_URL", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_SERVICE")


def no_key_env(root: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    env.update(
        HOME=str(root / "home"),
        WANDB_CONFIG_DIR=str(root / "wh" / "config"),
        WANDB_DATA_DIR=str(root / "wh" / "data"),
        WANDB_CACHE_DIR=str(root / "wh" / "cache"),
        JUDGE_API_KEY=SECRET,
        OMP_NUM_THREADS="1",
    )
    (root / "home").mkdir(exist_ok=True)
    return env


def cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "leaksweep.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("wstudy")
    out = root / "out dir"
    sweep_file = write_sweep(
        root,
        sr_sweep(
            "wstudy", out, mode="subset_scan", subsets=["S", "R"], wandb={"mode": "offline", "project": "wstudy-test"}
        ),
    )
    env = no_key_env(root)
    proc = cli(["sweep", str(sweep_file)], env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "W&B summary run summary-wstudy-" in proc.stdout
    return out, env


def records(path: Path) -> list[dict]:
    out = subprocess.run(
        [str(WANDB_EXE), "leet", "inspect", "--json", str(path)], capture_output=True, text=True, check=True, timeout=60
    )
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def summary_of(path: Path) -> dict:
    out = subprocess.run(
        [str(WANDB_EXE), "leet", "inspect", "--summary", "--json", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(out.stdout)


def the_run(recs: list[dict]) -> dict:
    (run,) = [r["run"] for r in recs if r["type"] == "run"]
    return run


def test_summary_run_holds_the_leak_map_baselines_and_report(study):
    out, _ = study
    (path,) = out.glob("summary/wandb/offline-run-*/run-*.wandb")
    recs = records(path)
    run = the_run(recs)
    assert (run["job_type"], run["run_group"], run["display_name"]) == ("summary", "wstudy", "wstudy-summary")
    summary = summary_of(path)
    assert summary["state"] == "finished" and summary["exit_code"] == 0
    assert summary["tags"] == ["subset_scan", "summary"]
    values = summary["summary"]
    assert values["leak_map"]["_type"] == "table-file" and values["baselines"]["_type"] == "table-file"
    assert values["mode"] == "subset_scan" and values["trials_spent"] == 12 and values["trials_complete"] == 12
    analysis = json.loads((out / "analysis.json").read_text())
    assert (
        values["leak_map/date_confusion/S/sufficient"]
        is analysis["leak_map"]["date_confusion"]["S"]["sufficient"]["passed"]
    )
    assert values["baseline/date_confusion/all_clean"] == analysis["baselines"]["date_confusion"]["all_clean"]["value"]
    # the logged table file holds the leak map rows
    table = json.loads((path.parent / "files" / values["leak_map"]["path"]).read_text())
    assert table["columns"][:4] == ["trait", "subset", "test", "passed"]
    assert {(r[1], r[2]) for r in table["data"]} == {
        ("S", "sufficient"),
        ("S", "necessary"),
        ("R", "sufficient"),
        ("R", "necessary"),
    }
    artifacts = {r["artifact"]["name"]: r["artifact"] for r in recs if r["type"] == "artifact"}
    assert artifacts["report-wstudy"]["type"] == "report"
    assert [c["path"] for c in artifacts["report-wstudy"]["manifest"]["contents"]] == ["report.html"]


def test_trial_runs_are_grouped_tagged_and_use_their_data(study):
    out, _ = study
    files = sorted(out.glob("trials/*/wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 12
    world = out / "world"
    sha = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in [world / "prompts.jsonl", *(world / "sources").glob("*.jsonl")]
    }
    for path in files:
        trial_dir = path.parents[2]
        result = json.loads((trial_dir / "result.json").read_text())
        recs = records(path)
        run = the_run(recs)
        assert (run["job_type"], run["run_group"]) == ("trial", "wstudy")
        assert run["tags"] == ["subset_scan", result["condition"]]
        used = {r["artifact"]["name"]: r["artifact"] for r in recs if r["type"] == "artifact"}
        plan = result["plan"]  # the sources the trial's mixture draws from, and nothing else
        sources = {plan["base"]} | {r["source"] for r in plan["rules"] if r.get("source")}
        expected = {"prompts"} | {f"rollouts-{s}" for s in sources}
        if result["condition"] in ("all_teacher", "patch_remove"):
            assert "rollouts-teacher" in expected
        if result["condition"] == "all_clean":
            assert expected == {"prompts", "rollouts-clean"}
        assert set(used) == expected, (result["condition"], set(used))
        for name, art in used.items():
            assert art["type"] == "dataset" and art["use_after_commit"] is True  # an input: `wandb sync` marks it used
            file = "prompts.jsonl" if name == "prompts" else name.removeprefix("rollouts-") + ".jsonl"
            meta = json.loads(art["metadata"])
            assert meta["sha256"] == sha[file]
            assert f"sha256-{sha[file][:12]}" in art["aliases"]
            assert [c["path"] for c in art["manifest"]["contents"]] == [file]


def test_report_resumes_the_summary_run_and_sync_groups_it(study):
    out, env = study
    proc = cli(["report", str(out)], env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dirs = sorted(out.glob("summary/wandb/offline-run-*"))
    assert len(dirs) == 2 and len({d.name.split("-", 3)[3] for d in dirs}) == 1  # the same run id, resumed
    runs, skipped = find_offline_runs(out)
    assert skipped == 0 and len(runs) == 13
    (summary_run,) = [r for r in runs if r.run_id.startswith("summary-")]
    assert summary_run.dirs == tuple(dirs)


def test_sync_and_wandb_report_refuse_without_a_key(study):
    out, env = study
    proc = cli(["sync", str(out), "--jobs", "2"], env)
    assert proc.returncode == 2
    assert "no W&B API key" in proc.stderr and "WANDB_API_KEY" in proc.stderr
    proc = cli(["wandb-report", str(out)], env)
    assert proc.returncode == 2
    assert "mode is 'offline'" in proc.stderr and "leaksweep sync" in proc.stderr
    # with the sweep's mode left to auto, the missing key is the reason given
    sweep_json = json.loads((out / "sweep.json").read_text())
    sweep_json["tracking"]["wandb"]["mode"] = "auto"
    other = out.parent / "auto-copy"
    other.mkdir(exist_ok=True)
    (other / "sweep.json").write_text(json.dumps(sweep_json))
    proc = cli(["wandb-report", str(other)], env)
    assert proc.returncode == 2 and "no W&B API key" in proc.stderr and "leaksweep wandb-report" in proc.stderr


def test_no_secret_in_any_file(study):
    out, _ = study
    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_the_real_uploader_reports_a_failed_wandb_sync(study, monkeypatch):
    out, env = study
    for name in ("WANDB_API_KEY", "NETRC", "WANDB_BASE_URL", "WANDB_MODE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HOME", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR"):
        monkeypatch.setenv(name, env[name])
    from leaksweep.tracking.sync import is_synced, wandb_sync

    runs, _ = find_offline_runs(out / "trials" / "00000")
    (run,) = runs
    ok, message = wandb_sync(run)
    assert not ok and "exited with 1" in message and "API key" in message
    assert not is_synced(run.dirs[0])
