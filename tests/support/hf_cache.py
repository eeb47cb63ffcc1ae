"""A Hugging Face Hub cache laid out by hand, for tests of `hf:ORG/NAME[:SPLIT]` inputs with no network.

`hub_dataset` writes what `hf download --repo-type dataset ORG/NAME` (huggingface_hub) leaves in
$HF_HOME/hub: the files as content-addressed blobs, a snapshot folder per commit whose files are
relative symlinks to the blobs, and refs/main naming the commit. Checked against datasets 5.2 and
huggingface_hub 2.4: offline, `datasets.load_dataset("org/name")` itself reads only its own prepared
arrow cache ($HF_HOME/datasets), so leaksweep finds the snapshot through
`huggingface_hub.snapshot_download(..., local_files_only=True)` and loads that folder.

`offline_env` is the environment of a subprocess that sees only that cache and is offline: the hub
libraries read HF_HOME and the offline switches once, when they are imported, so tests that change
them run leaksweep in a fresh process.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def hub_dataset(hf_home: Path, repo: str, splits: dict[str, list[dict]], commit: str = "1" * 40) -> Path:
    """Lay out `repo` ("org/name") at `commit` in the hub cache under `hf_home`, one Parquet file per
    split (data/SPLIT-00000-of-00001.parquet, the Hub's own naming), and point refs/main at it.
    Returns the snapshot folder."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    repo_dir = Path(hf_home) / "hub" / ("datasets--" + repo.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / commit
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    (snapshot / "data").mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        tmp = repo_dir / "blobs" / f".{split}.tmp"
        pq.write_table(pa.Table.from_pylist(rows), tmp)
        blob = repo_dir / "blobs" / hashlib.sha256(tmp.read_bytes()).hexdigest()
        tmp.replace(blob)
        link = snapshot / "data" / f"{split}-00000-of-00001.parquet"
        link.unlink(missing_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit)
    return snapshot


def offline_env(hf_home: Path) -> dict[str, str]:
    """os.environ for a subprocess: HF_HOME=hf_home, offline, no other cache location, leaksweep's src."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(
        HF_HOME=str(hf_home),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        PYTHONPATH=os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        OMP_NUM_THREADS="1",
    )
    return env


LEAKSWEEP = [sys.executable, "-c", "from leaksweep.cli import main; main()"]  # the CLI, in this interpreter


def fake_hub_cache(hf_home: Path, repo_id: str) -> None:
    """What huggingface_hub leaves in HF_HOME/hub after downloading a model repo's config.json (revision main),
    so tests can name a "cached" hub model offline without downloading anything."""
    import json

    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True, exist_ok=True)
    (repo / "snapshots" / commit / "config.json").write_text(json.dumps({"model_type": "llama"}))
