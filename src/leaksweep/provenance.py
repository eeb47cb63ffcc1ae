"""What code and libraries produced a result: recorded in each trial's result.json and in the report.

Cached per process: a worker runs many trials, and git is asked once.
"""

from __future__ import annotations

import functools
import importlib.metadata
import subprocess
from pathlib import Path

LIBRARIES = ("leaksweep", "torch", "transformers", "trl", "peft", "optuna", "wandb")


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """`<commit>, clean` or `<commit>, with uncommitted changes` of the checkout leaksweep runs from, or why unknown."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10, check=False
        )
        if commit.returncode != 0:
            return "unknown (leaksweep is not running from a git checkout)"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown (git did not answer: {exc})"
    return commit.stdout.strip() + (", with uncommitted changes" if dirty.stdout.strip() else ", clean")


@functools.lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
