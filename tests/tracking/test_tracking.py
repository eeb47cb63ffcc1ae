"""Tests for leaksweep.tracking: redaction and mode choice (unit), real offline W&B runs read back
with W&B's own reader (integration)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from leaksweep.config import TrackingConfig, WandbConfig
from leaksweep.errors import UserError
from leaksweep.tracking.protocol import NullRun, NullTracker, make_tracker, require_api_key, resolve_mode
from leaksweep.tracking.redact import REDACTED, flatten, looks_secret, redact
from leaksweep.tracking.reports import build_wandb_report, create_wandb_report
from leaksweep.tracking.sync import OfflineRun, find_offline_runs, sync_offline_runs
from leaksweep.tracking.wandb_tracker import WandbTracker

SECRET = "judge-sk-0123456789abcdef"  # a fake key, long enough to be hunted for
WANDB_EXE = Path(sys.executable).parent / "wandb"


@pytest.fixture
def no_wandb_key(monkeypatch, tmp_path):
    """An environment where W&B finds no key and writes nothing outside tmp_path."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("WANDB_API_KEY", "WANDB_MODE", "NETRC", "WANDB_BASE_URL", "WANDB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    # W&B keeps settings, artifact staging copies and caches under the home folder by default.
    for name, sub in [("WANDB_CONFIG_DIR", "config"), ("WANDB_DATA_DIR", "data"), ("WANDB_CACHE_DIR", "cache")]:
        monkeypatch.setenv(name, str(tmp_path / "wandb-home" / sub))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    return home


# ---------------------------------------------------------------------------------------------
# unit


@pytest.mark.parametrize(
    "name",
    [
        "api_key",
        "apikey",
        "apiKey",
        "WANDB_API_KEY",
        "judge_api_key",
        "hf_token",
        "accessToken",
        "token",
        "client_secret",
        "password",
        "db_password_file",
        "private-key",
        "aws.secret_access_key",
    ],
)
def test_secret_looking_names(name):
    assert looks_secret(name)


@pytest.mark.parametrize(
    "name",
    ["key_column", "key", "max_new_tokens", "token_budget", "tokenizer", "learning_rate", "keyword", "monkey", ""],
)
def test_ordinary_names(name):
    assert not looks_secret(name)


def test_redact_hides_secret_keys_and_keeps_the_rest(monkeypatch):
    config = {
        "judge": {"api_key": "abc", "model": "m", "key_column": "prompt_id", "use_token": True, "hf_token": None},
        "rules": [{"password": 1234, "fraction": 0.5}],
        "learning_rate": 1e-3,
    }
    out = redact(config)
    assert out["judge"] == {
        "api_key": REDACTED,
        "model": "m",
        "key_column": "prompt_id",
        "use_token": True,
        "hf_token": None,
    }
    assert out["rules"] == [{"password": REDACTED, "fraction": 0.5}]
    assert out["learning_rate"] == 1e-3
    assert config["judge"]["api_key"] == "abc", "redact must not change its input"


def test_redact_hides_values_of_secret_env_vars(monkeypatch):
    monkeypatch.setenv("JUDGE_API_KEY", SECRET)
    monkeypatch.setenv("SHORT_TOKEN", "abc")  # too short to hunt for
    monkeypatch.setenv("LEAKSWEEP_COLOR", "plain-value-not-secret")  # name does not look secret
    config = {
        "judge": {"endpoint": "https://judge.example", "credential": SECRET},
        "command": f"judge --auth {SECRET} --fast",
        "items": [SECRET, "abc", ("plain-value-not-secret",)],
    }
    out = redact(config)
    assert out["judge"] == {"endpoint": "https://judge.example", "credential": REDACTED}
    assert out["command"] == f"judge --auth {REDACTED} --fast"
    assert out["items"] == [REDACTED, "abc", ("plain-value-not-secret",)]
    assert SECRET not in json.dumps(out)


def test_flatten_nested_scores():
    values = {"trait": {"date_confusion": {"score": 0.4}}, "trait/blackmail/score": 0.1, "wall_s": 3}
    assert dict(flatten(values)) == {
        "trait/date_confusion/score": 0.4,
        "trait/blackmail/score": 0.1,
        "wall_s": 3,
    }


def test_make_tracker_returns_null_tracker_when_off(no_wandb_key, monkeypatch):
    assert isinstance(make_tracker(TrackingConfig(), enabled=False), NullTracker)
    assert isinstance(make_tracker(TrackingConfig(wandb=None)), NullTracker)
    assert isinstance(make_tracker(TrackingConfig(wandb=WandbConfig(mode="disabled"))), NullTracker)
    monkeypatch.setenv("WANDB_MODE", "disabled")  # auto follows the environment's choice
    assert isinstance(make_tracker(TrackingConfig()), NullTracker)


def test_null_run_does_nothing(tmp_path):
    run = NullTracker().start_run(name="n", group="g", config={}, tags=[], run_dir=tmp_path)
    assert isinstance(run, NullRun) and run.run_id is None
    run.log({"loss": 1.0}, step=0)
    run.summary({"a": 1})
    run.table("t", ["a"], [[1]])
    run.artifact("a", "b", [tmp_path / "missing"], {})
    run.use_artifact("a", "dataset", [tmp_path / "missing"], {}, aliases=["x"])
    run.chart("c", "line", ["x", "y"], [[0, 1]], "x", "y", "t")
    run.finish()
    assert list(tmp_path.iterdir()) == []


def test_auto_mode_is_offline_without_a_key(no_wandb_key):
    assert resolve_mode("auto") == "offline"
    tracker = make_tracker(TrackingConfig())
    assert isinstance(tracker, WandbTracker) and tracker.mode == "offline"


def test_auto_mode_is_online_with_an_env_key(no_wandb_key, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_mode("auto") == "online"
    assert make_tracker(TrackingConfig()).mode == "online"  # no run is started


@pytest.mark.parametrize(
    "machine, base_url, mode",
    [
        ("api.wandb.ai", None, "online"),  # wandb 0.31's default host is Forge; it falls back to this
        ("api.forge.coreweave.com", None, "online"),
        ("wandb.example.org", "https://wandb.example.org", "online"),  # a self-hosted server
        ("wandb.example.org", None, "offline"),  # an entry for some other host
    ],
)
def test_auto_mode_reads_the_netrc(no_wandb_key, monkeypatch, machine, base_url, mode):
    netrc = no_wandb_key / ".netrc"
    netrc.write_text(f"machine {machine}\n  login user\n  password " + "y" * 40 + "\n")
    netrc.chmod(0o600)
    if base_url:
        monkeypatch.setenv("WANDB_BASE_URL", base_url)
    assert resolve_mode("auto") == mode


def test_malformed_netrc_means_no_key(no_wandb_key):
    (no_wandb_key / ".netrc").write_text("machine\n")
    assert resolve_mode("auto") == "offline"


def test_explicit_modes_pass_through(no_wandb_key, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert [resolve_mode(m) for m in ("online", "offline", "disabled")] == ["online", "offline", "disabled"]
    with pytest.raises(ValueError):
        resolve_mode("sometimes")


# ---------------------------------------------------------------------------------------------
# integration: real offline runs, read back with `wandb leet inspect`


def wandb_file(run_dir: Path) -> Path:
    (found,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    return found


def inspect_records(path: Path) -> list[dict]:
    """Every record of a run's .wandb file, one JSON object per line."""
    out = subprocess.run(
        [str(WANDB_EXE), "leet", "inspect", "--json", str(path)], capture_output=True, text=True, check=True, timeout=60
    )
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def inspect_summary(path: Path) -> dict:
    """State, exit code, config and final summary of a run."""
    out = subprocess.run(
        [str(WANDB_EXE), "leet", "inspect", "--summary", "--json", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(out.stdout)


@pytest.mark.integration
def test_offline_run_round_trip_without_secrets(no_wandb_key, monkeypatch, tmp_path):
    monkeypatch.setenv("JUDGE_API_KEY", SECRET)
    tracker = make_tracker(TrackingConfig(wandb=WandbConfig(project="leaksweep-test", tags=["test"])))
    assert tracker.mode == "offline"
    run_dir = tmp_path / "trial-00001"
    config = {
        "train": {"learning_rate": 0.003, "max_steps": 10},
        "judge": {"api_key": SECRET, "endpoint": f"https://judge.example/v1?key={SECRET}"},
        "note": SECRET,
        "key_column": "prompt_id",
    }
    started = time.perf_counter()
    run = tracker.start_run(name="sweep-t00001", group="sweep", config=config, tags=["patch"], run_dir=run_dir)
    start_s = time.perf_counter() - started
    assert run.run_id

    losses = [round(2.0 / (step + 1), 4) for step in range(10)]
    for step, loss in enumerate(losses):
        run.log({"train/loss": loss}, step=step)
    run.summary({"trait": {"date_confusion": {"score": 0.4, "low": 0.3}}, "trait/blackmail/score": 0.05})
    run.table(
        "samples", ["trait", "response", "value"], [["date_confusion", "It is 2024.", 1.0], ["blackmail", "No.", 0.0]]
    )
    (run_dir / "manifest.jsonl").write_text('{"prompt_id": "p1", "source": "teacher"}\n')
    run.artifact("manifest-abc123", "manifest", [run_dir / "manifest.jsonl"], {"n_rows": 1, "token": SECRET})
    started = time.perf_counter()
    run.finish()
    finish_s = time.perf_counter() - started
    print(f"offline run start {start_s:.2f} s, finish {finish_s:.3f} s")

    path = wandb_file(run_dir)
    assert path.name == f"run-{run.run_id}.wandb"
    summary = inspect_summary(path)
    assert summary["state"] == "finished" and summary["exit_code"] == 0
    assert summary["run_id"] == run.run_id and summary["project"] == "leaksweep-test"
    assert summary["tags"] == ["test", "patch"]
    assert summary["summary"]["trait/date_confusion/score"] == 0.4
    assert summary["summary"]["trait/date_confusion/low"] == 0.3
    assert summary["summary"]["trait/blackmail/score"] == 0.05
    assert summary["summary"]["train/loss"] == losses[-1]
    assert summary["summary"]["samples"]["_type"] == "table-file"
    assert summary["config"]["train"] == {"learning_rate": 0.003, "max_steps": 10}
    assert summary["config"]["judge"]["api_key"] == REDACTED
    assert summary["config"]["note"] == REDACTED
    assert summary["config"]["key_column"] == "prompt_id"

    records = inspect_records(path)
    history = {r["history"]["step"]["num"]: r["history"]["item"] for r in records if r["type"] == "history"}
    assert [history[step]["train/loss"] for step in range(10)] == losses
    # History rows hold flattened keys (samples._type, samples.path, ...); a table logged without a
    # step joins the latest row.
    assert history[9]["samples._type"] == "table-file"
    (run_record,) = [r["run"] for r in records if r["type"] == "run"]
    assert run_record["run_group"] == "sweep" and run_record["display_name"] == "sweep-t00001"
    artifacts = {r["artifact"]["name"]: r["artifact"] for r in records if r["type"] == "artifact"}
    manifest = artifacts["manifest-abc123"]
    assert manifest["type"] == "manifest"
    assert [c["path"] for c in manifest["manifest"]["contents"]] == ["manifest.jsonl"]
    assert REDACTED in json.dumps(manifest)  # the metadata's token
    assert any(r["type"] == "exit" for r in records)
    assert not any(r["type"] == "environment" for r in records)  # no argv, host or git capture

    # The secret is nowhere: not in the log, its debug logs, tables, or W&B's staging copies.
    for root in (run_dir, tmp_path / "wandb-home"):
        for file in (f for f in root.rglob("*") if f.is_file()):
            assert SECRET.encode() not in file.read_bytes(), file


@pytest.mark.integration
def test_sequential_runs_in_one_process(no_wandb_key, tmp_path):
    tracker = WandbTracker(WandbConfig(project="leaksweep-test", mode="offline"))
    first = tracker.start_run(name="a", group="g", config={"i": 1}, tags=[], run_dir=tmp_path / "a")
    first.log({"loss": 1.0}, step=0)
    first.finish()
    second = tracker.start_run(
        name="b", group="g", config={"i": 2}, tags=[], run_dir=tmp_path / "b", run_id="trial-00002"
    )
    second.log({"loss": 2.0}, step=0)
    second.finish(exit_code=1)
    second.finish(exit_code=1)  # a second finish is harmless

    assert first.run_id and second.run_id == "trial-00002" and first.run_id != second.run_id
    a, b = inspect_summary(wandb_file(tmp_path / "a")), inspect_summary(wandb_file(tmp_path / "b"))
    assert (a["run_id"], a["config"]["i"], a["exit_code"], a["summary"]["loss"]) == (first.run_id, 1, 0, 1.0)
    assert (b["run_id"], b["config"]["i"], b["exit_code"], b["summary"]["loss"]) == ("trial-00002", 2, 1, 2.0)


FALLBACK_SCRIPT = """
import json, sys, time
from pathlib import Path
from leaksweep.config import TrackingConfig
from leaksweep.tracking.protocol import make_tracker

tracker = make_tracker(TrackingConfig())
out = {"mode_before": tracker.mode, "runs": []}
run_id = sys.argv[2] if len(sys.argv) > 2 else None  # fixed: a summary run, a resumed trial's run
for name in ("first", "second"):
    started = time.perf_counter()
    run = tracker.start_run(
        name=name, group="g", config={}, tags=[], run_dir=Path(sys.argv[1]) / name, run_id=run_id
    )
    run.log({"loss": 0.5}, step=0)
    run.finish()
    out["runs"].append({"run_id": run.run_id, "seconds": time.perf_counter() - started})
out["mode_after"] = tracker.mode
print(json.dumps(out))
"""


@pytest.mark.integration
def test_auto_mode_falls_back_to_offline_when_the_server_is_unreachable(no_wandb_key, tmp_path):
    # A fresh process: wandb reads its WANDB_* variables once per process, so a base URL set
    # after another test's run would be ignored.
    fake_key = "k" * 40
    env = dict(os.environ, WANDB_API_KEY=fake_key, WANDB_BASE_URL="http://127.0.0.1:9", WANDB_INIT_TIMEOUT="3")
    done = subprocess.run(
        [sys.executable, "-c", FALLBACK_SCRIPT, str(tmp_path)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert (out["mode_before"], out["mode_after"]) == ("online", "offline")
    assert out["runs"][1]["seconds"] < 3, "after one failed online start, later runs go offline at once"
    for name, run in zip(("first", "second"), out["runs"]):
        summary = inspect_summary(wandb_file(tmp_path / name))
        assert summary["run_id"] == run["run_id"] and summary["summary"]["loss"] == 0.5
    assert fake_key not in done.stdout + done.stderr
    for file in (f for f in tmp_path.rglob("*") if f.is_file()):
        assert fake_key.encode() not in file.read_bytes(), file


# a parent that starts a wandb-core service (`wandb.setup()` exports WANDB_SERVICE) and runs the
# fallback script in a child, which then shares that service
SHARED_SERVICE_SCRIPT = """
import subprocess, sys, wandb
wandb.setup()
sys.exit(subprocess.run([sys.executable, "-c", sys.argv[1], *sys.argv[2:]]).returncode)
"""


@pytest.mark.integration
@pytest.mark.parametrize("shared_service", [False, True], ids=["own-service", "shared-service"])
def test_fallback_keeps_a_fixed_run_id(no_wandb_key, tmp_path, shared_service):
    # The failed online start held the id in wandb's service: the offline start with the same id was
    # refused ("run ID ... is in use"), which failed every summary run and resumed trial without a route.
    env = dict(os.environ, WANDB_API_KEY="k" * 40, WANDB_BASE_URL="http://127.0.0.1:9", WANDB_INIT_TIMEOUT="3")
    env.pop("WANDB_SERVICE", None)  # not this test process's service (an earlier in-process test's)
    parent = ["-c", SHARED_SERVICE_SCRIPT] if shared_service else ["-c"]
    done = subprocess.run(
        [sys.executable, *parent, FALLBACK_SCRIPT, str(tmp_path), "summary-s-1234abcd"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("{")))  # wandb prints too
    assert (out["mode_before"], out["mode_after"]) == ("online", "offline")
    assert [r["run_id"] for r in out["runs"]] == ["summary-s-1234abcd"] * 2
    for name in ("first", "second"):  # the fallback run, then the same id again (resumed), both offline
        summary = inspect_summary(wandb_file(tmp_path / name))
        assert (summary["run_id"], summary["state"], summary["summary"]["loss"]) == (
            "summary-s-1234abcd",
            "finished",
            0.5,
        )


# ---------------------------------------------------------------------------------------------
# unit: finding and uploading offline runs (`leaksweep sync`), with an injected uploader


def _offline_dir(root: Path, stamp: str, run_id: str, synced: bool = False) -> Path:
    d = root / "wandb" / f"offline-run-{stamp}-{run_id}"
    d.mkdir(parents=True)
    (d / f"run-{run_id}.wandb").write_bytes(b"records")
    if synced:
        (d / f"run-{run_id}.wandb.synced").write_text("")
    return d


def test_find_offline_runs_skips_synced_and_groups_resumed_runs(tmp_path):
    a = _offline_dir(tmp_path / "trials" / "00000", "20260101_000000", "aaa111")
    _offline_dir(tmp_path / "trials" / "00001", "20260101_000001", "bbb222", synced=True)
    later = _offline_dir(tmp_path / "summary", "20260101_000200", "summary-s-1234abcd")
    earlier = _offline_dir(tmp_path / "summary", "20260101_000100", "summary-s-1234abcd")
    (tmp_path / "trials" / "00002" / "wandb" / "offline-run-20260101_000003-ccc333").mkdir(
        parents=True
    )  # no .wandb yet
    (tmp_path / "trials" / "00003" / "wandb" / "debug.log").parent.mkdir(parents=True)
    runs, skipped = find_offline_runs(tmp_path)
    assert skipped == 1
    by_id = {r.run_id: r for r in runs}
    assert set(by_id) == {"aaa111", "summary-s-1234abcd", "ccc333"}
    assert by_id["aaa111"].dirs == (a,)
    assert by_id["summary-s-1234abcd"].dirs == (earlier, later), "a resumed run syncs oldest first, in one upload"


def test_sync_runs_uploads_in_parallel_and_reports_each_outcome(tmp_path):
    runs = [OfflineRun(f"r{i}", (tmp_path / f"r{i}",)) for i in range(5)]
    barrier = threading.Barrier(3, timeout=10)  # passes only if 3 uploads run at the same time
    active, peak, lock = [0], [0], threading.Lock()

    def upload(run: OfflineRun) -> tuple[bool, str]:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            if run.run_id in ("r0", "r1", "r2"):
                barrier.wait()
            if run.run_id == "r3":
                raise RuntimeError("connection reset")
            return run.run_id != "r4", "synced" if run.run_id != "r4" else "wandb sync exited with 1: 403"
        finally:
            with lock:
                active[0] -= 1

    seen = []
    outcomes = sync_offline_runs(
        runs, jobs=3, upload=upload, progress=lambda d, t, o: seen.append((d, t, o.run.run_id))
    )
    assert peak[0] == 3
    assert [o.run.run_id for o in outcomes] == ["r0", "r1", "r2", "r3", "r4"]  # the order of `runs`
    assert [o.ok for o in outcomes] == [True, True, True, False, False]
    assert outcomes[3].message == "RuntimeError: connection reset"
    assert "403" in outcomes[4].message
    assert [d for d, _, _ in seen] == [1, 2, 3, 4, 5] and {t for _, t, _ in seen} == {5}
    assert sorted(r for _, _, r in seen) == ["r0", "r1", "r2", "r3", "r4"]


def test_sync_runs_with_one_job_is_sequential_and_rejects_zero(tmp_path):
    order, active = [], [0]

    def upload(run):
        active[0] += 1
        assert active[0] == 1
        order.append(run.run_id)
        active[0] -= 1
        return True, "ok"

    runs = [OfflineRun(f"r{i}", ()) for i in range(3)]
    assert all(o.ok for o in sync_offline_runs(runs, jobs=1, upload=upload))
    assert order == ["r0", "r1", "r2"]
    with pytest.raises(UserError, match="--jobs 0"):
        sync_offline_runs(runs, jobs=0, upload=upload)


def test_require_api_key_refuses_without_a_key(no_wandb_key, monkeypatch):
    with pytest.raises(UserError) as err:
        require_api_key("leaksweep sync")
    message = str(err.value)
    assert "no W&B API key" in message and "WANDB_API_KEY" in message and "wandb login" in message
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    require_api_key("leaksweep sync")  # no error


def test_wandb_report_refuses_offline_or_without_a_key(no_wandb_key, monkeypatch):
    spec = {"title": "t", "blocks": []}
    with pytest.raises(UserError, match="no W&B API key.*leaksweep sync|WANDB_API_KEY"):
        create_wandb_report(spec, WandbConfig(project="p"))
    with pytest.raises(UserError, match="mode is 'offline'.*leaksweep sync"):
        create_wandb_report(spec, WandbConfig(project="p", mode="offline"))
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_MODE", "offline")
    with pytest.raises(UserError, match="WANDB_MODE"):
        create_wandb_report(spec, WandbConfig(project="p"))


def test_build_wandb_report_turns_a_spec_into_report_blocks():
    import wandb_workspaces.reports.v2 as wr

    spec = {
        "title": "leaksweep: s",
        "description": "d",
        "blocks": [
            {"kind": "h1", "text": "Study s"},
            {"kind": "markdown", "text": "- Sufficient: ..."},
            {
                "kind": "panels",
                "name": "s trials",
                "group": "s",
                "job_type": "trial",
                "panels": [
                    {"kind": "bar", "title": "trait", "metrics": ["trait/date_confusion/score"]},
                    {"kind": "line", "title": "loss", "x": "Step", "y": ["train/loss"]},
                    {"kind": "compare"},
                ],
            },
            {
                "kind": "panels",
                "name": "s summary",
                "group": "s",
                "job_type": "summary",
                "panels": [
                    {"kind": "table", "table": "leak_map"},
                    {"kind": "scalar", "title": "spent", "metric": "trials_spent"},
                ],
            },
        ],
    }
    report = build_wandb_report(spec, "ent", "proj")
    assert (report.entity, report.project, report.title) == ("ent", "proj", "leaksweep: s")
    h1, md, trials, summary = report.blocks
    assert isinstance(h1, wr.H1) and isinstance(md, wr.MarkdownBlock)
    (runset,) = trials.runsets
    assert (runset.entity, runset.project) == ("ent", "proj")
    # what the W&B server receives: run.group == "s" AND run.jobType == "trial"
    from wandb_workspaces import expr

    v2 = expr.filters_tree_to_v2(expr.expr_to_filters(runset.filters))["filters"]
    assert [(f["key"], f["op"], f["value"]) for f in v2] == [
        ({"section": "run", "name": "group"}, "=", "s"),
        ({"section": "run", "name": "jobType"}, "=", "trial"),
    ]
    assert [type(p).__name__ for p in trials.panels] == ["BarPlot", "LinePlot", "RunComparer"]
    assert trials.panels[0].metrics[0].name == "trait/date_confusion/score"
    assert trials.panels[1].y == ["train/loss"]
    assert summary.runsets[0].filters.endswith("== 'summary'")
    assert summary.panels[0].table_name == "leak_map"
    with pytest.raises(ValueError, match="unknown panel kind"):
        build_wandb_report({"title": "t", "blocks": [{**spec["blocks"][2], "panels": [{"kind": "pie"}]}]}, "e", "p")
