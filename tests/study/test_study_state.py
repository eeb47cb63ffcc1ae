"""Study state under faults (issue 13): the trial folders are the source of truth, each trial counts once.

A damaged, emptied or deleted journal is detected before anything is appended and `leaksweep repair`
rebuilds the study from the trial folders; a trial whose result.json exists is told COMPLETE, never
rerun; read-only commands write nothing. The trials use the simulated runner (no training).
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
import yaml
from support.sweeps import sr_sweep

from leaksweep.errors import UserError
from leaksweep.layout import SweepDir
from leaksweep.report.page import write_report
from leaksweep.report.view import complete_trials
from leaksweep.study import heartbeat, storage
from leaksweep.study.experiment import collect_runs, run_experiment
from leaksweep.study.prepare import load_sweep_dir, prepare
from leaksweep.study.reclaim import reclaim_stale
from leaksweep.study.repair import repair
from leaksweep.study.status import status, study_summary
from leaksweep.study.worker import run_worker
from leaksweep.sweepfile import sweep_from_dict
from leaksweep.tracking.protocol import make_tracker

GRID = {"S": [0.0, 0.2, 0.4, 0.6, 0.8, 1.0], "R": [0.0, 1.0]}  # 12 points x 2 seeds = 24 trials


def grid_sweep(tmp_path: Path):
    raw = sr_sweep(
        "state",
        tmp_path / "sweep",
        wandb=None,
        sampler="grid",
        baselines=False,
        fractions=GRID,
        objectives=[{"trait": "date_confusion", "direction": "maximize"}],
    )
    cfg = sweep_from_dict(raw, "test")
    return prepare(cfg), cfg


def work(sweep_dir: Path, max_trials: int | None = None) -> int:
    return run_worker(sweep_dir, make_tracker(load_sweep_dir(sweep_dir).tracking, enabled=False), max_trials)


def complete_view(sweep_dir: Path) -> dict[int, tuple]:
    """{trial number: (params, values)} of the study's complete trials."""
    study = storage.load_study(sweep_dir, load_sweep_dir(sweep_dir))
    return {t.number: (t.params, t.values) for t in storage.trials(study, "COMPLETE")}


def result_stamps(sweep_dir: Path) -> dict[str, int]:
    return {t.name: t.result.stat().st_mtime_ns for t in SweepDir(sweep_dir).complete()}


def _truncate(journal: Path) -> None:
    data = journal.read_bytes()
    journal.write_bytes(data[:-40])  # truncate -s -40: what a crash or a full disk leaves


def _garble(journal: Path) -> None:
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[len(lines) // 2] = b'{"op_code": 5, "worker_id": \x00\x00\n'
    journal.write_bytes(b"".join(lines))


def _empty(journal: Path) -> None:
    journal.write_bytes(b"")


def _delete(journal: Path) -> None:
    journal.unlink()


@pytest.mark.parametrize(
    "damage", [_truncate, _garble, _empty, _delete], ids=["truncated", "garbled", "emptied", "deleted"]
)
def test_a_damaged_journal_is_detected_and_repair_rebuilds_the_study_from_the_trial_folders(tmp_path, damage):
    sweep_dir, cfg = grid_sweep(tmp_path)
    assert work(sweep_dir, max_trials=6) == 6
    before = complete_view(sweep_dir)
    stamps = result_stamps(sweep_dir)
    journal = SweepDir(sweep_dir).journal
    damage(journal)
    damaged = journal.read_bytes() if journal.exists() else None
    for command in (lambda: status(sweep_dir), lambda: work(sweep_dir), lambda: prepare(cfg)):
        with pytest.raises(UserError, match=rf"leaksweep repair {sweep_dir}"):
            command()
    assert (journal.read_bytes() if journal.exists() else None) == damaged  # nothing appended, nothing created

    done = repair(sweep_dir)
    assert (done["complete"], done["missing"], done["requeued_running"]) == (6, [], [])
    if damaged is not None:
        assert Path(done["kept"]).read_bytes() == damaged and ".damaged-" in done["kept"]
    assert complete_view(sweep_dir) == before  # same trial numbers, params and values
    info = status(sweep_dir)
    assert info["states"] == {"COMPLETE": 6, "WAITING": 18} and info["best"] is not None
    summary = study_summary(sweep_dir)
    assert summary["n_complete"] == 6 and all(t["params"] for t in summary["trials"])

    # the rerun runs only what was not complete, and every trial number is its folder's number
    assert work(sweep_dir) == 18
    assert {k: v for k, v in result_stamps(sweep_dir).items() if k in stamps} == stamps  # nothing rerun
    final = complete_view(sweep_dir)
    assert sorted(final) == list(range(24)) and len(SweepDir(sweep_dir).complete()) == 24
    for number, (params, _) in final.items():
        spec = json.loads((SweepDir(sweep_dir).trial(number).spec).read_text())
        assert spec["trial"] == number and spec["params"] == params


def test_repair_fails_and_requeues_a_running_trial_and_names_a_missing_number(tmp_path):
    sweep_dir, cfg = grid_sweep(tmp_path)
    work(sweep_dir, max_trials=4)
    folder = SweepDir(sweep_dir)
    folder.trial(2).result.unlink()  # trial 2 was running when the journal broke
    for f in folder.trial(1).path.iterdir():  # trial 1's folder is gone
        f.unlink()
    folder.trial(1).path.rmdir()
    _truncate(folder.journal)
    done = repair(sweep_dir)
    assert (done["complete"], done["missing"], done["requeued_running"]) == (2, [1], [2])
    study = storage.load_study(sweep_dir, cfg)
    records = storage.trials(study)
    assert [t.state for t in records[:4]] == ["COMPLETE", "FAIL", "FAIL", "COMPLETE"]
    # waiting: trial 2's retry, and the 21 planned points no folder holds (trial 1's among them)
    assert len(storage.trials(study, "WAITING")) == 22
    with pytest.raises(UserError, match="nothing to repair"):  # a whole journal is refused
        repair(sweep_dir)
    assert work(sweep_dir) == 22
    done = storage.trials(storage.load_study(sweep_dir, cfg), "COMPLETE")
    assert len({json.dumps([t.params, t.user_attrs["seed"]], sort_keys=True) for t in done}) == len(done) == 24


def test_the_repair_command_prints_what_it_did(tmp_path):
    sweep_dir, _ = grid_sweep(tmp_path)
    work(sweep_dir, max_trials=2)
    _empty(SweepDir(sweep_dir).journal)
    out = subprocess.run(
        [sys.executable, "-m", "leaksweep.cli", "status", str(sweep_dir)], capture_output=True, text=True
    )
    assert out.returncode == 2 and "the Optuna journal is empty" in out.stderr and "leaksweep repair" in out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "leaksweep.cli", "repair", str(sweep_dir)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "2 complete" in out.stdout and "22 planned trial(s) had not started" in out.stdout


# --- read-only commands -------------------------------------------------------------------------------


def test_status_and_dashboard_on_a_folder_without_a_journal_create_nothing(tmp_path):
    sweep_dir, _ = grid_sweep(tmp_path)
    folder = SweepDir(sweep_dir)
    folder.journal.unlink()  # prepared, then the journal went (no trial ran yet)
    before = sorted(str(p) for p in sweep_dir.rglob("*"))
    with pytest.raises(UserError, match="no Optuna study yet"):
        status(sweep_dir)
    from leaksweep.study.dashboard import serve_dashboard

    with pytest.raises(UserError, match="no Optuna study yet"):
        serve_dashboard(sweep_dir, port=0)
    with pytest.raises(UserError):
        study_summary(sweep_dir)
    assert sorted(str(p) for p in sweep_dir.rglob("*")) == before


# --- exactly once -------------------------------------------------------------------------------------


class Killed(BaseException):
    """kill -9 between writing result.json and telling the study."""


def test_a_trial_whose_worker_died_after_its_result_is_told_complete_and_never_rerun(tmp_path, monkeypatch):
    sweep_dir, cfg = grid_sweep(tmp_path)
    assert work(sweep_dir, max_trials=4) == 4

    def die(*args):
        raise Killed

    monkeypatch.setattr("leaksweep.study.worker.tell_complete", die)
    with pytest.raises(Killed):
        work(sweep_dir, max_trials=1)
    monkeypatch.undo()
    folder = SweepDir(sweep_dir)
    assert folder.trial(4).is_complete()
    study = storage.load_study(sweep_dir, cfg)
    assert storage.trials(study)[4].state == "RUNNING"
    written = folder.trial(4).result.stat().st_mtime_ns

    found = reclaim_stale(study, cfg, sweep_dir, now=time.time() + 3600)  # its heartbeat stopped long ago
    assert [(r["trial"], r.get("completed")) for r in found] == [(4, True)]
    record = storage.trials(study)[4]
    assert record.state == "COMPLETE" and record.values == folder.trial(4).read_result().objectives

    assert work(sweep_dir) == 19  # the rest of the 24-trial plan, trial 4 not among them
    assert folder.trial(4).result.stat().st_mtime_ns == written
    assert [t.state for t in storage.trials(study)] == ["COMPLETE"] * 24
    assert len(folder.complete()) == 24 and len(complete_trials(folder)) == 24
    report = write_report(sweep_dir)
    assert report.read_text().count("Set aside as duplicates") == 0


def test_a_duplicate_left_by_an_older_leaksweep_is_counted_once_and_named(tmp_path):
    """What the old reclaim left: the killed trial failed and rerun, both folders with a result.json."""
    raw = sr_sweep("dup", tmp_path / "sweep", wandb=None, mode="patch_insert", subsets=["S"], seeds=2)
    cfg = sweep_from_dict(raw, "test")
    sweep_dir = prepare(cfg)
    tracker = make_tracker(cfg.tracking, enabled=False)
    run_experiment(sweep_dir, lambda: run_worker(sweep_dir, tracker))
    study = storage.load_study(sweep_dir, cfg)
    first = storage.trials(study, "COMPLETE")[0]
    # the same condition and seed once more, as a rerun would have made it
    storage.enqueue(study, {}, {k: first.user_attrs[k] for k in ("condition_json", "seed", "label")})
    assert work(sweep_dir) == 1
    n = len(storage.trials(study, "COMPLETE"))
    runs = collect_runs(study, sweep_dir)
    assert len(runs) == n - 1 and len({(r.condition.key(), r.seed) for r in runs}) == n - 1
    run_experiment(sweep_dir, lambda: run_worker(sweep_dir, tracker))
    analysis = json.loads(SweepDir(sweep_dir).analysis.read_text())
    assert analysis["duplicates_set_aside"] == [
        {"trial": n - 1, "kept": first.number, "label": first.user_attrs["label"], "seed": first.user_attrs["seed"]}
    ]
    folder = SweepDir(sweep_dir)
    assert len(complete_trials(folder)) == n - 1 and len(folder.read_results()) == n - 1
    page = write_report(sweep_dir).read_text()
    assert f"Set aside as duplicates, counted once: trial {n - 1} (a rerun of trial {first.number}" in page


# --- Ctrl-C -------------------------------------------------------------------------------------------


def _sigint_sweep(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    from test_reclaim import TESTS, sweep_config

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    raw = sweep_config(tmp_path / "sweep", 2, heartbeat_s=0.5, stale_after_s=120.0)
    path = tmp_path / "sigint.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, tmp_path / "sweep"


def _wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.time() + timeout_s
    while not predicate():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.mark.integration
def test_ctrl_c_marks_the_running_trial_interrupted_and_a_rerun_resumes_it_at_once(tmp_path, monkeypatch):
    sweep_file, sweep_dir = _sigint_sweep(tmp_path, monkeypatch)
    cmd = [sys.executable, "-m", "leaksweep.cli", "sweep", str(sweep_file), "--no-wandb", "--no-report"]
    monkeypatch.setenv("SLOW_RUNNER_S", "60")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(lambda: (sweep_dir / "trials" / "00000" / "spec.json").exists(), 60, "the first trial")
        time.sleep(1.0)  # mid-trial
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out
    assert "in-flight trials are marked interrupted" in out
    assert heartbeat.read_beat(SweepDir(sweep_dir).trial(0).path).state == "interrupted"
    info = status(sweep_dir)
    assert info["states"] == {"FAIL": 1, "WAITING": 1}  # failed and re-enqueued at once
    assert info["failed"][0]["error"].startswith("reclaimed: interrupted (SIGINT")
    assert "no heartbeat" not in info["failed"][0]["error"]

    monkeypatch.setenv("SLOW_RUNNER_S", "0")
    started = time.time()
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert time.time() - started < 60  # not after stale_after_s (120 s)
    study = storage.load_study(sweep_dir, load_sweep_dir(sweep_dir))
    records = storage.trials(study)
    assert [t.state for t in records] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert records[1].params == json.loads(SweepDir(sweep_dir).trial(0).spec.read_text())["params"]


@pytest.mark.integration
def test_a_worker_stopped_with_sigint_leaves_its_trial_for_immediate_reclaim(tmp_path, monkeypatch):
    sweep_file, sweep_dir = _sigint_sweep(tmp_path, monkeypatch)
    cfg = sweep_from_dict(yaml.safe_load(sweep_file.read_text()), "test")
    prepare(cfg)
    monkeypatch.setenv("SLOW_RUNNER_S", "60")
    cmd = [sys.executable, "-m", "leaksweep.cli", "worker", str(sweep_dir), "--no-wandb"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(lambda: (sweep_dir / "trials" / "00000" / "heartbeat.json").exists(), 60, "the first trial")
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGINT)  # the terminal's and the sweep's: the second is ignored
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "trial 0 interrupted (SIGINT)" in out, out
    assert "Traceback" not in out
    error = SweepDir(sweep_dir).trial(0).read_error()
    assert error.startswith("reclaimed: interrupted (SIGINT")


def test_no_append_lands_on_a_line_a_dying_writer_cut_off(tmp_path):
    sweep_dir, cfg = grid_sweep(tmp_path)
    study = storage.load_study(sweep_dir, cfg)  # a live worker's study, opened while the journal was whole
    storage.ask(study)
    journal = SweepDir(sweep_dir).journal
    with open(journal, "ab") as handle:
        handle.write(b'{"op_code": 6, "worker_id": "dead", "trial_id"')  # another worker, killed mid-append
    before = journal.read_bytes()
    with pytest.raises(UserError, match=rf"{journal}:\d+: the Optuna journal is damaged \(the last line is cut off"):
        storage.ask(study)
    assert journal.read_bytes() == before


def test_repair_of_an_experiment_mode_keeps_each_condition_and_its_conclusions(tmp_path):
    raw = sr_sweep("exp", tmp_path / "sweep", wandb=None, mode="patch_insert", subsets=["S", "R"], seeds=2)
    cfg = sweep_from_dict(raw, "test")
    sweep_dir = prepare(cfg)
    tracker = make_tracker(cfg.tracking, enabled=False)
    before = run_experiment(sweep_dir, lambda: run_worker(sweep_dir, tracker))

    def attrs() -> list[tuple]:
        study = storage.load_study(sweep_dir, cfg)
        return [
            (t.number, t.state, t.user_attrs["condition_json"], t.user_attrs["seed"]) for t in storage.trials(study)
        ]

    kept = attrs()
    _garble(SweepDir(sweep_dir).journal)
    repair(sweep_dir)
    assert attrs() == kept
    assert run_experiment(sweep_dir, lambda: run_worker(sweep_dir, tracker)) == before  # nothing run again
    assert len(SweepDir(sweep_dir).complete()) == len(kept)


def test_a_sigint_while_the_journal_lock_is_held_waits_for_its_release(tmp_path):
    """Ctrl-C between the journal lock's acquire and the try that releases it would leave it held, and the
    worker's own reclaim (study.worker.interrupted) would wait on it for ever: the interrupt waits for the release."""
    import fcntl

    from leaksweep.study import journal_file

    previous = signal.getsignal(signal.SIGINT)
    journal, lock_file = tmp_path / "optuna.journal", tmp_path / "optuna.journal.lock"
    journal.write_text("")
    lock = journal_file.WholeLineLock(journal_file.FlockJournalLock(str(lock_file)), journal, tmp_path)
    try:
        heartbeat.interrupt_once()
        lock.acquire()
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler has run: no KeyboardInterrupt while the lock is held
        with pytest.raises(KeyboardInterrupt):
            lock.release()  # it comes with the release
        with open(lock_file, "a") as other:  # and the lock is free: another open file takes it at once
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert heartbeat._held == 0 and not heartbeat._pending
        heartbeat.interrupt_once()
        with pytest.raises(KeyboardInterrupt):  # with no lock held it is raised at once, as before
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    finally:
        signal.signal(signal.SIGINT, previous)
