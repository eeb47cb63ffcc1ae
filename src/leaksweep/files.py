"""Small file helpers shared by every stage: atomic writes, JSONL with line-numbered errors, hashing."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from leaksweep.errors import UserError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` so readers see the old file or the whole new one, never a half."""
    path = Path(path)
    make_folder(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; results and reports are meant to be shared
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` to write (by any writer: Arrow, a library's save); when the block
    ends without an error it is fsync'ed and renamed onto `path`, so readers see the old file or the whole
    new one, never a half. On an error the temporary file is removed and `path` is left as it was."""
    path = Path(path)
    make_folder(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~_UMASK)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def make_folder(folder: Path) -> None:
    """mkdir -p; a file in the way or a folder we may not write is a UserError naming it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError, PermissionError) as exc:
        blocker = next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), None)
        why = f"{blocker} is a file" if blocker is not None else exc.strerror
        raise UserError(f"{folder}: cannot create this folder ({why}); choose another path") from exc


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


_JSONL = json.JSONEncoder(sort_keys=True, default=str)  # = json.dumps(r, sort_keys=True, default=str), made once


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    encode = _JSONL.encode
    atomic_write_text(path, "".join(encode(r) + "\n" for r in rows))


def read_utf8(path: Path) -> str:
    """A text file's content; bytes that are not UTF-8 are a UserError naming the file, line and byte.
    OSError (a missing or unreadable file) is left to the caller, which knows what the file is for."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8").removeprefix("\ufeff")  # a byte-order mark some editors write
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise UserError(f"{path}:{line}: {_not_utf8(data, exc.start)}") from exc


def _not_utf8(data: bytes, at: int, offset: int = 0) -> str:
    """Why `data` (which starts at byte `offset` of its file) does not decode at `at`, and the fix."""
    if offset == 0 and data.startswith(b"\x1f\x8b"):
        return "a gzip-compressed file, not text; decompress it (gunzip) and give the plain file"
    if offset == 0 and data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "UTF-16 text, not UTF-8; save the file as UTF-8 (e.g. iconv -f utf-16 -t utf-8)"
    shown = data[at : at + 1]
    return (
        f"not UTF-8 (at byte offset {offset + at}: {shown!r}); save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
    )


def read_json(path: Path) -> Any:
    try:
        return json.loads(read_utf8(path))
    except FileNotFoundError as exc:
        raise UserError(f"{path}: file not found") from exc
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}:{exc.colno}: malformed JSON: {exc.msg}") from exc


def read_jsonl(path: Path) -> list[dict]:
    """Read a JSONL file; a bad line is reported as `file:line` with the parser's reason (and, for
    bytes that are not UTF-8, their offset in the file)."""
    rows = []
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise UserError(f"{path}: cannot open ({exc.strerror}); check the path in the sweep file") from exc
    with handle:
        head = handle.read(4)
        if head == b"PAR1":
            raise UserError(f"{path}: this is a Parquet file, not JSONL; rename it to .parquet")
        if head.startswith(b"\x1f\x8b"):
            raise UserError(f"{path}: {_not_utf8(head, 0)}")
        handle.seek(0)
        offset = 0
        for number, raw in enumerate(handle, start=1):
            line = _decode_line(raw, path, number, offset)
            offset += len(raw)
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(
                    f"{path}:{number}: malformed JSON ({exc.msg} at column {exc.colno}); each line must be one JSON object"
                ) from exc
            if not isinstance(row, dict):
                raise UserError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    return rows


def _decode_line(raw: bytes, path: Path, number: int, offset: int) -> str:
    try:
        text = raw.decode("utf-8")
        return text.removeprefix("\ufeff") if number == 1 else text  # a byte-order mark some editors write
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}:{number}: {_not_utf8(raw, exc.start, offset)}") from exc


def file_sha256(path: Path) -> str:
    """Content hash of a file (hex), read in 1 MiB blocks so large files stay out of memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(obj: Any) -> str:
    """Content hash of a JSON-able object (canonical key order), as 16 hex digits for display."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
