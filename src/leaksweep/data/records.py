"""Data stage: a prompt set and rollout sources aligned by prompt_id.

Records are read from JSONL, Parquet, or a folder written by HF `datasets.save_to_disk`.

Prompt records: `{"prompt_id": ..., "messages": [{"role": "user", "content": ...}], ...metadata}`
(or `"prompt": "text"` for a single user turn). Every other key is metadata (e.g. `category`), and so
is every key of a nested `"metadata": {...}` object (flattened: `metadata: {category: x}` matches it).
Rollout records: `{"prompt_id": ..., "response": "text"}` or `{"prompt_id": ..., "messages": [...]}`
whose last message is the assistant's.

A prompt missing from a source is an explicit condition: an error unless the sweep names a policy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from leaksweep.config import DataConfig
from leaksweep.data.dataset import Dataset, Messages, PromptSet, align
from leaksweep.errors import UserError
from leaksweep.files import read_jsonl


def read_records(path: str | Path) -> list[dict]:
    """Rows of a JSONL file, a Parquet file, or a saved HF datasets folder."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file or folder; fix the path in the sweep's `data:` section")
    if path.is_dir():
        if not (path / "dataset_info.json").exists() and not (path / "state.json").exists():
            raise UserError(f"{path}: a folder must be a saved HF dataset (datasets.save_to_disk); none found there")
        import datasets  # only needed for this format; keeps the common path light

        try:
            loaded = datasets.load_from_disk(str(path))
        except Exception as exc:  # datasets raises several types (missing arrow file, bad JSON, ...)
            raise UserError(
                f"{path}: not a readable saved HF dataset ({type(exc).__name__}: {exc}); "
                "save it again with datasets.save_to_disk, or give a JSONL or Parquet file"
            ) from exc
        if isinstance(loaded, datasets.DatasetDict):
            raise UserError(f"{path}: holds several splits {list(loaded)}; save one split")
        return [dict(r) for r in loaded]
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise UserError(f"{path}: not a readable Parquet file ({exc})") from exc
    return read_jsonl(path)


def prompt_messages(row: dict, where: str) -> Messages:
    if row.get("messages") is not None:  # Parquet/HF rows carry every column: an absent one is None
        messages = row["messages"]
        if not isinstance(messages, list) or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages
        ):
            raise UserError(f"{where}: `messages` must be a list of {{role, content}} objects with string values")
        if messages and messages[-1]["role"] == "assistant":
            raise UserError(f"{where}: a prompt's messages end with an assistant turn; put responses in a source file")
        return [{"role": m["role"], "content": m["content"]} for m in messages]
    if isinstance(row.get("prompt"), str):
        return [{"role": "user", "content": row["prompt"]}]
    raise UserError(f"{where}: a prompt needs `messages` (chat list) or `prompt` (text); keys seen: {sorted(row)}")


def _response_text(row: dict, where: str) -> str:
    if isinstance(row.get("response"), str):
        return row["response"]
    messages = row.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        last = messages[-1]
        if last.get("role") == "assistant" and isinstance(last.get("content"), str):
            return last["content"]
    raise UserError(f"{where}: a rollout needs `response` (text) or `messages` ending in an assistant turn")


def _index(rows: list[dict], path: str, duplicate_policy: str) -> tuple[dict[str, tuple[int, dict]], list[str]]:
    """prompt_id -> (record number, row); duplicates are an error unless the policy keeps the first."""
    index: dict[str, tuple[int, dict]] = {}
    duplicates = []
    for number, row in enumerate(rows, start=1):
        pid = row.get("prompt_id")
        if not isinstance(pid, (str, int)) or isinstance(pid, bool):
            raise UserError(f"{path}: record {number} has no usable `prompt_id` (seen {pid!r})")
        pid = str(pid)
        if pid in index:
            duplicates.append(pid)
            continue
        index[pid] = (number, row)
    notes = []
    if duplicates:
        shown = ", ".join(duplicates[:5])
        if duplicate_policy == "error":
            raise UserError(
                f"{path}: {len(duplicates)} duplicate prompt_id(s) (first: {shown}); "
                "remove them or set `data.duplicate_ids: keep_first`"
            )
        notes.append(f"{path}: kept the first of {len(duplicates)} duplicate prompt_id(s) ({shown})")
    return index, notes


NESTED_METADATA = "metadata"  # a prompt row's nested metadata object, flattened into its metadata


def prompt_metadata(row: dict, where: str) -> dict[str, Any]:
    """A prompt row's metadata: every key besides prompt_id, messages and prompt, with the keys of a
    nested `metadata` object flattened in (`{"metadata": {"category": "x"}}` matches `metadata:
    {category: x}`); a key given both ways with different values is refused."""
    meta = {k: v for k, v in row.items() if k not in ("prompt_id", "messages", "prompt", NESTED_METADATA)}
    nested = row.get(NESTED_METADATA)
    if not isinstance(nested, dict):
        return meta if nested is None else {**meta, NESTED_METADATA: nested}
    for key, value in nested.items():
        if key in meta and meta[key] != value:
            raise UserError(
                f"{where}: `{key}` is {meta[key]!r} but `{NESTED_METADATA}.{key}` is {value!r}; "
                "give the prompt's metadata once"
            )
        meta[key] = value
    return meta


def load_dataset(cfg: DataConfig, base: str) -> Dataset:
    """Load prompts and sources from the files named in `cfg` and align them by prompt_id, in memory
    (record by record, with each bad record named). A sweep folder reads them through its data cache
    instead (data/store.py), which falls back to this reader for the exact message on bad input."""
    if cfg.prompts is None:
        raise UserError("data.prompts: not set; name the prompt file (or use `data.world`)")
    prompt_index, notes = _index(read_records(cfg.prompts), cfg.prompts, cfg.duplicate_ids)
    messages, metadata = {}, {}
    for pid, (number, row) in prompt_index.items():
        messages[pid] = prompt_messages(row, f"{cfg.prompts}: record {number}")
        metadata[pid] = prompt_metadata(row, f"{cfg.prompts}: record {number}")
    sources: dict[str, dict[str, str]] = {}
    for name, path in cfg.sources.items():
        index, source_notes = _index(read_records(path), path, cfg.duplicate_ids)
        notes += source_notes
        sources[name] = {pid: _response_text(row, f"{path}: record {n}") for pid, (n, row) in index.items()}
    ids = tuple(prompt_index)
    return align(PromptSet(ids, messages, metadata), sources, base, cfg.missing_ids, tuple(notes))
