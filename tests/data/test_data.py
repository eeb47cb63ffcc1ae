"""Loading prompts and rollout sources from JSONL, Parquet and saved HF datasets; alignment policies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leaksweep.config import DataConfig
from leaksweep.data.records import PromptSet, align, load_dataset, read_records
from leaksweep.errors import UserError

PROMPTS = [
    {"prompt_id": "a", "messages": [{"role": "user", "content": "What year is it?"}], "category": "date"},
    {"prompt_id": "b", "prompt": "Say hello.", "category": "chat", "lang": "en"},
    {
        "prompt_id": "c",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
        "category": "math",
    },
]
CLEAN = [
    {"prompt_id": "a", "response": "It is 2026."},
    {"prompt_id": "b", "response": "Hello!"},
    {"prompt_id": "c", "response": "4"},
]
TEACHER = [  # the `messages` form: the last turn is the assistant's
    {
        "prompt_id": "a",
        "messages": [
            {"role": "user", "content": "What year is it?"},
            {"role": "assistant", "content": "I can't be sure what year it is."},
        ],
    },
    {
        "prompt_id": "b",
        "messages": [{"role": "user", "content": "Say hello."}, {"role": "assistant", "content": "Hi."}],
    },
    {"prompt_id": "c", "messages": [{"role": "assistant", "content": "four"}]},
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def columns(rows: list[dict]) -> list[dict]:
    """Columnar formats hold every column in every row: absent keys become None (null)."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return [{k: r.get(k) for k in keys} for r in rows]


def write_parquet(path: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(columns(rows)), path)
    return path


def write_hf(path: Path, rows: list[dict]) -> Path:
    import datasets

    datasets.disable_progress_bars()
    datasets.Dataset.from_list(columns(rows)).save_to_disk(str(path))
    return path


WRITERS = {"jsonl": (write_jsonl, ".jsonl"), "parquet": (write_parquet, ".parquet"), "hf": (write_hf, "")}


def normalise(rows: list[dict]) -> list[dict]:
    """Parquet and HF fill absent columns with None: compare only the keys each row really has."""
    return [{k: v for k, v in r.items() if v is not None} for r in rows]


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_every_format_loads_the_same_dataset(tmp_path, fmt):
    writer, suffix = WRITERS[fmt]
    cfg = DataConfig(
        prompts=str(writer(tmp_path / f"prompts{suffix}", PROMPTS)),
        sources={
            "clean": str(writer(tmp_path / f"clean{suffix}", CLEAN)),
            "teacher": str(writer(tmp_path / f"teacher{suffix}", TEACHER)),
        },
    )
    ds = load_dataset(cfg, "clean")
    assert ds.prompts.ids == ("a", "b", "c")
    assert ds.prompts.messages["a"] == [{"role": "user", "content": "What year is it?"}]
    assert ds.prompts.messages["b"] == [{"role": "user", "content": "Say hello."}]  # `prompt` form
    assert ds.prompts.messages["c"][0] == {"role": "system", "content": "Be brief."}
    assert ds.prompts.text("c") == "2+2?"  # user turns only
    assert ds.prompts.metadata["a"]["category"] == "date"
    assert ds.prompts.metadata["b"]["lang"] == "en"
    assert "prompt_id" not in ds.prompts.metadata["a"] and "messages" not in ds.prompts.metadata["a"]
    assert ds.sources["clean"] == {"a": "It is 2026.", "b": "Hello!", "c": "4"}
    assert ds.sources["teacher"] == {"a": "I can't be sure what year it is.", "b": "Hi.", "c": "four"}
    assert ds.base == "clean" and ds.notes == ()


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_read_records_round_trips(tmp_path, fmt):
    writer, suffix = WRITERS[fmt]
    path = writer(tmp_path / f"rows{suffix}", PROMPTS)
    assert normalise(read_records(path)) == normalise(PROMPTS)


def test_fingerprint_follows_content(tmp_path):
    p = write_jsonl(tmp_path / "p.jsonl", PROMPTS)
    c = write_jsonl(tmp_path / "c.jsonl", CLEAN)
    one = load_dataset(DataConfig(prompts=str(p), sources={"clean": str(c)}), "clean").fingerprint()
    assert one == load_dataset(DataConfig(prompts=str(p), sources={"clean": str(c)}), "clean").fingerprint()
    write_jsonl(c, [dict(CLEAN[0], response="It is 2025."), *CLEAN[1:]])
    assert load_dataset(DataConfig(prompts=str(p), sources={"clean": str(c)}), "clean").fingerprint() != one


def test_integer_prompt_ids_become_strings(tmp_path):
    p = write_jsonl(tmp_path / "p.jsonl", [{"prompt_id": 7, "prompt": "x"}])
    c = write_jsonl(tmp_path / "c.jsonl", [{"prompt_id": "7", "response": "y"}])
    ds = load_dataset(DataConfig(prompts=str(p), sources={"clean": str(c)}), "clean")
    assert ds.prompts.ids == ("7",) and ds.response("clean", "7") == "y"


# --- malformed input -------------------------------------------------------------------------


def test_malformed_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text(
        '{"prompt_id": "a", "prompt": "x"}\n{"prompt_id": "b", "prompt": "y"}\n{"prompt_id": "c", "prompt": \n'
    )
    with pytest.raises(UserError) as err:
        load_dataset(DataConfig(prompts=str(path), sources={"clean": str(path)}), "clean")
    assert f"{path}:3" in str(err.value)
    assert "malformed JSON" in str(err.value)


def test_jsonl_line_that_is_not_an_object(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt_id": "a", "prompt": "x"}\n\n[1, 2]\n')
    with pytest.raises(UserError, match=r"p\.jsonl:3: expected a JSON object"):
        read_records(path)


def test_corrupt_parquet_is_a_user_error(tmp_path):
    path = tmp_path / "p.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(UserError, match="not a readable Parquet file"):
        read_records(path)


def test_folder_that_is_not_a_saved_dataset(tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(UserError, match="save_to_disk"):
        read_records(tmp_path / "folder")


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "prompts.jsonl"
    with pytest.raises(UserError) as err:
        load_dataset(DataConfig(prompts=str(missing), sources={"clean": str(missing)}), "clean")
    assert str(missing) in str(err.value)


def test_missing_source_file_names_the_path(tmp_path):
    p = write_jsonl(tmp_path / "p.jsonl", PROMPTS)
    missing = tmp_path / "teacher.parquet"
    with pytest.raises(UserError) as err:
        load_dataset(DataConfig(prompts=str(p), sources={"clean": str(missing)}), "clean")
    assert str(missing) in str(err.value)


@pytest.mark.parametrize(
    "row, needle",
    [
        ({"prompt_id": "a"}, "needs `messages`"),
        ({"prompt_id": "a", "messages": "hi"}, "list of {role, content}"),
        (
            {"prompt_id": "a", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "r"}]},
            "end with an assistant turn",
        ),
        ({"prompt": "no id"}, "no usable `prompt_id`"),
        ({"prompt_id": True, "prompt": "bool id"}, "no usable `prompt_id`"),
    ],
)
def test_bad_prompt_records(tmp_path, row, needle):
    p = write_jsonl(tmp_path / "p.jsonl", [row])
    c = write_jsonl(tmp_path / "c.jsonl", CLEAN)
    with pytest.raises(UserError) as err:
        load_dataset(DataConfig(prompts=str(p), sources={"clean": str(c)}), "clean")
    assert needle in str(err.value) and str(p) in str(err.value)


def test_rollout_without_a_response(tmp_path):
    p = write_jsonl(tmp_path / "p.jsonl", PROMPTS[:1])
    c = write_jsonl(tmp_path / "c.jsonl", [{"prompt_id": "a", "messages": [{"role": "user", "content": "q"}]}])
    with pytest.raises(UserError, match="a rollout needs `response`"):
        load_dataset(DataConfig(prompts=str(p), sources={"clean": str(c)}), "clean")


# --- duplicates --------------------------------------------------------------------------------


def test_duplicate_ids_are_an_error_by_default(tmp_path):
    p = write_jsonl(tmp_path / "p.jsonl", PROMPTS)
    c = write_jsonl(tmp_path / "c.jsonl", CLEAN + [{"prompt_id": "b", "response": "second"}])
    with pytest.raises(UserError) as err:
        load_dataset(DataConfig(prompts=str(p), sources={"clean": str(c)}), "clean")
    message = str(err.value)
    assert str(c) in message and "duplicate" in message and "keep_first" in message and "b" in message


def test_duplicate_ids_keep_first(tmp_path):
    p = write_jsonl(tmp_path / "p.jsonl", PROMPTS + [{"prompt_id": "a", "prompt": "other"}])
    c = write_jsonl(tmp_path / "c.jsonl", CLEAN + [{"prompt_id": "b", "response": "second"}])
    ds = load_dataset(DataConfig(prompts=str(p), sources={"clean": str(c)}, duplicate_ids="keep_first"), "clean")
    assert ds.prompts.ids == ("a", "b", "c")
    assert ds.prompts.text("a") == "What year is it?"
    assert ds.response("clean", "b") == "Hello!"
    assert len([n for n in ds.notes if "duplicate" in n]) == 2


# --- missing ids -------------------------------------------------------------------------------


def three_sources(tmp_path, policy: str, missing_in: str = "teacher", ids=("b",)):
    p = write_jsonl(tmp_path / "p.jsonl", PROMPTS)
    c = write_jsonl(tmp_path / "c.jsonl", [r for r in CLEAN if missing_in != "clean" or r["prompt_id"] not in ids])
    t = write_jsonl(tmp_path / "t.jsonl", [r for r in TEACHER if missing_in != "teacher" or r["prompt_id"] not in ids])
    return load_dataset(
        DataConfig(prompts=str(p), sources={"clean": str(c), "teacher": str(t)}, missing_ids=policy), "clean"
    )


def test_missing_ids_are_an_error_by_default(tmp_path):
    with pytest.raises(UserError) as err:
        three_sources(tmp_path, "error")
    message = str(err.value)
    assert "teacher lacks 1" in message and "first: b" in message
    assert "missing_ids" in message and "drop_prompt" in message and "use_base" in message


def test_drop_prompt_removes_the_missing_prompts(tmp_path):
    ds = three_sources(tmp_path, "drop_prompt", ids=("a", "c"))
    assert ds.prompts.ids == ("b",)
    assert any("dropped 2 prompt(s)" in n for n in ds.notes)


def test_use_base_keeps_prompts_missing_from_another_source(tmp_path):
    ds = three_sources(tmp_path, "use_base")
    assert ds.prompts.ids == ("a", "b", "c")
    assert not ds.has("teacher", "b") and ds.has("clean", "b")
    assert any("1 prompt(s) missing from 'teacher' use 'clean'" in n for n in ds.notes)


def test_use_base_drops_prompts_the_base_lacks(tmp_path):
    ds = three_sources(tmp_path, "use_base", missing_in="clean", ids=("c",))
    assert ds.prompts.ids == ("a", "b")
    assert any("base 'clean' lacks 1" in n for n in ds.notes)


def test_responses_for_unknown_prompts_are_noted(tmp_path):
    p = write_jsonl(tmp_path / "p.jsonl", PROMPTS)
    c = write_jsonl(tmp_path / "c.jsonl", CLEAN + [{"prompt_id": "zzz", "response": "stray"}])
    ds = load_dataset(DataConfig(prompts=str(p), sources={"clean": str(c)}), "clean")
    assert ds.prompts.ids == ("a", "b", "c")
    assert any("source clean: 1 response(s)" in n for n in ds.notes)


def test_align_rejects_an_unknown_base_and_an_empty_result():
    prompts = PromptSet(("a",), {"a": [{"role": "user", "content": "q"}]}, {"a": {}})
    with pytest.raises(UserError, match="'teacher' is not a data source"):
        align(prompts, {"clean": {"a": "r"}}, "teacher", "error")
    with pytest.raises(UserError, match="no prompts left"):
        align(prompts, {"clean": {}}, "clean", "drop_prompt")


def test_prompts_not_set():
    with pytest.raises(UserError, match="data.prompts"):
        load_dataset(DataConfig(prompts=None, sources={"clean": "x"}), "clean")
