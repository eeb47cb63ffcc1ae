"""Each rollout source tokenized once per (tokenizer, chat template, max length, data); trials select rows.

All mixtures of a study draw their rows from the same few sources, so instead of handing TRL chat
examples to template and tokenize again in every trial, a source is tokenized once into
`<root>/<key>/<source>.arrow` (one row per prompt, in prompt order; null where the source has no
response for the prompt) and a trial selects its rows from the memory-mapped files:

* `cache_key(tokenizer, max_length, data_key)`: a hash of the tokenizer (its vocabulary, merges and
  normalisation as the backend serialises them, the special tokens), the chat template TRL will apply
  (TRL swaps in a training template when the tokenizer's lacks `{% generation %}` markers), the
  maximum length, the caller's `data_key` (the data's content hash) and the library versions.
* `tokenize_source(...)`: what TRL 1.16's SFTTrainer._prepare_dataset makes of each conversation with
  `assistant_only_loss=True`: `apply_chat_template(..., return_assistant_tokens_mask=True)`'s
  input_ids and assistant mask, truncated to `max_length` (keep_start, TRL's default); plus the
  untruncated length and assistant-token count. Batched, with a progress counter for large sources,
  written atomically (temp file + rename) under a per-source file lock, so two workers do not both
  build it (where the file system has no flock both may; the rename keeps the file whole).
* `select_rows(folder, rows, max_length)`: a trial's rows [(prompt_index, source)] in manifest order
  as `TokenRows`: `input_ids` and `labels` (-100 off the assistant's tokens), the examples TRL's
  truncation leaves fully masked dropped as TRL drops them, and every row's untruncated length.
  `TokenRows.dataset()` is the `datasets.Dataset` TRL trains on without preparing it
  (`skip_prepare_dataset`, model/sft.py).

Why truncating at `max_length` is right for both of sft.py's layouts: the padding-free layout is
used only when every example fits `max_length` (TRL does not truncate it; training_setup), where
truncation changes nothing; the padded layout is truncated by TRL at `max_length`, keep_start.

transformers, trl, datasets and pyarrow are imported inside the functions.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

from leaksweep.files import atomic_file, make_folder, write_json
from leaksweep.progress import Progress

FORMAT = 1  # bump when the file's columns or their meaning change: a new key, a fresh cache
BATCH = 512  # conversations per apply_chat_template call
PROGRESS_FROM = 5000  # sources with fewer prompts tokenize without a progress counter
META = "key.json"  # beside the sources: what the key was made from, for people reading the folder
# flock failing with one of these means the file system does not lock: build without the lock
_NO_LOCKS = {errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK, errno.EINVAL, errno.ENOTSUP}

Conversation = Callable[[str, int], "list[dict] | None"]  # (source, prompt_index) -> messages, None if absent
NO_ASSISTANT_TOKENS = (
    "You're using `assistant_only_loss=True`, but at least one example has no assistant tokens. This usually "
    "means the tokenizer's chat template doesn't generate assistant masks — it may be missing the "
    "`{% generation %}` keyword."
)


def training_template(tokenizer) -> str | None:
    """The chat template TRL applies with assistant_only_loss (None: the tokenizer's own)."""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    if has_generation_markers(tokenizer.chat_template):
        return None
    return get_training_chat_template(tokenizer)


def tokenizer_identity(tokenizer) -> dict:
    """What makes two tokenizers tokenize a conversation alike, as JSON-able values (hashes for the big ones)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # a fast tokenizer: vocabulary, merges, normaliser, pre- and post-processor
        model = backend.to_str()
    else:
        model = json.dumps(sorted(tokenizer.get_vocab().items()))
    template = training_template(tokenizer) or tokenizer.chat_template
    return {
        "class": type(tokenizer).__name__,
        "model_sha256": hashlib.sha256(model.encode()).hexdigest(),
        "special_tokens": {k: str(v) for k, v in sorted(tokenizer.special_tokens_map.items())},
        "added_tokens": sorted((int(i), str(t)) for i, t in tokenizer.added_tokens_decoder.items()),
        "chat_template_sha256": hashlib.sha256((template or "").encode()).hexdigest(),
        "name": str(getattr(tokenizer, "name_or_path", "")),  # shown in key.json; not hashed (see cache_key)
    }


def cache_key(tokenizer, max_length: int, data_key: str) -> str:
    """The cache folder's name: tokenizer identity, chat template, max length, data and library versions."""
    import tokenizers
    import transformers
    import trl

    identity = {k: v for k, v in tokenizer_identity(tokenizer).items() if k != "name"}
    blob = {
        "format": FORMAT,
        "tokenizer": identity,
        "max_length": int(max_length),
        "data": data_key,
        "versions": [transformers.__version__, trl.__version__, tokenizers.__version__],
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:20]


class TokenCache:
    """The token cache of one (tokenizer, max length, data) under `root`: `<root>/<key>/<source>.arrow`."""

    def __init__(self, root: Path, tokenizer, max_length: int, data_key: str):
        self.tokenizer, self.max_length, self.data_key = tokenizer, int(max_length), data_key
        self.key = cache_key(tokenizer, max_length, data_key)
        self.folder = Path(root) / self.key

    def source_path(self, source: str) -> Path:
        return self.folder / f"{source}.arrow"

    def ensure(self, source: str, conversation: Conversation, n_prompts: int) -> Path:
        """The source's file, tokenized now unless it already exists (or another process builds it meanwhile)."""
        path = self.source_path(source)
        if path.exists():
            return path
        make_folder(self.folder)
        with _file_lock(self.folder / f".{source}.lock"):
            if not path.exists():  # someone else built it while we waited
                tokenize_source(self.tokenizer, self.max_length, source, conversation, n_prompts, path)
        if not (self.folder / META).exists():
            identity = tokenizer_identity(self.tokenizer)
            write_json(
                self.folder / META, {"tokenizer": identity, "max_length": self.max_length, "data": self.data_key}
            )
        return path

    def select(self, rows: Sequence[tuple[int, str]], conversation: Conversation, n_prompts: int) -> "TokenRows":
        """A trial's rows, tokenizing the sources they name that are not cached yet."""
        for source in sorted({s for _, s in rows}):
            self.ensure(source, conversation, n_prompts)
        return select_rows(self.folder, rows, self.max_length)


def tokenize_source(
    tokenizer, max_length: int, source: str, conversation: Conversation, n_prompts: int, path: Path
) -> Path:
    """Tokenize every prompt's conversation with `source`'s response (prompt order) into the Arrow file `path`.

    Columns: input_ids (int32) and assistant_masks (int8), both truncated to `max_length`; length
    (untruncated tokens) and assistant_tokens (untruncated assistant-mask ones). A prompt the source
    lacks is a null row.
    """
    import pyarrow as pa

    template = training_template(tokenizer)
    ids: list = []
    masks: list = []
    lengths: list = []
    assistant: list = []
    mode = None if n_prompts >= PROGRESS_FROM else "off"
    with Progress(n_prompts, f"tokenize {source}", "rows", mode=mode) as progress:
        for start in range(0, n_prompts, BATCH):
            chats = [conversation(source, i) for i in range(start, min(start + BATCH, n_prompts))]
            present = [c for c in chats if c is not None]
            encoded = _encode(tokenizer, present, template) if present else {"input_ids": [], "assistant_masks": []}
            pairs = iter(zip(encoded["input_ids"], encoded["assistant_masks"]))
            for chat in chats:
                if chat is None:
                    for column in (ids, masks, lengths, assistant):
                        column.append(None)
                    continue
                row_ids, row_mask = next(pairs)
                ids.append(row_ids[:max_length])
                masks.append(row_mask[:max_length])
                lengths.append(len(row_ids))
                assistant.append(sum(row_mask))
            progress.update(len(chats))
    table = pa.table(
        {
            "input_ids": pa.array(ids, pa.list_(pa.int32())),
            "assistant_masks": pa.array(masks, pa.list_(pa.int8())),
            "length": pa.array(lengths, pa.int32()),
            "assistant_tokens": pa.array(assistant, pa.int32()),
        }
    )
    with atomic_file(path) as tmp:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=64 * 1024)
    return path


def _encode(tokenizer, chats: list[list[dict]], template: str | None) -> dict:
    """TRL's tokenization of conversations (trl.data_utils._tokenize with assistant_only_loss), batched."""
    messages = [[{"role": m["role"], "content": m["content"]} for m in chat] for chat in chats]
    out = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, chat_template=template
    )
    return {"input_ids": out["input_ids"], "assistant_masks": out["assistant_masks"]}


@dataclass
class TokenRows:
    """A trial's pre-tokenized training rows (see `select_rows`).

    `lengths` has one untruncated token count per requested row (what plan_training reads); `table`
    holds the rows TRL trains on (input_ids, labels), which is fewer when truncation left some without
    a single assistant token (TRL drops those too). `len()` is the number of requested rows, as
    len(examples) is for chat examples.
    """

    folder: Path
    rows: tuple[tuple[int, str], ...]
    max_length: int
    lengths: list[int]
    table: object = field(repr=False)  # pyarrow.Table

    def __len__(self) -> int:
        return len(self.rows)

    def dataset(self):
        """The datasets.Dataset TRL trains on as it is (input_ids, labels): no template, no tokenizer."""
        from datasets import Dataset
        from datasets.table import InMemoryTable

        return Dataset(InMemoryTable(self.table))

    def to_json(self) -> dict:
        """What a process needs to select the same rows again (model/ddp.py's job file)."""
        return {"folder": str(self.folder), "rows": [list(r) for r in self.rows], "max_length": self.max_length}

    @classmethod
    def from_json(cls, obj: dict) -> "TokenRows":
        return select_rows(Path(obj["folder"]), [(int(i), str(s)) for i, s in obj["rows"]], int(obj["max_length"]))


_OPEN: dict[str, object] = {}  # path -> memory-mapped table: a worker maps each source once


def read_source(path: Path):
    """The source's table, memory-mapped: the pages are the page cache's, shared by every worker on the node."""
    import pyarrow as pa

    key = str(Path(path).resolve())
    stat = os.stat(key)
    cached = _OPEN.get(key)
    if cached is not None and cached[0] == (stat.st_ino, stat.st_mtime_ns):
        return cached[1]
    table = pa.ipc.open_file(pa.memory_map(key, "r")).read_all()
    _OPEN[key] = ((stat.st_ino, stat.st_mtime_ns), table)
    return table


def select_rows(folder: Path, rows: Sequence[tuple[int, str]], max_length: int) -> TokenRows:
    """The rows a trial trains on, [(prompt_index, source)] in manifest order, from the cache folder's sources.

    Raises KeyError naming the row when a source has no response for a prompt, RuntimeError (TRL's)
    when a row has no assistant token at all.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    rows = tuple((int(i), str(s)) for i, s in rows)
    if not rows:
        raise ValueError("select_rows: no rows")
    pieces, order_of = [], np.empty(len(rows), dtype=np.int64)
    position = 0
    by_source: dict[str, list[int]] = {}
    for n, (_, source) in enumerate(rows):
        by_source.setdefault(source, []).append(n)
    for source, members in sorted(by_source.items()):
        table = read_source(Path(folder) / f"{source}.arrow")
        indices = np.array([rows[n][0] for n in members], dtype=np.int64)
        if indices.min() < 0 or indices.max() >= table.num_rows:
            bad = next(rows[n] for n in members if not 0 <= rows[n][0] < table.num_rows)
            raise KeyError(f"row {bad}: prompt index out of range (the source has {table.num_rows} prompts)")
        taken = table.take(pa.array(indices))
        missing = np.flatnonzero(taken.column("length").is_null().to_numpy(zero_copy_only=False))
        if missing.size:
            raise KeyError(f"row {rows[members[missing[0]]]}: the source has no response for this prompt")
        pieces.append(taken)
        order_of[members] = np.arange(position, position + len(members))
        position += len(members)
    table = pa.concat_tables(pieces).combine_chunks().take(pa.array(order_of))
    if pc.any(pc.equal(table.column("assistant_tokens"), 0)).as_py():
        raise RuntimeError(NO_ASSISTANT_TOKENS)
    ids = table.column("input_ids").combine_chunks()
    offsets = ids.offsets.to_numpy()
    offsets = pa.array(offsets - offsets[0], pa.int32())
    values = ids.flatten().to_numpy()
    mask = table.column("assistant_masks").combine_chunks().flatten().to_numpy() == 1
    labels = np.where(mask, values, -100).astype(np.int32)
    # TRL drops the examples truncation left without an assistant token (they carry no loss)
    ones = np.concatenate([[0], np.cumsum(mask, dtype=np.int64)])
    bounds = offsets.to_numpy()
    kept = pa.array(ones[bounds[1:]] > ones[bounds[:-1]])
    out = pa.table(
        {
            "input_ids": pa.ListArray.from_arrays(offsets, pa.array(values, pa.int32())),
            "labels": pa.ListArray.from_arrays(offsets, pa.array(labels)),
        }
    ).filter(kept)
    return TokenRows(Path(folder), rows, int(max_length), table.column("length").to_pylist(), out)


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive flock on `path` for the block (released by the kernel if the holder dies). Where the file
    system does not lock, the block runs unlocked: two builders then write the same file twice, atomically."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    locked = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            locked = True
        except OSError as exc:
            if exc.errno not in _NO_LOCKS:
                raise
        yield
    finally:
        if locked:
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
