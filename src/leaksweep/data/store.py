"""The data cache: the prompt set and its sources, read and aligned once into one Arrow file.

`open_dataset(cfg, base, root)` returns the aligned Dataset, memory-mapped from
`root/<key>/dataset.arrow`, building it first when it is missing. The key hashes the input files'
contents (and the alignment settings), so a changed file is noticed and gets a new cache; an old
cache stays for the trials whose manifests point at its row order. Every worker maps the same file,
so the workers of a node share its pages, and the per-row numbers trials need (mixture uniforms,
subset positions, text keys) are saved beside it by whoever computes them first.

Reading: JSONL and Parquet go through Arrow's readers (the C++ JSON parser is ~10x faster than
json.loads per line), then the columns are checked and aligned with vectorised code. Anything the
fast path does not recognise (mixed types, a bad record) is read again record by record
(`records.load_dataset`), which names the file and record in its message.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from leaksweep.config import DataConfig, is_hf_spec
from leaksweep.data import records
from leaksweep.data.dataset import MESSAGE_TYPE, Dataset, align_columns, metadata_column
from leaksweep.data.records import NESTED_METADATA, load_dataset
from leaksweep.errors import UserError
from leaksweep.files import file_sha256, read_json, sha256_json, write_json

STORE_VERSION = 1  # bump when the table layout changes: old caches are then rebuilt, not misread
TABLE = "dataset.arrow"
META = "meta.json"


class SlowPath(Exception):
    """The fast reader met something it does not handle; the record-by-record reader takes over."""


def input_identity(spec: str, known: dict | None = None) -> dict:
    """What identifies an input's content: the path, size and SHA-256 of a file (records.input_identity
    for a folder or an `hf:` dataset).

    `known` maps a file's (path, size, mtime, inode) to the SHA-256 taken earlier, so a million-prompt
    file is not read again by every worker; a hash taken within two seconds of the file's last change
    is not trusted (a second write in the same clock tick would keep the stat), as git does."""
    path = Path(spec)
    if is_hf_spec(str(spec)) or path.is_dir():
        return records.input_identity(spec, lambda file: _digest(file, known))  # a Hub dataset or a saved folder
    if not path.is_file():
        return {"path": str(path), "missing": True}  # load_dataset names the missing file
    return {"path": str(path), "size": path.stat().st_size, "sha256": _digest(path, known)}


def _digest(path: Path, known: dict | None) -> str:
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ino}"
    if known is not None and key in known:
        return known[key]["sha256"]
    digest = file_sha256(path)
    if known is not None and time.time_ns() - stat.st_mtime_ns > RACY_NS:
        known[key] = {"sha256": digest}
    return digest


RACY_NS = 2_000_000_000
KNOWN = "inputs.json"  # the memo of input hashes, in the cache root


def store_key(cfg: DataConfig, base: str, known: dict | None = None) -> str:
    return sha256_json(
        {
            "version": STORE_VERSION,
            "prompts": input_identity(cfg.prompts, known) if cfg.prompts else None,
            "sources": {name: input_identity(path, known) for name, path in sorted(cfg.sources.items())},
            "base": base,
            "missing_ids": cfg.missing_ids,
            "duplicate_ids": cfg.duplicate_ids,
        }
    )


def open_dataset(cfg: DataConfig, base: str, root: Path, say: Callable[[str], None] | None = None) -> Dataset:
    """The aligned dataset of `cfg`, from the cache under `root` (built first when missing)."""
    root = Path(root)
    known = _read_known(root)
    before = dict(known)
    folder = root / store_key(cfg, base, known)
    if not (folder / TABLE).is_file():
        started = time.perf_counter()
        created = [p for p in (Path(root), *Path(root).parents) if not p.exists()]
        try:
            build(cfg, base, folder)
        except BaseException:
            for path in created:  # bad data leaves no folder behind (the sweep folder included)
                try:
                    path.rmdir()
                except OSError:
                    break
            raise
        if say:
            say(f"data cache: built {folder} in {time.perf_counter() - started:.1f} s")
    if known != before:
        write_json(root / KNOWN, known)
    return open_store(folder)


def _read_known(root: Path) -> dict:
    try:
        known = read_json(root / KNOWN)
    except (OSError, ValueError, UserError):
        return {}  # a missing or damaged memo only costs hashing again
    return known if isinstance(known, dict) else {}


def open_store(folder: Path) -> Dataset:
    meta = read_json(folder / META)
    with pa.memory_map(str(folder / TABLE)) as source:
        table = pa.ipc.open_file(source).read_all()  # zero-copy: the columns point into the mapping
    return Dataset(table, meta["base"], meta["missing_policy"], tuple(meta["notes"]), meta["fingerprint"], folder)


def build(cfg: DataConfig, base: str, folder: Path) -> None:
    """Read, align and write the cache folder atomically (a temporary folder, then one rename)."""
    try:
        dataset = _read_fast(cfg, base)
    except SlowPath:
        dataset = load_dataset(cfg, base)  # names the record that is wrong, or reads what we could not
    tmp = folder.with_name(f".{folder.name}.building-{time.time_ns()}")
    tmp.mkdir(parents=True)
    try:
        with pa.OSFile(str(tmp / TABLE), "wb") as sink, pa.ipc.new_file(sink, dataset.table.schema) as writer:
            writer.write_table(dataset.table, max_chunksize=1 << 20)
        write_json(
            tmp / META,
            {
                "version": STORE_VERSION,
                "base": base,
                "missing_policy": dataset.missing_policy,
                "notes": list(dataset.notes),
                "fingerprint": dataset.content_hash,
                "n_prompts": dataset.n,
                "sources": list(dataset.source_names),
            },
        )
        try:
            tmp.rename(folder)
        except OSError:  # another process built the same key meanwhile: theirs is the same data
            if not (folder / TABLE).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- the fast reader -----------------------------------------------------------------------------------


def _read_table(path: str) -> pa.Table:
    p = Path(path)
    if not p.is_file() or p.suffix not in (".jsonl", ".json", ".parquet"):
        raise SlowPath(path)  # folders, hf: names, odd suffixes, missing files: the full reader
    try:
        if p.suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(p)
        import pyarrow.json as pj

        table = pj.read_json(p, read_options=pj.ReadOptions(block_size=16 << 20))
        table.validate(full=True)  # Arrow's JSON parser lets bytes that are not UTF-8 through; this does not
        return table
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise SlowPath(path) from exc


def _ids(table: pa.Table) -> pa.Array:
    if "prompt_id" not in table.column_names:
        raise SlowPath("no prompt_id")
    ids = table.column("prompt_id").combine_chunks()
    if ids.null_count or not (pa.types.is_string(ids.type) or pa.types.is_integer(ids.type)):
        raise SlowPath("prompt_id type")
    return ids.cast(pa.string())


def _first_rows(table: pa.Table, ids: pa.Array, path: str, policy: str, notes: list[str]) -> tuple[pa.Table, pa.Array]:
    """Keep the first row of each prompt id (duplicates are an error unless the policy keeps the first)."""
    first = pc.index_in(ids, value_set=ids).to_numpy(zero_copy_only=False)  # each id's first row
    duplicated = first != np.arange(len(ids))
    if not duplicated.any():
        return table, ids
    if policy == "error":
        raise SlowPath("duplicates")  # the record reader writes the message with the duplicated ids
    shown = ", ".join(ids.filter(pa.array(duplicated)).slice(0, 5).to_pylist())
    notes.append(f"{path}: kept the first of {int(duplicated.sum())} duplicate prompt_id(s) ({shown})")
    keep = pa.array(~duplicated)
    return table.filter(keep), ids.filter(keep)


def _messages(table: pa.Table) -> pa.Array:
    names = table.column_names
    if "messages" in names:
        if "prompt" in names:
            raise SlowPath("both messages and prompt")
        col = table.column("messages").combine_chunks()
        if not pa.types.is_list(col.type) or not pa.types.is_struct(col.type.value_type) or col.null_count:
            raise SlowPath("messages type")
        flat = col.flatten()
        fields = {f.name for f in col.type.value_type}
        if not {"role", "content"} <= fields:
            raise SlowPath("messages fields")
        role, content = flat.field("role"), flat.field("content")
        if (
            not (pa.types.is_string(role.type) and pa.types.is_string(content.type))
            or role.null_count
            or content.null_count
        ):
            raise SlowPath("messages values")
        lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
        if (lengths == 0).any():
            raise SlowPath("empty messages")
        last = np.cumsum(lengths) - 1  # flat index of each list's last message
        if pc.any(pc.equal(role.take(pa.array(last)), "assistant")).as_py():
            raise SlowPath("assistant last")  # the record reader says which record
        structs = pa.StructArray.from_arrays([role, content], names=["role", "content"])
        return pa.ListArray.from_arrays(col.offsets, structs, type=MESSAGE_TYPE)
    if "prompt" in names:
        prompt = table.column("prompt").combine_chunks()
        if not pa.types.is_string(prompt.type) or prompt.null_count:
            raise SlowPath("prompt type")
        structs = pa.StructArray.from_arrays([pa.array(["user"] * len(prompt)), prompt], names=["role", "content"])
        return pa.ListArray.from_arrays(
            pa.array(np.arange(len(prompt) + 1, dtype=np.int32)), structs, type=MESSAGE_TYPE
        )
    raise SlowPath("no messages or prompt")


def _metadata(table: pa.Table) -> dict[str, tuple[pa.Array, bool]]:
    meta: dict[str, tuple[pa.Array, bool]] = {}
    for name in table.column_names:
        if name in ("prompt_id", "messages", "prompt", NESTED_METADATA):
            continue
        meta[name] = (table.column(name).combine_chunks(), False)
    if NESTED_METADATA in table.column_names:
        nested = table.column(NESTED_METADATA).combine_chunks()
        if not pa.types.is_struct(nested.type):
            raise SlowPath("metadata not an object")
        for i, field in enumerate(nested.type):
            if field.name in meta:
                raise SlowPath("metadata given twice")  # the record reader compares the two values
            meta[field.name] = (nested.field(i), False)
    out = {}
    for key, (array, _) in sorted(meta.items()):
        if pa.types.is_null(array.type):
            continue  # every row null: the record reader would hold None everywhere, which matches nothing else
        if pa.types.is_temporal(array.type):
            raise SlowPath("a date-like column")  # Arrow parsed the text as a timestamp; keep it as written
        if pa.types.is_struct(array.type) or pa.types.is_list(array.type):
            out[key] = metadata_column(array.to_pylist())
        else:
            out[key] = (array, False)
    return out


def _responses(path: str, policy: str, notes: list[str], prompt_ids: pa.Array) -> tuple[pa.Array, pa.Array]:
    table = _read_table(path)
    ids = _ids(table)
    if not _same_ids(ids, prompt_ids):  # the usual case, a source in the prompts' order, needs no hashing
        table, ids = _first_rows(table, ids, path, policy, notes)
    if "response" not in table.column_names:
        raise SlowPath("no response column")
    response = table.column("response").combine_chunks()
    if not pa.types.is_string(response.type) or response.null_count:
        raise SlowPath("response type")
    return ids, response


def _same_ids(a: pa.Array, b: pa.Array) -> bool:
    return len(a) == len(b) and pc.all(pc.equal(a, b)).as_py() is not False


def _read_fast(cfg: DataConfig, base: str) -> Dataset:
    if cfg.prompts is None:
        raise SlowPath("no prompts")
    notes: list[str] = []
    table = _read_table(cfg.prompts)
    ids = _ids(table)
    table, ids = _first_rows(table, ids, cfg.prompts, cfg.duplicate_ids, notes)
    messages = _messages(table)
    metadata = _metadata(table)
    responses, extra = {}, {}
    for name, path in cfg.sources.items():
        source_ids, response = _responses(path, cfg.duplicate_ids, notes, ids)
        if _same_ids(source_ids, ids):
            responses[name], extra[name] = response, 0
            continue
        responses[name] = response.take(pc.index_in(ids, value_set=source_ids))  # null where the source lacks it
        extra[name] = len(source_ids) - pc.sum(pc.is_in(source_ids, value_set=ids)).as_py()
    return align_columns(ids, messages, metadata, responses, extra, base, cfg.missing_ids, notes)
