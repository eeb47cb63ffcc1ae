"""The one Optuna adapter: the only module of leaksweep that imports optuna.

It owns opening the storage (a journal file in the sweep folder, checked for damaged lines and appended
under the lock of the folder's kind, or an RDB with Optuna's heartbeat),
creating and loading the study, the sampler, ask / tell / enqueue, failing and re-enqueueing a stale
trial, reading trials as plain `TrialRecord`s, and every use of Optuna's private attributes (each in
one small named function below, saying why no public API does it).

The other study modules hold a Study and a Trial as opaque handles: they read `trial.number`, and
do everything else through the functions here. Trial states are Optuna's names as strings
(WAITING, RUNNING, COMPLETE, FAIL, PRUNED).
"""

from __future__ import annotations

import copy
import hashlib
import math
import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalFileSymlinkLock
from optuna.trial import TrialState

from leaksweep.config import FloatRange, SearchConfig, SweepConfig
from leaksweep.errors import UserError
from leaksweep.layout import SweepDir
from leaksweep.study import journal_file
from leaksweep.study.journal_file import journal_problem  # noqa: F401 - callers read it here

optuna.logging.set_verbosity(optuna.logging.WARNING)

Study = optuna.Study
Trial = optuna.Trial


@dataclass(frozen=True)
class TrialRecord:
    """One trial of the study as plain data (a FrozenTrial's public fields, and its storage id)."""

    number: int
    state: str  # WAITING | RUNNING | COMPLETE | FAIL | PRUNED
    trial_id: int  # the storage's id of the trial (not its number): what storage calls take
    params: dict[str, Any] = field(default_factory=dict)
    user_attrs: dict[str, Any] = field(default_factory=dict)
    system_attrs: dict[str, Any] = field(default_factory=dict)
    values: tuple[float, ...] | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None


# --- Optuna private attributes: every use, each with why -------------------------------------------


def _storage_of(study: Study):
    """The storage object a Study wraps: Optuna has no public accessor, and we need it for the RDB
    heartbeat, the compare-and-set fail of a stale trial, and to hand the dashboard the same object."""
    return study._storage


def _study_id(study: Study) -> int:
    """The storage's id of the study: the stale-trial query takes it, and Study exposes no public one."""
    return study._study_id


def _trial_id(trial: Trial | optuna.trial.FrozenTrial) -> int:
    """The storage's id of a trial (its `number` counts within the study): every storage call takes it,
    and neither Trial nor FrozenTrial has a public accessor."""
    return trial._trial_id


def _stale_trial_ids(study: Study) -> set[int]:
    """Optuna's own verdict on which RUNNING trials missed their RDB heartbeat. The public route,
    `fail_stale_trials`, also fails and retries them at once; reclaim decides, records why, then fails."""
    return set(_storage_of(study)._get_stale_trial_ids(_study_id(study)))


# --- storage and study -------------------------------------------------------------------------------


def journal_path(url: str | None, sweep_dir: Path) -> Path | None:
    """The journal file a storage URL names (none: the sweep folder's; journal:PATH relative to it);
    None for an RDB URL."""
    if not url:
        return SweepDir(sweep_dir).journal
    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:"))
        return path if path.is_absolute() else Path(sweep_dir) / path
    return None


def open_storage(
    url: str | None,
    sweep_dir: Path,
    search: SearchConfig | None = None,
    lock_kind: str | None = None,
    create: bool = False,
    rebuilding: bool = False,
):
    """The Optuna storage `search.storage` names, opened by the backend registered for its scheme.

    Default (no URL): a journal file in the sweep folder (no server, safe for concurrent workers on
    one node or, with the link lock, on many). A scheme no backend claims is taken as an SQLAlchemy
    URL and opened as an RDB. `lock_kind` (study/locks.py) overrides the folder's recorded lock for
    the journal: prepare passes the kind it chose before sweep.json records it. A journal file is
    only created with `create` (prepare): every other command stops when it is missing or empty.
    """
    opener = BACKENDS.get(storage_scheme(url), _open_rdb)
    if opener is _open_journal:
        return _open_journal(url, Path(sweep_dir), search, lock_kind, create, rebuilding)
    return opener(url, Path(sweep_dir), search)


STORAGE_FIX = "use journal:PATH, sqlite:///PATH or postgresql+psycopg2://USER:PASSWORD@HOST/DB (or leave it out)"


def mask_password(url: str) -> str:
    """postgresql://user:SECRET@host/db -> postgresql://user:***@host/db: printed commands end up in logs."""
    # greedy up to the last "@", as SQLAlchemy parses it: a password may itself contain "@"
    return re.sub(r"^([\w+]+://[^:/@]*:).*@", r"\1***@", url)


def check_storage_url(url: str | None) -> None:
    """UserError unless `search.storage` parses, its driver imports and (for a server) it answers:
    prepare calls this before it writes anything."""
    if not url:
        return
    if storage_scheme(url) == "journal":
        path = Path(url.removeprefix("journal:"))
        if not url.removeprefix("journal:"):
            raise UserError(f"search.storage: {url!r} names no file; {STORAGE_FIX}")
        if path.is_absolute() and not path.parent.is_dir():
            raise UserError(
                f"search.storage: {url!r}: the folder {path.parent} does not exist; create it or fix the path"
            )
        return
    import sqlalchemy
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

    shown = f"search.storage: {mask_password(url)!r}"
    try:
        parsed = sqlalchemy.engine.make_url(url)
        parsed.get_dialect()
    except ArgumentError as exc:
        raise UserError(f"{shown} is not a storage URL; {STORAGE_FIX}") from exc
    except NoSuchModuleError as exc:
        raise UserError(f"{shown}: unknown database kind {parsed.drivername!r}; {STORAGE_FIX}") from exc
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise UserError(
                f"{shown}: an in-memory database is gone when the command ends; give a file, sqlite:///PATH"
            )
        folder = Path(parsed.database or ".").parent
        if parsed.database and not folder.is_dir():
            raise UserError(f"{shown}: the folder {folder} does not exist; create it or fix the path")
        return
    connect_args = {"connect_timeout": 10} if parsed.get_backend_name() == "postgresql" else {}
    try:
        engine = sqlalchemy.create_engine(parsed, connect_args=connect_args)
    except ImportError as exc:
        raise UserError(
            f"{shown}: its driver is not installed ({exc}); install it, or name an installed one "
            "(e.g. postgresql+psycopg2://...)"
        ) from exc
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise UserError(f"{shown}: cannot connect ({reason}); check the host, database and credentials") from exc
    finally:
        engine.dispose()


def storage_scheme(url: str | None) -> str:
    """`journal` for no URL; else the URL's scheme without its driver (`postgresql+psycopg2` -> `postgresql`)."""
    return "journal" if not url else url.split(":", 1)[0].split("+", 1)[0]


def _journal_lock(path: Path, kind: str) -> Any:
    """The lock Optuna takes around each journal append, of the folder's kind: flock; Optuna's link
    lock (`JournalFileSymlinkLock`: an atomic symlink, NFSv2 and later) where the folder takes link locks;
    its O_CREAT|O_EXCL lock (`JournalFileOpenLock`) where the file system has no links."""
    if kind == "link":
        return JournalFileSymlinkLock(str(path))
    if kind == "excl":
        return JournalFileOpenLock(str(path))
    return journal_file.FlockJournalLock(f"{path}.flock")


def _open_journal(
    url: str | None,
    sweep_dir: Path,
    search: SearchConfig | None,
    lock_kind: str | None = None,
    create: bool = False,
    rebuilding: bool = False,
):
    path = journal_path(url, sweep_dir)
    if not rebuilding:  # `leaksweep repair` creates a new journal over the trial folders on purpose
        journal_file.check_journal_present(path, sweep_dir, create)
    lock = _journal_lock(path, lock_kind or SweepDir(sweep_dir).folder_lock().kind)
    journal_file.check_journal(path, lock, sweep_dir)
    return JournalStorage(JournalFileBackend(str(path), lock_obj=journal_file.WholeLineLock(lock, path, sweep_dir)))


# --- the database lock -----------------------------------------------------------------------------


def uses_database_lock(url: str | None) -> bool:
    """A study in PostgreSQL takes its prepare and ask locks in the database, not in the sweep folder."""
    return storage_scheme(url) == "postgresql"


@contextmanager
def advisory_lock(url: str, name: str) -> Iterator[None]:
    """PostgreSQL's session advisory lock on `name` (a study's name plus the lock's name) for the block.

    Exclusive across every process on every node that reaches the database, whatever file system the
    sweep folder is on; a holder that dies drops its connection, and the server releases its lock."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    key = int.from_bytes(hashlib.sha256(f"leaksweep:{name}".encode()).digest()[:8], "big", signed=True)
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)  # one connection, closed after the block
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
    except sqlalchemy.exc.OperationalError as exc:
        raise UserError(
            f"search.storage: cannot take the study's lock in the database ({exc.orig}); check the URL "
            "and that the server is up"
        ) from exc
    finally:
        engine.dispose()


def _open_rdb(url: str, sweep_dir: Path, search: SearchConfig | None):
    """An RDB URL (sqlite:///..., postgresql://...), opened with Optuna's heartbeat when `search` (the
    sweep's SearchConfig) is given: its heartbeat_s / stale_after_s become Optuna's interval and grace
    period (whole seconds), and reclaim fails and retries the trials it finds stale."""
    if search is None:
        return url  # Optuna opens it
    with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9; the API is stable in use
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RDBStorage(
            url,
            heartbeat_interval=max(1, math.ceil(search.heartbeat_s)),
            grace_period=max(1, math.ceil(search.stale_after_s)),
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=search.max_retries),
            engine_kwargs={"pool_pre_ping": True},
        )  # a server restart must not break long-lived workers


# Storage backends by URL scheme: opener(url, sweep_dir, search) -> an Optuna storage (or a URL Optuna
# opens itself). A new backend is one module in this room with its opener, plus one entry here.
BACKENDS: dict[str, Callable[[str | None, Path, SearchConfig | None], Any]] = {
    "journal": _open_journal,
    "sqlite": _open_rdb,
    "postgresql": _open_rdb,
    "mysql": _open_rdb,
}


def create_study(cfg: SweepConfig, sweep_dir: Path, lock_kind: str | None = None, rebuilding: bool = False) -> bool:
    """Create the sweep's study unless its storage holds it already; True when created. `rebuilding`:
    `leaksweep repair` creates it over existing trial folders (never done otherwise)."""
    storage = open_storage(cfg.search.storage, sweep_dir, lock_kind=lock_kind, create=True, rebuilding=rebuilding)
    try:
        optuna.load_study(study_name=cfg.name, storage=storage)
        return False
    except KeyError:
        pass
    directions = [o.direction for o in cfg.search.objectives] or ["maximize"]
    optuna.create_study(study_name=cfg.name, storage=storage, directions=directions)
    return True


def delete_study(url: str | None, sweep_dir: Path, name: str) -> bool:
    """Delete the study `name` from an RDB storage (prepare replacing a sweep none of whose trials
    completed); False when the storage holds none. A journal file is moved aside instead (layout)."""
    try:
        optuna.delete_study(study_name=name, storage=open_storage(url, sweep_dir))
    except KeyError:
        return False
    return True


def _sampler(cfg: SweepConfig) -> optuna.samplers.BaseSampler:
    if cfg.search.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=None)
    if cfg.search.sampler == "gp":
        return optuna.samplers.GPSampler()
    if cfg.search.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler()
    # grid: every trial is enqueued, the sampler never suggests; random for the rest
    return optuna.samplers.RandomSampler()


def load_study(sweep_dir: Path, cfg: SweepConfig, lock_kind: str | None = None) -> Study:
    """The sweep's study with its sampler; UserError when the storage holds none (it never creates one)."""
    storage = open_storage(cfg.search.storage, sweep_dir, cfg.search, lock_kind)
    try:
        return optuna.load_study(study_name=cfg.name, storage=storage, sampler=_sampler(cfg))
    except KeyError as exc:
        raise UserError(
            f"{sweep_dir}: no study named {cfg.name!r} in its storage; run `leaksweep sweep` first"
        ) from exc


def storage_and_id(study: Study, name: str) -> tuple[Any, int]:
    """The storage object the study was opened on (for optuna-dashboard) and the study's id in it."""
    storage = _storage_of(study)
    return storage, storage.get_study_id_from_name(name)


# --- reading trials --------------------------------------------------------------------------------


def _record(t: optuna.trial.FrozenTrial) -> TrialRecord:
    return TrialRecord(
        t.number,
        t.state.name,
        _trial_id(t),
        dict(t.params),
        dict(t.user_attrs),
        dict(t.system_attrs),
        tuple(t.values) if t.values is not None else None,
        t.datetime_start,
        t.datetime_complete,
    )


def trials(study: Study, *states: str) -> list[TrialRecord]:
    """The study's trials in number order, only those in `states` when any are named."""
    wanted = tuple(TrialState[s] for s in states) if states else None
    return [_record(t) for t in study.get_trials(deepcopy=False, states=wanted)]


def directions(study: Study) -> list[str]:
    return [d.name.lower() for d in study.directions]


def pareto_numbers(study: Study) -> list[int]:
    """The trial numbers on the Pareto front of a multi-objective study."""
    return sorted(t.number for t in study.best_trials)


def user_attrs(trial: Trial) -> dict[str, Any]:
    return dict(trial.user_attrs)


def set_user_attrs(trial: Trial, **attrs: Any) -> None:
    for key, value in attrs.items():
        trial.set_user_attr(key, value)


def suggest(trial: Trial, name: str, choice: list | FloatRange, integer: bool = False) -> Any:
    """A categorical suggestion for a list, else a float (an int when `integer`) in the range."""
    if isinstance(choice, list):
        return trial.suggest_categorical(name, choice)
    assert isinstance(choice, FloatRange)
    if integer:
        return trial.suggest_int(name, int(choice.low), int(choice.high), log=choice.log, step=int(choice.step or 1))
    return trial.suggest_float(name, choice.low, choice.high, log=choice.log, step=choice.step)


# --- ask, tell, enqueue ----------------------------------------------------------------------------


def ask(study: Study) -> Trial:
    with warnings.catch_warnings():  # we run the heartbeat ourselves (worker.beating), not Study.optimize
        warnings.filterwarnings("ignore", message=".*Heartbeat of storage is supposed to be used.*")
        return study.ask()


def trial_for(study: Study, record: TrialRecord) -> Trial:
    """A Trial handle on an existing RUNNING trial, to run it again (a preempted one being adopted)."""
    return optuna.Trial(study, record.trial_id)


def enqueue(study: Study, params: dict, attrs: dict) -> None:
    study.enqueue_trial(params, user_attrs=attrs)


def tell_failed(study: Study, trial: Trial) -> None:
    """Tell FAIL, unless the trial was reclaimed meanwhile (then it is FAIL already and retried)."""
    try:
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    except UpdateFinishedTrialError:
        pass


def tell_complete(study: Study, trial: Trial, values: Sequence[float]) -> bool:
    """Tell a finished trial's values; False when it was finished already (reclaimed as stale meanwhile)."""
    try:
        frozen = study.tell(trial, values=list(values), skip_if_finished=True)
    except UpdateFinishedTrialError:
        return False
    return frozen is not None and frozen.state == TrialState.COMPLETE


def state_of(study: Study, trial: Trial) -> str:
    """The trial's state in the storage now (another process may have finished it)."""
    return _storage_of(study).get_trial(_trial_id(trial)).state.name


def complete_from_result(study: Study, record: TrialRecord, values: Sequence[float]) -> bool:
    """Tell a RUNNING trial COMPLETE with `values` (its result.json's objectives: its worker died after
    writing it, before telling); False when it was finished meanwhile. A compare-and-set, as in
    `fail_and_retry`, so a trial is finished once. Values of the wrong count are refused."""
    if len(values) != len(study.directions):
        return False
    try:
        return bool(
            _storage_of(study).set_trial_state_values(record.trial_id, state=TrialState.COMPLETE, values=list(values))
        )
    except UpdateFinishedTrialError:
        return False


# --- heartbeats and reclaim --------------------------------------------------------------------------


def has_optuna_heartbeat(study: Study) -> bool:
    """True when the storage beats itself (RDB with heartbeat_interval); the journal has no heartbeat."""
    # Optuna wraps an RDBStorage in a cache that forwards the heartbeat methods
    interval = getattr(_storage_of(study), "get_heartbeat_interval", None)
    return interval is not None and interval() is not None


def heartbeat_recorder(study: Study, trial: Trial):
    """A function recording one Optuna RDB heartbeat for `trial` (Optuna only beats inside optimize)."""
    storage, trial_id = _storage_of(study), _trial_id(trial)
    return lambda: storage.record_heartbeat(trial_id)


def optuna_stale_ids(study: Study) -> set[int] | None:
    """Storage ids of the RUNNING trials Optuna's RDB heartbeat finds stale; None without one."""
    return _stale_trial_ids(study) if has_optuna_heartbeat(study) else None


def fail_and_retry(study: Study, record: TrialRecord, max_retries: int) -> tuple[int, bool] | None:
    """Mark a RUNNING trial FAIL and re-enqueue its params and attributes (Optuna's retry callback keeps
    the history), unless it ran `max_retries` + 1 times. Returns (how many times it has run, retried),
    or None when another reclaimer or its worker finished it first: marking FAIL is a compare-and-set."""
    storage = _storage_of(study)
    try:
        if not storage.set_trial_state_values(record.trial_id, state=TrialState.FAIL):
            return None
    except UpdateFinishedTrialError:
        return None  # finished (or reclaimed by another worker) meanwhile
    failed = copy.deepcopy(storage.get_trial(record.trial_id))  # the callback edits its system_attrs
    with warnings.catch_warnings():  # the retry callback is "experimental" since Optuna 2.8 and stable in use
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        runs = len(RetryHeartbeatStaleTrialCallback.retry_history(failed)) + 1  # this one and its earlier tries
        RetryHeartbeatStaleTrialCallback(max_retry=max_retries)(study, failed)
    return runs, runs <= max_retries  # the callback's own rule: it enqueued the retry


# --- importances ---------------------------------------------------------------------------------


def param_importances(
    study: Study, numbers: Sequence[int], params: Sequence[str], quantile: float, signs: Sequence[float]
) -> list[dict[str, float]]:
    """PED-ANOVA importances of `params`, per objective, over the trials `numbers` only.

    PED-ANOVA needs no scikit-learn (fANOVA does) and is deterministic. With an explicit target it
    treats lower as better: `signs[i]` is -1 for a maximised objective i.
    """
    wanted = set(numbers)
    sub = optuna.create_study(directions=study.directions)  # a copy holding only those trials
    sub.add_trials([t for t in study.get_trials(deepcopy=False) if t.number in wanted])
    evaluator = optuna.importance.PedAnovaImportanceEvaluator(target_quantile=quantile)
    found = []
    for i, sign in enumerate(signs):
        with warnings.catch_warnings():  # its "lower target is better" reminder: handled by the sign
            warnings.filterwarnings("ignore", message=".*low `target` values.*")
            raw = optuna.importance.get_param_importances(
                sub, evaluator=evaluator, params=list(params), target=lambda t, i=i, sign=sign: sign * t.values[i]
            )
        found.append({k: float(v) for k, v in raw.items()})
    return found


# --- rebuilding a study from its trial folders (study/repair.py) ------------------------------------


def distribution(choice: list | FloatRange, integer: bool = False) -> Any:
    """The distribution `suggest` uses for `choice`: a rebuilt trial's params get the same ones."""
    if isinstance(choice, list):
        return optuna.distributions.CategoricalDistribution(choice)
    if integer:
        step = int(choice.step or 1)
        return optuna.distributions.IntDistribution(int(choice.low), int(choice.high), log=choice.log, step=step)
    return optuna.distributions.FloatDistribution(choice.low, choice.high, log=choice.log, step=choice.step)


def add_finished_trial(
    study: Study,
    state: str,
    params: dict[str, Any],
    distributions: dict[str, Any],
    values: Sequence[float] | None,
    user_attrs: dict[str, Any],
    started: datetime | None,
    completed: datetime | None,
) -> int:
    """Add a finished (COMPLETE or FAIL) trial with these params, values and attributes; its number.
    Optuna requires both times of a finished trial: now, when unknown."""
    started = started or completed or datetime.now()
    completed = completed or started
    frozen = optuna.trial.FrozenTrial(
        number=-1,  # the storage numbers it: the next one
        state=TrialState[state],
        value=None,
        datetime_start=started,
        datetime_complete=completed,
        params=dict(params),
        distributions=dict(distributions),
        user_attrs=dict(user_attrs),
        system_attrs={},
        intermediate_values={},
        trial_id=-1,
        values=list(values) if values is not None else None,
    )
    study.add_trial(frozen)
    return study.get_trials(deepcopy=False)[-1].number
