"""The journal file of a study: whole lines only, never silently replaced.

Owns the checks leaksweep makes on an Optuna journal file (no optuna import: study/storage.py opens
the file and hands these the path and its lock): `journal_problem` finds a cut-off or garbled line,
`check_journal` refuses to open such a file, `check_journal_present` refuses a missing or emptied
journal beside trial folders (and, for read-only commands, a missing one), and `WholeLineLock` (the
lock every append holds) refuses to append after a line a dying writer cut off. Each refusal names
`leaksweep repair` (study/repair.py), which rebuilds the study from the trial folders.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from leaksweep.errors import UserError
from leaksweep.layout import SweepDir
from leaksweep.study import heartbeat, locks


class FlockJournalLock:
    """Optuna's journal lock interface (acquire, release: all JournalFileBackend calls; its base class is
    not exported) on flock, the folder's `flock` kind: released by the kernel when its holder dies, where
    Optuna's own file locks are left behind for their 30 s grace period."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._held = None

    def acquire(self) -> bool:
        self._held = locks.flock_lock(Path(self._path))
        self._held.__enter__()
        return True

    def release(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.__exit__(None, None, None)


class WholeLineLock:
    """The journal lock, which every append holds, refusing to be held over a cut-off last line: a
    writer that died mid-append (kill -9, a full disk) leaves one, and the next append would be glued
    onto it. Checked after acquiring (one byte read), so no append ever lands on a partial line; the
    append fails with the damaged-journal message and nothing is written."""

    def __init__(self, inner: Any, path: Path, sweep_dir: Path) -> None:
        self._inner, self._path, self._sweep_dir = inner, path, sweep_dir

    def acquire(self) -> bool:
        heartbeat.hold_interrupts()  # Ctrl-C between acquire and Optuna's try/finally would leave it held
        try:
            self._inner.acquire()
        except BaseException:
            heartbeat.release_interrupts()
            raise
        if not _ends_whole(self._path):
            self.release()
            check_journal(self._path, _NoLock(), self._sweep_dir)  # names the line and the fix
        return True

    def release(self) -> None:
        try:
            self._inner.release()
        finally:
            heartbeat.release_interrupts()  # raises a KeyboardInterrupt that waited for the lock


def _ends_whole(path: Path) -> bool:
    """True when the file is missing, empty or ends with a newline (reads its last byte only)."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, 2)
            if size == 0:
                return True
            handle.seek(size - 1)
            return handle.read(1) == b"\n"
    except FileNotFoundError:
        return True


class _NoLock:
    """For `check_journal` while the caller holds the journal lock already (or has just released it)."""

    def acquire(self) -> bool:
        return True

    def release(self) -> None:
        pass


def repair_hint(sweep_dir: Path) -> str:
    return (
        f"run `leaksweep repair {sweep_dir}` to rebuild the study from the trial folders (the damaged file "
        "is kept aside), or restore the journal from a copy"
    )


def check_journal_present(path: Path, sweep_dir: Path, create: bool) -> None:
    """UserError when the journal is missing or empty although trial folders exist (it was deleted or
    emptied: opening it would silently start a new study and rerun every trial), and, unless `create`,
    when it is missing (a read-only command must not create one)."""
    empty = not path.is_file() or path.stat().st_size == 0
    if not empty:
        return
    started = [t.name for t in SweepDir(sweep_dir).trials()]
    if started:
        what = "is empty" if path.is_file() else "is missing"
        raise UserError(
            f"{path}: the Optuna journal {what}, but {len(started)} trial folder(s) exist under "
            f"{SweepDir(sweep_dir).trials_dir} ({started[0]} ... {started[-1]}); leaksweep starts no new study "
            f"over them; {repair_hint(sweep_dir)}"
        )
    if not create and not path.is_file():
        raise UserError(
            f"{sweep_dir}: no Optuna study yet (no {path.name}); `leaksweep sweep SWEEP.yaml` creates it when the "
            "sweep starts"
        )


def journal_problem(path: Path) -> tuple[int, str] | None:
    """The first damaged line of a journal file: (line number, what is wrong), or None when every line
    is whole (ends with a newline) and parses as JSON. Reads the whole file (a journal is small)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    lines = data.split(b"\n")
    for number, line in enumerate(lines, start=1):
        last = number == len(lines)
        if last:
            return (number, f"the last line is cut off (no newline): {line[:80]!r}") if line else None
        try:
            json.loads(line)
        except ValueError as exc:
            return number, f"not JSON ({exc}): {line[:80]!r}"
    return None


def check_journal(path: Path, lock: Any, sweep_dir: Path | None = None) -> None:
    """UserError naming file:line when the journal holds a damaged line; nothing is appended after one.

    A cut-off last line may be an append in progress (a reader takes no lock): a problem is confirmed
    under the journal's own lock, which every append holds, before it is reported."""
    if journal_problem(path) is None:
        return
    lock.acquire()
    try:
        problem = journal_problem(path)
    finally:
        lock.release()
    if problem is not None:
        number, what = problem
        raise UserError(
            f"{path}:{number}: the Optuna journal is damaged ({what}); leaksweep appends nothing to it; "
            + (repair_hint(sweep_dir) if sweep_dir is not None else "Restore it from a copy")
            + "; a database (search.storage: postgresql+psycopg2://...) avoids journal files altogether"
        )
