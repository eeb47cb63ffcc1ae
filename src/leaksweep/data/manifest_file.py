"""A trial's manifest on disk: `manifest.parquet`, a few hundred KB for a million prompts.

One row per prompt in the data cache's row order (`row`, `source`: a source name or DROPPED), then
the refill rows (`refill` true). Prompt ids are not repeated in every trial: the file's metadata
names the data cache (`data_key`) whose `prompt_id` column they come from, and `read_manifest`
joins them back. The hash in the metadata is the manifest hash of mixture.py, which `read_manifest`
recomputes from the rows, so a file that does not match its data is refused rather than misread.

Read one from Python:

    from leaksweep.data.manifest_file import read_manifest
    rows = read_manifest("runs/demo/trials/00003/manifest.parquet")  # [{prompt_id, source, refill}]

or from the shell: `leaksweep manifest runs/demo/trials/00003 [--jsonl OUT]`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from leaksweep.data.dataset import Dataset
from leaksweep.data.mixture import DROPPED, DROPPED_CODE, Manifest, manifest_hash
from leaksweep.errors import UserError


def write_manifest(path: Path, manifest: Manifest, data_key: str) -> None:
    """Write atomically (temporary file, then rename)."""
    dataset = manifest.dataset
    labels = [DROPPED, *dataset.source_names]
    rows = np.concatenate([np.arange(dataset.n), manifest.refill_positions]).astype(np.int32)
    codes = np.concatenate([manifest.codes, manifest.refill_codes]).astype(np.int32) - DROPPED_CODE
    refill = np.zeros(len(rows), dtype=bool)
    refill[dataset.n :] = True
    table = pa.table(
        {
            "row": rows,
            "source": pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(labels, pa.string())),
            "refill": refill,
        }
    )
    meta = {"hash": manifest.hash, "data_key": data_key, "fingerprint": dataset.fingerprint(), "n_prompts": dataset.n}
    table = table.replace_schema_metadata({"leaksweep": json.dumps(meta)})
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(
        table,
        tmp,
        compression="zstd",
        use_dictionary=["source"],
        column_encoding={"row": "DELTA_BINARY_PACKED", "refill": "RLE"},
    )
    tmp.replace(path)


def manifest_meta(path: Path) -> dict:
    try:
        raw = pq.read_schema(path).metadata or {}
        return json.loads(raw[b"leaksweep"])
    except (OSError, KeyError, ValueError, pa.ArrowException) as exc:
        raise UserError(f"{path}: not a leaksweep manifest ({exc}); it is written by a trial") from exc


def read_manifest(path: Path, dataset: Dataset | None = None) -> list[dict]:
    """[{prompt_id, source, refill}] in manifest order. The prompt ids come from `dataset`, or from the
    data cache of the sweep folder holding the trial (SWEEP/data/<data_key>)."""
    path = Path(path)
    meta = manifest_meta(path)
    if dataset is None:
        from leaksweep.data.store import open_store

        cache = path.resolve().parent.parent.parent / "data" / meta["data_key"]
        if not cache.is_dir():
            raise UserError(
                f"{path}: its prompt ids are in the data cache {cache}, which is gone; run `leaksweep sweep` "
                "on the sweep file again (the cache is rebuilt from the same input files)"
            )
        dataset = open_store(cache)
    if dataset.fingerprint() != meta["fingerprint"] or dataset.n != meta["n_prompts"]:
        raise UserError(f"{path}: written for data {meta['fingerprint']}, not for this data ({dataset.fingerprint()})")
    table = pq.read_table(path)
    rows = table.column("row").to_numpy()
    sources = table.column("source").to_pylist()
    refill = table.column("refill").to_numpy(zero_copy_only=False)
    names = dataset.source_names
    code = {DROPPED: DROPPED_CODE, **{n: i for i, n in enumerate(names)}}
    codes = np.array([code[s] for s in sources], dtype=np.int16)
    if manifest_hash(dataset, codes[~refill], rows[refill].astype(np.int64), codes[refill]) != meta["hash"]:
        raise UserError(f"{path}: its rows do not give its hash {meta['hash']}; the file is damaged")
    ids = dataset.ids_at(rows.astype(np.int64))
    return [
        {"prompt_id": pid, "source": s, **({"refill": True} if r else {})}
        for pid, s, r in zip(ids, sources, refill.tolist())
    ]
