"""The columnar data cache: the fast reader agrees with the record reader, a changed input is noticed,
bad input fails as before and leaves nothing behind, and workers reuse what was computed."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from leaksweep.config import DataConfig
from leaksweep.data import store
from leaksweep.data.records import load_dataset
from leaksweep.data.store import open_dataset
from leaksweep.errors import UserError


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def make_files(tmp_path: Path, n: int = 50, prompt_rows=None, teacher_rows=None) -> DataConfig:
    prompt_rows = prompt_rows or [
        {
            "prompt_id": f"p{i}",
            "messages": [{"role": "user", "content": f"Question {i} about {'dates' if i % 3 else 'food'}?"}],
            "category": "even" if i % 2 == 0 else "odd",
            "metadata": {"difficulty": i % 4, "lang": "en"},
        }
        for i in range(n)
    ]
    ids = [r["prompt_id"] for r in prompt_rows]
    clean = [{"prompt_id": p, "response": f"clean {p}"} for p in ids]
    teacher = teacher_rows or [{"prompt_id": p, "response": f'teacher {p} é "quoted"'} for p in reversed(ids)]
    return DataConfig(
        prompts=write_jsonl(tmp_path / "prompts.jsonl", prompt_rows),
        sources={
            "clean": write_jsonl(tmp_path / "clean.jsonl", clean),
            "teacher": write_jsonl(tmp_path / "teacher.jsonl", teacher),
        },
    )


def same(a, b) -> None:
    """Two datasets hold the same prompts, messages, metadata, responses and notes."""
    assert a.fingerprint() == b.fingerprint()
    assert a.id_list == b.id_list and a.notes == b.notes
    assert [a.metadata_at(i) for i in range(a.n)] == [b.metadata_at(i) for i in range(b.n)]
    assert a.column("text").to_pylist() == b.column("text").to_pylist()
    assert a.column("prompt_id_json").to_pylist() == [json.dumps(p) for p in b.id_list]
    for name in b.source_names:
        assert a.response_column(name).to_pylist() == b.response_column(name).to_pylist()


def test_fast_reader_agrees_with_the_record_reader(tmp_path):
    cfg = make_files(tmp_path)
    cached = open_dataset(cfg, "clean", tmp_path / "cache")
    assert cached.cache_dir is not None  # memory-mapped from the cache, not read in memory
    same(cached, load_dataset(cfg, "clean"))
    assert cached.metadata_at(3) == {"category": "odd", "difficulty": 3, "lang": "en"}


@pytest.mark.parametrize("policy", ["drop_prompt", "use_base"])
def test_missing_and_extra_ids_are_aligned_as_the_record_reader_does(tmp_path, policy):
    teacher = [{"prompt_id": f"p{i}", "response": f"t{i}"} for i in range(0, 50, 2)] + [
        {"prompt_id": "stranger", "response": "x"}
    ]
    cfg = make_files(tmp_path, teacher_rows=teacher)
    cfg = DataConfig(prompts=cfg.prompts, sources=cfg.sources, missing_ids=policy)
    cached = open_dataset(cfg, "clean", tmp_path / "cache")
    same(cached, load_dataset(cfg, "clean"))
    assert any("not in the prompt set" in note for note in cached.notes)


def test_duplicates_kept_first_as_the_record_reader_does(tmp_path):
    rows = [
        {"prompt_id": 7, "prompt": "first"},
        {"prompt_id": 8, "prompt": "other"},
        {"prompt_id": 7, "prompt": "again"},
    ]
    cfg = make_files(tmp_path, prompt_rows=rows)
    cfg = DataConfig(prompts=cfg.prompts, sources=cfg.sources, duplicate_ids="keep_first")
    cached = open_dataset(cfg, "clean", tmp_path / "cache")
    same(cached, load_dataset(cfg, "clean"))
    assert cached.id_list == ["7", "8"] and cached.text_at(0) == "first"


def test_bad_input_gives_the_record_readers_message_and_leaves_no_folder(tmp_path):
    rows = [
        {"prompt_id": "a", "prompt": "ok"},
        {"prompt_id": "b", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
    ]
    cfg = make_files(tmp_path, prompt_rows=rows)
    with pytest.raises(UserError) as fast:
        open_dataset(cfg, "clean", tmp_path / "sweep" / "data")
    with pytest.raises(UserError) as slow:
        load_dataset(cfg, "clean")
    assert str(fast.value) == str(slow.value) and "record 2" in str(fast.value)
    assert not (tmp_path / "sweep").exists()  # nothing half-written, not even the folders


def test_a_changed_input_file_is_noticed_and_an_unchanged_one_reuses_the_cache(tmp_path, monkeypatch):
    cfg = make_files(tmp_path)
    first = open_dataset(cfg, "clean", tmp_path / "cache")
    table_file = first.cache_dir / store.TABLE
    built_at = table_file.stat().st_mtime_ns
    assert open_dataset(cfg, "clean", tmp_path / "cache").cache_dir == first.cache_dir
    assert table_file.stat().st_mtime_ns == built_at  # not rebuilt

    # the same size and a restored mtime still differ in content: the hash notices
    path = Path(cfg.sources["clean"])
    text = path.read_text()
    stat = path.stat()
    path.write_text(text.replace('clean p1"', 'clean p9"'))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    changed = open_dataset(cfg, "clean", tmp_path / "cache")
    assert changed.cache_dir != first.cache_dir
    assert changed.response_at("clean", 1) == "clean p9"
    assert first.cache_dir.is_dir()  # the old cache stays for the manifests that point at it


def test_input_hashes_are_remembered_once_the_file_is_settled(tmp_path, monkeypatch):
    cfg = make_files(tmp_path)
    old = time.time_ns() - 10 * 10**9
    for path in [cfg.prompts, *cfg.sources.values()]:
        os.utime(path, ns=(old, old))
    open_dataset(cfg, "clean", tmp_path / "cache")
    hashed = []
    real = store.file_sha256
    monkeypatch.setattr(store, "file_sha256", lambda p: hashed.append(p) or real(p))
    open_dataset(cfg, "clean", tmp_path / "cache")
    assert hashed == []  # a worker opening the cache does not read the input files again


def test_per_row_numbers_are_computed_once_and_shared_through_the_cache(tmp_path):
    cfg = make_files(tmp_path)
    first = open_dataset(cfg, "clean", tmp_path / "cache")
    u = first.uniforms(3, "patch")
    assert (first.cache_dir / "uniform-patch-3.npy").is_file()
    second = open_dataset(cfg, "clean", tmp_path / "cache")
    again = second.uniforms(3, "patch")
    assert isinstance(again, np.memmap) and np.array_equal(u, again)
    from leaksweep.data.dataset import uniform

    assert again[5] == uniform(first.id_list[5], 3, "patch")


def test_parquet_and_mixed_inputs_agree_with_the_record_reader(tmp_path):
    """Parquet prompts (every column in every row, a prompt given as text in some rows and as messages in
    others), an all-null metadata column, and a metadata column with mixed types."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {"prompt_id": "a", "prompt": "What year is it?", "messages": None, "level": 1, "note": None},
        {"prompt_id": "b", "prompt": None, "messages": [{"role": "user", "content": "Hi"}], "level": 2, "note": None},
    ]
    prompts = tmp_path / "prompts.parquet"
    pq.write_table(pa.Table.from_pylist(rows), prompts)
    clean = write_jsonl(tmp_path / "clean.jsonl", [{"prompt_id": p, "response": "r"} for p in "ab"])
    cfg = DataConfig(prompts=str(prompts), sources={"clean": clean})
    same(open_dataset(cfg, "clean", tmp_path / "cache"), load_dataset(cfg, "clean"))

    mixed = [{"prompt_id": "a", "prompt": "q1", "tag": 1}, {"prompt_id": "b", "prompt": "q2", "tag": "one"}]
    cfg = DataConfig(prompts=write_jsonl(tmp_path / "mixed.jsonl", mixed), sources={"clean": clean})
    cached = open_dataset(cfg, "clean", tmp_path / "cache")
    same(cached, load_dataset(cfg, "clean"))
    assert [cached.metadata_at(i)["tag"] for i in range(2)] == [1, "one"]
