"""Data stage: a prompt set and rollout sources aligned by prompt_id.

Records are read from JSONL, Parquet, a folder written by HF `datasets.save_to_disk`, or a Hub dataset
`hf:ORG/NAME[:SPLIT]` (through `datasets` and the local HF cache; offline mode honoured).

Prompt records: `{"prompt_id": ..., "messages": [{"role": "user", "content": ...}], ...metadata}`
(or `"prompt": "text"` for a single user turn). Every other key is metadata (e.g. `category`), and so
is every key of a nested `"metadata": {...}` object (flattened: `metadata: {category: x}` matches it).
Rollout records: `{"prompt_id": ..., "response": "text"}` or `{"prompt_id": ..., "messages": [...]}`
whose last message is the assistant's.

A prompt missing from a source is an explicit condition: an error unless the sweep names a policy.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from leaksweep.config import DataConfig, is_hf_spec, parse_hf_spec
from leaksweep.data.dataset import Dataset, Messages, PromptSet, align
from leaksweep.errors import UserError
from leaksweep.files import file_sha256, read_jsonl


def read_records(path: str | Path, key: str | None = None) -> list[dict]:
    """Rows of a JSONL file, a Parquet file, a saved HF datasets folder, or a Hub dataset
    `hf:ORG/NAME[:SPLIT]` (see `read_hf`). `key` names the sweep-file key the input came from
    (e.g. `data.sources.teacher`), for error messages."""
    if is_hf_spec(str(path)):
        return read_hf(str(path), key)[0].to_list()
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


def read_hf(spec: str, key: str | None = None) -> tuple[Any, str | None]:
    """A Hub dataset `hf:ORG/NAME[:SPLIT]` (split default `train`) as a `datasets.Dataset`, and the
    commit of the cached snapshot it came from (None when not known).

    Online, `datasets.load_dataset` fetches it (into the local HF cache). Offline (HF_HUB_OFFLINE or
    HF_DATASETS_OFFLINE set), or when the Hub cannot be reached, it is loaded from the local cache: the
    Hub cache's snapshot of the repo (what `hf download --repo-type dataset ORG/NAME` or an earlier
    online run left in $HF_HOME/hub; datasets itself only reads its prepared-arrow cache offline),
    else datasets' own cache of a dataset loaded before."""
    where = f"{key}: {spec}" if key else spec
    try:
        repo, split = parse_hf_spec(spec)
    except ValueError as exc:
        raise UserError(f"{key or 'data'}: {exc}") from None
    import datasets  # only needed for this input kind; keeps the common path light
    from huggingface_hub import constants, snapshot_download

    def cached_snapshot() -> str | None:
        try:
            return snapshot_download(repo, repo_type="dataset", local_files_only=True)
        except Exception:  # LocalEntryNotFoundError (a FileNotFoundError), or an unreadable cache entry
            return None

    def load(path: str, local: bool) -> Any:  # local: a snapshot folder, else the repo id
        try:
            return datasets.load_dataset(path)
        except datasets.exceptions.DatasetNotFoundError as exc:
            raise UserError(
                f"{where}: no such dataset on the Hub, or no access to it ({exc}); check the name, or log in "
                "(`hf auth login`) for a private or gated dataset"
            ) from None
        except (ConnectionError, FileNotFoundError):
            if not local:  # the Hub unreachable, or offline with nothing in datasets' own cache
                raise
            raise UserError(
                f"{where}: the cached snapshot {path} holds no data files datasets can read; "
                f"download it again (`hf download --repo-type dataset {repo}`)"
            ) from None
        except Exception as exc:  # datasets raises many types for a repo it cannot read as a dataset
            raise UserError(
                f"{where}: could not load it as a dataset ({type(exc).__name__}: {exc}); "
                "give a dataset of JSON/JSONL/Parquet/CSV files, or a local file instead"
            ) from exc

    offline = bool(datasets.config.HF_HUB_OFFLINE)
    snapshot = cached_snapshot() if offline else None
    try:
        loaded = load(snapshot, True) if snapshot else load(repo, False)
    except (ConnectionError, FileNotFoundError) as exc:
        snapshot = None if offline else cached_snapshot()  # the Hub is unreachable: fall back on the cache
        if snapshot is None:
            how = (
                "offline mode is on (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)"
                if offline
                else f"the Hub could not be reached ({type(exc).__name__})"
            )
            online = "run once with network and HF_HUB_OFFLINE=0" if offline else "run once with network"
            raise UserError(
                f"{where}: not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) and {how}; "
                f"download it once: {online}, or `hf download --repo-type dataset {repo}` (older huggingface_hub: "
                f"`huggingface-cli download --repo-type dataset {repo}`), with the same HF_HOME"
                + ("" if offline else "; with no network, set HF_HUB_OFFLINE=1 to skip the Hub's retries")
            ) from None
        loaded = load(snapshot, True)
    revision = Path(snapshot or cached_snapshot() or "").name or None  # snapshots/<commit>
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            available = sorted(loaded)
            default = " (no split given: `train` is the default)" if ":" not in spec[len("hf:") :] else ""
            raise UserError(
                f"{where}: no split {split!r}{default}; {repo} has {available}; "
                f"name one: {', '.join(f'hf:{repo}:{s}' for s in available)}"
            )
        loaded = loaded[split]
    return loaded, revision


def input_identity(spec: str | Path, file_digest=file_sha256) -> dict:
    """A data input's content identity, for cache keys: a changed input gives another identity, the
    same content the same one (JSON-able; compare or hash the whole dict).

    * a file: `{"kind": "file", "path", "sha256", "size"}` (sha256 of its bytes).
    * a saved HF datasets folder: `{"kind": "hf_folder", "path", "sha256", "size"}`: sha256 over every
      file's relative name and sha256, size their total.
    * `hf:ORG/NAME[:SPLIT]`: `{"kind": "hf", "spec", "repo", "split", "revision", "fingerprint",
      "sha256", "size"}`: the commit of the cached Hub snapshot (None when not known), datasets'
      fingerprint of the split, and sha256 over its cached arrow files. This loads the dataset as
      `read_records` does (online unless offline mode is on; cached after the first time).

    `file_digest(path)` hashes one file (the data cache passes one that remembers settled files).
    A missing input is a UserError, as in `read_records`."""
    if is_hf_spec(str(spec)):
        loaded, revision = read_hf(str(spec))
        repo, split = parse_hf_spec(str(spec))
        files = sorted({Path(f["filename"]) for f in loaded.cache_files})
        digest, size = _files_digest([(f.name, f) for f in files], file_digest)
        return {
            "kind": "hf",
            "spec": str(spec),
            "repo": repo,
            "split": split,
            "revision": revision,
            "fingerprint": loaded._fingerprint,
            "sha256": digest if files else None,  # an in-memory dataset has no files: its fingerprint is all
            "size": size,
        }
    path = Path(spec)
    if not path.exists():
        raise UserError(f"{path}: no such file or folder; fix the path in the sweep's `data:` section")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.endswith(".lock"))
        digest, size = _files_digest([(p.relative_to(path).as_posix(), p) for p in files], file_digest)
        return {"kind": "hf_folder", "path": str(path.resolve()), "sha256": digest, "size": size}
    return {"kind": "file", "path": str(path.resolve()), "sha256": file_sha256(path), "size": path.stat().st_size}


def _files_digest(named: list[tuple[str, Path]], file_digest=file_sha256) -> tuple[str, int]:
    """sha256 over (name, sha256 of content) of each file in order, and their total size."""
    digest, size = hashlib.sha256(), 0
    for name, file in named:
        digest.update(f"{name}\0{file_digest(file)}\n".encode())
        size += file.stat().st_size
    return digest.hexdigest(), size


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
    prompt_index, notes = _index(read_records(cfg.prompts, "data.prompts"), cfg.prompts, cfg.duplicate_ids)
    messages, metadata = {}, {}
    for pid, (number, row) in prompt_index.items():
        messages[pid] = prompt_messages(row, f"{cfg.prompts}: record {number}")
        metadata[pid] = prompt_metadata(row, f"{cfg.prompts}: record {number}")
    sources: dict[str, dict[str, str]] = {}
    for name, path in cfg.sources.items():
        index, source_notes = _index(read_records(path, f"data.sources.{name}"), path, cfg.duplicate_ids)
        notes += source_notes
        sources[name] = {pid: _response_text(row, f"{path}: record {n}") for pid, (n, row) in index.items()}
    ids = tuple(prompt_index)
    return align(PromptSet(ids, messages, metadata), sources, base, cfg.missing_ids, tuple(notes))
