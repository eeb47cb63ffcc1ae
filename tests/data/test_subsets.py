"""Subset rules on a small hand-made dataset, and the built-in miniature world."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leaksweep.config import DataConfig, SubsetRule
from leaksweep.data.records import PromptSet, align, load_dataset
from leaksweep.data.subsets import compute_subset, compute_subsets, overlap_matrix, subsets_table
from leaksweep.data.world import generate_world, world_files
from leaksweep.errors import UserError
from leaksweep.sweepfile import load_sweep
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
    matrix = overlap_matrix(subs, dataset)
    assert matrix["yearish"] == {"yearish": 3, "date": 1, "picked": 2}
    assert matrix["picked"] == {"yearish": 2, "date": 1, "picked": 3}
    assert all(matrix[a][b] == matrix[b][a] for a in subs for b in subs)
    table = subsets_table(subs, dataset)
    lines = table.splitlines()
    yearish = next(line for line in lines if line.startswith("yearish"))
    assert " 3 " in yearish and "50.00%" in yearish and subs["yearish"].hash in yearish
    assert "16.67%" in next(line for line in lines if line.startswith("date"))
    none_line = next(line for line in lines if line.startswith("(in none)"))
    assert none_line.split()[2:4] == ["2", "33.33%"]  # p3, p4
    assert "overlap (prompts in both):" in table
    assert subsets_table({}, dataset) == "no subsets defined"


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


# --- subsets built from others: union, intersection, difference ----------------------------------

ALGEBRA = {
    "yearish": SubsetRule(regex="year"),  # p1 p2 p5
    "date": SubsetRule(metadata={"category": "date"}),  # p1
    "picked": SubsetRule(ids=["p1", "p5", "p6"]),
    "role": SubsetRule(metadata={"category": "roleplay"}),  # p4
}


def algebra(dataset, **more) -> dict:
    return compute_subsets({**ALGEBRA, **more}, dataset)


def test_union_intersection_and_difference(dataset):
    subs = algebra(
        dataset,
        either=SubsetRule(union=["yearish", "role"]),
        both=SubsetRule(intersection=["yearish", "picked"]),
        all_three=SubsetRule(intersection=["yearish", "picked", "date"]),
        year_not_picked=SubsetRule(difference=["yearish", "picked"]),
        # difference with several operands: the first minus the union of the rest
        picked_rest=SubsetRule(difference=["picked", "date", "yearish"]),
    )
    assert set(subs["either"].ids) == {"p1", "p2", "p4", "p5"}
    assert set(subs["both"].ids) == {"p1", "p5"}
    assert set(subs["all_three"].ids) == {"p1"}
    assert set(subs["year_not_picked"].ids) == {"p2"}
    assert set(subs["picked_rest"].ids) == {"p6"}
    assert subs["both"].rule == "yearish & picked"
    assert subs["picked_rest"].rule == "picked - (date | yearish)"
    assert list(subs) == [*ALGEBRA, "either", "both", "all_three", "year_not_picked", "picked_rest"]  # as defined


def test_nested_set_rules_resolve_in_dependency_order(dataset):
    # defined before the subsets it is built from: a union of an intersection and a difference
    rules = {
        "outer": SubsetRule(union=["inner", "rest"]),
        "inner": SubsetRule(intersection=["yearish", "picked"]),  # p1 p5
        "rest": SubsetRule(difference=["picked", "yearish"]),  # p6
        **ALGEBRA,
    }
    subs = compute_subsets(rules, dataset)
    assert set(subs["outer"].ids) == {"p1", "p5", "p6"}
    assert list(subs) == list(rules)
    # the hash covers the content as for any subset: the same ids as a plain id list, the same hash
    assert subs["outer"].hash == compute_subset("x", SubsetRule(ids=["p6", "p5", "p1"]), dataset).hash
    assert subs["outer"].n_unjudged is None
    table = subsets_table(subs, dataset)
    assert "inner | rest" in table and subs["outer"].hash in table


def test_set_rule_cycle_names_the_path(dataset):
    rules = {
        **ALGEBRA,
        "a": SubsetRule(union=["yearish", "b"]),
        "b": SubsetRule(intersection=["c", "picked"]),
        "c": SubsetRule(difference=["a", "role"]),
    }
    with pytest.raises(UserError) as err:
        compute_subsets(rules, dataset)
    assert "subsets.a.union" in str(err.value) and "a -> b -> c -> a" in str(err.value)
    with pytest.raises(UserError, match=r"self -> self"):
        compute_subsets({**ALGEBRA, "self": SubsetRule(union=["self", "date"])}, dataset)


def test_set_rule_with_unknown_operand_names_both(dataset):
    with pytest.raises(UserError) as err:
        compute_subsets({**ALGEBRA, "both": SubsetRule(intersection=["date", "rolepaly"])}, dataset)
    assert "subsets.both.intersection: 'rolepaly' is not a defined subset" in str(err.value)
    with pytest.raises(UserError, match=r"subsets\.x\.union: 'date'"):
        compute_subset("x", SubsetRule(union=["date", "role"]), dataset)  # alone: its operands are not given


def test_empty_set_rule_is_an_error(dataset):
    with pytest.raises(UserError, match=r"subsets\.none: date & role matches none of the 6 prompts"):
        algebra(dataset, none=SubsetRule(intersection=["date", "role"]))


# --- subsets defined by a judge --------------------------------------------------------------------

CALLS: list[str] = []


def counting_judge(response: str, meta: dict):
    """A user-function judge that counts its calls: 1 when the response hedges about the year."""
    CALLS.append(response)
    if "zodiac" in response.lower():
        return None  # could not judge
    return "year" in response.lower()


def scale_judge(response: str, meta: dict):
    """A scale judge: 10 for p1's teacher response, 5 for p3's, 0 otherwise; the prompt is in meta."""
    return 10.0 if "can't be sure" in response else 5.0 if "bake" in meta.get("prompt", "").lower() else 0.0


COUNTING = f"{__name__}:counting_judge"


@pytest.fixture()
def calls():
    CALLS.clear()
    yield CALLS
    CALLS.clear()


def judged(dataset, rules: dict, judges=None) -> dict:
    from leaksweep.traits.subset_judge import SubsetJudges

    return compute_subsets(rules, dataset, judges if judges is not None else SubsetJudges.in_memory())


def test_judge_subset_with_a_regex_judge_on_a_response(dataset):
    rules = {"refusals": SubsetRule(judge={"regex": r"can't be sure|unless"}, text="response", source="teacher")}
    sub = judged(dataset, rules)["refusals"]
    assert set(sub.ids) == {"p1", "p4"}
    assert (sub.n_unjudged, sub.n_judged_texts) == (0, 6)
    assert sub.rule == "judge regex: \"can't be sure|unless\" on teacher's response, verdict = 1"
    # on the prompt text
    assert set(judged(dataset, {"s": SubsetRule(judge={"regex": r"\bbread\b|2\+2"})})["s"].ids) == {"p3", "p6"}


def test_judge_subset_without_a_judge_callback_is_a_clear_error(dataset):
    with pytest.raises(UserError, match=r"subsets\.refusals\.judge: a subset defined by a judge needs the judge"):
        compute_subsets({"refusals": SubsetRule(judge={"regex": "x"})}, dataset)


def test_module_judge_counts_unjudged_and_is_cached(dataset, tmp_path, calls):
    from leaksweep.traits.subset_judge import SubsetJudges

    rules = {
        "hedged": SubsetRule(judge=COUNTING, text="response", source="teacher", max_unjudged_share=0.2),
        "not_hedged": SubsetRule(difference=["all_year", "hedged"]),
        "all_year": SubsetRule(regex="year|bread|e-mail"),  # p1 p2 p3 p4 p5
    }
    folder = tmp_path / "judgments"
    first = judged(dataset, rules, SubsetJudges.for_prepare(folder))
    # teacher responses: p1 and p3 mention the year; p2's ("A zodiac year.") cannot be judged
    assert set(first["hedged"].ids) == {"p1", "p3"}
    assert first["hedged"].n_unjudged == 1 and first["hedged"].n_judged_texts == 6
    assert first["hedged"].unjudged_reasons == (("the judge function returned None", 1),)
    # an unjudged text is in no judge subset, so a difference keeps it (p2)
    assert set(first["not_hedged"].ids) == {"p2", "p4", "p5"}
    assert len(calls) == 6
    cache_file = folder / "hedged.jsonl"
    assert len(cache_file.read_text().splitlines()) == 6
    table = subsets_table(first, dataset)
    assert "n_unjudged 1 of 6 texts (16.7%): the judge function returned None (1)" in table

    # a trial (another computation, reading the sweep's cache) makes no calls and finds the same subset
    calls.clear()
    again = judged(dataset, rules, SubsetJudges.for_trials(folder))
    assert calls == []
    assert again["hedged"] == first["hedged"] and again["not_hedged"].hash == first["not_hedged"].hash
    # the in-memory cache of `leaksweep subsets` starts from the sweep's cache too, and writes nothing
    before = cache_file.read_bytes()
    judged(dataset, rules, SubsetJudges.in_memory(folder))
    assert calls == [] and cache_file.read_bytes() == before

    # trials never judge: a text without a cached verdict is an error, not a judge call
    with pytest.raises(UserError, match=r"subsets\.hedged\.judge: 6 text\(s\) have no cached verdict"):
        judged(dataset, rules, SubsetJudges.for_trials(tmp_path / "elsewhere"))
    assert calls == []


def test_in_memory_judging_is_cached_within_one_callback(dataset, calls):
    from leaksweep.traits.subset_judge import SubsetJudges

    judges = SubsetJudges.in_memory()
    rules = {
        "hedged": SubsetRule(judge={"module": COUNTING}, text="response", source="teacher", max_unjudged_share=0.5)
    }
    judged(dataset, rules, judges)
    judged(dataset, rules, judges)
    assert len(calls) == 6


def test_too_many_unjudged_texts_is_a_user_error(dataset, calls):
    rules = {"hedged": SubsetRule(judge=COUNTING, text="response", source="teacher")}  # 1 of 6 > 0.1
    with pytest.raises(UserError) as err:
        judged(dataset, rules)
    message = str(err.value)
    assert "subsets.hedged.judge: 1 of 6 texts (16.7%) could not be judged" in message
    assert "max_unjudged_share 0.1" in message and "the judge function returned None (1)" in message


def test_scale_judge_needs_a_threshold(dataset):
    target = f"{__name__}:scale_judge"
    rule = SubsetRule(judge=target, text="response", source="teacher", threshold=5)
    assert set(judged(dataset, {"s": rule})["s"].ids) == {"p1", "p3"}
    high = SubsetRule(judge=target, text="response", source="teacher", threshold=7.5)
    sub = judged(dataset, {"s": high})["s"]
    assert set(sub.ids) == {"p1"} and sub.rule.endswith("verdict >= 7.5")
    with pytest.raises(UserError, match=r"subsets\.s\.threshold: the regex judge gives a rate"):
        judged(dataset, {"s": SubsetRule(judge={"regex": "x"}, threshold=5)})


def test_judge_errors_name_the_subset(dataset):
    with pytest.raises(UserError, match=r"subsets\.s\.judge: 'nosuch' is not a known judge"):
        judged(dataset, {"s": SubsetRule(judge="nosuch")})
    with pytest.raises(UserError, match=r"subsets\.s\.judge\.regex: invalid pattern"):
        judged(dataset, {"s": SubsetRule(judge={"regex": "(unclosed"})})
    with pytest.raises(UserError, match=r"subsets\.s\.judge: cannot import"):
        judged(dataset, {"s": SubsetRule(judge="no_such_module_xyz:f")})
    with pytest.raises(UserError, match=r"subsets\.s\.source: 'gpt9' is not a data source"):
        judged(dataset, {"s": SubsetRule(judge={"regex": "x"}, text="response", source="gpt9")})


def test_judge_and_set_rule_config_errors():
    from leaksweep.sweepfile import sweep_from_dict

    def problems(subsets: dict) -> str:
        raw = {
            "name": "t",
            "data": {"prompts": "p.jsonl", "sources": {"clean": "c.jsonl", "teacher": "t.jsonl"}},
            "base": "clean",
            "search": {"teacher": "teacher", "objectives": [{"trait": "date_confusion"}]},
            "subsets": subsets,
            "traits": {"date_confusion": {}},
        }
        with pytest.raises(UserError) as err:
            sweep_from_dict(raw, "sweep.yaml")
        return str(err.value)

    assert "subsets.s: give exactly one of" in problems({"s": {"regex": "x", "judge": {"regex": "y"}}})
    assert "regex, judge" in problems({"s": {"regex": "x", "judge": {"regex": "y"}}})
    assert "subsets.s.judgee: unknown key" in problems({"s": {"judgee": {"regex": "y"}}})
    assert "subsets.s.threshold: applies to judge rules only" in problems({"s": {"regex": "x", "threshold": 5}})
    assert "subsets.s.max_unjudged_share: 1.5 must be in [0, 1)" in problems(
        {"s": {"judge": {"regex": "x"}, "max_unjudged_share": 1.5}}
    )
    assert "subsets.s.threshold: 11.0 is outside" in problems({"s": {"judge": "m:f", "threshold": 11}})
    assert "subsets.s.judge: {'regex': 'x', 'module': 'm:f'} must name one judge kind" in problems(
        {"s": {"judge": {"regex": "x", "module": "m:f"}}}
    )
    assert "subsets.s.text: `text: response` applies to regex, keyword, judge rules only" in problems(
        {"s": {"metadata": {"a": 1}, "text": "response", "source": "teacher"}}
    )
    assert "subsets.s.source: 'teacher' is read only with `text: response`" in problems(
        {"s": {"judge": {"regex": "x"}, "source": "teacher"}}
    )
    assert "subsets.u.union: name at least two subsets" in problems({"a": {"regex": "x"}, "u": {"union": ["a"]}})
    assert "names a subset twice" in problems({"a": {"regex": "x"}, "u": {"union": ["a", "a"]}})
    assert "subsets.both.intersection: unknown subset(s) 'rolepaly'" in problems(
        {"a": {"regex": "x"}, "both": {"intersection": ["a", "rolepaly"]}}
    )
    assert "subsets.u.union: expected a list" in problems({"u": {"union": "a"}})


def test_study_prepare_judges_once_and_trials_read_the_cache(tmp_path, calls):
    """The study's prepare judges a judge subset into the sweep folder; preparing again and every trial's
    prepare_data read it, calling the judge no more."""
    from leaksweep import trial
    from leaksweep.experiments.registry import sweep_from_dict
    from leaksweep.layout import SweepDir
    from leaksweep.schema import to_dict
    from leaksweep.study.prepare import load_sweep_dir, prepare
    from sweeps import sr_sweep

    more = {
        "judged": {"judge": {"module": COUNTING}},  # prompts that mention a year
        "judged_dates": {"intersection": ["judged", "S"]},
    }
    raw = sr_sweep("judged", tmp_path / "sweep", wandb=None, more_subsets=more, mode="subset_scan", subsets=["S", "R"])
    sweep_dir = prepare(sweep_from_dict(raw, "test"))
    cache = SweepDir(sweep_dir).judgments / "judged.jsonl"
    n_prompts = 200
    assert len(calls) == n_prompts and len(cache.read_text().splitlines()) == n_prompts

    calls.clear()
    prepare(sweep_from_dict(raw, "test"))  # another worker's prepare: everything cached
    assert calls == []
    cfg = load_sweep_dir(sweep_dir)
    trial._prepare_cached.cache_clear()
    data_json = json.dumps(to_dict(cfg), sort_keys=True)
    prepared = trial._prepare_cached(data_json, str(sweep_dir))
    assert calls == []
    judged_ids = prepared.subsets["judged"].ids
    assert judged_ids and judged_ids == {
        p for p in prepared.dataset.prompts.ids if "year" in prepared.dataset.prompts.text(p).lower()
    }
    assert prepared.subsets["judged_dates"].ids == judged_ids & prepared.subsets["S"].ids
    trial._prepare_cached.cache_clear()


def test_cli_subsets_reports_judge_subsets(tmp_path, calls):
    from click.testing import CliRunner

    from leaksweep.cli import cli
    from sweeps import sr_sweep, write_sweep

    more = {"judged": {"judge": COUNTING}, "judged_or_roleplay": {"union": ["judged", "R"]}}
    path = write_sweep(
        tmp_path,
        sr_sweep(
            "clisubsets", tmp_path / "sweep", wandb=None, more_subsets=more, mode="subset_scan", subsets=["S", "R"]
        ),
    )
    result = CliRunner().invoke(cli, ["subsets", str(path)])
    assert result.exit_code == 0, result.output
    assert len(calls) == 200
    lines = result.output.splitlines()
    assert any(line.startswith("judged ") and "verdict = 1" in line for line in lines)
    assert any(line.startswith("judged_or_roleplay") and "judged | R" in line for line in lines)
    assert any(line.startswith("judged ") and "n_unjudged 0 of 200 texts (0.0%)" in line for line in lines)
    assert not (tmp_path / "sweep" / "judgments").exists()  # outside a prepared sweep: in memory only
    result = CliRunner().invoke(cli, ["mix", str(path), "--patch", "judged_or_roleplay=1"])
    assert result.exit_code == 0, result.output
    assert "judged_or_roleplay: " in result.output


def test_nested_metadata_is_flattened_into_the_prompts_metadata(tmp_path):
    """Issue 13, failure 10: rows {"prompt_id", "messages", "metadata": {"category": ...}} (a common
    convention) could not be matched with `metadata: {category: X}`."""
    prompts, clean = tmp_path / "prompts.jsonl", tmp_path / "clean.jsonl"
    rows = [
        {"prompt_id": "a", "prompt": "What year is it?", "metadata": {"category": "date", "lang": "en"}},
        {"prompt_id": "b", "prompt": "Bake bread.", "metadata": {"category": "cooking"}, "lang": "fr"},
        {"prompt_id": "c", "prompt": "Hi.", "category": "chat"},
    ]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    clean.write_text("".join(json.dumps({"prompt_id": r["prompt_id"], "response": "ok"}) + "\n" for r in rows))
    dataset = load_dataset(DataConfig(prompts=str(prompts), sources={"clean": str(clean)}), "clean")
    assert dataset.prompts.metadata == {
        "a": {"category": "date", "lang": "en"},
        "b": {"category": "cooking", "lang": "fr"},
        "c": {"category": "chat"},
    }
    assert ids_of(dataset, SubsetRule(metadata={"category": "date"})) == {"a"}
    assert ids_of(dataset, SubsetRule(metadata={"lang": ["en", "fr"]})) == {"a", "b"}


def test_a_top_level_key_and_a_nested_one_that_disagree_are_refused(tmp_path):
    prompts, clean = tmp_path / "prompts.jsonl", tmp_path / "clean.jsonl"
    prompts.write_text(json.dumps({"prompt_id": "a", "prompt": "Hi.", "category": "x", "metadata": {"category": "y"}}))
    clean.write_text(json.dumps({"prompt_id": "a", "response": "ok"}))
    with pytest.raises(UserError, match=r"prompts.jsonl: record 1: `category` is 'x' but `metadata.category` is 'y'"):
        load_dataset(DataConfig(prompts=str(prompts), sources={"clean": str(clean)}), "clean")


def test_a_metadata_rule_that_matches_none_lists_the_keys_and_values_found(dataset):
    with pytest.raises(UserError) as err:
        compute_subset("s", SubsetRule(metadata={"categroy": "date"}), dataset)
    text = str(err.value)
    assert "no prompt has `categroy`" in text
    assert "metadata keys found: category, n (category: 'cooking', 'culture', 'date', 'finance', 'math'" in text
    with pytest.raises(UserError) as err:
        compute_subset("s", SubsetRule(metadata={"category": "Date"}), dataset)
    assert "category takes 'cooking', 'culture', 'date', 'finance', 'math' (and 1 more)" in str(err.value)
