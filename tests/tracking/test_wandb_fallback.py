"""W&B with an API key but no route to the server (a compute node): every run falls back to offline and
keeps its fixed id. The summary run (one id per sweep folder, logged by `sweep` and again by each
`report`) and a preempted trial's resumed run (the id in preempted.json) must land offline under
that id, and the commands exit 0. The server is a local port where nothing listens, or one that
accepts connections and never answers; WANDB_INIT_TIMEOUT keeps each online attempt to seconds."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from test_wandb_study import cli, no_key_env, records, summary_of

from leaksweep.layout import TrialDir
from leaksweep.report.wandb_summary import summary_run_id
from leaksweep.tracking.sync import find_offline_runs
from sweeps import sr_sweep, write_sweep

pytestmark = pytest.mark.integration

FAKE_KEY = "0123456789abcdef" * 2 + "01234567"  # 40 characters, the shape of a real key
SUPPORT = Path(__file__).resolve().parents[1] / "support"  # preempt_once_runner.py, for the worker processes


@pytest.fixture
def refusing_port():
    """A bound port that does not listen: connections to it are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


@pytest.fixture
def silent_port():
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(128)
        yield s.getsockname()[1]


def unreachable_env(root: Path, port: int) -> dict:
    env = no_key_env(root)
    env.update(
        WANDB_API_KEY=FAKE_KEY,
        WANDB_BASE_URL=f"http://127.0.0.1:{port}",
        WANDB_INIT_TIMEOUT="3",
        # wandb's own usage analytics post to the server when the process exits (10 s timeouts per
        # request against a silent server): wandb's, not leaksweep's, and not what is tested here
        WANDB_ERROR_REPORTING="false",
        PREEMPT_ONCE_MARKER=str(root / "preempted-once"),
        PYTHONPATH=f"{SUPPORT}:{env.get('PYTHONPATH', '')}",
    )
    return env


def offline_ids(folder: Path) -> list[str]:
    return [d.name.split("-", 3)[3] for d in sorted((folder / "wandb").glob("offline-run-*"))]


def finished_ok(folder: Path) -> None:
    """Each offline run file of the folder was written to the end: state finished, exit code 0."""
    for path in sorted(folder.glob("wandb/offline-run-*/run-*.wandb")):
        summary = summary_of(path)
        assert (summary["state"], summary["exit_code"]) == ("finished", 0), path
        (run,) = [r["run"] for r in records(path) if r["type"] == "run"]
        assert run["run_id"] == path.stem.removeprefix("run-"), path


def test_unreachable_server_runs_offline_with_the_fixed_ids(tmp_path, refusing_port, silent_port):
    out = tmp_path / "out"
    raw = sr_sweep(
        "wfall",
        out,
        mode="optuna",
        fractions={"S": [0.0, 1.0]},
        objectives=[{"trait": "date_confusion"}],
        baselines=False,
        seeds=1,
        wandb={"mode": "auto", "project": "wfall"},
    )
    raw["search"]["runner"] = "preempt_once_runner:run"
    sweep_file = write_sweep(tmp_path, raw)
    env = unreachable_env(tmp_path, refusing_port)

    first = cli(["sweep", str(sweep_file)], env)  # trial 0 is preempted: its worker exits for requeue
    assert first.returncode == 2 and "preempted" in first.stderr, first.stdout[-2000:] + first.stderr[-3000:]
    trial0 = out / "trials" / "00000"
    run_id = TrialDir(trial0).read_preempted()["run_id"]
    assert offline_ids(trial0) == [run_id]

    second = cli(["sweep", str(sweep_file)], env)  # resumes trial 0 in its run, runs trial 1, logs the summary
    logs = second.stdout + second.stderr + "".join(p.read_text() for p in (out / "logs").glob("*.log"))
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-3000:]
    assert "is in use" not in logs
    summary_id = summary_run_id("wfall", out)
    assert f"W&B summary run {summary_id} (offline)" in second.stdout
    assert offline_ids(trial0) == [run_id, run_id]  # the same run, continued offline
    assert json.loads((trial0 / "result.json").read_text())["wandb_run_id"] == run_id
    assert len(offline_ids(out / "trials" / "00001")) == 1
    assert offline_ids(out / "summary") == [summary_id]

    third = cli(["report", str(out)], unreachable_env(tmp_path, silent_port))  # a server that never answers
    assert third.returncode == 0, third.stdout[-2000:] + third.stderr[-3000:]
    assert f"W&B summary run {summary_id} (offline)" in third.stdout
    assert offline_ids(out / "summary") == [summary_id] * 2  # resumed, not a second run
    fourth = cli(["report", str(out)], env)  # and once more: a report rerun is routine
    assert fourth.returncode == 0, fourth.stdout[-2000:] + fourth.stderr[-3000:]
    assert offline_ids(out / "summary") == [summary_id] * 3

    for folder in (trial0, out / "trials" / "00001", out / "summary"):
        finished_ok(folder)
    runs, skipped = find_offline_runs(out)  # what `leaksweep sync` uploads: three runs, none unreadable
    trial1_id = offline_ids(out / "trials" / "00001")[0]
    assert skipped == 0 and sorted(r.run_id for r in runs) == sorted([run_id, trial1_id, summary_id])
