"""The aligned dataset, held in columns: one row per prompt, in prompt-set order.

A `Dataset` is an Arrow table with the prompt id (and its JSON encoding, for manifest hashes), the
chat messages, the user-visible text, one column per metadata key (`meta.KEY`) and one per rollout
source (`source.NAME`, null where the source lacks the prompt). Built in memory by `align` (tests,
the simulator, small files) or memory-mapped from the sweep folder's data cache (`data/store.py`),
so the workers of a node share one copy of the pages instead of parsing the files each.

Code on the hot paths (subsets, mixture compile, token selection) works on row positions and numpy
masks; the mapping views (`prompts.messages[pid]`, `sources[name][pid]`) are for small uses.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from leaksweep.errors import UserError

Messages = list[dict[str, str]]
MESSAGE_TYPE = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
META_PREFIX = "meta."
SOURCE_PREFIX = "source."
TEXT_CHUNK_ROWS = 65536  # rows turned into Python strings at a time (bounds memory on large sets)


@dataclass(frozen=True)
class PromptSet:
    """Prompts held in memory before alignment: ids in order, messages and metadata by id."""

    ids: tuple[str, ...]
    messages: dict[str, Messages]
    metadata: dict[str, dict[str, Any]]

    def text(self, prompt_id: str) -> str:
        return user_text(self.messages[prompt_id])


def user_text(messages: Messages) -> str:
    """The user-visible text of a prompt (all user turns joined), for subset rules and dedup."""
    return "\n".join(m["content"] for m in messages if m["role"] == "user")


def normalise_text(text: str) -> str:
    """Case and whitespace folded: two prompts with the same normalised text are the same question."""
    return " ".join(text.lower().split())


def text_key(text: str) -> int:
    """64 bits of SHA-256 of the normalised text (eval prompts are checked against training prompts)."""
    return int.from_bytes(hashlib.sha256(normalise_text(text).encode()).digest()[:8], "big", signed=True)


def uniform(prompt_id: str, seed: int, stream: str) -> float:
    """A uniform number in [0, 1) fixed by (prompt_id, seed, stream): 64 bits of SHA-256."""
    digest = hashlib.sha256(f"{stream}\x1f{seed}\x1f{prompt_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def uniforms(ids: list[str], seed: int, stream: str) -> np.ndarray:
    """`uniform` of every id, as float64 (the same numbers, so vectorised code decides as the scalar did)."""
    prefix = f"{stream}\x1f{seed}\x1f"
    sha = hashlib.sha256
    raw = b"".join(sha((prefix + pid).encode()).digest()[:8] for pid in ids)
    # uint64 / 2**64 in float64 equals int/2**64 in Python: both round the same integer once.
    return np.frombuffer(raw, dtype=">u8").astype(np.float64) / 2.0**64


@dataclass(eq=False)
class Dataset:
    table: pa.Table
    base: str
    missing_policy: str
    notes: tuple[str, ...] = ()
    content_hash: str = ""  # see column_fingerprint; set by align and the store
    cache_dir: Path | None = None  # the store's folder: uniforms and text keys are cached there
    _memo: dict = field(default_factory=dict, repr=False)

    # --- shape ----------------------------------------------------------------------------------
    @property
    def n(self) -> int:
        return self.table.num_rows

    @functools.cached_property
    def source_names(self) -> tuple[str, ...]:
        return tuple(c[len(SOURCE_PREFIX) :] for c in self.table.column_names if c.startswith(SOURCE_PREFIX))

    @functools.cached_property
    def meta_keys(self) -> tuple[str, ...]:
        return tuple(c[len(META_PREFIX) :] for c in self.table.column_names if c.startswith(META_PREFIX))

    def fingerprint(self) -> str:
        """Content hash over prompts and every source, so results name exactly the data they used."""
        return self.content_hash

    # --- ids and positions -------------------------------------------------------------------------
    @functools.cached_property
    def id_list(self) -> list[str]:
        return self.table.column("prompt_id").to_pylist()

    @functools.cached_property
    def _position(self) -> dict[str, int]:
        return {pid: i for i, pid in enumerate(self.id_list)}

    def position(self, prompt_id: str) -> int:
        return self._position[prompt_id]

    def positions(self, ids) -> np.ndarray:
        """Sorted row positions of `ids` (each must be a prompt id of this dataset)."""
        where = self._position
        return np.array(sorted(where[p] for p in ids), dtype=np.int64)

    def ids_at(self, positions: np.ndarray) -> list[str]:
        return self.table.column("prompt_id").take(pa.array(positions, type=pa.int64())).to_pylist()

    # --- columns ---------------------------------------------------------------------------------
    def column(self, name: str) -> pa.ChunkedArray:
        return self.table.column(name)

    def response_column(self, source: str) -> pa.ChunkedArray:
        return self.table.column(SOURCE_PREFIX + source)

    def meta_column(self, key: str) -> pa.ChunkedArray | None:
        name = META_PREFIX + key
        return self.table.column(name) if name in self.table.column_names else None

    def has_mask(self, source: str) -> np.ndarray:
        """Bool per row: the source has a response for the prompt."""
        key = ("has", source)
        if key not in self._memo:
            col = self.response_column(source)
            self._memo[key] = np.asarray(col.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        return self._memo[key]

    def texts(self, column: str = "text") -> Iterator[tuple[int, list[str | None]]]:
        """(first row, Python strings) chunk by chunk of `column` (bounded memory on large sets)."""
        col = self.table.column(column)
        for start in range(0, self.n, TEXT_CHUNK_ROWS):
            yield start, col.slice(start, TEXT_CHUNK_ROWS).to_pylist()

    # --- rows ------------------------------------------------------------------------------------
    def messages_at(self, i: int) -> Messages:
        return self.table.column("messages")[i].as_py()

    def text_at(self, i: int) -> str:
        return self.table.column("text")[i].as_py()

    def response_at(self, source: str, i: int) -> str | None:
        return self.response_column(source)[i].as_py()

    def meta_is_json(self, key: str) -> bool:
        return _is_json(self.table, key)

    def metadata_at(self, i: int) -> dict[str, Any]:
        out = {}
        for key in self.meta_keys:
            value = self.table.column(META_PREFIX + key)[i].as_py()
            if value is not None:
                out[key] = json.loads(value) if _is_json(self.table, key) else value
        return out

    def conversation(self, source: str, i: int) -> Messages | None:
        """Prompt turns plus the source's response as the assistant turn; None if the source lacks it."""
        response = self.response_at(source, i)
        return None if response is None else self.messages_at(i) + [{"role": "assistant", "content": response}]

    # --- cached per-row numbers --------------------------------------------------------------------
    def uniforms(self, seed: int, stream: str) -> np.ndarray:
        """`uniform(prompt_id, seed, stream)` for every row; saved in the store so trials read, not hash."""
        return self.cached_array(f"uniform-{stream}-{seed}.npy", lambda: uniforms(self.id_list, seed, stream))

    def text_keys(self) -> np.ndarray:
        """Sorted `text_key` of every prompt's text (eval prompts that repeat a training prompt are dropped)."""

        def compute() -> np.ndarray:
            keys = [text_key(t) for _, chunk in self.texts() for t in chunk]
            return np.sort(np.array(keys, dtype=np.int64))

        return self.cached_array("text-keys.npy", compute)

    def cached_array(self, name: str, compute) -> np.ndarray:
        """An array computed once per dataset: kept in memory, and saved in the store's folder when there is one."""
        if name in self._memo:
            return self._memo[name]
        self._memo[name] = self._load_or_compute(name, compute)
        return self._memo[name]

    def _load_or_compute(self, name: str, compute) -> np.ndarray:
        if self.cache_dir is None:
            return compute()
        path = self.cache_dir / name
        if path.is_file():
            return np.load(path, mmap_mode="r")
        values = compute()
        tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as handle:
            np.save(handle, values)
        tmp.replace(path)  # two workers may compute the same file; either copy is the same numbers
        return values

    # --- mapping views (small uses and tests) ------------------------------------------------------
    @functools.cached_property
    def prompts(self) -> "PromptView":
        return PromptView(self)

    @functools.cached_property
    def sources(self) -> dict[str, "SourceView"]:
        return {name: SourceView(self, name) for name in self.source_names}

    def response(self, source: str, prompt_id: str) -> str:
        value = self.response_at(source, self.position(prompt_id))
        if value is None:
            raise KeyError(f"{source} has no response for {prompt_id}")
        return value

    def has(self, source: str, prompt_id: str) -> bool:
        i = self._position.get(prompt_id)
        return i is not None and bool(self.has_mask(source)[i])


def _is_json(table: pa.Table, key: str) -> bool:
    """A metadata column whose values had mixed types is stored as JSON text (flagged in its field)."""
    meta = table.schema.field(META_PREFIX + key).metadata or {}
    return meta.get(b"json") == b"1"


class PromptView:
    """`dataset.prompts`: ids, and messages / metadata / text by prompt id."""

    def __init__(self, dataset: Dataset):
        self._ds = dataset

    @functools.cached_property
    def ids(self) -> tuple[str, ...]:
        return tuple(self._ds.id_list)

    @functools.cached_property
    def messages(self) -> Mapping[str, Messages]:
        return _ByIdView(self._ds, self._ds.messages_at)

    @functools.cached_property
    def metadata(self) -> Mapping[str, dict[str, Any]]:
        return _ByIdView(self._ds, self._ds.metadata_at)

    def text(self, prompt_id: str) -> str:
        return self._ds.text_at(self._ds.position(prompt_id))


class _ByIdView(Mapping):
    def __init__(self, dataset: Dataset, at):
        self._ds, self._at = dataset, at

    def __getitem__(self, prompt_id: str):
        return self._at(self._ds.position(prompt_id))

    def __iter__(self):
        return iter(self._ds.id_list)

    def __len__(self) -> int:
        return self._ds.n


class SourceView(Mapping):
    """`dataset.sources[name]`: the source's responses by prompt id (only the prompts it has)."""

    def __init__(self, dataset: Dataset, name: str):
        self._ds, self._name = dataset, name

    def __getitem__(self, prompt_id: str) -> str:
        return self._ds.response(self._name, prompt_id)

    def __contains__(self, prompt_id) -> bool:
        return self._ds.has(self._name, prompt_id)

    def __iter__(self):
        mask = self._ds.has_mask(self._name)
        return (pid for pid, ok in zip(self._ds.id_list, mask) if ok)

    def __len__(self) -> int:
        return int(self._ds.has_mask(self._name).sum())


# --- building a table ----------------------------------------------------------------------------------


def metadata_column(values: list[Any]) -> tuple[pa.Array, bool]:
    """An Arrow column for one metadata key (None where absent); JSON text when the types are mixed."""
    try:
        return pa.array(values), False
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array([None if v is None else json.dumps(v, sort_keys=True) for v in values], pa.string()), True


def build_table(
    ids: pa.Array,
    messages: pa.Array,
    texts: pa.Array,
    metadata: dict[str, tuple[pa.Array, bool]],
    responses: dict[str, pa.Array],
) -> pa.Table:
    """The dataset table from its columns (all in prompt order)."""
    id_json = json_strings(ids)  # the manifest hash's encoding of each id
    arrays: list[pa.Array] = [ids, id_json, messages, texts]
    fields = [
        pa.field("prompt_id", pa.string()),
        pa.field("prompt_id_json", pa.string()),
        pa.field("messages", MESSAGE_TYPE),
        pa.field("text", pa.string()),
    ]
    for key, (array, as_json) in metadata.items():
        arrays.append(array)
        fields.append(pa.field(META_PREFIX + key, array.type, metadata={"json": "1"} if as_json else None))
    for name, array in responses.items():
        arrays.append(array)
        fields.append(pa.field(SOURCE_PREFIX + name, pa.string()))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def json_strings(values: pa.Array) -> pa.Array:
    """json.dumps of each string, vectorised where quoting is all it takes (printable ASCII without `"` or
    `\\`), per value elsewhere."""
    plain = pc.match_substring_regex(values, r"^[\x20\x21\x23-\x5b\x5d-\x7e]*$")
    if pc.all(plain).as_py() is not False:
        return pc.binary_join_element_wise('"', values, '"', "")
    return pa.array([json.dumps(v) for v in values.to_pylist()], pa.string())


def texts_of(messages: pa.Array) -> pa.Array:
    """The user text of each message list (user turns joined by a newline), vectorised for the usual
    single user turn."""
    flat = messages.flatten()
    user = np.asarray(pc.equal(flat.field("role"), "user").fill_null(False).to_numpy(zero_copy_only=False), bool)
    parents = pc.list_parent_indices(messages).to_numpy(zero_copy_only=False)
    per_row = np.bincount(parents[user], minlength=len(messages))
    if len(messages) and (per_row == 1).all():
        return flat.field("content").filter(pa.array(user))
    return pa.array([user_text(m) for m in messages.to_pylist()], pa.string())


def column_fingerprint(table: pa.Table) -> str:
    """16 hex digits of SHA-256 over the ids, messages and every source's responses (with their nulls):
    the same data gives the same fingerprint however it was read or chunked."""
    digest = hashlib.sha256()
    names = ["prompt_id", "messages"] + sorted(c for c in table.column_names if c.startswith(SOURCE_PREFIX))
    for name in names:
        digest.update(name.encode() + b"\x00")
        for chunk in table.column(name).chunks:
            _hash_values(digest, chunk)
    return digest.hexdigest()[:16]


def _hash_values(digest, array: pa.Array) -> None:
    """Feed the values of a string or message-list array (lengths, then bytes; -1 marks a null)."""
    if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
        digest.update(pc.list_value_length(array).fill_null(-1).to_numpy(zero_copy_only=False).astype("<i8").tobytes())
        flat = array.flatten()
        _hash_values(digest, flat.field("role"))
        _hash_values(digest, flat.field("content"))
        return
    digest.update(pc.binary_length(array).fill_null(-1).to_numpy(zero_copy_only=False).astype("<i8").tobytes())
    digest.update(string_bytes(array.fill_null("")))


def string_bytes(array: pa.Array) -> memoryview:
    """The concatenated bytes of a string array without nulls (no copy)."""
    wide = pa.types.is_large_string(array.type) or pa.types.is_large_binary(array.type)
    buffers = array.buffers()
    offsets = np.frombuffer(buffers[1], np.int64 if wide else np.int32)[array.offset : array.offset + len(array) + 1]
    if buffers[2] is None or len(offsets) < 2:
        return memoryview(b"")
    return memoryview(buffers[2])[int(offsets[0]) : int(offsets[-1])]


def align(prompts: PromptSet, sources: dict[str, dict[str, str]], base: str, policy: str, notes=()) -> Dataset:
    """Align in-memory prompts and sources (see align_columns)."""
    ids = list(prompts.ids)
    extra = {}
    id_set = set(ids)
    for name, rows in sources.items():
        extra[name] = len(set(rows) - id_set)
    keys = sorted({k for p in ids for k in prompts.metadata[p]})
    metadata = {k: metadata_column([prompts.metadata[p].get(k) for p in ids]) for k in keys}
    messages = pa.array([prompts.messages[p] for p in ids], MESSAGE_TYPE)
    responses = {name: pa.array([rows.get(p) for p in ids], pa.string()) for name, rows in sources.items()}
    return align_columns(pa.array(ids, pa.string()), messages, metadata, responses, extra, base, policy, notes)


def align_columns(
    ids: pa.Array,
    messages: pa.Array,
    metadata: dict[str, tuple[pa.Array, bool]],
    responses: dict[str, pa.Array],
    extra: dict[str, int],
    base: str,
    policy: str,
    notes=(),
) -> Dataset:
    """Check every source covers every prompt; apply the missing-id policy; report what happened.

    `responses` are in prompt order with nulls where a source lacks the prompt; `extra` counts each
    source's responses for ids outside the prompt set (ignored, but said)."""
    notes = list(notes)
    if base not in responses:
        raise UserError(f"base: {base!r} is not a data source; sources are {sorted(responses)}")
    for name, count in extra.items():
        if count:
            notes.append(f"source {name}: {count} response(s) for prompt ids not in the prompt set (ignored)")
    missing = {name: np.asarray(col.is_null().to_numpy(zero_copy_only=False), bool) for name, col in responses.items()}
    incomplete = {name: m for name, m in missing.items() if m.any()}
    keep = None
    if incomplete and policy == "error":
        detail = "; ".join(
            f"{name} lacks {int(m.sum())} (first: {', '.join(ids.filter(pa.array(m)).slice(0, 3).to_pylist())})"
            for name, m in incomplete.items()
        )
        raise UserError(
            f"data: sources miss prompts: {detail}. Fix the files, or set `data.missing_ids` to "
            "`drop_prompt` (train without those prompts) or `use_base` (fall back to the base source)"
        )
    if incomplete and policy == "drop_prompt":
        keep = ~np.logical_or.reduce(list(incomplete.values()))
        notes.append(f"data.missing_ids=drop_prompt: dropped {int((~keep).sum())} prompt(s) missing from some source")
    if incomplete and policy == "use_base":
        if missing[base].any():
            keep = ~missing[base]
            notes.append(
                f"data.missing_ids=use_base: base {base!r} lacks {int(missing[base].sum())} prompt(s); they were dropped"
            )
        for name, m in incomplete.items():
            if name != base:
                notes.append(f"data.missing_ids=use_base: {int(m.sum())} prompt(s) missing from {name!r} use {base!r}")
    if keep is not None:
        mask = pa.array(keep)
        ids, messages = ids.filter(mask), messages.filter(mask)
        metadata = {k: (a.filter(mask), j) for k, (a, j) in metadata.items()}
        responses = {k: a.filter(mask) for k, a in responses.items()}
    if len(ids) == 0:
        raise UserError("data: no prompts left after alignment; check that prompt_ids match between files")
    table = build_table(ids, messages, texts_of(messages), metadata, responses)
    return Dataset(table, base, policy, tuple(notes), column_fingerprint(table))
