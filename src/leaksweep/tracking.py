"""Experiment tracking: the one place that talks to Weights & Biases.

Everything else in the project sees only the small `Tracker` / `Run` protocols below, so a sweep
without W&B (tracking off, or `mode: disabled`) runs the same code against `NullTracker`.

Choices worth knowing:
- `mode: auto` means online when an API key is configured (WANDB_API_KEY, or a .netrc entry for
  the W&B host) and offline otherwise, so a laptop without a key never hangs on a login prompt.
  An online start that fails (no network on a compute node) falls back to offline in auto mode.
- Offline runs land in `<run_dir>/wandb/offline-run-<time>-<id>/run-<id>.wandb` and are uploaded
  later with `leaksweep sync` (`sync_offline_runs`: `wandb sync` in parallel processes).
- Lineage: inputs (prompt set, rollout sources) are *used* artifacts of each trial run, outputs
  (the manifest, the report) are *logged* artifacts. wandb 0.31 refuses `use_artifact` offline, so
  an offline run records the input as an artifact flagged `use_after_commit`: `wandb sync` commits
  it and then marks it used, which is what an online `use_artifact` of a new artifact does.
- Config, summaries and artifact metadata pass through `redact()` first: W&B keeps them forever
  and shares them with everyone who can see the project.
- wandb is imported on first use only: importing it takes about a second, which commands that
  never track should not pay. The same holds for `wandb_workspaces` (W&B Reports), imported only
  by `create_wandb_report`.
"""

from __future__ import annotations

import copy
import logging
import netrc
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from leaksweep.config import TrackingConfig, WandbConfig
from leaksweep.errors import UserError

log = logging.getLogger(__name__)

REDACTED = "<redacted>"

# Secret-looking env values shorter than this are not hunted for in strings: short values ("1",
# "true", a port) would match ordinary text and redact it for nothing.
MIN_SECRET_LENGTH = 8

# Files up to this size are copied into W&B's staging area when added to an artifact, so a later
# `wandb sync` uploads what was logged even if the file changed since. Bigger files (a saved
# model) are referenced in place instead of being duplicated under ~/.local/share/wandb; they
# must stay unchanged until the run is synced.
ARTIFACT_COPY_LIMIT_BYTES = 64 * 2**20

# wandb 0.31 talks to W&B through CoreWeave Forge by default; a .netrc entry for the W&B API
# host behind it counts too (wandb reads both).
DEFAULT_BASE_URL = "https://api.forge.coreweave.com"
_FORGE_UPSTREAM = {"api.forge.coreweave.com": "api.wandb.ai", "forge.coreweave.com": "api.wandb.ai"}


# ---------------------------------------------------------------------------------------------
# the interface the rest of the project uses


class Run(Protocol):
    run_id: str | None

    def log(self, metrics: dict[str, float], step: int | None = None) -> None: ...

    def summary(self, values: dict[str, Any]) -> None: ...

    def table(self, key: str, columns: list[str], rows: list[list[Any]]) -> None: ...

    def artifact(self, name: str, type: str, paths: list[Path], metadata: dict[str, Any],
                 aliases: list[str] | None = None) -> None:
        """Log files as an output artifact of this run."""

    def use_artifact(self, name: str, type: str, paths: list[Path], metadata: dict[str, Any],
                     aliases: list[str] | None = None) -> None:
        """Record files as an input of this run (lineage). Files are referenced in place, not
        copied: inputs such as rollout files are large and used by every trial; W&B deduplicates
        the versions by content, so each distinct file becomes one artifact version."""

    def chart(self, key: str, kind: str, columns: list[str], rows: list[list[Any]], x: str, y: str,
              title: str) -> None:
        """Log a table and a `line` or `scatter` plot of column `y` against column `x`."""

    def finish(self, exit_code: int = 0) -> None: ...


class Tracker(Protocol):
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

    def artifact(self, name: str, type: str, paths: list[Path], metadata: dict[str, Any],
                 aliases: list[str] | None = None) -> None:
        pass

    def use_artifact(self, name: str, type: str, paths: list[Path], metadata: dict[str, Any],
                     aliases: list[str] | None = None) -> None:
        pass

    def chart(self, key: str, kind: str, columns: list[str], rows: list[list[Any]], x: str, y: str,
              title: str) -> None:
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
    return WandbTracker(cfg.wandb)


# ---------------------------------------------------------------------------------------------
# mode


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


# ---------------------------------------------------------------------------------------------
# redaction

# Words that make a key secret when they end its name: `hf_token`, `client_secret`, `db_passwd`.
_SECRET_LAST_WORDS = {"token", "secret", "secrets", "password", "passwd", "passphrase", "apikey", "credentials"}
# Fragments that make a name secret wherever they occur: `db_password_file`, `wandb_apikey_v2`.
_SECRET_FRAGMENTS = ("password", "passwd", "apikey", "api_key")


def looks_secret(name: str) -> bool:
    """Whether a config key or environment variable name looks like it holds a secret.

    The name is lower-cased and split into words (on `_`, `-`, `.`, spaces and camelCase humps).
    It is secret when
    - its last word is token, secret(s), password, passwd, passphrase, apikey or credentials
      (`hf_token`, `OPENAI_SECRET`, `accessToken`), or
    - it has at least two words and the last is `key` (`api_key`, `JUDGE_API_KEY`, `sort_key`), or
    - it contains password, passwd, apikey or api_key anywhere (`db_password_file`).
    So `key_column`, a bare `key`, `max_new_tokens` and `token_budget` are not secret: the rule
    looks at what the name ends with, and a few false positives (`sort_key`) are the price of
    never missing a `*_key`.
    """
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()
    words = [w for w in re.split(r"[_\-.\s]+", snake) if w]
    if not words:
        return False
    joined = "_".join(words)
    if any(fragment in joined for fragment in _SECRET_FRAGMENTS):
        return True
    if words[-1] in _SECRET_LAST_WORDS:
        return True
    return len(words) >= 2 and words[-1] == "key"


def secret_env_values() -> list[str]:
    """Values of environment variables whose names look secret, longest first.

    Longest first so that a secret containing another secret is replaced whole.
    """
    values = {v for k, v in os.environ.items() if looks_secret(k) and len(v) >= MIN_SECRET_LENGTH}
    return sorted(values, key=len, reverse=True)


def redact(config: dict) -> dict:
    """A deep copy of `config` with secrets replaced by "<redacted>".

    - The value of every key that `looks_secret` is replaced, unless it is None or a bool (an
      unset option or a `use_auth_token: true` flag reveals nothing).
    - Every occurrence, inside any string value, of the value of a secret-looking environment
      variable (WANDB_API_KEY, HF_TOKEN, ...; 8 characters or longer) is replaced, so a key that
      leaked into a URL or a command line is caught too.
    Lists, tuples and nested dicts are walked; other values are copied as they are.
    """
    return _redact(config, secret_env_values())


def _redact(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if isinstance(key, str) and looks_secret(key) and item is not None and not isinstance(item, bool):
                out[key] = REDACTED
            else:
                out[key] = _redact(item, secrets)
        return out
    if isinstance(value, list):
        return [_redact(item, secrets) for item in value]
    if isinstance(value, tuple):
        return tuple(_redact(item, secrets) for item in value)
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        return value
    return copy.deepcopy(value)


def flatten(values: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Nested dicts as `a/b/c` keys: the W&B UI groups metrics into panels by these prefixes."""
    for key, value in values.items():
        full = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            yield from flatten(value, full)
        else:
            yield full, value


# ---------------------------------------------------------------------------------------------
# W&B


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
            run = wandb.init(mode="offline", settings=_quiet_settings(wandb, "offline"), **kwargs)
        return WandbRun(run, wandb, offline=self.mode == "offline")


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

    def artifact(self, name: str, type: str, paths: list[Path], metadata: dict[str, Any],
                 aliases: list[str] | None = None) -> None:
        artifact = self._build_artifact(name, type, paths, metadata, _policy)
        self._run.log_artifact(artifact, aliases=_aliases(aliases))

    def use_artifact(self, name: str, type: str, paths: list[Path], metadata: dict[str, Any],
                     aliases: list[str] | None = None) -> None:
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

    def _build_artifact(self, name: str, type: str, paths: list[Path], metadata: dict[str, Any],
                        policy: Callable[[int], str]) -> Any:
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

    def chart(self, key: str, kind: str, columns: list[str], rows: list[list[Any]], x: str, y: str,
              title: str) -> None:
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


# ---------------------------------------------------------------------------------------------
# uploading offline runs: `leaksweep sync`


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


@dataclass(frozen=True)
class OfflineRun:
    """One W&B run's offline folders under a sweep; a resumed run (the study summary run, logged
    again by `leaksweep report`) has several, oldest first, which must be synced in that order."""

    run_id: str
    dirs: tuple[Path, ...]


@dataclass(frozen=True)
class SyncOutcome:
    run: OfflineRun
    ok: bool
    message: str


def _run_id_of(offline_dir: Path) -> str:
    # offline-run-<YYYYMMDD_HHMMSS>-<id>; ids may contain "-" (summary-<study>-<hash>)
    parts = offline_dir.name.split("-", 3)
    return parts[3] if len(parts) == 4 else offline_dir.name


def is_synced(offline_dir: Path) -> bool:
    """`wandb sync` leaves `run-<id>.wandb.synced` next to each file it uploaded completely."""
    files = list(offline_dir.glob("*.wandb"))
    return bool(files) and all(f.with_suffix(".wandb.synced").exists() for f in files)


def find_offline_runs(root: Path) -> tuple[list[OfflineRun], int]:
    """Runs under `root` with offline folders not yet synced, and how many synced folders were skipped."""
    dirs = sorted(p for p in Path(root).rglob("offline-run-*") if p.is_dir() and p.parent.name == "wandb")
    pending: dict[str, list[Path]] = {}
    skipped = 0
    for d in dirs:
        if is_synced(d):
            skipped += 1
        else:
            pending.setdefault(_run_id_of(d), []).append(d)
    # the folder name starts with the start time, so sorting by name orders a run's resumptions
    runs = [OfflineRun(run_id, tuple(sorted(ds, key=lambda d: d.name))) for run_id, ds in sorted(pending.items())]
    return runs, skipped


def wandb_sync(run: OfflineRun) -> tuple[bool, str]:
    """Upload one run with `wandb sync` (a separate process); ok when every file got its .synced marker."""
    cmd = [sys.executable, "-m", "wandb", "sync", *map(str, run.dirs)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    except subprocess.TimeoutExpired:
        return False, "wandb sync did not finish within an hour"
    lines = [ln for ln in (done.stdout + done.stderr).splitlines() if ln.strip()]
    last = redact({"line": lines[-1] if lines else ""})["line"]
    ok = done.returncode == 0 and all(is_synced(d) for d in run.dirs)
    if ok:
        return True, last or "synced"
    return False, f"wandb sync exited with {done.returncode}: {last or 'no output'}"


def sync_offline_runs(
    runs: list[OfflineRun],
    jobs: int = 4,
    upload: Callable[[OfflineRun], tuple[bool, str]] = wandb_sync,
    progress: Callable[[int, int, SyncOutcome], None] | None = None,
) -> list[SyncOutcome]:
    """Upload `runs` with `jobs` uploads at a time; one failure does not stop the others.

    `upload` returns (ok, message); an exception it raises counts as a failure of that run.
    `progress(done, total, outcome)` is called as each run finishes. Outcomes come back in the
    order of `runs`.
    """
    if jobs < 1:
        raise UserError(f"--jobs {jobs}: use at least 1")
    outcomes: dict[int, SyncOutcome] = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(upload, run): i for i, run in enumerate(runs)}
        for future in as_completed(futures):
            i = futures[future]
            try:
                ok, message = future.result()
            except Exception as exc:  # one broken upload must not hide the others' results
                ok, message = False, f"{type(exc).__name__}: {exc}"
            outcomes[i] = SyncOutcome(runs[i], bool(ok), str(message))
            if progress:
                progress(len(outcomes), len(runs), outcomes[i])
    return [outcomes[i] for i in range(len(runs))]


# ---------------------------------------------------------------------------------------------
# W&B Reports: `leaksweep wandb-report`
#
# A report *spec* is plain data (built by summary.py from a sweep folder):
#   {"title": str, "description": str, "blocks": [block, ...]}
#   block: {"kind": "h1"|"h2"|"p"|"markdown", "text": str}
#        | {"kind": "panels", "name": str, "group": str, "job_type": str, "panels": [panel, ...]}
#   panel: {"kind": "line", "title": str, "x": str, "y": [str, ...]}
#        | {"kind": "bar", "title": str, "metrics": [str, ...]}
#        | {"kind": "scalar", "title": str, "metric": str}
#        | {"kind": "table", "table": str}
#        | {"kind": "compare"}


def build_wandb_report(spec: dict, entity: str, project: str) -> Any:
    """The wandb_workspaces Report object for `spec` (no network until `.save()`)."""
    import wandb_workspaces.reports.v2 as wr
    from wandb_workspaces import expr

    def panel(p: dict) -> Any:
        kind = p["kind"]
        if kind == "line":
            return wr.LinePlot(title=p["title"], x=p["x"], y=list(p["y"]))
        if kind == "bar":
            return wr.BarPlot(title=p["title"], metrics=[wr.SummaryMetric(m) for m in p["metrics"]], orientation="v")
        if kind == "scalar":
            return wr.ScalarChart(title=p["title"], metric=wr.SummaryMetric(p["metric"]))
        if kind == "table":
            return wr.WeavePanelSummaryTable(table_name=p["table"])
        if kind == "compare":
            return wr.RunComparer(diff_only="split")
        raise ValueError(f"report spec: unknown panel kind {kind!r}")

    def block(b: dict) -> Any:
        kind = b["kind"]
        if kind in ("h1", "h2", "p"):
            return {"h1": wr.H1, "h2": wr.H2, "p": wr.P}[kind](b["text"])
        if kind == "markdown":
            return wr.MarkdownBlock(b["text"])
        if kind == "panels":
            if "'" in b["group"] or "'" in b["job_type"]:  # sweep names are letters, digits, - _ . only
                raise ValueError(f"report spec: a quote in group {b['group']!r} would break the run filter")
            runset = wr.Runset(entity=entity, project=project, name=b["name"],
                               filters=expr.And(expr.Metric("Group") == b["group"], expr.Metric("JobType") == b["job_type"]))
            return wr.PanelGrid(runsets=[runset], panels=[panel(p) for p in b["panels"]])
        raise ValueError(f"report spec: unknown block kind {kind!r}")

    return wr.Report(project=project, entity=entity, title=spec["title"], description=spec.get("description", ""),
                     blocks=[block(b) for b in spec["blocks"]], width="fluid")


def create_wandb_report(spec: dict, cfg: WandbConfig) -> str:
    """Save `spec` as a W&B Report in the sweep's project and return its URL.

    Refuses (UserError) without an API key or when W&B is switched off or offline, saying what
    to do; the runs must be uploaded first (`leaksweep sync`) for the report to show anything.
    """
    action = "leaksweep wandb-report"
    if cfg.mode in ("offline", "disabled") or os.environ.get("WANDB_MODE", "").strip().lower() in ("offline", "disabled"):
        why = f"tracking.wandb.mode is {cfg.mode!r}" if cfg.mode in ("offline", "disabled") else "WANDB_MODE is offline/disabled"
        raise UserError(f"{action}: W&B Reports live on the W&B server, but {why}; unset it on a machine with "
                        "network access, run `leaksweep sync SWEEP_DIR` to upload the runs, then rerun")
    require_api_key(action)
    import wandb

    try:
        entity = cfg.entity or wandb.Api().default_entity
        report = build_wandb_report(spec, entity, cfg.project)
        report.save()
        return str(report.url)
    except UserError:
        raise
    except Exception as exc:  # no route to the server, an expired key, a missing project
        message = redact({"m": f"{type(exc).__name__}: {exc}"})["m"]
        raise UserError(f"{action}: W&B refused or could not be reached ({message}); check the network and the "
                        "key (`wandb login --relogin`), and that the runs were uploaded (`leaksweep sync`)") from exc
