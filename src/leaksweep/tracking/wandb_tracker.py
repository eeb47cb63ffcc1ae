"""The W&B tracker: the only module of the project that imports wandb.

wandb is imported inside the functions that need it, on first use: importing it takes about a
second, which commands that never track should not pay.

Lineage: inputs (prompt set, rollout sources) are *used* artifacts of each trial run, outputs (the
manifest, the report) are *logged* artifacts. wandb 0.31 refuses `use_artifact` offline, so an
offline run records the input as an artifact flagged `use_after_commit`: `wandb sync` commits it
and then marks it used, which is what an online `use_artifact` of a new artifact does.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from leaksweep.config import WandbConfig
from leaksweep.tracking.protocol import Run, resolve_mode
from leaksweep.tracking.redact import flatten, redact

log = logging.getLogger(__name__)

# Files up to this size are copied into W&B's staging area when added to an artifact, so a later
# `wandb sync` uploads what was logged even if the file changed since. Bigger files (a saved
# model) are referenced in place instead of being duplicated under ~/.local/share/wandb; they
# must stay unchanged until the run is synced.
ARTIFACT_COPY_LIMIT_BYTES = 64 * 2**20


def _quiet_settings(wandb: Any, mode: str) -> Any:
    """Settings that keep a run quiet, fast and free of anything the project did not log."""
    return wandb.Settings(
        console="off",  # no stdout/stderr capture: trial logs go to the trial folder already
        x_disable_stats=True,  # no system-metrics sampling thread
        # No environment record: it holds sys.argv (where a secret may sit), host and git state.
        x_disable_meta=True,
        x_disable_machine_info=True,
        disable_git=True,
        disable_code=True,
        save_code=False,
        x_save_requirements=False,  # no pip freeze per run
        # Offline runs print three lines per start that say nothing the trial log does not;
        # online runs keep the line with the run's URL.
        silent=mode == "offline",
        quiet=True,
    )


def default_entity() -> str:
    """The W&B entity (user or team) the configured API key logs to by default (asks the server)."""
    import wandb

    return wandb.Api().default_entity


class WandbTracker:
    """Opens W&B runs (one per trial, and the study's summary run), one after another in a process."""

    def __init__(self, cfg: WandbConfig):
        self.cfg = cfg
        self.mode = resolve_mode(cfg.mode)

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
        import wandb

        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        kwargs = dict(
            project=self.cfg.project,
            entity=self.cfg.entity,
            group=group,
            job_type=job_type,
            name=name,
            config=redact(config),
            tags=list(dict.fromkeys([*self.cfg.tags, *tags])),  # keep order, drop repeats
            dir=str(run_dir),
            id=run_id,
            # "allow": resume a preempted trial's run when it exists, start it when it does not.
            resume="allow" if run_id else None,
            # Finishing any run left open (a crashed trial) keeps sequential trials apart, and
            # unlike "create_new" it sets wandb.run, which HF Trainer's report_to="wandb" logs to.
            reinit="finish_previous",
        )
        try:
            run = wandb.init(mode=self.mode, settings=_quiet_settings(wandb, self.mode), **kwargs)
        except wandb.Error as exc:
            if self.mode != "online" or self.cfg.mode != "auto":
                raise
            # A key in ~/.netrc but no route to the server (a compute node): keep the trial and
            # its metrics, upload later with `wandb sync`. Later runs of this tracker go offline
            # at once instead of each waiting out init_timeout (90 s by default).
            log.warning("W&B online start failed (%s); logging this and later runs offline", type(exc).__name__)
            self.mode = "offline"
            _leave_service(wandb)
            run = wandb.init(mode="offline", settings=_quiet_settings(wandb, "offline"), **kwargs)
        return WandbRun(run, wandb, offline=self.mode == "offline")


def _leave_service(wandb: Any) -> None:
    """Let the next wandb.init start a wandb-core service of its own.

    A failed online start stays registered under its run id in the service it was sent to, so an
    offline start with the same fixed id (the summary run, a resumed preempted trial) is refused
    there as "run ID ... is in use". Teardown stops this process's own service (a new one starts
    on the next init, in about a second); a service shared through WANDB_SERVICE (started by a
    parent process, e.g. with `wandb.setup()`) is not ours to stop, so this process stops using it.
    No run is open here: the failed start was the only one.
    """
    os.environ.pop(wandb.env.SERVICE, None)
    try:
        wandb.teardown()
    except SystemExit as exc:  # teardown exits with the service's exit code when it is not 0
        log.warning("wandb-core service exited with %s after the failed online start", exc.code)


class WandbRun:
    """One open W&B run."""

    def __init__(self, run: Any, wandb: Any, offline: bool = False):
        self._run = run
        self._wandb = wandb
        self._offline = offline
        self._finished = False
        self.run_id: str | None = run.id
        self.dir = Path(run.dir).parent  # the run's folder, holding run-<id>.wandb

    def log(self, metrics: dict[str, float], step: int | None = None) -> None:
        self._run.log(dict(metrics), step=step)

    def summary(self, values: dict[str, Any]) -> None:
        self._run.summary.update(dict(flatten(redact(values))))

    def table(self, key: str, columns: list[str], rows: list[list[Any]]) -> None:
        rows = redact({"rows": [list(r) for r in rows]})["rows"]
        self._run.log({key: self._wandb.Table(columns=list(columns), data=rows)})

    def artifact(
        self, name: str, type: str, paths: list[Path], metadata: dict[str, Any], aliases: list[str] | None = None
    ) -> None:
        artifact = self._build_artifact(name, type, paths, metadata, _policy)
        self._run.log_artifact(artifact, aliases=_aliases(aliases))

    def use_artifact(
        self, name: str, type: str, paths: list[Path], metadata: dict[str, Any], aliases: list[str] | None = None
    ) -> None:
        # "immutable": referenced in place (W&B hashes it, no staging copy per trial); an input
        # must stay unchanged until an offline run is synced, which its sha256 alias lets one check.
        artifact = self._build_artifact(name, type, paths, metadata, lambda size: "immutable")
        if self._offline:
            # wandb 0.31 raises on use_artifact offline. This is the call use_artifact itself makes
            # for a new artifact online; offline it writes the artifact record with
            # use_after_commit=true into the .wandb file, and `wandb sync` then creates the version
            # (or finds it by digest) and records this run as its user.
            self._run._log_artifact(artifact, aliases=_aliases(aliases), is_user_created=True, use_after_commit=True)
        else:
            self._run.use_artifact(artifact, aliases=_aliases(aliases))

    def _build_artifact(
        self, name: str, type: str, paths: list[Path], metadata: dict[str, Any], policy: Callable[[int], str]
    ) -> Any:
        artifact = self._wandb.Artifact(_artifact_name(name), type=_artifact_name(type), metadata=redact(metadata))
        for path in map(Path, paths):
            if path.is_dir():
                size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
                artifact.add_dir(str(path), name=path.name, policy=policy(size))
            elif path.is_file():
                artifact.add_file(str(path), policy=policy(path.stat().st_size))
            else:
                raise FileNotFoundError(f"artifact {name!r}: {path} does not exist")
        return artifact

    def chart(self, key: str, kind: str, columns: list[str], rows: list[list[Any]], x: str, y: str, title: str) -> None:
        plots = {"line": self._wandb.plot.line, "scatter": self._wandb.plot.scatter}
        if kind not in plots:
            raise ValueError(f"chart {key!r}: kind {kind!r} is not one of {sorted(plots)}")
        table = self._wandb.Table(columns=list(columns), data=[list(r) for r in redact({"rows": rows})["rows"]])
        # The plot logs its table under "<key>_table" as well, so the data stay browsable.
        self._run.log({key: plots[kind](table, x, y, title=title)})

    def finish(self, exit_code: int = 0) -> None:
        if self._finished:  # finishing twice (an error path after a normal finish) is harmless
            return
        self._finished = True
        self._run.finish(exit_code=exit_code)


def _aliases(aliases: list[str] | None) -> list[str] | None:
    return [_artifact_name(a) for a in aliases] if aliases else None


def _policy(size: int) -> str:
    return "mutable" if size <= ARTIFACT_COPY_LIMIT_BYTES else "immutable"


def _artifact_name(name: str) -> str:
    """W&B accepts letters, digits, `-`, `_` and `.` in artifact names and types."""
    return re.sub(r"[^A-Za-z0-9_.\-]+", "-", name).strip("-")[:128] or "artifact"
