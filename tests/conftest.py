"""Shared fixtures. Real-service fixtures start their daemons once per session and stop them by pid."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A real single-node Slurm cluster (tests/support/slurm_cluster.py) with SLURM_CONF set for this session.

    Skipped, with the reason, where Slurm is not installed or we are not root; never skipped under CI
    (the CI environment variable set): there a missing Slurm is a failure.
    """
    from slurm_cluster import SlurmCluster, unavailable_reason

    reason = unavailable_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"Slurm tests must run in CI, but: {reason}")
        pytest.skip(reason)
    # not under pytest's tmp folders: those are 0700, and munged runs as the munge user
    root = Path(tempfile.mkdtemp(prefix="leaksweep-slurm-"))
    try:
        cluster = SlurmCluster(root).start()
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)  # sbatch/squeue started by the code under test find it
    try:
        yield cluster
    finally:
        cluster.stop()
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_cluster(tmp_path_factory):
    """A real PostgreSQL server on 127.0.0.1 (tests/support/postgres_cluster.py), stopped by pid at the end.

    Skipped, with the reason, where it cannot be started; never skipped under CI (CI set).
    """
    from postgres_cluster import PostgresCluster, available

    reason = available()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL tests must run in CI, but: {reason}")
        pytest.skip(reason)
    cluster = PostgresCluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def fuse_mount():
    """A passthrough FUSE file system on which flock fails with EOPNOTSUPP (tests/support/fuse_passthrough.py),
    mounted by its own process for this session and unmounted by pid at the end.

    Skipped, with the reason, where FUSE cannot be mounted (no /dev/fuse, not root, no fusermount3 or libfuse);
    never skipped under CI (CI set): there that is a failure.
    """
    from fuse_passthrough import FuseMount, unavailable_reason

    reason = unavailable_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"FUSE tests must run in CI, but: {reason}")
        pytest.skip(reason)
    base = Path(tempfile.mkdtemp(prefix="leaksweep-fuse-"))
    mount = FuseMount(base / "root", base / "mnt", base / "fuse.log")
    try:
        mount.start()
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
    try:
        yield mount
    finally:
        mount.stop()
        if not mount.mounted():
            shutil.rmtree(base, ignore_errors=True)
