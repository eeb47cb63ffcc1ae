"""The sweep folder on a shared file system (study/locks.py, the journal checks of study/storage.py).

Unit tests of the link lock (mutual exclusion across processes, a stale lock broken after its lease, a
live lock never broken), of the lock choice and of damaged-journal detection run on the local disk.
The integration tests mount a real FUSE file system on which flock fails (tests/support/fuse_passthrough.py,
the `fuse_mount` fixture) and run prepare, 8 workers x 200 trials and two concurrent `leaksweep sweep`
commands with the whole sweep folder, journal included, on it."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import optuna
import pytest
import yaml

from leaksweep.errors import UserError
from leaksweep.layout import SweepDir
from leaksweep.study import locks, storage
from leaksweep.study.prepare import load_sweep_dir, prepare
from leaksweep.sweepfile import sweep_from_dict

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared helpers of test_reclaim.py
from test_reclaim import _slow_runner_importable, count_results, run_many_workers, sweep_config  # noqa: E402,F401

# --- the link lock -----------------------------------------------------------------------------------

_COUNTER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from leaksweep.study.locks import LinkLock
    lock, counter, rounds = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    for _ in range(rounds):
        with LinkLock(lock, method=sys.argv[4], lease_s=30):
            n = int(counter.read_text())   # read, think, write: two holders at once lose an increment
            time.sleep(0.002)
            counter.write_text(str(n + 1))
    """
)


@pytest.mark.parametrize("method", ["link", "excl"])
def test_the_link_lock_excludes_other_processes(tmp_path, method):
    counter = tmp_path / "counter"
    counter.write_text("0")
    procs = [
        subprocess.Popen([sys.executable, "-c", _COUNTER, str(tmp_path / "the.lock"), str(counter), "40", method])
        for _ in range(4)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0] * 4
    assert counter.read_text() == "160"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter"]  # nothing left behind


_HOLDER = textwrap.dedent(
    """
    import sys, time
    from leaksweep.study.locks import LinkLock
    lock = LinkLock(sys.argv[1], lease_s=float(sys.argv[2]))
    lock.acquire()
    print("held", flush=True)
    time.sleep(float(sys.argv[3]))
    lock.release()
    print("released", time.time(), flush=True)
    """
)


def _hold(path: Path, lease_s: float, hold_s: float) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path), str(lease_s), str(hold_s)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_stale_lock_is_broken_after_the_lease(tmp_path):
    path = tmp_path / "the.lock"
    holder = _hold(path, 0.5, 600)
    os.kill(holder.pid, signal.SIGKILL)  # dies holding it: its lease is no longer renewed
    holder.wait()
    started = time.monotonic()
    lock = locks.LinkLock(path, lease_s=0.5)
    with lock:
        waited = time.monotonic() - started
    assert 0.5 <= waited < 10, waited
    assert len(lock.broken) == 1 and f'"pid": {holder.pid}' in lock.broken[0]
    assert list(tmp_path.iterdir()) == []  # the lock moved away, the dead holder's file removed


def test_a_live_lock_held_past_its_lease_is_never_broken(tmp_path):
    path = tmp_path / "the.lock"
    holder = _hold(path, 0.3, 2.0)  # holds for 6 leases, renewing it
    lock = locks.LinkLock(path, lease_s=0.3)
    lock.acquire()
    acquired = time.time()
    lock.release()
    released_at = float(holder.stdout.readline().split()[1])
    assert holder.wait(timeout=30) == 0
    assert lock.broken == [] and acquired >= released_at


# --- choosing the lock and recording it ------------------------------------------------------------


def test_mountinfo_gives_the_mount_and_type_of_a_folder(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
        "40 22 0:50 / /scratch rw - lustre 10.0.0.1@tcp:/fs rw,localflock\n"
        "41 22 0:51 / /home/my\\040home rw - nfs4 srv:/home rw\n"
    )
    assert locks.mount_of(Path("/scratch/runs/x"), str(info)) == locks.Mount("/scratch", "lustre", "10.0.0.1@tcp:/fs")
    assert locks.mount_of(Path("/home/my home/x"), str(info)).fstype == "nfs4"
    assert locks.mount_of(Path("/scratchy"), str(info)).fstype == "ext4"
    assert locks.Mount("/s", "lustre", "").network and locks.Mount("/s", "fuse.sshfs", "").network
    assert not locks.Mount("/", "ext4", "").network


def test_a_local_folder_gets_flock_and_a_network_one_the_link_lock_even_where_flock_works(tmp_path, monkeypatch):
    assert locks.choose_lock(tmp_path).kind == "flock"
    monkeypatch.setattr(locks, "mount_of", lambda folder: locks.Mount("/scratch", "nfs4", "srv:/scratch"))
    choice = locks.choose_lock(tmp_path)
    assert (choice.kind, choice.fstype) == ("link", "nfs4") and "network or FUSE" in choice.why


def test_a_file_system_with_no_working_lock_is_refused_naming_it_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(locks, "mount_of", lambda folder: locks.Mount("/lus", "lustre", "mds@tcp:/lus"))
    monkeypatch.setattr(locks, "probe", lambda folder: {k: f"{k} failed: [Errno 38]" for k in locks.LOCK_KINDS})
    with pytest.raises(UserError) as err:
        locks.choose_lock(tmp_path)
    assert "lustre file system at /lus" in str(err.value) and "search.storage: postgresql+psycopg2://" in str(err.value)


def test_an_older_sweep_json_without_a_lock_record_reads_as_flock(tmp_path):
    cfg = sweep_from_dict(sweep_config(tmp_path / "sweep", 2), "test")
    sweep_dir = prepare(cfg)
    folder = SweepDir(sweep_dir)
    assert folder.folder_lock().kind == "flock" and json.loads(folder.sweep_file.read_text())["folder_lock"]
    raw = json.loads(folder.sweep_file.read_text())
    del raw["folder_lock"]
    folder.sweep_file.write_text(json.dumps(raw))
    assert folder.folder_lock() == folder.folder_lock().__class__()  # kind flock, nothing else known
    assert load_sweep_dir(sweep_dir).name == cfg.name


# --- damaged journals --------------------------------------------------------------------------------


def _journal(tmp_path: Path) -> tuple[Path, object]:
    cfg = sweep_from_dict(sweep_config(tmp_path / "sweep", 3), "test")
    sweep_dir = prepare(cfg)
    study = storage.load_study(sweep_dir, cfg)
    for _ in range(2):
        study.ask()
    return sweep_dir, cfg


def test_a_journal_whose_last_line_is_cut_off_is_refused_naming_file_and_line(tmp_path):
    sweep_dir, cfg = _journal(tmp_path)
    journal = SweepDir(sweep_dir).journal
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[:-1]) + lines[-1][:20])  # a writer died mid-line
    before = journal.read_bytes()
    with pytest.raises(UserError) as err:
        storage.load_study(sweep_dir, cfg)
    assert f"{journal}:{len(lines)}: the Optuna journal is damaged (the last line is cut off" in str(err.value)
    assert f"run `leaksweep repair {sweep_dir}` to rebuild the study from the trial folders" in str(err.value)
    assert journal.read_bytes() == before  # nothing appended


def test_a_garbage_line_in_the_middle_of_the_journal_is_refused_naming_it(tmp_path):
    sweep_dir, cfg = _journal(tmp_path)
    journal = SweepDir(sweep_dir).journal
    lines = journal.read_bytes().splitlines(keepends=True)
    lines.insert(2, b'{"op_code": 5, "worker_id": "x"\x00\x00\x00\n')  # NFS: a torn write
    journal.write_bytes(b"".join(lines))
    with pytest.raises(UserError, match=rf"{journal}:3: the Optuna journal is damaged \(not JSON"):
        storage.load_study(sweep_dir, cfg)
    with pytest.raises(UserError, match=r":3: the Optuna journal is damaged"):  # status opens it the same way
        from leaksweep.study.status import status

        status(sweep_dir)


# --- on a real FUSE file system where flock does not work -------------------------------------------


@pytest.fixture
def fuse_dir(fuse_mount):
    folder = fuse_mount.mountpoint / f"t-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    return folder


@pytest.mark.integration
def test_flock_fails_on_the_fuse_mount_and_prepare_records_the_link_lock(fuse_dir):
    with open(fuse_dir / "probe", "a") as handle, pytest.raises(OSError) as err:
        fcntl.flock(handle, fcntl.LOCK_EX)
    assert err.value.errno == errno.EOPNOTSUPP, err.value  # [Errno 95] Operation not supported
    sweep_dir = prepare(sweep_from_dict(sweep_config(fuse_dir / "sweep", 2), "test"))
    record = json.loads(SweepDir(sweep_dir).sweep_file.read_text())["folder_lock"]
    assert record["kind"] == "link" and record["fstype"] == "fuse.leaksweep-passthrough", record
    assert record["mount_point"] == str(fuse_dir.parent) and "Operation not supported" in record["why"]
    assert storage.journal_problem(SweepDir(sweep_dir).journal) is None


def _no_lock_left(sweep_dir: Path) -> None:
    assert [p.name for p in sweep_dir.iterdir() if "lock" in p.name] == []  # every lock released, probes removed


def _journal_is_whole(journal: Path) -> int:
    data = journal.read_bytes()
    assert data.endswith(b"\n") and storage.journal_problem(journal) is None
    return sum(1 for line in data.splitlines() if json.loads(line))


@pytest.mark.integration
def test_eight_workers_two_hundred_trials_with_the_sweep_folder_on_fuse(fuse_dir):
    started = time.time()
    counts = run_many_workers(fuse_dir, 8, 200)  # asserts 0 duplicate numbers, 0 lost results
    print(f"on FUSE ({fuse_dir}): {time.time() - started:.1f} s in all")
    sweep_dir = fuse_dir / "sweep"
    assert SweepDir(sweep_dir).folder_lock().kind == "link"
    assert counts["states"] == ["COMPLETE"]
    assert _journal_is_whole(SweepDir(sweep_dir).journal) > 200 * 3
    _no_lock_left(sweep_dir)


@pytest.mark.integration
def test_two_concurrent_sweep_commands_on_fuse_prepare_one_study(fuse_dir):
    config = sweep_config(fuse_dir / "sweep", 10)
    config["search"]["baselines"] = True  # enqueued at prepare: prepared twice, they would run twice
    sweep_file = fuse_dir / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "leaksweep.cli", "sweep", str(sweep_file), "--workers", "2"]
    cmd += ["--no-wandb", "--no-report"]
    procs = [
        subprocess.Popen(cmd, stdout=open(fuse_dir / f"sweep{i}.log", "w"), stderr=subprocess.STDOUT, env=env)
        for i in range(2)
    ]
    codes = [p.wait(timeout=300) for p in procs]
    assert codes == [0, 0], [(fuse_dir / f"sweep{i}.log").read_text()[-2000:] for i in range(2)]
    sweep_dir = fuse_dir / "sweep"
    raw = json.loads(SweepDir(sweep_dir).sweep_file.read_text())  # whole, not clobbered
    assert raw["folder_lock"]["kind"] == "link" and raw["name"] == config["name"]
    cfg = load_sweep_dir(sweep_dir)
    journal = SweepDir(sweep_dir).journal
    assert optuna.get_all_study_names(storage.open_storage(None, sweep_dir)) == [cfg.name]
    ops = [json.loads(line)["op_code"] for line in journal.read_bytes().splitlines()]
    assert ops.count(0) == 1  # one CREATE_STUDY
    _journal_is_whole(journal)
    _no_lock_left(sweep_dir)
    counts = count_results(sweep_dir, cfg)
    assert counts["unique_numbers"] == counts["trials"] == 12 and counts["states"] == ["COMPLETE"]
    assert counts["complete"] == counts["results"] == list(range(12))  # each trial ran once, none lost
    trials = storage.trials(storage.load_study(sweep_dir, cfg))
    conditions = sorted(t.user_attrs.get("condition", "mixture") for t in trials)
    assert conditions.count("all_clean") == 1 and conditions.count("all_teacher") == 1
