"""A Hugging Face hub cache holding only a repository's config.json, as huggingface_hub lays it out, so
that tests can name a "cached" hub model offline without downloading anything."""

from __future__ import annotations

import json
from pathlib import Path


def fake_hub_cache(hf_home: Path, repo_id: str) -> None:
    """What huggingface_hub leaves in HF_HOME/hub after downloading repo_id's config.json (revision main)."""
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True, exist_ok=True)
    (repo / "snapshots" / commit / "config.json").write_text(json.dumps({"model_type": "llama"}))
