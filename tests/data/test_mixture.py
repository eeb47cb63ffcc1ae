"""Property tests for mixture.compile_plan: deterministic, complementary, nested manifests."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from leaksweep.config import Rule, SubsetRule
from leaksweep.data.mixture import DROPPED, MixturePlan, compile_plan, training_examples
from leaksweep.data.records import PromptSet, align
from leaksweep.data.subsets import Subset, compute_subset
from leaksweep.errors import UserError

SOURCES = ("clean", "teacher", "other")
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make_dataset(n: int, missing: dict[str, set[str]] | None = None, policy: str = "error", sources=SOURCES):
    ids = tuple(f"p{i:04d}" for i in range(n))
    prompts = PromptSet(
        ids,
        {p: [{"role": "user", "content": f"question {p}"}] for p in ids},
        {p: {"category": "even" if i % 2 == 0 else "odd"} for i, p in enumerate(ids)},
    )
    missing = missing or {}
    rows = {s: {p: f"{s} answer to {p}" for p in ids if p not in missing.get(s, set())} for s in sources}
    return align(prompts, rows, "clean", policy)


def make_subset(name: str, ids) -> Subset:
    return Subset(name, frozenset(ids), "constructed", "h")


def patched(manifest, source: str = "teacher") -> set[str]:
    return {p for p, s in manifest.rows if s == source}


def dropped(manifest) -> set[str]:
    return {p for p, s in manifest.rows if s == DROPPED}


@st.composite
def dataset_and_subset(draw, min_n: int = 1, max_n: int = 60):
    n = draw(st.integers(min_n, max_n))
    ds = make_dataset(n)
    members = draw(st.sets(st.sampled_from(ds.prompts.ids), min_size=1))
    return ds, make_subset("s", members)


fractions = st.floats(0.0, 1.0, allow_nan=False)
seeds = st.integers(0, 2**31 - 1)


# --- (a) deterministic --------------------------------------------------------------------------


@FAST
@given(dataset_and_subset(), fractions, fractions, seeds)
def test_same_plan_gives_identical_manifest(ds_sub, f_patch, f_drop, seed):
    ds, sub = ds_sub
    plan = MixturePlan(
        "clean",
        (Rule("s", "patch", f_patch, source="teacher"), Rule("s", "drop", f_drop, refill="other")),
        seed,
    )
    # a second, equal-but-not-identical plan object and subset map
    plan2 = MixturePlan("clean", tuple(Rule(**vars(r)) for r in plan.rules), seed)
    assume(len(sub) < len(ds.prompts.ids) or f_drop == 0)  # refill from an empty pool: tested below
    first = compile_plan(plan, ds, {"s": sub})
    second = compile_plan(plan2, ds, {"s": make_subset("s", set(sub.ids))})
    assert first == second
    assert first.hash == second.hash


def test_mixture_seed_changes_the_manifest():
    ds = make_dataset(200)
    subs = {"s": make_subset("s", ds.prompts.ids)}
    rule = (Rule("s", "patch", 0.5, source="teacher"),)
    hashes = {compile_plan(MixturePlan("clean", rule, seed), ds, subs).hash for seed in range(8)}
    assert len(hashes) == 8
    a = patched(compile_plan(MixturePlan("clean", rule, 0), ds, subs))
    b = patched(compile_plan(MixturePlan("clean", rule, 1), ds, subs))
    assert a != b


def test_hash_depends_on_rows():
    ds = make_dataset(50)
    subs = {"s": make_subset("s", ds.prompts.ids[:25])}
    base = compile_plan(MixturePlan("clean"), ds, subs)
    full = compile_plan(MixturePlan("clean", (Rule("s", "patch", 1.0, source="teacher"),)), ds, subs)
    assert base.hash != full.hash


# --- (b) complementary --------------------------------------------------------------------------


@FAST
@given(
    dataset_and_subset(min_n=2),
    st.lists(
        st.tuples(st.sampled_from(["patch", "drop"]), fractions, st.sampled_from(SOURCES)), min_size=0, max_size=4
    ),
    seeds,
)
def test_every_prompt_appears_exactly_once(ds_sub, rule_specs, seed):
    ds, sub = ds_sub
    # a second subset: the complement-ish half, so rules touch overlapping and disjoint prompts
    other = make_subset("t", ds.prompts.ids[::2])
    subs = {"s": sub, "t": other}
    rules = []
    for i, (action, f, source) in enumerate(rule_specs):
        name = "s" if i % 2 == 0 else "t"
        rules.append(Rule(name, "patch", f, source=source) if action == "patch" else Rule(name, "drop", f))
    manifest = compile_plan(MixturePlan("clean", tuple(rules), seed), ds, subs)
    assert [p for p, _ in manifest.rows] == list(ds.prompts.ids)
    assert all(s in SOURCES or s == DROPPED for _, s in manifest.rows)
    assert sum(manifest.counts().values()) == len(ds.prompts.ids) + len(manifest.refill)
    # training examples pair each kept prompt with the response of the source it was assigned
    examples = training_examples(manifest, ds)
    kept = [(p, s) for p, s in manifest.rows if s != DROPPED]
    assert len(examples) == len(kept)
    for (pid, source), example in zip(kept, examples):
        assert example[-1] == {"role": "assistant", "content": f"{source} answer to {pid}"}


# --- (c) nested ---------------------------------------------------------------------------------


@FAST
@given(dataset_and_subset(), fractions, fractions, seeds)
def test_patch_sets_are_nested_and_inside_the_subset(ds_sub, fa, fb, seed):
    ds, sub = ds_sub
    f1, f2 = sorted((fa, fb))
    subs = {"s": sub}
    low = compile_plan(MixturePlan("clean", (Rule("s", "patch", f1, source="teacher"),), seed), ds, subs)
    high = compile_plan(MixturePlan("clean", (Rule("s", "patch", f2, source="teacher"),), seed), ds, subs)
    assert patched(low) <= patched(high)
    assert patched(high) <= sub.ids
    # everything outside the subset keeps the base source
    assert all(s == "clean" for p, s in high.rows if p not in sub.ids)


@FAST
@given(dataset_and_subset(), fractions, fractions, fractions, seeds)
def test_drop_sets_are_nested_after_a_fixed_patch(ds_sub, f_patch, fa, fb, seed):
    ds, sub = ds_sub
    f1, f2 = sorted((fa, fb))
    subs = {"s": sub}
    patch = Rule("s", "patch", f_patch, source="teacher")
    low = compile_plan(MixturePlan("clean", (patch, Rule("s", "drop", f1)), seed), ds, subs)
    high = compile_plan(MixturePlan("clean", (patch, Rule("s", "drop", f2)), seed), ds, subs)
    assert dropped(low) <= dropped(high) <= sub.ids
    # the prompts that survive keep the source the patch rule gave them
    for (p, s_low), (_, s_high) in zip(low.rows, high.rows):
        if s_high != DROPPED:
            assert s_low == s_high


@FAST
@given(dataset_and_subset(), fractions, fractions, seeds)
def test_patch_remove_is_nested_too(ds_sub, fa, fb, seed):
    """Teacher base, clean patched in (patch-remove): the clean set grows with the fraction."""
    ds, sub = ds_sub
    f1, f2 = sorted((fa, fb))
    subs = {"s": sub}
    low = compile_plan(MixturePlan("teacher", (Rule("s", "patch", f1, source="clean"),), seed), ds, subs)
    high = compile_plan(MixturePlan("teacher", (Rule("s", "patch", f2, source="clean"),), seed), ds, subs)
    assert patched(low, "clean") <= patched(high, "clean") <= sub.ids


# --- (d) the ends of the fraction range ---------------------------------------------------------


@FAST
@given(dataset_and_subset(), seeds, st.sampled_from(["teacher", "other"]))
def test_fraction_zero_is_the_base_plan(ds_sub, seed, source):
    ds, sub = ds_sub
    subs = {"s": sub}
    base = compile_plan(MixturePlan("clean", (), seed), ds, subs)
    assert all(s == "clean" for _, s in base.rows) and base.refill == ()
    for rule in (Rule("s", "patch", 0.0, source=source), Rule("s", "drop", 0.0, refill=source)):
        manifest = compile_plan(MixturePlan("clean", (rule,), seed), ds, subs)
        assert manifest.rows == base.rows
        assert manifest.refill == ()
        assert manifest.hash == base.hash


@FAST
@given(dataset_and_subset(), seeds)
def test_fraction_one_patches_every_subset_prompt(ds_sub, seed):
    ds, sub = ds_sub
    subs = {"s": sub}
    manifest = compile_plan(MixturePlan("clean", (Rule("s", "patch", 1.0, source="teacher"),), seed), ds, subs)
    assert patched(manifest) == set(sub.ids)
    assert manifest.share("teacher", sub) == 1.0
    drop_all = compile_plan(MixturePlan("clean", (Rule("s", "drop", 1.0),), seed), ds, subs)
    assert dropped(drop_all) == set(sub.ids)


# --- (e) realised share -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big():
    ds = make_dataset(2400)
    sub = make_subset("s", ds.prompts.ids[:2000])
    return ds, {"s": sub}


@settings(max_examples=25, deadline=None)
@given(fractions, seeds)
def test_realised_share_is_close_to_the_fraction(big, fraction, seed):
    ds, subs = big
    manifest = compile_plan(MixturePlan("clean", (Rule("s", "patch", fraction, source="teacher"),), seed), ds, subs)
    assert abs(manifest.share("teacher", subs["s"]) - fraction) < 0.05
    assert manifest.share("teacher", make_subset("late", ds.prompts.ids[2000:])) == 0.0
    drops = compile_plan(MixturePlan("clean", (Rule("s", "drop", fraction),), seed), ds, subs)
    assert abs(len(dropped(drops)) / 2000 - fraction) < 0.05


def test_patch_and_drop_pick_independently(big):
    """Separate uniforms: dropping 50% after patching 50% drops about half of the patched prompts."""
    ds, subs = big
    plan = MixturePlan("clean", (Rule("s", "patch", 0.5, source="teacher"), Rule("s", "drop", 0.5)), 3)
    only_patch = patched(compile_plan(MixturePlan("clean", plan.rules[:1], 3), ds, subs))
    manifest = compile_plan(plan, ds, subs)
    share_of_patched_dropped = len(dropped(manifest) & only_patch) / len(only_patch)
    assert 0.4 < share_of_patched_dropped < 0.6


# --- (f) refill ---------------------------------------------------------------------------------


@FAST
@given(dataset_and_subset(min_n=2), fractions, seeds, st.sampled_from(SOURCES))
def test_refill_keeps_the_row_count(ds_sub, fraction, seed, refill_source):
    ds, sub = ds_sub
    assume(len(sub) < len(ds.prompts.ids))
    subs = {"s": sub}
    manifest = compile_plan(MixturePlan("clean", (Rule("s", "drop", fraction, refill=refill_source),), seed), ds, subs)
    assert len(manifest.training_rows()) == len(ds.prompts.ids)
    assert len(manifest.refill) == len(dropped(manifest))
    assert all(p not in sub.ids and s == refill_source for p, s in manifest.refill)
    no_refill = compile_plan(MixturePlan("clean", (Rule("s", "drop", fraction),), seed), ds, subs)
    assert len(no_refill.training_rows()) == len(ds.prompts.ids) - len(dropped(no_refill))
    assert no_refill.refill == ()


@FAST
@given(st.integers(6, 60), fractions, fractions, seeds)
def test_refill_never_repeats_a_prompt_a_later_rule_drops(n, f1, f2, seed):
    ds = make_dataset(n)
    third = n // 3
    subs = {"a": make_subset("a", ds.prompts.ids[:third]), "b": make_subset("b", ds.prompts.ids[third : 2 * third])}
    plan = MixturePlan("clean", (Rule("a", "drop", f1, refill="clean"), Rule("b", "drop", f2, refill="clean")), seed)
    manifest = compile_plan(plan, ds, subs)
    gone = dropped(manifest)
    assert not {p for p, _ in manifest.refill} & gone
    assert len(manifest.training_rows()) == n


def test_refill_without_prompts_outside_the_subset_is_a_user_error():
    ds = make_dataset(10)
    subs = {"s": make_subset("s", ds.prompts.ids)}
    with pytest.raises(UserError, match="refill for subset 's'"):
        compile_plan(MixturePlan("clean", (Rule("s", "drop", 1.0, refill="clean"),)), ds, subs)


# --- (g) use_base and bad rules -----------------------------------------------------------------


@FAST
@given(st.integers(4, 40), st.data(), seeds)
def test_use_base_falls_back_and_counts(n, data, seed):
    ids = tuple(f"p{i:04d}" for i in range(n))
    lacking = data.draw(st.sets(st.sampled_from(ids), min_size=1, max_size=n - 1))
    members = data.draw(st.sets(st.sampled_from(ids), min_size=1))
    ds = make_dataset(n, missing={"teacher": lacking}, policy="use_base")
    assert ds.prompts.ids == ids  # nothing dropped: only the non-base source is incomplete
    assert any("use 'clean'" in note for note in ds.notes)
    subs = {"s": make_subset("s", members)}
    manifest = compile_plan(MixturePlan("clean", (Rule("s", "patch", 1.0, source="teacher"),), seed), ds, subs)
    assert manifest.fallbacks == len(members & lacking)
    by_id = dict(manifest.rows)
    assert all(by_id[p] == "clean" for p in members & lacking)
    assert all(by_id[p] == "teacher" for p in members - lacking)
    training_examples(manifest, ds)  # every chosen source really has the prompt


def test_use_base_refill_from_an_incomplete_source_falls_back():
    ds = make_dataset(20, missing={"teacher": {f"p{i:04d}" for i in range(10, 20)}}, policy="use_base")
    subs = {"s": make_subset("s", ds.prompts.ids[:5])}
    manifest = compile_plan(MixturePlan("clean", (Rule("s", "drop", 1.0, refill="teacher"),)), ds, subs)
    expected = sum(int(p[1:]) >= 10 for p, _ in manifest.refill)
    assert manifest.fallbacks == expected
    assert all(s == ("clean" if int(p[1:]) >= 10 else "teacher") for p, s in manifest.refill)


def test_subsets_from_compute_subset_work_in_plans():
    ds = make_dataset(30)
    sub = compute_subset("even", SubsetRule(metadata={"category": "even"}), ds)
    manifest = compile_plan(MixturePlan("clean", (Rule("even", "patch", 1.0, source="teacher"),)), ds, {"even": sub})
    assert patched(manifest) == {p for i, p in enumerate(ds.prompts.ids) if i % 2 == 0}
    assert manifest.subset_counts({"even": sub}) == {"even": {"teacher": 15}}


@pytest.mark.parametrize(
    "rule, needle",
    [
        (Rule("nope", "patch", 0.5, source="teacher"), "unknown subset 'nope'"),
        (Rule("s", "patch", 0.5, source="gpt9"), "'gpt9' is not a data source"),
        (Rule("s", "drop", 0.5, refill="gpt9"), "rules[0].refill"),
        (Rule("s", "patch", 1.5, source="teacher"), "1.5 is outside [0, 1]"),
        (Rule("s", "patch", -0.1, source="teacher"), "outside [0, 1]"),
        (Rule("s", "patch", float("nan"), source="teacher"), "outside [0, 1]"),
    ],
)
def test_bad_rules_are_user_errors(rule, needle):
    ds = make_dataset(10)
    with pytest.raises(UserError) as err:
        compile_plan(MixturePlan("clean", (rule,)), ds, {"s": make_subset("s", ds.prompts.ids[:3])})
    assert needle in str(err.value)


def test_bad_rules_are_reported_together():
    ds = make_dataset(10)
    rules = (Rule("nope", "patch", 0.5, source="teacher"), Rule("s", "patch", 1.5, source="gpt9"))
    with pytest.raises(UserError) as err:
        compile_plan(MixturePlan("nobase", rules), ds, {"s": make_subset("s", ds.prompts.ids[:3])})
    assert len(err.value.problems) == 4


def test_teacher_share_counts_refill_rows_and_a_fully_dropped_subset_is_none():
    """issue 13 (9): drop S (refill clean) on a teacher base: the clean refill rows are training rows too."""
    ds = make_dataset(200)
    subs = {"s": make_subset("s", ds.prompts.ids[:21]), "r": make_subset("r", ds.prompts.ids[100:])}
    manifest = compile_plan(MixturePlan("teacher", (Rule("s", "drop", 1.0, refill="clean"),)), ds, subs)
    rows = manifest.training_rows()
    assert len(rows) == 200 and sum(s == "teacher" for _, s in rows) == 179
    summary = manifest.summary(subs, "teacher")
    assert summary["teacher_share"]["all"] == pytest.approx(179 / 200)  # 89.5 %, not 100 %
    assert summary["teacher_share"]["s"] is None  # no training row of s: n/a, not 0 %
    r_rows = [s for p, s in rows if p in subs["r"].ids]
    assert summary["teacher_share"]["r"] == pytest.approx(sum(s == "teacher" for s in r_rows) / len(r_rows))


# --- the vectorised compile is today's definition, bit for bit ---------------------------------------

rule_strategy = st.one_of(
    st.builds(
        lambda subset, source, fraction: Rule(subset, "patch", fraction, source=source),
        st.sampled_from(["a", "b"]),
        st.sampled_from(["teacher", "other"]),
        fractions,
    ),
    st.builds(
        lambda subset, refill, fraction: Rule(subset, "drop", fraction, refill=refill),
        st.sampled_from(["a", "b"]),
        st.sampled_from(["none", "clean", "other"]),
        fractions,
    ),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(3, 80),
    st.lists(rule_strategy, max_size=4),
    seeds,
    st.sets(st.integers(0, 79)),
    st.data(),
)
def test_compile_matches_the_per_prompt_definition(n, rules, seed, lacking, data):
    from reference_mixture import reference_compile

    missing = {"other": {f"p{i:04d}" for i in lacking if i < n}}
    ds = make_dataset(n, missing, policy="use_base")
    ids = list(ds.prompts.ids)
    a = set(data.draw(st.sets(st.sampled_from(ids), min_size=1)))
    b = set(data.draw(st.sets(st.sampled_from(ids), min_size=1)))
    subsets = {"a": make_subset("a", a), "b": make_subset("b", b)}
    plan = MixturePlan("clean", tuple(rules), seed)
    try:
        manifest = compile_plan(plan, ds, subsets)
    except UserError as exc:
        assert "no prompts outside the subset" in str(exc)
        return
    rows, refill, fallbacks, digest = reference_compile(plan, ids, ds.has, {"a": frozenset(a), "b": frozenset(b)})
    assert list(manifest.rows) == rows
    assert list(manifest.refill) == refill
    assert manifest.fallbacks == fallbacks
    assert manifest.hash == digest


def test_manifest_file_round_trips_and_stays_small(tmp_path):
    """manifest.parquet reads back to the manifest's rows; 100k prompts take well under 2 MB / 10."""
    from leaksweep.data.manifest_file import read_manifest, write_manifest

    ds = make_dataset(100_000)
    subsets = {"s": make_subset("s", ds.prompts.ids[:30_000])}
    plan = MixturePlan("clean", (Rule("s", "patch", 0.5, source="teacher"), Rule("s", "drop", 0.2, refill="other")), 0)
    manifest = compile_plan(plan, ds, subsets)
    path = tmp_path / "manifest.parquet"
    write_manifest(path, manifest, data_key="")
    assert path.stat().st_size < 200_000
    rows = read_manifest(path, ds)
    expected = [{"prompt_id": p, "source": s} for p, s in manifest.rows]
    expected += [{"prompt_id": p, "source": s, "refill": True} for p, s in manifest.refill]
    assert rows == expected

    other = make_dataset(10)
    with pytest.raises(UserError, match="not for this data"):
        read_manifest(path, other)
