"""A passthrough FUSE file system over a folder, on which flock does not work, for the tests of
leaksweep on a cluster's shared file system (tests/study/test_shared_fs.py).

    python fuse_passthrough.py ROOT MOUNTPOINT     # foreground; kill it, then fusermount3 -u MOUNTPOINT

Every operation is passed to ROOT, except flock, which answers EOPNOTSUPP, as Lustre without
`-o flock` and many FUSE file systems do: libfuse sees a flock handler, so the kernel forwards flock
calls here instead of locking locally, and the caller gets the error. Hard links, symlinks,
O_CREAT|O_EXCL and rename are the underlying folder's, atomic as there. Written with mfusepy
(ctypes bindings for libfuse 3); `FuseMount` starts it as a process of its own and stops it by pid.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

FSTYPE = "fuse.leaksweep-passthrough"  # what /proc/self/mountinfo says for the mount


def unavailable_reason() -> str | None:
    """Why a FUSE file system cannot be mounted here, or None."""
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse (FUSE is not available in this container or kernel)"
    if os.geteuid() != 0:
        return "the FUSE tests mount a file system and need root"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is missing (apt-get install fuse3; `make test` does)"
    try:
        import mfusepy  # noqa: F401
    except Exception as exc:  # OSError when libfuse itself is missing
        return f"mfusepy cannot load libfuse ({exc}); pip install -e '.[test]' and apt-get install libfuse3-3"
    return None


class FuseMount:
    """The passthrough mounted at `mountpoint` over `root`, in a process this object owns."""

    def __init__(self, root: Path, mountpoint: Path, log: Path):
        self.root, self.mountpoint, self.log = Path(root), Path(mountpoint), Path(log)
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 20.0) -> "FuseMount":
        self.root.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, __file__, str(self.root), str(self.mountpoint)],
            stdout=open(self.log, "w"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.mounted():
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the FUSE passthrough did not mount at {self.mountpoint}: {self.log.read_text()[-2000:]}")

    def mounted(self) -> bool:
        target = os.path.realpath(self.mountpoint)
        with open("/proc/self/mountinfo") as handle:
            return any(line.split()[4] == target and FSTYPE in line for line in handle)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.mounted():  # the process is gone but the kernel still holds the mount
            subprocess.run(["fusermount3", "-u", str(self.mountpoint)], capture_output=True)
        if self.mounted():
            subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True)


def _operations(root: str):
    from mfusepy import FuseOSError, Operations

    class Passthrough(Operations):
        use_ns = True

        def __init__(self, root: str):
            self.root = root

        def _full(self, path: str) -> str:
            return os.path.join(self.root, path.lstrip("/"))

        def flock(self, path, fh, op):
            raise FuseOSError(errno.EOPNOTSUPP)  # what the kernel then reports to flock(2)

        def access(self, path, amode):
            if not os.access(self._full(path), amode):
                raise FuseOSError(errno.EACCES)
            return 0

        def chmod(self, path, mode):
            os.chmod(self._full(path), mode)
            return 0

        def chown(self, path, uid, gid):
            os.chown(self._full(path), uid, gid)
            return 0

        def getattr(self, path, fh=None):
            st = os.fstat(fh) if fh is not None else os.lstat(self._full(path))
            keys = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_ino", "st_dev", "st_blocks")
            found = {k: getattr(st, k) for k in keys}
            found.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns, st_ctime=st.st_ctime_ns)
            return found

        def readdir(self, path, fh):
            return [".", "..", *os.listdir(self._full(path))]

        def readlink(self, path):
            return os.readlink(self._full(path))

        def mknod(self, path, mode, dev):
            os.mknod(self._full(path), mode, dev)
            return 0

        def mkdir(self, path, mode):
            os.mkdir(self._full(path), mode)
            return 0

        def rmdir(self, path):
            os.rmdir(self._full(path))
            return 0

        def unlink(self, path):
            os.unlink(self._full(path))
            return 0

        def symlink(self, target, source):
            os.symlink(source, self._full(target))
            return 0

        def link(self, target, source):
            os.link(self._full(source), self._full(target))
            return 0

        def rename(self, old, new):
            os.rename(self._full(old), self._full(new))
            return 0

        def utimens(self, path, times=None):
            os.utime(self._full(path), ns=times) if times else os.utime(self._full(path))
            return 0

        def statfs(self, path):
            sv = os.statvfs(self._full(path))
            keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files", "f_flag")
            return {k: getattr(sv, k) for k in keys} | {"f_frsize": sv.f_frsize, "f_namemax": sv.f_namemax}

        def open(self, path, flags):
            return os.open(self._full(path), flags)

        def create(self, path, mode, flags=os.O_WRONLY):
            return os.open(self._full(path), flags | os.O_CREAT, mode)  # O_EXCL as the caller asked

        def read(self, path, size, offset, fh):
            return os.pread(fh, size, offset)

        def write(self, path, data, offset, fh):
            return os.pwrite(fh, data, offset)

        def truncate(self, path, length, fh=None):
            if fh is not None:
                os.ftruncate(fh, length)
            else:
                os.truncate(self._full(path), length)
            return 0

        def flush(self, path, fh):
            return 0

        def release(self, path, fh):
            os.close(fh)
            return 0

        def fsync(self, path, datasync, fh):
            os.fdatasync(fh) if datasync else os.fsync(fh)
            return 0

    return Passthrough(root)


def main() -> None:
    from mfusepy import FUSE

    root, mountpoint = sys.argv[1:3]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # libfuse unmounts on a clean exit
    FUSE(_operations(root), mountpoint, foreground=True, nothreads=False, fsname="leaksweep-test",
         subtype=FSTYPE.removeprefix("fuse."))  # fmt: skip


if __name__ == "__main__":
    main()
