"""A real single-node Slurm cluster for tests: munged, slurmctld and slurmd under a temp folder.

Needs the Debian packages slurmctld, slurmd, slurm-client and munge (`make test` installs them) and
root (slurmd starts jobs as their user; munged runs as the munge user). Everything the daemons write
(state, spool, logs, pid files, munge socket, the job-completion log) lies under `root`, ports are
picked free, and `stop()` ends exactly the daemons this object started, by pid, so two clusters
(two test sessions) can run side by side and nothing is left behind.

The node has `CPUs=2` and two fake GPUs: character devices in `root/dev` (count-only or regular files
drain the node), so `--gres=gpu:N` jobs run and get CUDA_VISIBLE_DEVICES. Clients (sbatch, squeue,
scontrol, scancel) find the cluster through `env()` (SLURM_CONF).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = "slurmctld slurmd slurm-client munge"
INSTALL_HINT = f"apt-get install -y --no-install-recommends {PACKAGES}"
N_GPUS = 2


def unavailable_reason() -> str | None:
    """Why a cluster cannot be started here, or None when it can."""
    missing = [
        b
        for b in ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo", "runuser")
        if shutil.which(b) is None
    ]
    if missing:
        return (
            f"Slurm is not installed (missing {', '.join(missing)}); install it with: {INSTALL_HINT} (`make test` does)"
        )
    if os.geteuid() != 0:
        return "starting slurmd and munged needs root"
    return None


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


class SlurmCluster:
    def __init__(self, root: Path):
        self.root = Path(root)
        if any(c.isspace() for c in str(self.root)):  # slurm.conf values cannot hold spaces
            raise ValueError(f"{root}: the cluster folder must be a path without spaces")
        self.node = socket.gethostname().split(".")[0]
        self.conf = self.root / "etc" / "slurm.conf"
        self.jobcomp = self.root / "log" / "jobcomp.txt"
        self.munge_socket = self.root / "munge" / "munge.socket"
        self.pids: dict[str, int] = {}

    def env(self) -> dict[str, str]:
        """Environment for client commands (and the jobs they submit)."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    # --- start ---------------------------------------------------------------------------------

    def start(self, timeout_s: float = 60.0) -> SlurmCluster:
        reason = unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        try:
            self._write_files()
            self._start_munged()
            self._start_daemon("slurmctld", ["slurmctld", "-f", str(self.conf)], self.root / "run" / "slurmctld.pid")
            self._start_daemon(
                "slurmd", ["slurmd", "-f", str(self.conf), "-N", self.node], self.root / "run" / "slurmd.pid"
            )
            self._wait_idle(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _write_files(self) -> None:
        self.root.chmod(0o755)  # munged runs as the munge user and must reach its folder (mkdtemp makes 0700)
        for sub in ("etc", "state", "spool", "log", "run", "dev", "munge"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        gpus = []
        for i in range(N_GPUS):
            dev = self.root / "dev" / f"nvidia{i}"
            if not dev.exists():
                os.mknod(dev, 0o666 | 0o020000, os.makedev(1, 3))  # a character device, like /dev/null
            gpus.append(dev)
        ctld_port, slurmd_port = _free_ports(2)
        cluster = f"lstest{ctld_port}"  # one name per cluster: two test sessions must not share state
        r = self.root
        self.conf.write_text(f"""\
ClusterName={cluster}
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket},cred_expire=10
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/run/slurmctld.pid
SlurmdPidFile={r}/run/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={self.jobcomp}
SchedulerParameters=bf_interval=5
ReturnToService=2
MaxArraySize=1001
MinJobAge=300
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
MpiDefault=none
NodeName={self.node} NodeAddr=127.0.0.1 CPUs=2 RealMemory=4000 Gres=gpu:{N_GPUS} State=UNKNOWN
PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
""")
        (self.conf.parent / "gres.conf").write_text(
            "AutoDetect=off\n" + f"Name=gpu File={self.root / 'dev'}/nvidia[0-{N_GPUS - 1}]\n"
        )

    def _start_munged(self) -> None:
        munge = pwd.getpwnam("munge")
        key = self.root / "munge" / "munge.key"
        shutil.copyfile("/etc/munge/munge.key", key) if Path("/etc/munge/munge.key").exists() else key.write_bytes(
            os.urandom(1024)
        )
        for path in (self.root / "munge", key):
            os.chown(path, munge.pw_uid, munge.pw_gid)
        key.chmod(0o400)
        (self.root / "munge").chmod(0o755)  # clients (sbatch, jobs) must reach the socket; munged insists
        pidfile = self.root / "munge" / "munged.pid"
        cmd = [
            "runuser",
            "-u",
            "munge",
            "--",
            "munged",
            f"--socket={self.munge_socket}",
            f"--key-file={key}",
            f"--pid-file={pidfile}",
            f"--log-file={self.root / 'munge' / 'munged.log'}",
            f"--seed-file={self.root / 'munge' / 'munged.seed'}",
        ]
        self._start_daemon("munged", cmd, pidfile)

    def _start_daemon(self, name: str, cmd: list[str], pidfile: Path) -> None:
        # each daemon forks into the background and writes its pid file; that pid is what stop() ends
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=self.env())
        if done.returncode != 0:
            raise RuntimeError(
                f"{name} failed to start ({done.returncode}): {done.stderr.strip()} {self._log_tail(name)}"
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if pidfile.exists() and pidfile.read_text().strip():
                self.pids[name] = int(pidfile.read_text().split()[0])
                return
            time.sleep(0.1)
        raise RuntimeError(f"{name} wrote no pid file {pidfile} {self._log_tail(name)}")

    def _wait_idle(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        state = ""
        while time.monotonic() < deadline:
            done = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, env=self.env())
            state = done.stdout.strip()
            if done.returncode == 0 and state == "idle":
                return
            time.sleep(0.5)
        raise RuntimeError(f"node not idle after {timeout_s:.0f} s (state {state!r}) {self._log_tail('slurmd')}")

    def _log_tail(self, name: str) -> str:
        log = self.root / ("munge/munged.log" if name == "munged" else f"log/{name}.log")
        return (
            f"\n--- {log} ---\n" + "\n".join(log.read_text(errors="replace").splitlines()[-20:]) if log.exists() else ""
        )

    # --- use ------------------------------------------------------------------------------------

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), capture_output=True, text=True, env=self.env(), check=check, timeout=60)

    def wait_jobs_done(self, job_id: str, timeout_s: float) -> None:
        """Wait until no task of the job is in squeue (pending, running, requeued)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            out = self.run("squeue", "-h", "-j", job_id, "-o", "%i %T", check=False).stdout.strip()
            if not out:
                return
            time.sleep(1.0)
        raise TimeoutError(f"job {job_id} still queued after {timeout_s:.0f} s: {out}")

    # --- stop -----------------------------------------------------------------------------------

    def stop(self) -> None:
        """Cancel the jobs left on this cluster (a failed test's), then end the daemons this object
        started, by pid, slurmd first."""
        if "slurmctld" in self.pids and "slurmd" in self.pids:
            # only this cluster's jobs: SLURM_CONF points the client at this slurmctld
            self.run("scancel", f"--user={os.geteuid()}", check=False)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and self.run("squeue", "-h", check=False).stdout.strip():
                time.sleep(0.5)
        for name in ("slurmd", "slurmctld", "munged"):
            pid = self.pids.pop(name, None)
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.1)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not running any more; it is not our child, so its parent reaps it
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
