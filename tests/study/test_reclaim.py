"""Stale-trial reclaim: per-trial heartbeat files (journal storage), `leaksweep reclaim`, a worker
killed with -9 mid-trial, and many concurrent workers on one study (journal file and PostgreSQL).

The trials use the simulated runner (leaksweep.simulate) wrapped by tests/support/slow_runner.py, which
only adds a delay so that a trial is long enough to be killed in the middle."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from leaksweep.layout import SweepDir, TrialDir
from leaksweep.study import heartbeat, storage
from leaksweep.study.prepare import load_sweep_dir, prepare
from leaksweep.study.reclaim import reclaim_stale
from leaksweep.study.worker import beating, run_worker, tell_complete
from leaksweep.sweepfile import sweep_from_dict
from leaksweep.tracking.protocol import make_tracker

TESTS = Path(__file__).resolve().parents[1] / "support"  # slow_runner.py, importable by worker processes


def sweep_config(out: Path, n_trials: int, **search) -> dict:
    return {
        "name": "reclaim-check",
        "data": {"world": {"seed": 0, "n_prompts": 200}},
        "subsets": {"S": {"metadata": {"category": "date"}}},
        "base": "clean",
        "search": {
            "teacher": "teacher",
            "sampler": "random",
            "n_trials": n_trials,
            "baselines": False,
            "fractions": {"S": {"low": 0.0, "high": 1.0}},
            "objectives": [{"trait": "date_confusion", "direction": "maximize"}],
            "runner": "slow_runner:run",
            "simulation": {"n_prompts": 50, "samples_per_prompt": 2, "subsets": {"S": {"n_units": 16}}},
            "heartbeat_s": 0.2,
            "stale_after_s": 1.0,
            **search,
        },
        "traits": {"date_confusion": {}},
        "tracking": {"wandb": None},
        "output_dir": str(out),
    }


@pytest.fixture(autouse=True)
def _slow_runner_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("SLOW_RUNNER_S", "0")


def prepared(tmp_path: Path, n_trials: int, **search):
    cfg = sweep_from_dict(sweep_config(tmp_path / "sweep", n_trials, **search), "test")
    sweep_dir = prepare(cfg)
    return sweep_dir, load_sweep_dir(sweep_dir)


def ask_and_abandon(sweep_dir: Path, cfg) -> optuna.trial.FrozenTrial:
    """What a worker killed mid-trial leaves: a RUNNING trial with params and a heartbeat that stops."""
    study = storage.load_study(sweep_dir, cfg)
    trial = study.ask()
    trial.suggest_float("frac.S", 0.0, 1.0)
    trial.set_user_attr("condition", "mixture")
    heartbeat.write_beat(SweepDir(sweep_dir).trial(trial.number).path, cfg.search.heartbeat_s)
    return study.trials[trial.number]


def states(sweep_dir: Path, cfg) -> list[str]:
    return [t.state.name for t in storage.load_study(sweep_dir, cfg).get_trials(deepcopy=False)]


def test_the_heartbeat_thread_keeps_beating_until_exit_and_survives_a_failing_extra(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "42")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    calls = []

    def extra():
        calls.append(1)
        if len(calls) == 2:
            raise ConnectionError("database restarting")  # one failed beat must not stop the thread

    with heartbeat.Heartbeat(tmp_path, 0.05, extra):
        first = heartbeat.read_beat(tmp_path)
        time.sleep(0.4)
        later = heartbeat.read_beat(tmp_path)
    assert later.beat_at > first.beat_at and len(calls) >= 4
    assert (later.pid, later.state, later.slurm_job) == (os.getpid(), "running", "42_3")
    stopped = heartbeat.read_beat(tmp_path)
    time.sleep(0.2)
    assert heartbeat.read_beat(tmp_path) == stopped  # no beats after exit


def test_a_fresh_heartbeat_is_not_reclaimed_and_a_stale_one_is_retried_with_its_params(tmp_path):
    sweep_dir, cfg = prepared(tmp_path, 3)
    dead = ask_and_abandon(sweep_dir, cfg)
    study = storage.load_study(sweep_dir, cfg)
    assert reclaim_stale(study, cfg, sweep_dir) == []  # beat just now
    assert states(sweep_dir, cfg) == ["RUNNING"]

    found = reclaim_stale(study, cfg, sweep_dir, now=time.time() + 5)
    assert [(r["trial"], r["retried"]) for r in found] == [(0, True)]
    assert "no heartbeat for" in found[0]["reason"] and str(os.getpid()) in found[0]["reason"]
    trials = study.get_trials(deepcopy=False)
    assert [t.state.name for t in trials] == ["FAIL", "WAITING"]
    assert trials[1].params == dead.params and trials[1].user_attrs["condition"] == "mixture"
    error = json.loads((SweepDir(sweep_dir).trial(0).path / "error.json").read_text())["error"]
    assert error.startswith("reclaimed: no heartbeat")
    # a second reclaimer finds nothing more to do: a trial is never re-enqueued twice
    assert reclaim_stale(study, cfg, sweep_dir, now=time.time() + 5) == []

    # a worker runs the retry and the budget: 3 complete trials, the retry among them with the same params
    done = run_worker(sweep_dir, make_tracker(cfg.tracking, enabled=False))
    assert done == 3
    final = storage.load_study(sweep_dir, cfg).get_trials(deepcopy=False)
    assert [t.state.name for t in final] == ["FAIL", "COMPLETE", "COMPLETE", "COMPLETE"]
    assert final[1].params == dead.params
    assert sorted(p.parent.name for p in (sweep_dir / "trials").glob("*/result.json")) == ["00001", "00002", "00003"]


def test_a_trial_with_no_heartbeat_file_is_stale_from_its_start(tmp_path):
    sweep_dir, cfg = prepared(tmp_path, 1)
    study = storage.load_study(sweep_dir, cfg)
    study.ask().suggest_float("frac.S", 0.0, 1.0)  # killed before its first beat
    assert reclaim_stale(study, cfg, sweep_dir) == []
    found = reclaim_stale(study, cfg, sweep_dir, now=time.time() + 5)
    assert "never sent a heartbeat" in found[0]["reason"]


def test_preempted_trials_are_left_to_their_requeued_job_unless_asked(tmp_path):
    sweep_dir, cfg = prepared(tmp_path, 1)
    ask_and_abandon(sweep_dir, cfg)
    heartbeat.mark_preempted(SweepDir(sweep_dir).trial(0).path, cfg.search.heartbeat_s)
    study = storage.load_study(sweep_dir, cfg)
    assert reclaim_stale(study, cfg, sweep_dir, now=time.time() + 3600) == []
    found = reclaim_stale(study, cfg, sweep_dir, now=time.time() + 3600, include_preempted=True)
    assert [r["trial"] for r in found] == [0] and "preempted" in found[0]["reason"]


def test_the_reclaim_command_reports_what_it_reclaimed(tmp_path):
    from click.testing import CliRunner

    from leaksweep.cli import cli

    sweep_dir, cfg = prepared(tmp_path, 2)
    ask_and_abandon(sweep_dir, cfg)
    beat_file = SweepDir(sweep_dir).trial(0).path / TrialDir.HEARTBEAT
    raw = json.loads(beat_file.read_text())
    beat_file.write_text(json.dumps({**raw, "beat_at": raw["beat_at"] - 30, "state": "preempted", "slurm_job": "7_1"}))
    out = CliRunner().invoke(cli, ["reclaim", str(sweep_dir)])
    assert out.exit_code == 0 and "reclaimed 0 stale trial(s)" in out.output  # preempted: its job resumes it
    out = CliRunner().invoke(cli, ["reclaim", str(sweep_dir), "--preempted"])
    assert out.exit_code == 0, out.output
    assert "trial 0: preempted (job 7_1) 30 s ago and not resumed" in out.output and "re-enqueued" in out.output
    assert states(sweep_dir, cfg) == ["FAIL", "WAITING"]


def test_retries_stop_after_max_retries(tmp_path):
    sweep_dir, cfg = prepared(tmp_path, 1, max_retries=1)
    study = storage.load_study(sweep_dir, cfg)
    ask_and_abandon(sweep_dir, cfg)
    first = reclaim_stale(study, cfg, sweep_dir, now=time.time() + 5)
    retry = study.ask()  # the retry (trial 1) dies too
    heartbeat.write_beat(SweepDir(sweep_dir).trial(retry.number).path, cfg.search.heartbeat_s)
    second = reclaim_stale(study, cfg, sweep_dir, now=time.time() + 5)
    assert [r["retried"] for r in first + second] == [True, False]
    assert [t.state.name for t in study.get_trials(deepcopy=False)] == ["FAIL", "FAIL"]
    assert "already ran 2 times (search.max_retries=1)" in (SweepDir(sweep_dir).trial(1) / "error.json").read_text()


def test_a_late_result_of_a_reclaimed_trial_is_not_counted(tmp_path):
    sweep_dir, cfg = prepared(tmp_path, 1)
    study = storage.load_study(sweep_dir, cfg)
    trial = study.ask()
    trial.suggest_float("frac.S", 0.0, 1.0)
    directory = SweepDir(sweep_dir).trial(trial.number).path
    heartbeat.write_beat(directory, cfg.search.heartbeat_s)
    reclaim_stale(study, cfg, sweep_dir, now=time.time() + 5)
    (directory / "result.json").write_text("{}")  # the stopped worker wakes up and finishes
    assert tell_complete(study, trial, [0.5], directory) is False
    assert not (directory / "result.json").exists() and (directory / "result.reclaimed.json").exists()


def test_config_rejects_a_grace_period_shorter_than_three_beats(tmp_path):
    from leaksweep.errors import UserError

    with pytest.raises(UserError, match=r"stale_after_s: 1.0 must be at least 3 x heartbeat_s"):
        sweep_from_dict(sweep_config(tmp_path, 1, heartbeat_s=0.5, stale_after_s=1.0), "sweeps/x.yaml")


# --- real worker processes ------------------------------------------------------------------------


def start_worker(sweep_dir: Path, log: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "leaksweep.cli", "worker", str(sweep_dir), "--no-wandb"],
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        env=env,
    )


def write_sweep(tmp_path: Path, n_trials: int, **search) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep_config(tmp_path / "sweep", n_trials, **search)))
    return path


def count_results(sweep_dir: Path, cfg) -> dict:
    trials = storage.load_study(sweep_dir, cfg).get_trials(deepcopy=False)
    numbers = [t.number for t in trials]
    results = sorted(int(p.parent.name) for p in (sweep_dir / "trials").glob("*/result.json"))
    complete = sorted(t.number for t in trials if t.state.name == "COMPLETE")
    return {
        "trials": len(trials),
        "unique_numbers": len(set(numbers)),
        "complete": complete,
        "results": results,
        "states": sorted({t.state.name for t in trials}),
    }


@pytest.mark.integration
def test_a_worker_killed_with_sigkill_mid_trial_is_reclaimed_by_another(tmp_path):
    sweep_file = write_sweep(tmp_path, 4, heartbeat_s=0.5, stale_after_s=3.0)
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, leaksweep.study.prepare as s, leaksweep.cli as c;s.prepare(c._load(sys.argv[1]))",
            str(sweep_file),
        ],
        check=True,
    )
    sweep_dir = tmp_path / "sweep"
    env = {**os.environ, "SLOW_RUNNER_S": "2.0", "OMP_NUM_THREADS": "1"}
    victim = start_worker(sweep_dir, tmp_path / "victim.log", env)
    beat_file = SweepDir(sweep_dir).trial(0).path / TrialDir.HEARTBEAT
    deadline = time.time() + 60
    while not beat_file.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert beat_file.exists(), (tmp_path / "victim.log").read_text()
    survivor = start_worker(sweep_dir, tmp_path / "survivor.log", env)
    time.sleep(0.5)  # mid-trial: the runner sleeps 2 s
    assert heartbeat.read_beat(beat_file.parent).pid == victim.pid
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert survivor.wait(timeout=90) == 0, (tmp_path / "survivor.log").read_text()

    cfg = load_sweep_dir(sweep_dir)
    counts = count_results(sweep_dir, cfg)
    study = storage.load_study(sweep_dir, cfg)
    trials = study.get_trials(deepcopy=False)
    assert trials[0].state.name == "FAIL"
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE" and retry[0].params == trials[0].params
    assert len(counts["complete"]) == 4 and counts["complete"] == counts["results"]  # nothing lost or duplicated
    assert "trial 0 reclaimed" in (tmp_path / "survivor.log").read_text()
    # the CLI finds nothing left to reclaim
    out = subprocess.run(
        [sys.executable, "-m", "leaksweep.cli", "reclaim", str(sweep_dir)], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0 and "reclaimed 0 stale trial(s)" in out.stdout, out.stderr


def run_many_workers(tmp_path: Path, n_workers: int, n_trials: int, **search) -> dict:
    # a grace period that 8 busy processes on 2 cores never exceed: this test is about concurrency, not reclaim
    sweep_file = write_sweep(tmp_path, n_trials, **{"heartbeat_s": 1.0, "stale_after_s": 60.0, **search})
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, leaksweep.study.prepare as s, leaksweep.cli as c;s.prepare(c._load(sys.argv[1]))",
            str(sweep_file),
        ],
        check=True,
    )
    sweep_dir = tmp_path / "sweep"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    started = time.time()
    procs = [start_worker(sweep_dir, tmp_path / f"w{i}.log", env) for i in range(n_workers)]
    codes = [p.wait(timeout=600) for p in procs]
    elapsed_s = time.time() - started
    assert codes == [0] * n_workers, [(tmp_path / f"w{i}.log").read_text()[-2000:] for i in range(n_workers)]
    cfg = load_sweep_dir(sweep_dir)
    counts = count_results(sweep_dir, cfg)
    per_worker = [
        int((tmp_path / f"w{i}.log").read_text().rsplit("worker finished ", 1)[1].split()[0]) for i in range(n_workers)
    ]
    print(
        f"{n_workers} workers x {n_trials} trials: {elapsed_s:.1f} s; trials {counts['trials']}, "
        f"complete {len(counts['complete'])}, result files {len(counts['results'])}, per worker {per_worker}"
    )
    assert counts["unique_numbers"] == counts["trials"] == n_trials  # zero duplicate trial numbers
    assert counts["complete"] == counts["results"] == list(range(n_trials))  # zero lost results
    assert sum(per_worker) == n_trials
    return counts


@pytest.mark.integration
def test_eight_workers_two_hundred_trials_on_the_journal_file(tmp_path):
    run_many_workers(tmp_path, 8, 200)


@pytest.mark.integration
def test_eight_workers_two_hundred_trials_on_postgresql(tmp_path, postgres_cluster):
    run_many_workers(tmp_path, 8, 200, storage=postgres_cluster.new_database("concurrency"))
    # a study in PostgreSQL locks in the database: the sweep folder's file system needs no lock
    assert SweepDir(tmp_path / "sweep").folder_lock().kind == "database"


@pytest.mark.integration
def test_the_database_lock_excludes_another_process(tmp_path, postgres_cluster):
    from leaksweep.study.storage import advisory_lock

    url = postgres_cluster.new_database("locks")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom leaksweep.study.storage import advisory_lock\n"
         "with advisory_lock(sys.argv[1], 'study/.ask.lock'):\n    print('held', flush=True); time.sleep(3)\n"
         "print('released', flush=True)\n", url],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    started = time.monotonic()
    with advisory_lock(url, "study/.ask.lock"):
        waited_s = time.monotonic() - started
    assert waited_s > 1.0  # blocked while the other process held the lock (3 s)
    out, _ = holder.communicate(timeout=60)
    assert holder.returncode == 0 and out.strip() == "released"
    with advisory_lock(url, "another/.ask.lock"):  # another study's lock is another key: no wait
        pass


@pytest.mark.integration
@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")  # our bare ask
def test_a_worker_killed_with_sigkill_is_reclaimed_through_optunas_heartbeat_on_postgresql(tmp_path, postgres_cluster):
    """RDB storage: Optuna's heartbeat table decides staleness; the retry is Optuna's callback."""
    import sqlalchemy

    url = postgres_cluster.new_database("killed")
    sweep_dir, cfg = prepared(tmp_path, 2, storage=url, heartbeat_s=1.0, stale_after_s=3.0)
    study = storage.load_study(sweep_dir, cfg)
    trial = study.ask()
    trial.suggest_float("frac.S", 0.0, 1.0)
    with beating(study, trial, SweepDir(sweep_dir).trial(trial.number).path, cfg):
        pass  # beat once into Optuna's heartbeat table, then "die"
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as conn:
        beats = conn.execute(sqlalchemy.text("SELECT count(*) FROM trial_heartbeats")).scalar()
    engine.dispose()
    assert beats == 1
    assert reclaim_stale(study, cfg, sweep_dir) == []
    time.sleep(4.0)  # Optuna compares its grace period with the database server's clock
    found = reclaim_stale(study, cfg, sweep_dir)
    assert [(r["trial"], r["retried"]) for r in found] == [(0, True)] and "Optuna heartbeat" in found[0]["reason"]
    assert run_worker(sweep_dir, make_tracker(cfg.tracking, enabled=False)) == 2
    final = storage.load_study(sweep_dir, cfg).get_trials(deepcopy=False)
    assert [t.state.name for t in final] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert final[1].params == trial.params
