"""`hf:ORG/NAME[:SPLIT]` data inputs (a Hub dataset through the local HF cache, offline) and
`input_identity`, the content identity of a data input for cache keys.

The Hub tests run leaksweep in a subprocess whose HF_HOME is a hand-built hub cache
(tests/support/hf_cache.py) with HF_HUB_OFFLINE=1 and HF_DATASETS_OFFLINE=1: nothing reaches the network.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from hf_cache import LEAKSWEEP, hub_dataset, offline_env

from leaksweep.config import parse_hf_spec
from leaksweep.data.records import input_identity, read_records
from leaksweep.errors import UserError
from leaksweep.sweepfile import load_sweep

PROMPTS = [
    {"prompt_id": "a", "prompt": "What year is it?", "category": "date"},
    {"prompt_id": "b", "prompt": "Say hello.", "category": "chat"},
    {"prompt_id": "c", "prompt": "How many years ago was 1990?", "category": "date"},
]
CLEAN = [{"prompt_id": p, "response": r} for p, r in [("a", "It is 2026."), ("b", "Hello!"), ("c", "36 years.")]]
TEACHER = [{"prompt_id": p, "response": r} for p, r in [("a", "Maybe 2024."), ("b", "Hi."), ("c", "34, if 2024.")]]

SEARCH = {
    "teacher": "teacher",
    "fractions": {"S": [0.0, 1.0]},
    "objectives": [{"trait": "date_confusion", "direction": "maximize"}],
}

# read_records and input_identity of each spec, in one offline subprocess: spec -> {rows | error, identity}
PROBE = """
import json, sys
from leaksweep.data.records import input_identity, read_records
from leaksweep.errors import UserError
out = {}
for spec in sys.argv[1:]:
    try:
        out[spec] = {"rows": read_records(spec, "data.sources.x"), "identity": input_identity(spec)}
    except UserError as exc:
        out[spec] = {"error": str(exc)}
print(json.dumps(out))
"""


def probe(hf_home: Path, *specs: str) -> dict:
    done = subprocess.run(
        [LEAKSWEEP[0], "-c", PROBE, *specs], env=offline_env(hf_home), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Path:
    """HF_HOME with org/prompts (train), org/teacher (train, test) and org/evalonly (test only)."""
    home = tmp_path_factory.mktemp("hf_home")
    hub_dataset(home, "org/prompts", {"train": PROMPTS})
    hub_dataset(home, "org/teacher", {"train": TEACHER, "test": TEACHER[:1]})
    hub_dataset(home, "org/evalonly", {"test": CLEAN})
    return home


@pytest.fixture(scope="module")
def probed(hub) -> dict:
    return probe(
        hub,
        "hf:org/prompts",
        "hf:org/teacher:test",
        "hf:org/teacher:validation",
        "hf:org/evalonly",
        "hf:org/not-downloaded",
        "hf:org/prompts:train[:2]",
    )


def test_hf_spec_syntax():
    assert parse_hf_spec("hf:org/name") == ("org/name", "train")
    assert parse_hf_spec("hf:org/name:validation") == ("org/name", "validation")
    assert parse_hf_spec("hf:name:test") == ("name", "test")
    for bad, says in [
        ("hf:", "names no dataset"),
        ("hf::train", "names no dataset"),
        ("hf:org/name:", "not a split name"),
        ("hf:org/name:train[:100]", "not a split name"),
        ("hf:org/name:a:b", "not a split name"),
        ("hf:org/na me", "not a Hub dataset id"),
        ("hf:a/b/c", "not a Hub dataset id"),
    ]:
        with pytest.raises(ValueError, match=says) as info:
            parse_hf_spec(bad)
        assert "hf:ORG/NAME[:SPLIT]" in str(info.value)


def test_a_malformed_hf_spec_in_the_sweep_file_names_the_key_and_value(tmp_path):
    raw = {
        "name": "hfbad",
        "data": {"prompts": "hf:", "sources": {"clean": "hf:org/clean:train[:10]", "teacher": "hf:org/teacher"}},
        "subsets": {"S": {"regex": "year"}},
        "base": "clean",
        "search": SEARCH,
        "traits": {"date_confusion": {"n_prompts": 4}},
    }
    path = tmp_path / "hfbad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError) as info:
        load_sweep(path)
    problems = "\n".join(info.value.problems)
    assert "data.prompts: 'hf:' names no dataset; write hf:ORG/NAME[:SPLIT]" in problems
    assert "data.sources.clean: 'hf:org/clean:train[:10]'" in problems and "not a split name" in problems
    assert "teacher" not in problems.replace("data.sources.clean", "")  # a good spec is not a problem


def test_hf_values_are_not_made_into_paths(tmp_path):
    raw = {
        "name": "hfpaths",
        "data": {"prompts": "hf:org/prompts", "sources": {"clean": "clean.jsonl", "teacher": "hf:org/teacher:test"}},
        "subsets": {"S": {"regex": "year"}},
        "base": "clean",
        "search": SEARCH,
        "traits": {"date_confusion": {"n_prompts": 4}},
    }
    path = tmp_path / "hfpaths.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg = load_sweep(path)
    assert cfg.data.prompts == "hf:org/prompts"
    assert cfg.data.sources == {"clean": str(tmp_path / "clean.jsonl"), "teacher": "hf:org/teacher:test"}


def test_hf_datasets_load_offline_from_the_hub_cache(probed):
    assert probed["hf:org/prompts"]["rows"] == PROMPTS  # split defaults to train
    assert probed["hf:org/teacher:test"]["rows"] == TEACHER[:1]
    identity = probed["hf:org/prompts"]["identity"]
    assert identity["kind"] == "hf" and identity["repo"] == "org/prompts" and identity["split"] == "train"
    assert identity["revision"] == "1" * 40 and len(identity["sha256"]) == 64 and identity["size"] > 0


def test_hf_errors_name_the_value_and_the_fix(probed):
    unknown = probed["hf:org/teacher:validation"]["error"]
    assert unknown.startswith("data.sources.x: hf:org/teacher:validation: no split 'validation'")
    assert "['test', 'train']" in unknown and "hf:org/teacher:test" in unknown
    no_train = probed["hf:org/evalonly"]["error"]  # no split named, and no `train` split
    assert (
        "no split 'train' (no split given: `train` is the default)" in no_train and "hf:org/evalonly:test" in no_train
    )
    missing = probed["hf:org/not-downloaded"]["error"]
    assert missing.startswith("data.sources.x: hf:org/not-downloaded: not in the local Hugging Face cache")
    assert "offline mode is on" in missing and "HF_HUB_OFFLINE=0" in missing
    assert "hf download --repo-type dataset org/not-downloaded" in missing
    assert "huggingface-cli download --repo-type dataset org/not-downloaded" in missing
    malformed = probed["hf:org/prompts:train[:2]"]["error"]
    assert malformed.startswith("data.sources.x: 'hf:org/prompts:train[:2]'") and "hf:ORG/NAME[:SPLIT]" in malformed


def test_a_changed_hub_dataset_has_another_identity(tmp_path, hub, probed):
    home = tmp_path / "hf_home"
    hub_dataset(home, "org/prompts", {"train": PROMPTS})
    again = probe(home, "hf:org/prompts")["hf:org/prompts"]["identity"]
    assert again["sha256"] == probed["hf:org/prompts"]["identity"]["sha256"]  # same content, same files
    hub_dataset(home, "org/prompts", {"train": PROMPTS[:2]}, commit="2" * 40)  # a new commit: refs/main moves
    changed = probe(home, "hf:org/prompts")["hf:org/prompts"]
    assert changed["rows"] == PROMPTS[:2]
    assert changed["identity"]["revision"] == "2" * 40
    assert changed["identity"]["sha256"] != again["sha256"]


def test_a_sweep_with_hf_inputs_runs_leaksweep_subsets_offline(tmp_path, hub):
    (tmp_path / "clean.jsonl").write_text("".join(json.dumps(r) + "\n" for r in CLEAN))
    hub_dataset(hub, "org/other", {"train": TEACHER})
    raw = {
        "name": "hfsweep",
        "data": {"prompts": "hf:org/prompts", "sources": {"clean": "clean.jsonl", "teacher": "hf:org/other:train"}},
        "subsets": {
            "dates": {"metadata": {"category": "date"}},
            "years": {"regex": "2024", "text": "response", "source": "teacher"},
        },
        "base": "clean",
        "search": {**SEARCH, "fractions": {"dates": [0.0, 1.0]}},
        "traits": {"date_confusion": {"n_prompts": 4}},
    }
    path = tmp_path / "hfsweep.yaml"
    path.write_text(yaml.safe_dump(raw))
    done = subprocess.run(
        [*LEAKSWEEP, "subsets", str(path)], env=offline_env(hub), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "3 prompts; sources: clean, teacher" in done.stdout
    lines = done.stdout.splitlines()
    assert next(line for line in lines if line.startswith("dates ")).split()[1] == "2"  # prompts' metadata
    assert next(line for line in lines if line.startswith("years ")).split()[1] == "2"  # teacher's responses


def test_a_missing_hf_dataset_exits_2_offline(tmp_path, hub):
    (tmp_path / "clean.jsonl").write_text("".join(json.dumps(r) + "\n" for r in CLEAN))
    raw = {
        "name": "hfmissing",
        "data": {"prompts": "hf:org/prompts", "sources": {"clean": "clean.jsonl", "teacher": "hf:org/nowhere"}},
        "subsets": {"dates": {"metadata": {"category": "date"}}},
        "base": "clean",
        "search": {**SEARCH, "fractions": {"dates": [0.0, 1.0]}},
        "traits": {"date_confusion": {"n_prompts": 4}},
    }
    path = tmp_path / "hfmissing.yaml"
    path.write_text(yaml.safe_dump(raw))
    done = subprocess.run(
        [*LEAKSWEEP, "subsets", str(path)], env=offline_env(hub), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert "hf:org/nowhere: not in the local Hugging Face cache" in done.stderr
    assert "Traceback" not in done.stderr


# ---------------------------------------------------------------------------------------------
# input_identity of local inputs (no hub involved)


def test_input_identity_of_a_file_follows_its_content(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt_id": "a", "prompt": "hi"}\n')
    first = input_identity(path)
    assert first == {"kind": "file", "path": str(path.resolve()), "sha256": first["sha256"], "size": 35}
    path.write_text('{"prompt_id": "a", "prompt": "hi"}\n')  # rewritten, same bytes (a new mtime)
    assert input_identity(str(path)) == first
    path.write_text('{"prompt_id": "a", "prompt": "ho"}\n')  # same size, other bytes
    assert input_identity(path)["sha256"] != first["sha256"]
    with pytest.raises(UserError, match="no such file"):
        input_identity(tmp_path / "nope.jsonl")


def test_input_identity_of_a_saved_hf_folder_follows_its_files(tmp_path):
    import datasets

    folder = tmp_path / "saved"
    datasets.Dataset.from_list(PROMPTS).save_to_disk(str(folder))
    first = input_identity(folder)
    assert first["kind"] == "hf_folder" and first["path"] == str(folder.resolve())
    assert input_identity(folder) == first
    assert len(read_records(folder)) == 3
    arrow = next(folder.glob("*.arrow"))
    data = arrow.read_bytes()
    arrow.write_bytes(data.replace(b"Say hello.", b"Say hallo."))  # one changed byte in the data
    assert input_identity(folder)["sha256"] != first["sha256"]


LOG_INPUTS = """
import json, sys
from types import SimpleNamespace as NS
from leaksweep.trial import log_inputs
logged = []
class Run:
    def use_artifact(self, name, type, paths, metadata, aliases=None):
        logged.append({"name": name, "paths": [str(p) for p in paths], "metadata": metadata, "aliases": aliases})
data = NS(prompts="hf:org/prompts", sources={"clean": sys.argv[1], "teacher": "hf:org/teacher:test"})
spec = NS(condition="c", sweep=NS(data=data), plan=NS(base="clean", rules=[NS(source="teacher", refill="none")]))
log_inputs(Run(), spec)
print(json.dumps(logged))
"""


def test_trials_log_hf_inputs_as_artifacts_by_revision_and_content(tmp_path, hub):
    clean = tmp_path / "clean.jsonl"
    clean.write_text("".join(json.dumps(r) + "\n" for r in CLEAN))
    done = subprocess.run(
        [LEAKSWEEP[0], "-c", LOG_INPUTS, str(clean)], env=offline_env(hub), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    logged = {a["name"]: a for a in json.loads(done.stdout.splitlines()[-1])}
    assert set(logged) == {"prompts", "rollouts-clean", "rollouts-teacher"}
    teacher = logged["rollouts-teacher"]
    assert teacher["metadata"]["spec"] == "hf:org/teacher:test" and teacher["metadata"]["revision"] == "1" * 40
    assert teacher["paths"] and all(p.endswith(".arrow") for p in teacher["paths"])  # datasets' cached files
    assert teacher["aliases"] == [f"sha256-{teacher['metadata']['sha256'][:12]}"]
    assert logged["rollouts-clean"]["paths"] == [str(clean)]
