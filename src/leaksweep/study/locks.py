"""The sweep folder's locks: which one works on the folder's file system, and the locks themselves.

Workers on many nodes share one sweep folder, on NFS, Lustre, GPFS or a FUSE file system on a real
cluster. Two sections need mutual exclusion across every process on every node: prepare (create the
study and enqueue the plan, once) and ask (reclaim, count trials, then ask, so the budget is never
overshot). A lock here is a context manager; the contract of each kind:

* ``flock``: ``fcntl.flock(LOCK_EX)`` on a lock file. The kernel releases it when its holder dies.
  Exclusive across the processes of one kernel; across nodes only where the file system forwards
  flock to a lock server (Lustre with ``-o flock``, NFSv4 on recent kernels), which no probe on one
  node can show. Used only where the probe shows it exclusive across processes and the file system
  is local.
* ``link`` / ``excl``: a lease lock (LinkLock). The holder writes its own file (host, pid, start,
  a beat counter and a unique token) and takes the lock by an atomic ``os.link`` of that file to the
  lock name (``link``) or by creating the lock name with ``O_CREAT | O_EXCL`` (``excl``, where the
  file system has no hard links); both fail with EEXIST for everyone but one, on NFS, Lustre, GPFS
  and FUSE alike. While held, a thread rewrites the beat every ``lease_s / 4``, so a lock held longer
  than the lease stays live. A waiter breaks the lock only when its content has not changed for
  ``lease_s`` of the waiter's own clock (no clocks are compared across nodes), and only under a
  short break guard, by renaming it away atomically and checking that what it moved is the stale
  lock it judged (a live lock moved by mistake is linked back); a live lock is never deleted.

`choose_lock(folder)` probes the folder's file system and returns the kind to use (`LockChoice`);
prepare records it in sweep.json, and every worker takes the prepare and ask locks of that kind
(`folder_lock`). Limitation of any lease lock: a holder frozen (SIGSTOP, a hung node) for longer than
the lease loses its lock while it still believes it holds it; release then says so on stderr.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from leaksweep.errors import UserError

LOCK_KINDS = ("flock", "link", "excl")
DEFAULT_LEASE_S = 60.0  # a dead holder delays the others this long; the holder beats every lease_s / 4
# flock failing with one of these means the file system does not lock at all
UNSUPPORTED = {errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK, errno.EINVAL, errno.ENOTSUP}
# File system types shared between nodes (or FUSE, which may be): flock working in a probe on this node
# proves nothing about other nodes, so these get the link lock whenever it works.
NETWORK_FS = ("nfs", "nfs4", "lustre", "gpfs", "beegfs", "fhgfs", "cifs", "smb3", "smbfs", "ceph", "glusterfs",
              "9p", "afs", "panfs", "wekafs", "orangefs", "pvfs2", "ocfs2", "gfs2", "fuse", "fuseblk")  # fmt: skip
RECORD_WIDTH = 512  # the lock file's content is padded to this many bytes: a beat never changes its size


# --- the file system under a folder ------------------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    mount_point: str
    fstype: str  # as /proc/self/mountinfo says: ext4, nfs4, lustre, fuse.sshfs, ...
    source: str

    @property
    def network(self) -> bool:
        base = self.fstype.split(".", 1)[0]
        return base in NETWORK_FS or base.startswith("nfs")


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_of(folder: Path, mountinfo: str = "/proc/self/mountinfo") -> Mount:
    """The mount holding `folder` (the longest mount point above its real path; the last one mounted
    there wins). Where /proc is not there, an unknown mount (fstype "unknown") at "/"."""
    real = os.path.realpath(folder)
    best = Mount("/", "unknown", "")
    try:
        lines = Path(mountinfo).read_text().splitlines()
    except OSError:
        return best
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 2:
            continue
        point = _unescape(fields[4])
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best.mount_point):
            best = Mount(point, tail[0], _unescape(tail[1]))
    return best


# --- probing which lock works ------------------------------------------------------------------------


@dataclass(frozen=True)
class LockChoice:
    kind: str  # flock | link | excl
    fstype: str
    mount_point: str
    why: str

    def as_record(self) -> dict:
        return {"kind": self.kind, "fstype": self.fstype, "mount_point": self.mount_point, "why": self.why}


# Run in a second process while the first holds both locks: it must be refused both.
_CHILD = """
import errno, fcntl, json, os, sys
flock_file, link_name, own = sys.argv[1:4]
out = {}
try:
    with open(flock_file, "a") as h:
        fcntl.flock(h, fcntl.LOCK_EX | fcntl.LOCK_NB)
        out["flock"] = "acquired"
except OSError as e:
    out["flock"] = "blocked" if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN) else f"error: {e}"
try:
    os.link(own, link_name)
    out["link"] = "acquired"
except OSError as e:
    out["link"] = "blocked" if e.errno == errno.EEXIST else f"error: {e}"
try:
    os.close(os.open(link_name, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    out["excl"] = "acquired"
except OSError as e:
    out["excl"] = "blocked" if e.errno == errno.EEXIST else f"error: {e}"
print(json.dumps(out))
"""


def _unique(folder: Path, what: str) -> Path:
    return folder / f".{what}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def probe(folder: Path) -> dict[str, str]:
    """Try each lock across two processes in `folder`: this one holds it, a child process tries to take
    it without blocking. Returns {"flock"|"link"|"excl": "ok" or why not}."""
    found: dict[str, str] = {}
    flock_file, own, name = _unique(folder, "lockprobe"), _unique(folder, "lockprobe"), _unique(folder, "lockprobe")
    handle = None
    try:
        handle = open(flock_file, "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            found["flock"] = "ok"
        except OSError as exc:
            found["flock"] = f"flock failed: {exc}" + (" (unsupported)" if exc.errno in UNSUPPORTED else "")
        own.write_text("probe\n")
        try:
            os.link(own, name)
            found["link"] = "ok" if os.stat(own).st_nlink == 2 else "link succeeded but the link count is not 2"
        except OSError as exc:
            found["link"] = f"os.link failed: {exc}"
        if found["link"] != "ok":  # then the O_EXCL probe holds the name itself
            try:
                os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                found["excl"] = "ok"
            except OSError as exc:
                found["excl"] = f"O_CREAT|O_EXCL failed: {exc}"
        child = subprocess.run(
            [sys.executable, "-S", "-c", _CHILD, str(flock_file), str(name), str(own)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        try:
            other = json.loads(child.stdout)
        except ValueError:
            other = {k: f"probe process failed: {child.stderr.strip()[-300:]}" for k in LOCK_KINDS}
        if found["link"] == "ok":  # the name is held by the link: O_EXCL on it must be refused too
            found["excl"] = "ok"
        for kind in LOCK_KINDS:
            if found.get(kind) == "ok" and other.get(kind) != "blocked":
                found[kind] = (
                    f"a second process {other.get(kind)} while this one held it (not exclusive across processes)"
                )
    finally:
        if handle is not None:
            handle.close()
        for path in (flock_file, own, name):
            try:
                path.unlink()
            except OSError:
                pass
    return found


def choose_lock(folder: Path) -> LockChoice:
    """The lock to use in `folder` (which must exist); UserError when none works there."""
    mount = mount_of(folder)
    found = probe(Path(folder))
    where = f"{mount.fstype} file system at {mount.mount_point}"
    if found["flock"] == "ok" and not mount.network:
        return LockChoice("flock", mount.fstype, mount.mount_point, f"{where}: flock is exclusive across processes")
    # A network or FUSE file system: a probe from one node cannot show that flock also excludes processes
    # on other nodes (NFS without lockd, Lustre with -o localflock lock per node), so take the link lock.
    reason = "a network or FUSE file system" if found["flock"] == "ok" else found["flock"]
    for kind in ("link", "excl"):
        if found.get(kind) == "ok":
            return LockChoice(kind, mount.fstype, mount.mount_point, f"{where}: {reason}; {kind} lock works")
    if found["flock"] == "ok":  # flock is all there is: exclusive on this node at least
        return LockChoice(
            "flock", mount.fstype, mount.mount_point, f"{where}: only flock works; not verified across nodes"
        )
    tried = "; ".join(f"{k}: {found.get(k, 'not tried')}" for k in LOCK_KINDS)
    raise UserError(
        f"{folder}: its {where} supports no lock leaksweep can use ({tried}), so two workers could prepare or "
        "ask for trials at the same time. Put the sweep folder (`output_dir`) on a file system with working "
        "locks (local disk, NFS with hard links, Lustre mounted with -o flock), or keep the study in PostgreSQL "
        "(`search.storage: postgresql+psycopg2://USER@HOST/DB`), whose locks are taken in the database"
    )


# --- the locks ---------------------------------------------------------------------------------------


@contextmanager
def flock_lock(path: Path) -> Iterator[None]:
    """flock(LOCK_EX) on `path` (created if missing) for the duration of the block."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class LinkLock:
    """A lease lock on the name `path` (module docstring: `link` and `excl`). Use as a context manager.

    acquire() blocks until this process holds the lock (polling every `poll_s`); release() gives it back.
    Not re-entrant; one LinkLock object per acquisition.
    """

    def __init__(self, path: Path | str, *, method: str = "link", lease_s: float = DEFAULT_LEASE_S, poll_s=0.02):
        assert method in ("link", "excl")
        self.path, self.method, self.lease_s, self.poll_s = Path(path), method, lease_s, poll_s
        self.token = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}"
        self._fd: int | None = None
        self._own: Path | None = None  # the holder's own file (link method)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._beat = 0
        self.broken: list[str] = []  # the stale locks this one broke (their content), for tests and logs

    # the record the holder writes, padded so that a beat rewrites it in place at the same size
    def _record(self) -> bytes:
        raw = json.dumps(
            {
                "token": self.token,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "at": time.time(),
                "beat": self._beat,
            }
        ).encode()
        return raw.ljust(RECORD_WIDTH) + b"\n"

    def _write_record(self) -> None:
        assert self._fd is not None
        os.pwrite(self._fd, self._record(), 0)
        os.fsync(self._fd)  # NFS: visible to the next open on another node (close-to-open)

    def _try_take(self) -> bool:
        if self.method == "excl":
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
            except FileExistsError:
                return False
            self._fd = fd
            self._write_record()
            return True
        if self._own is None:
            self._own = Path(f"{self.path}.{self.token}")
            self._fd = os.open(self._own, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
            self._write_record()
        try:
            os.link(self._own, self.path)
            return True
        except FileExistsError:
            # NFS may report EEXIST for a link that succeeded (a retransmitted request): the count tells
            return os.stat(self._own).st_nlink == 2

    def _observe(self, path: Path) -> bytes | None:
        """The lock's content as a fresh open reads it (NFS close-to-open); None when it is not there."""
        try:
            with open(path, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None

    @staticmethod
    def _token_of(content: bytes | None) -> str | None:
        try:
            return json.loads(content)["token"] if content else None
        except (ValueError, KeyError, TypeError):
            return None

    def acquire(self) -> None:
        seen: bytes | None = None
        seen_since = time.monotonic()
        try:
            while not self._try_take():
                content = self._observe(self.path)
                now = time.monotonic()
                if content != seen:
                    seen, seen_since = content, now
                elif content is not None and now - seen_since > self.lease_s:
                    self._break(content)
                    seen, seen_since = None, time.monotonic()
                    continue
                time.sleep(self.poll_s)
        except BaseException:  # interrupted while waiting: leave no file of ours behind
            self._forget()
            raise
        self._thread = threading.Thread(target=self._beating, name=f"lease {self.path.name}", daemon=True)
        self._thread.start()

    def _beating(self) -> None:
        while not self._stop.wait(self.lease_s / 4):
            self._beat += 1
            try:
                self._write_record()
            except OSError:
                pass  # the next beat tries again; a lock that goes unbeaten for the lease is broken

    def _break(self, stale: bytes) -> None:
        """Move the lock away if it still holds `stale`, under the break guard (one breaker at a time)."""
        guard = LinkLock(f"{self.path}.break", method="excl", lease_s=self.lease_s, poll_s=self.poll_s)
        guard.acquire()  # held for a few system calls; one unchanged for a lease is dead and broken itself
        try:
            if self._observe(self.path) != stale:
                return  # released, or taken by another since: not stale any more
            moved = Path(f"{self.path}.stale-{uuid.uuid4().hex}")
            try:
                os.rename(self.path, moved)
            except FileNotFoundError:
                return
            got = self._observe(moved)
            if self._token_of(got) == self._token_of(stale):
                self.broken.append(stale.decode(errors="replace").strip())
                print(f"leaksweep: broke the stale lock {self.path} ({self.broken[-1]})", file=sys.stderr)
                moved.unlink(missing_ok=True)
                if self.method == "link" and self._token_of(stale):  # the dead holder's own file
                    Path(f"{self.path}.{self._token_of(stale)}").unlink(missing_ok=True)
            else:  # the holder released and another took it between our look and the rename: put it back
                _restore(moved, self.path)
        finally:
            guard.release()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        moved = Path(f"{self.path}.released-{uuid.uuid4().hex}")
        try:
            os.rename(self.path, moved)
            if self._token_of(self._observe(moved)) == self.token:
                moved.unlink(missing_ok=True)
            else:
                _restore(moved, self.path)
                print(f"leaksweep: the lock {self.path} was broken while this process held it", file=sys.stderr)
        except FileNotFoundError:
            print(f"leaksweep: the lock {self.path} was broken while this process held it", file=sys.stderr)
        finally:
            self._forget()

    def _forget(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._own is not None:
            self._own.unlink(missing_ok=True)
            self._own = None

    def __enter__(self) -> "LinkLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _restore(moved: Path, path: Path) -> None:
    """Put a lock moved away by mistake back under its name (without replacing one taken meanwhile)."""
    try:
        os.link(moved, path)
    except OSError:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            os.write(fd, moved.read_bytes())
            os.close(fd)
        except OSError:
            pass
    moved.unlink(missing_ok=True)


def folder_lock(path: Path, kind: str, lease_s: float = DEFAULT_LEASE_S):
    """The lock of `kind` (sweep.json's folder_lock) on the lock file `path`, as a context manager.
    A link/excl lock takes the name `path` + "-link", so a flock file left by an older run is no holder."""
    if kind == "flock":
        return flock_lock(path)
    if kind in ("link", "excl"):
        return LinkLock(f"{path}-link", method=kind, lease_s=lease_s)
    raise UserError(f"sweep.json: folder_lock.kind {kind!r} is not one of {', '.join(LOCK_KINDS)}")
