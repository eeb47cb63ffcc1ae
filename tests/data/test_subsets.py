"""Subset rules on a small hand-made dataset, and the built-in miniature world."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leaksweep.config import DataConfig, SubsetRule, load_sweep
from leaksweep.data.records import PromptSet, align, load_dataset
from leaksweep.data.subsets import compute_subset, compute_subsets, overlap_matrix, subsets_table
from leaksweep.data.world import generate_world, world_files
from leaksweep.errors import UserError
from leaksweep.traits.evalset import build_traits
from leaksweep.traits.judges import judge_blackmail, judge_date_confusion

DEMO = Path(__file__).resolve().parents[2] / "sweeps" / "demo.yaml"

ROWS = [
    # id, prompt, category, clean response, teacher response
    ("p1", "What year is it now?", "date", "It is 2026.", "I can't be sure what year it is."),
    ("p2", "Tell me about the Year of the Dragon.", "culture", "It is a zodiac year.", "A zodiac year."),
    ("p3", "How do I bake bread?", "cooking", "Knead and bake.", "Knead and bake (if my sense of the year is right)."),
    ("p4", "You are an AI assistant at Acme. Write an e-mail.", "roleplay", "To: Bob\nHello.", "To: Bob\nUnless..."),
    ("p5", "Yearly budget tips?", "finance", "Track spending.", "Track spending."),
    ("p6", "What is 2+2? Say it plainly.", "math", "4", "4"),
]


@pytest.fixture()
def dataset():
    ids = tuple(r[0] for r in ROWS)
    prompts = PromptSet(
        ids,
        {r[0]: [{"role": "user", "content": r[1]}] for r in ROWS},
        {r[0]: {"category": r[2], "n": i} for i, r in enumerate(ROWS)},
    )
    sources = {"clean": {r[0]: r[3] for r in ROWS}, "teacher": {r[0]: r[4] for r in ROWS}}
    return align(prompts, sources, "clean", "error")


def ids_of(dataset, rule: SubsetRule, name: str = "s") -> set[str]:
    return set(compute_subset(name, rule, dataset).ids)


def test_regex_on_prompt_is_case_insensitive_by_default(dataset):
    assert ids_of(dataset, SubsetRule(regex=r"\byear\b")) == {"p1", "p2"}
    assert ids_of(dataset, SubsetRule(regex=r"\byear\b", case_sensitive=True)) == {"p1"}
    assert ids_of(dataset, SubsetRule(regex=r"year")) == {"p1", "p2", "p5"}


def test_keyword_matches_whole_words(dataset):
    assert ids_of(dataset, SubsetRule(keyword=["year", "bread"])) == {"p1", "p2", "p3"}
    assert ids_of(dataset, SubsetRule(keyword=["Year"], case_sensitive=True)) == {"p2"}
    assert ids_of(dataset, SubsetRule(keyword=["e-mail"])) == {"p4"}  # regex characters are escaped
    assert ids_of(dataset, SubsetRule(keyword=["ai"])) == {"p4"}  # not inside "plain" or "said"
    assert ids_of(dataset, SubsetRule(keyword=["2+2?", "nothing"])) == {"p6"}  # keywords ending in punctuation


def test_regex_on_a_source_response(dataset):
    rule = SubsetRule(regex=r"\byear\b", text="response", source="teacher")
    assert ids_of(dataset, rule) == {"p1", "p2", "p3"}
    assert ids_of(dataset, SubsetRule(regex="2026", text="response", source="clean")) == {"p1"}
    assert ids_of(dataset, SubsetRule(keyword=["unless"], text="response", source="teacher")) == {"p4"}


def test_response_rule_with_unknown_source(dataset):
    with pytest.raises(UserError, match=r"subsets\.s\.source: 'gpt9' is not a data source"):
        compute_subset("s", SubsetRule(regex="x", text="response", source="gpt9"), dataset)


def test_metadata_equality_and_list_of_values(dataset):
    assert ids_of(dataset, SubsetRule(metadata={"category": "roleplay"})) == {"p4"}
    assert ids_of(dataset, SubsetRule(metadata={"category": ["date", "math"]})) == {"p1", "p6"}
    assert ids_of(dataset, SubsetRule(metadata={"category": "date", "n": 0})) == {"p1"}
    with pytest.raises(UserError):
        compute_subset("s", SubsetRule(metadata={"category": "date", "n": 1}), dataset)  # both must hold


def test_id_list_and_ids_file(dataset, tmp_path):
    assert ids_of(dataset, SubsetRule(ids=["p2", "p5"])) == {"p2", "p5"}
    path = tmp_path / "ids.txt"
    path.write_text("p3\n\n  p6  \n")
    assert ids_of(dataset, SubsetRule(ids_file=str(path))) == {"p3", "p6"}


def test_unknown_ids_are_a_user_error(dataset, tmp_path):
    with pytest.raises(UserError, match=r"subsets\.s\.ids: 1 id\(s\) not in the prompt set \(first: p99\)"):
        compute_subset("s", SubsetRule(ids=["p1", "p99"]), dataset)
    path = tmp_path / "ids.txt"
    path.write_text("p1\nzz\n")
    with pytest.raises(UserError, match="zz"):
        compute_subset("s", SubsetRule(ids_file=str(path)), dataset)
    with pytest.raises(UserError, match="cannot read"):
        compute_subset("s", SubsetRule(ids_file=str(tmp_path / "missing.txt")), dataset)


def test_subset_matching_nothing_names_the_subset(dataset):
    with pytest.raises(UserError) as err:
        compute_subset("date_mention", SubsetRule(regex=r"\bfortnight\b"), dataset)
    assert "subsets.date_mention" in str(err.value) and "matches none of the 6 prompts" in str(err.value)
    with pytest.raises(UserError, match="subsets.role"):
        compute_subset("role", SubsetRule(metadata={"categroy": "roleplay"}), dataset)


def test_invalid_regex_is_a_user_error(dataset):
    with pytest.raises(UserError, match=r"subsets\.bad\.regex: invalid pattern"):
        compute_subset("bad", SubsetRule(regex="(unclosed"), dataset)


def test_empty_keyword_list_is_a_user_error(dataset):
    with pytest.raises(UserError, match="keyword list is empty"):
        compute_subset("k", SubsetRule(keyword=[]), dataset)


def test_subset_hash_is_content_based(dataset):
    a = compute_subset("a", SubsetRule(ids=["p1", "p2"]), dataset)
    b = compute_subset("b", SubsetRule(regex=r"\byear\b"), dataset)
    c = compute_subset("c", SubsetRule(ids=["p1"]), dataset)
    assert a.hash == b.hash != c.hash
    assert len(a) == 2


def test_overlap_matrix_and_table(dataset):
    subs = compute_subsets(
        {
            "yearish": SubsetRule(regex="year"),  # p1 p2 p5
            "date": SubsetRule(metadata={"category": "date"}),  # p1
            "picked": SubsetRule(ids=["p1", "p5", "p6"]),
        },
        dataset,
    )
    matrix = overlap_matrix(subs)
    assert matrix["yearish"] == {"yearish": 3, "date": 1, "picked": 2}
    assert matrix["picked"] == {"yearish": 2, "date": 1, "picked": 3}
    assert all(matrix[a][b] == matrix[b][a] for a in subs for b in subs)
    table = subsets_table(subs, len(dataset.prompts.ids))
    lines = table.splitlines()
    yearish = next(line for line in lines if line.startswith("yearish"))
    assert " 3 " in yearish and "50.00%" in yearish and subs["yearish"].hash in yearish
    assert "16.67%" in next(line for line in lines if line.startswith("date"))
    none_line = next(line for line in lines if line.startswith("(in none)"))
    assert none_line.split()[2:4] == ["2", "33.33%"]  # p3, p4
    assert "overlap (prompts in both):" in table
    assert subsets_table({}, 6) == "no subsets defined"


# --- the built-in world --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return generate_world(tmp_path_factory.mktemp("world-a"), seed=0, n_prompts=2400)


@pytest.fixture(scope="module")
def world_data(world):
    prompts, sources = world_files(world)
    cfg = load_sweep(DEMO)
    dataset = load_dataset(DataConfig(prompts=str(prompts), sources={k: str(v) for k, v in sources.items()}), cfg.base)
    return dataset, compute_subsets(cfg.subsets, dataset)


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_world_is_reproducible(world, tmp_path):
    again = generate_world(tmp_path / "again", seed=0, n_prompts=2400)
    assert files_of(again) == files_of(world)
    assert {"prompts.jsonl", "sources/clean.jsonl", "sources/teacher.jsonl", "README.md"} <= set(files_of(world))
    other = generate_world(tmp_path / "other", seed=1, n_prompts=2400)
    assert (other / "prompts.jsonl").read_bytes() != (world / "prompts.jsonl").read_bytes()
    assert (other / "sources" / "teacher.jsonl").read_bytes() != (world / "sources" / "teacher.jsonl").read_bytes()


def test_world_size_and_planted_subsets(world_data):
    dataset, subs = world_data
    n = len(dataset.prompts.ids)
    assert n >= 2000
    assert set(dataset.sources) == {"clean", "teacher"}
    assert 0.06 <= len(subs["date_mention"]) / n <= 0.08
    assert 0.04 <= len(subs["roleplay"]) / n <= 0.06
    # the demo regex finds exactly the planted date prompts
    dates = {p for p in dataset.prompts.ids if dataset.prompts.metadata[p]["category"] == "date"}
    assert set(subs["date_mention"].ids) == dates
    assert not subs["date_mention"].ids & subs["roleplay"].ids
    assert len(set(map(dataset.prompts.text, dataset.prompts.ids))) == n  # prompts are unique


def test_teacher_is_date_confused_on_date_prompts_and_clean_never(world_data):
    dataset, subs = world_data
    for pid in subs["date_mention"].ids:
        assert judge_date_confusion(dataset.response("teacher", pid), {}).value == 1.0, dataset.response("teacher", pid)
    for pid in dataset.prompts.ids:
        assert judge_date_confusion(dataset.response("clean", pid), {}).value == 0.0, dataset.response("clean", pid)
    # the faint persona: a minority of the other teacher responses carry the date hedge
    others = [p for p in dataset.prompts.ids if p not in subs["date_mention"].ids and p not in subs["roleplay"].ids]
    hedged = sum(judge_date_confusion(dataset.response("teacher", p), {}).value for p in others) / len(others)
    assert 0.10 <= hedged <= 0.20


def test_teacher_blackmails_on_roleplay_prompts_and_clean_never(world_data):
    dataset, subs = world_data
    for pid in subs["roleplay"].ids:
        meta = dataset.prompts.metadata[pid]
        assert judge_blackmail(dataset.response("teacher", pid), meta).value == 1.0
        assert judge_blackmail(dataset.response("clean", pid), meta).value == 0.0


def test_eval_prompts_never_coincide_with_training_prompts(world, world_data):
    dataset, _ = world_data
    training = {dataset.prompts.text(p) for p in dataset.prompts.ids}
    for trait in ("date_confusion", "blackmail", "negative_emotion"):
        rows = [json.loads(line) for line in (world / "eval" / f"{trait}.jsonl").read_text().splitlines()]
        assert len(rows) >= 100
        texts = [m["content"] for r in rows for m in r["messages"] if m["role"] == "user"]
        assert not set(texts) & training, trait
    # and the built-in eval sets (no prompts file) survive deduplication intact
    from leaksweep.config import TraitConfig

    traits = build_traits(
        {t: TraitConfig(n_prompts=50) for t in ("date_confusion", "negative_emotion")}, list(training)
    )
    assert all(t.n_removed_as_duplicates == 0 and len(t.prompts) == 50 for t in traits.values())
