"""A real `kill -9` of a real worker process between writing result.json and telling the study (issue 13).

The rule: a trial whose result.json exists is told COMPLETE from it, never rerun, and counted once.
test_study_state.py checks it in-process (tell_complete replaced by a raise); here a real process is
stopped at exactly that point with no hook in leaksweep's code. The test holds the journal's own
append lock (the flock study/storage.py takes around every journal write), so the worker's tell
blocks on it; trial GATE_TRIAL's runner (tests/support/gated_runner.py) waits until the test holds
the lock. Once the trial's result.json exists and the kernel lists the worker as waiting on that
lock (/proc/locks), the test sends SIGKILL to the worker's process group, releases the lock and
recovers as a user would: `leaksweep status`, `leaksweep reclaim`, `leaksweep sweep` again, and
`leaksweep report`. The trials use the simulated runner (no training).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.sweeps import sr_sweep, write_sweep

from leaksweep.layout import SweepDir
from leaksweep.report.view import complete_trials, duplicate_trials
from leaksweep.study import heartbeat, locks, storage
from leaksweep.study.experiment import collect_runs
from leaksweep.study.prepare import load_sweep_dir

SUPPORT = Path(__file__).resolve().parents[1] / "support"  # gated_runner.py, importable by the workers
GATED = 2  # the trial killed between its result.json and its tell
CLI = [sys.executable, "-m", "leaksweep.cli"]

pytestmark = pytest.mark.integration  # real worker processes


def _env(gate: Path) -> dict:
    path = os.pathsep.join([str(SUPPORT), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "GATE_DIR": str(gate), "GATE_TRIAL": str(GATED)}


def _sweep_file(tmp_path: Path, **search) -> tuple[Path, Path]:
    raw = sr_sweep("killed", tmp_path / "sweep", wandb=None, heartbeat_s=0.2, stale_after_s=1.0, **search)
    raw["search"]["runner"] = "gated_runner:run"
    return write_sweep(tmp_path, raw), tmp_path / "sweep"


def _cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    done = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"leaksweep {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


def _wait_for(predicate, what: str, proc: subprocess.Popen, log: Path, timeout_s: float = 20.0) -> None:
    deadline = time.time() + timeout_s
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"the worker exited ({proc.returncode}) before {what}:\n{log.read_text()}")
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()}")
        time.sleep(0.02)


def _blocked_on(lock_file: Path, pid: int) -> bool:
    """True when the kernel lists `pid` as waiting for the flock on `lock_file` ("->" lines of /proc/locks)."""
    inode = os.stat(lock_file).st_ino
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if len(fields) > 6 and fields[1] == "->" and fields[2] == "FLOCK":
            if int(fields[5]) == pid and int(fields[6].rsplit(":", 1)[1]) == inode:
                return True
    return False


def _gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def kill_between_result_and_tell(cmd: list[str], env: dict, sweep_dir: Path, tmp_path: Path) -> tuple[bytes, int]:
    """Run `cmd` (a worker, or a sweep that runs its worker in-process) in its own process group, SIGKILL
    the group once trial GATED's result.json is written and its tell waits on the journal lock; return
    the result.json's bytes and mtime (ns)."""
    gate = Path(env["GATE_DIR"])
    gate.mkdir(exist_ok=True)
    log = tmp_path / "killed.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for(lambda: (gate / "waiting").exists(), f"trial {GATED} to start", proc, log)
        folder = SweepDir(sweep_dir)
        assert folder.folder_lock().kind == "flock"  # the journal's append lock is a flock on JOURNAL.flock
        journal_lock = Path(f"{folder.journal}.flock")
        result = folder.trial(GATED).result
        with locks.flock_lock(journal_lock):  # every journal append (ask, tell, set_user_attr) waits now
            (gate / "open").touch()
            _wait_for(result.exists, f"trial {GATED}'s result.json", proc, log)
            _wait_for(lambda: _blocked_on(journal_lock, proc.pid), "the tell to wait on the journal lock", proc, log)
            os.killpg(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=10) == -signal.SIGKILL
        # the lock is released: nothing is left to take it
        assert _gone(proc.pid), "a process of the killed worker's group is still alive"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    return result.read_bytes(), result.stat().st_mtime_ns


def _check_counted_once(sweep_dir: Path, planned: int, stamp: tuple[bytes, int]) -> storage.Study:
    """Trial GATED COMPLETE with its result.json's values, that file untouched, the plan run once."""
    folder = SweepDir(sweep_dir)
    cfg = load_sweep_dir(sweep_dir)
    study = storage.load_study(sweep_dir, cfg)
    records = storage.trials(study)
    assert [t.state for t in records] == ["COMPLETE"] * planned  # no retry of the killed trial
    written = folder.trial(GATED).read_result()
    assert records[GATED].values == tuple(written.objectives)
    result = folder.trial(GATED).result
    assert (result.read_bytes(), result.stat().st_mtime_ns) == stamp  # not rerun
    assert not (folder.trial(GATED).path / "error.json").exists()
    keys = [r.run_key() for r in folder.read_results()]
    assert len(keys) == len(set(keys)) == planned
    assert duplicate_trials(folder) == [] and len(complete_trials(folder)) == planned
    return study


def test_a_sweep_killed_before_telling_a_written_result_resumes_without_rerunning_it(tmp_path):
    """patch_insert (3 conditions x 2 seeds) with `leaksweep sweep`, whose worker runs in its own process."""
    sweep_file, sweep_dir = _sweep_file(tmp_path, mode="patch_insert", subsets=["S"], seeds=2)
    env = _env(tmp_path / "gate")
    sweep = [*CLI, "sweep", str(sweep_file), "--no-wandb", "--no-report"]
    stamp = kill_between_result_and_tell(sweep, env, sweep_dir, tmp_path)

    info = json.loads(_cli("status", str(sweep_dir), "--json", env=env).stdout)
    assert info["states"] == {"COMPLETE": 2, "RUNNING": 1, "WAITING": 3}

    rerun = _cli("sweep", str(sweep_file), "--no-wandb", "--no-report", env=env)
    assert f"trial {GATED} reclaimed" in rerun.stderr and "told COMPLETE" in rerun.stderr
    study = _check_counted_once(sweep_dir, 6, stamp)
    runs = collect_runs(study, sweep_dir)
    assert len({(r.condition.key(), r.seed) for r in runs}) == len(runs) == 6
    analysis = json.loads(SweepDir(sweep_dir).analysis.read_text())
    assert "duplicates_set_aside" not in analysis

    _cli("report", str(sweep_dir), "--no-wandb", env=env)
    page = (sweep_dir / "report.html").read_text()
    assert "Set aside as duplicates" not in page


def test_a_worker_killed_before_telling_a_written_result_is_reclaimed_complete(tmp_path):
    """An optuna grid (3 points x 2 seeds) with `leaksweep worker`; `leaksweep reclaim`, then the sweep again."""
    grid = {"sampler": "grid", "baselines": False, "fractions": {"S": [0.0, 0.5, 1.0]}}
    sweep_file, sweep_dir = _sweep_file(tmp_path, **grid, objectives=[{"trait": "date_confusion"}])
    env = _env(tmp_path / "gate")
    _cli("prepare", str(sweep_file), env=env)
    stamp = kill_between_result_and_tell([*CLI, "worker", str(sweep_dir), "--no-wandb"], env, sweep_dir, tmp_path)

    journal = SweepDir(sweep_dir).journal.read_bytes()
    info = json.loads(_cli("status", str(sweep_dir), "--json", env=env).stdout)
    assert info["states"] == {"COMPLETE": 2, "RUNNING": 1, "WAITING": 3}
    assert SweepDir(sweep_dir).journal.read_bytes() == journal  # status is read-only

    cfg = load_sweep_dir(sweep_dir)
    beat = heartbeat.read_beat(SweepDir(sweep_dir).trial(GATED).path)  # its last, from before the kill
    while beat.age_s(time.time()) <= cfg.search.stale_after_s:  # stale once it is 1 s old
        time.sleep(0.1)
    reclaimed = _cli("reclaim", str(sweep_dir), env=env).stdout
    assert f"trial {GATED}: " in reclaimed and "its result.json exists: told COMPLETE, not rerun" in reclaimed
    assert "reclaimed 1 stale trial(s)" in reclaimed
    study = storage.load_study(sweep_dir, cfg)
    assert storage.trials(study)[GATED].state == "COMPLETE"

    _cli("sweep", str(sweep_file), "--no-wandb", "--no-report", env=env)
    _check_counted_once(sweep_dir, 6, stamp)
    _cli("report", str(sweep_dir), "--no-wandb", env=env)
    assert "Set aside as duplicates" not in (sweep_dir / "report.html").read_text()
