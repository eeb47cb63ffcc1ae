"""The tracking interface the rest of the project uses, its no-op implementation, and the W&B mode.

Everything outside this package sees only the small `Tracker` / `Run` protocols below, so a sweep
without W&B (tracking off, or `mode: disabled`) runs the same code against `NullTracker`.

Choices worth knowing:
- `mode: auto` means online when an API key is configured (WANDB_API_KEY, or a .netrc entry for
  the W&B host) and offline otherwise, so a laptop without a key never hangs on a login prompt.
  An online start that fails (no network on a compute node) falls back to offline in auto mode.
- Offline runs land in `<run_dir>/wandb/offline-run-<time>-<id>/run-<id>.wandb` and are uploaded
  later with `leaksweep sync` (tracking.sync).
- Config, summaries and artifact metadata pass through `redact()` (tracking.redact) first: W&B keeps
  them forever and shares them with everyone who can see the project.
- Nothing here imports wandb: importing it takes about a second, which commands that never track
  should not pay. Only tracking.wandb_tracker does, inside its functions.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from leaksweep.config import TrackingConfig
from leaksweep.errors import UserError

# wandb 0.31 talks to W&B through CoreWeave Forge by default; a .netrc entry for the W&B API
# host behind it counts too (wandb reads both).
DEFAULT_BASE_URL = "https://api.forge.coreweave.com"
_FORGE_UPSTREAM = {"api.forge.coreweave.com": "api.wandb.ai", "forge.coreweave.com": "api.wandb.ai"}


# ---------------------------------------------------------------------------------------------
# the interface the rest of the project uses


class Run(Protocol):
    """One tracked run (a trial, or a study's summary run), open until `finish`.

    Contract every implementation keeps:
    - `run_id` is the id to pass to `Tracker.start_run(run_id=...)` to continue this run after a
      preemption; None when the tracker keeps no runs.
    - Every method may be called any number of times in any order before `finish`. Summaries,
      tables, charts and artifact metadata are redacted (tracking.redact) before they leave the
      process; `log` takes numbers only.
    - `artifact` / `use_artifact` raise FileNotFoundError for a path that does not exist, `chart`
      raises ValueError for a kind other than `line` or `scatter`.
    - `finish` is idempotent: a second call (an error path after a normal finish) does nothing.
    """

    run_id: str | None

    def log(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Record metric values at `step` (keys like `train/loss` group into panels)."""

    def summary(self, values: dict[str, Any]) -> None:
        """Set the run's final values; nested dicts become `a/b` keys."""

    def table(self, key: str, columns: list[str], rows: list[list[Any]]) -> None:
        """Log a table under `key`."""

    def artifact(
        self, name: str, type: str, paths: list[Path], metadata: dict[str, Any], aliases: list[str] | None = None
    ) -> None:
        """Log files as an output artifact of this run."""

    def use_artifact(
        self, name: str, type: str, paths: list[Path], metadata: dict[str, Any], aliases: list[str] | None = None
    ) -> None:
        """Record files as an input of this run (lineage). Files are referenced in place, not
        copied: inputs such as rollout files are large and used by every trial; W&B deduplicates
        the versions by content, so each distinct file becomes one artifact version."""

    def chart(self, key: str, kind: str, columns: list[str], rows: list[list[Any]], x: str, y: str, title: str) -> None:
        """Log a table and a `line` or `scatter` plot of column `y` against column `x`."""

    def finish(self, exit_code: int = 0) -> None:
        """Close the run (exit_code 0: success); calling it again does nothing."""


class Tracker(Protocol):
    """Opens runs, one after another in a process (a worker runs many trials).

    `mode` is what runs are logged as: online, offline or disabled; it may change from online to
    offline after a failed start (auto mode). `start_run` with a `run_id` continues that run when it
    exists and starts it under that id when it does not; starting a run finishes any run this
    tracker left open. `run_dir` is created if missing and holds the run's local files.
    """

    mode: str

    def start_run(
        self,
        *,
        name: str,
        group: str,
        config: dict[str, Any],
        tags: list[str],
        run_dir: Path,
        run_id: str | None = None,
        job_type: str = "trial",
    ) -> Run: ...


class NullRun:
    """A run that records nothing (tracking off)."""

    run_id: str | None = None

    def log(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def summary(self, values: dict[str, Any]) -> None:
        pass

    def table(self, key: str, columns: list[str], rows: list[list[Any]]) -> None:
        pass

    def artifact(
        self, name: str, type: str, paths: list[Path], metadata: dict[str, Any], aliases: list[str] | None = None
    ) -> None:
        pass

    def use_artifact(
        self, name: str, type: str, paths: list[Path], metadata: dict[str, Any], aliases: list[str] | None = None
    ) -> None:
        pass

    def chart(self, key: str, kind: str, columns: list[str], rows: list[list[Any]], x: str, y: str, title: str) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        pass


class NullTracker:
    """A tracker whose runs record nothing."""

    mode = "disabled"

    def start_run(
        self,
        *,
        name: str,
        group: str,
        config: dict[str, Any],
        tags: list[str],
        run_dir: Path,
        run_id: str | None = None,
        job_type: str = "trial",
    ) -> Run:
        return NullRun()


def make_tracker(cfg: TrackingConfig, enabled: bool = True) -> Tracker:
    """The tracker a sweep uses: W&B when configured and not disabled, else a no-op."""
    if not enabled or cfg.wandb is None:
        return NullTracker()
    if resolve_mode(cfg.wandb.mode) == "disabled":
        return NullTracker()
    # Imported here: wandb_tracker imports this module (resolve_mode, Run).
    from leaksweep.tracking.wandb_tracker import WandbTracker

    return WandbTracker(cfg.wandb)


# ---------------------------------------------------------------------------------------------
# mode and API key


def resolve_mode(mode: str) -> str:
    """Turn a configured mode into the one W&B gets: online, offline or disabled.

    `auto`: WANDB_MODE when it is set to one of those three (a cluster's way of saying "no network
    here"), else online when an API key is configured, else offline.
    """
    if mode in ("online", "offline", "disabled"):
        return mode
    if mode != "auto":
        raise ValueError(f"unknown W&B mode {mode!r}; use auto, online, offline or disabled")
    from_env = os.environ.get("WANDB_MODE", "").strip().lower()
    if from_env in ("online", "offline", "disabled"):
        return from_env
    return "online" if api_key_configured() else "offline"


def api_key_configured() -> bool:
    """Whether W&B would find an API key: WANDB_API_KEY, or a .netrc entry for the W&B host.

    Reads the .netrc the way wandb does ($NETRC, else ~/.netrc) but never returns the key itself.
    """
    if os.environ.get("WANDB_API_KEY", "").strip():
        return True
    path = Path(os.environ.get("NETRC") or "~/.netrc").expanduser()
    host = urlsplit(os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL).netloc
    try:
        entries = netrc.netrc(str(path))
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        # An unreadable or malformed .netrc means W&B would not log in either.
        return False
    for candidate in (host, _FORGE_UPSTREAM.get(host)):
        entry = entries.authenticators(candidate) if candidate else None
        if entry and entry[2]:
            return True
    return False


def require_api_key(action: str) -> None:
    """Refuse (UserError, exit 2) an action that needs a W&B login when none is configured."""
    if api_key_configured():
        return
    host = urlsplit(os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL).netloc
    netrc_path = os.environ.get("NETRC") or "~/.netrc"
    raise UserError(
        f"{action}: no W&B API key is configured (WANDB_API_KEY is unset and {netrc_path} has no entry for "
        f"{host} or {_FORGE_UPSTREAM.get(host, host)}), so nothing can reach W&B; set WANDB_API_KEY (from "
        "https://wandb.ai/authorize) or run `wandb login` on a machine with network access, then rerun"
    )
