"""A throwaway PostgreSQL server for tests: initdb under a temp folder, listening on 127.0.0.1 only.

`PostgresCluster.start()` finds the server binaries (PATH, then Debian's
/usr/lib/postgresql/<version>/bin), runs `initdb` as the `postgres` user when we are root
(initdb refuses root) in a fresh folder under the system temp dir (pytest's own temp folders
are private to root, so the `postgres` user could not enter them), starts `postgres` on a free port with its socket inside the temp folder,
waits until it accepts connections and creates a database. `stop()` ends exactly the server it
started, by the pid in its postmaster.pid (SIGINT: PostgreSQL's "fast" shutdown), waits for it and
removes its folder.

`available()` says why a server cannot be started here (None when it can); CI must have one, so
callers skip only outside CI (see tests/conftest.py).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BIN_GLOB = "/usr/lib/postgresql/*/bin"
START_TIMEOUT_S = 30.0


def _bin_dir() -> Path | None:
    if shutil.which("initdb") and shutil.which("postgres"):
        return Path(shutil.which("initdb")).resolve().parent  # Debian links only some tools onto PATH
    found = sorted(glob.glob(BIN_GLOB), key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0)
    return Path(found[-1]) if found else None


def available() -> str | None:
    """None when a server can be started here, else why not (what to install)."""
    if _bin_dir() is None:
        return (
            "PostgreSQL server binaries not found (initdb, postgres on PATH or under /usr/lib/postgresql/*/bin); "
            "install them: apt-get install -y --no-install-recommends postgresql"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root but there is no `postgres` user to run initdb as (initdb refuses root)"
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "psycopg2 is not installed: pip install -e '.[test]' (it lists psycopg2-binary)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresCluster:
    root: Path
    port: int
    user: str
    database: str
    pid: int

    @property
    def url(self) -> str:
        """SQLAlchemy URL for Optuna's RDBStorage (trust auth on loopback: no password to leak)."""
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{self.database}"

    @classmethod
    def start(cls, database: str = "leaksweep") -> "PostgresCluster":
        bindir = _bin_dir()
        if bindir is None:
            raise RuntimeError(available())
        root = Path(tempfile.mkdtemp(prefix="leaksweep-postgres-"))
        data, sock = root / "data", root / "sock"
        sock.mkdir()
        as_postgres = os.geteuid() == 0
        user = "postgres" if as_postgres else pwd.getpwuid(os.geteuid()).pw_name
        if as_postgres:
            entry = pwd.getpwnam("postgres")
            for path in (root, sock):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        # as root: run the server tools as `postgres` directly (no runuser in between, so the pid we
        # hold is the postmaster's own and a signal reaches it)
        as_user = (
            {"user": "postgres", "group": pwd.getpwnam("postgres").pw_gid, "extra_groups": []} if as_postgres else {}
        )
        subprocess.run(
            [str(bindir / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8", "--no-sync"],
            check=True,
            capture_output=True,
            text=True,
            **as_user,
        )
        port = _free_port()
        log = root / "postgres.log"
        if as_postgres:
            log.touch()
            os.chown(log, pwd.getpwnam("postgres").pw_uid, pwd.getpwnam("postgres").pw_gid)
        # listen on loopback only; fsync off: a test database need not survive a power cut
        server = subprocess.Popen(
            [
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-h",
                "127.0.0.1",
                "-k",
                str(sock),
                "-c",
                "fsync=off",
                "-c",
                "max_connections=100",
            ],
            stdout=open(log, "a"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **as_user,
        )
        cluster = cls(root, port, user, database, server.pid)
        cluster._process = server
        try:
            deadline = time.time() + START_TIMEOUT_S
            while time.time() < deadline:
                if server.poll() is not None:
                    raise RuntimeError(f"postgres exited with {server.returncode}:\n{log.read_text()[-2000:]}")
                ready = subprocess.run(
                    [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True
                )
                if ready.returncode == 0:
                    break
                time.sleep(0.1)
            else:
                raise RuntimeError(
                    f"postgres did not accept connections within {START_TIMEOUT_S} s:\n{log.read_text()[-2000:]}"
                )
            subprocess.run(
                [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", user, database],
                check=True,
                capture_output=True,
                text=True,
            )
        except BaseException:
            cluster.stop()  # never leave a server behind
            raise
        return cluster

    def new_database(self, name: str) -> str:
        """Create another database on this server (one per test keeps studies apart); returns its URL."""
        subprocess.run(
            [str(_bin_dir() / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, name],
            check=True,
            capture_output=True,
            text=True,
        )
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        """Fast shutdown of the server this object started (by its pid), then wait for it."""
        try:
            os.kill(self.pid, signal.SIGINT)
        except ProcessLookupError:
            pass
        else:
            process = getattr(self, "_process", None)
            if process is not None:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.kill(self.pid, signal.SIGQUIT)  # immediate shutdown
                    process.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)
