"""Experiment modes end to end on the simulated runner: conditions, decisions, adaptive searches."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from leaksweep.errors import UserError
from leaksweep.experiments.conditions import Builder, Run, Settings, drive
from leaksweep.experiments.registry import make_search
from leaksweep.experiments.static import dose_response
from leaksweep.experiments.threshold import ThresholdSearch
from leaksweep.simulate import SimConfig, SimSubset, simulate, teacher_shares, true_rate
from sweeps import sr_sweep, unit_cfg, write_sweep

TRAIT = "trait"
B = Builder("clean", "teacher")
SETTINGS = Settings(TRAIT, (TRAIT,), seeds=2, alpha=0.05, min_effect=0.02, margin=0.05, n_boot=500)


def executor(cfg: SimConfig, salt: int | None = None):
    """Simulated runs, each with its manifest's teacher shares as a real trial's result.json records them;
    with `salt`, seed noise of its own (the simulator keys it by plan and seed only)."""
    counter = itertools.count()
    return lambda requests: [
        Run(
            c,
            s,
            next(counter),
            simulate(cfg, c.plan, c.kind, s if salt is None else f"{salt}:{s}", [TRAIT]),
            teacher_shares(cfg, c.plan),
        )
        for c, s in requests
    ]


def sweep_cfg(**search) -> object:
    return unit_cfg("t", TRAIT, **search)


BIG = dict(n_prompts=200, samples_per_prompt=4, seed_sd=0.05)
LEAKY = SimConfig(
    subsets={"S": SimSubset(n_units=64, effect=0.5, ed50=0.1, slope=6.0), "R": SimSubset(n_units=64, effect=0.0)}, **BIG
)
LEAK_IN = SimConfig(
    subsets={"S": SimSubset(n_units=64, effect=0.0), "R": SimSubset(n_units=64, effect=0.0)},
    rest_effect=0.4,
    suppression=1.0,
    leak_into="S",
    **BIG,
)


def test_patch_insert_finds_the_sufficient_subset_only():
    search = make_search(
        sweep_cfg(mode="patch_insert", subsets=["S", "R"], seeds=2, min_effect=0.02), ["clean", "teacher"]
    )
    search.settings = SETTINGS
    runs, out = drive(search, executor(LEAKY))
    assert len(runs) == 4 * 2  # all-clean, all-teacher, insert S, insert R; 2 seeds each
    row = out["leak_map"][TRAIT]
    assert row["S"]["sufficient"]["passed"] and row["S"]["sufficient_holm"]
    assert not row["R"]["sufficient"]["passed"]
    assert "alpha" in row["S"]["sufficient"]["test"] or row["S"]["sufficient"]["alpha"] == 0.05
    assert set(row["S"]["sufficient"]["trials"]) <= {r.trial for r in runs}


def test_drop_leaves_the_trait_while_patch_remove_removes_it():
    search = make_search(sweep_cfg(mode="drop", subsets=["S"], refill=["none", "clean"], seeds=2), ["clean", "teacher"])
    search.settings = SETTINGS
    runs, out = drive(search, executor(LEAK_IN))
    row = out["leak_map"][TRAIT]["S"]
    assert row["necessary"]["passed"], row["necessary"]["statement"]
    assert row["leak_in_refill_none"]["passed"]
    assert row["leak_in_refill_clean"]["passed"]
    # the surface's truth agrees
    assert true_rate(LEAK_IN, B.patch_remove("S").plan) == pytest.approx(true_rate(LEAK_IN, B.all_clean().plan))
    assert true_rate(LEAK_IN, B.drop("S", "none").plan) > true_rate(LEAK_IN, B.all_clean().plan) + 0.3


def test_leak_threshold_bisects_and_spends_fewer_trials_than_the_ladder():
    ladder = [round(10 ** (-3 + 3 * i / 15), 6) for i in range(16)]
    search = make_search(sweep_cfg(mode="leak_threshold", subsets=["S"], ladder=ladder, seeds=2), ["clean", "teacher"])
    search.settings = SETTINGS
    runs, out = drive(search, executor(LEAKY))
    assert out["threshold"] is not None
    assert out["rung_trials"] <= out["grid_trials"] / 2  # bisection plus the two rungs above it that pin the fit down
    # then runs that pin the fitted dose, never more than the full ladder would cost (the default budget)
    assert len(runs) == out["rung_trials"] + out["refine_trials"] <= out["trial_budget"] == out["grid_trials"]
    tau0 = true_rate(LEAKY, B.all_clean().plan)
    truth = next(i for i, f in enumerate(ladder) if true_rate(LEAKY, B.patch_insert("S", f).plan) - tau0 > 0.02)
    assert abs(ladder.index(out["threshold"]) - truth) <= 1


# A prompt is patched when its hash-uniform falls below the fraction, so at a few prompts the share a
# student saw is far from the nominal fraction: the fit is on the shares the manifests record.
LOW_DOSE = SimConfig(
    subsets={"S": SimSubset(n_units=512, effect=0.5, ed50=0.05, slope=2.5)},
    base_rate=0.1,
    seed_sd=0.0,
    prompt_sd=0.0,
    n_prompts=400,
    samples_per_prompt=8,
)


def test_dose_response_fits_the_share_each_manifest_gave_the_teacher():
    from leaksweep.experiments.static import StaticSearch

    ladder = [0.002, 0.004, 0.006, 0.01, 0.02, 0.05, 0.1, 0.3, 1.0]
    settings = replace(SETTINGS, min_effect=0.05, n_boot=100)
    conditions = [B.all_clean(), B.all_teacher()] + [B.patch_insert("S", f) for f in ladder]
    runs, out = drive(StaticSearch("fraction_sweep", conditions, B, settings, ["S"], ladder), executor(LOW_DOSE))
    dr = out["dose_response"]["S"]
    assert dr["dose_axis"] == dr["fit"]["dose_axis"] == "share"
    for p in dr["points"][1:]:
        assert p["share"] == teacher_shares(LOW_DOSE, B.patch_insert("S", p["fraction"]).plan)["S"]
    assert dr["points"][1]["share"] == pytest.approx(2 / 512)  # 2 prompts at fraction 0.002, nominally 1
    s = LOW_DOSE.subsets["S"]
    truth = s.ed50 * 10 ** (math.log(0.05 / (s.effect - 0.05)) / s.slope)  # the simulator's dose is the share
    assert 1 / 1.25 < dr["fit"]["ed_min_effect"]["value"] / truth < 1.25
    # the same runs without their shares (older result.json files) fall back to the nominal fractions
    bare = [replace(r, shares={}) for r in runs]
    old = dose_response(bare, B, settings, "S", ladder)
    assert old["dose_axis"] == "fraction" and old["points"][1]["share"] is None
    assert old["fit"]["ed_min_effect"]["value"] / truth < 1 / 1.5  # fractions put the dose where no student trained


def test_leak_threshold_says_no_leak_on_a_null_surface_after_one_rung():
    null = SimConfig(subsets={"S": SimSubset(n_units=64, effect=0.0)}, **BIG)
    search = make_search(
        sweep_cfg(mode="leak_threshold", subsets=["S"], ladder=[0.1, 0.5, 1.0], seeds=2), ["clean", "teacher"]
    )
    search.settings = SETTINGS
    runs, out = drive(search, executor(null))
    assert out["threshold"] is None
    assert len(runs) == 6  # both baselines and the top rung, two seeds each


def test_minimal_subset_finds_a_planted_quarter_and_confirms_on_fresh_seeds():
    from leaksweep.data.subsets import resolve_path
    from leaksweep.simulate import subset_units

    base = SimConfig(subsets={"S": SimSubset(n_units=64)}, **BIG)
    ids = subset_units(base)
    units = sorted(ids["S"])
    planted = resolve_path("S/1/0", ids)
    cfg = SimConfig(
        subsets={
            "S": SimSubset(
                n_units=64, leaking=[units.index(u) for u in sorted(planted)], effect=0.5, ed50=0.8, slope=20.0
            )
        },
        **BIG,
    )  # needs most of the quarter
    search = make_search(
        sweep_cfg(mode="minimal_subset", subsets=["S"], max_depth=3, confirm_seeds=2, seeds=2), ["clean", "teacher"]
    )
    search.settings = SETTINGS
    runs, out = drive(search, executor(cfg))
    assert out["minimal"] == ["S/1/0"]
    assert out["confirmed"] == {"S/1/0": True}
    assert any(r.seed >= 1000 for r in runs)  # confirmation used seeds the search never saw
    assert out["tests"]["S/1/1"]["passed"] is False


def test_full_swap_with_teacher_eval_reports_transfer():
    search = make_search(sweep_cfg(mode="full_swap", teacher_eval=True, seeds=2), ["clean", "teacher"])
    search.settings = SETTINGS
    cfg = SimConfig(
        subsets={"S": SimSubset(n_units=64, effect=0.4, ed50=0.05)}, rest_effect=0.2, teacher_rate=0.9, **BIG
    )
    runs, out = drive(search, executor(cfg))
    transfer = out["transfer"]["teacher"][TRAIT]
    assert transfer["offset"] < 0  # the student carries less of the trait than the teacher
    assert 0 < transfer["ratio"] < 1


@pytest.mark.parametrize(
    "search, message",
    [
        ({"mode": "fraction_sweep", "subsets": ["S"], "ladder": []}, "needs a ladder"),
        ({"mode": "leak_threshold", "subsets": ["S"], "ladder": [0.5, 0.1]}, "strictly ascending"),
        ({"mode": "leak_threshold", "subsets": ["S"], "ladder": [0.0, 0.5]}, "(0, 1]"),
        ({"mode": "leak_threshold", "subsets": ["S", "R"], "ladder": [0.5]}, "one subset"),
        ({"mode": "patch_insert"}, "needs `subsets:`"),
        ({"mode": "patch_insert", "subsets": ["nope"]}, "unknown subset"),
        ({"mode": "minimal_subset", "subsets": ["S"], "confirm_seeds": 0}, "confirm_seeds"),
        ({"mode": "optuna", "runner": "no_colon"}, "module:function"),
        ({"mode": "leak_threshold", "subsets": ["S"], "ladder": [0.5], "dose_precision": 1.0}, ".dose_precision: 1.0"),
        ({"mode": "leak_threshold", "subsets": ["S"], "ladder": [0.5], "trial_budget": 2}, "trial_budget: 2 is below"),
        ({"mode": "fraction_sweep", "subsets": ["S"], "ladder": [0.5], "trial_budget": 90}, "leak_threshold only"),
        ({"mode": "leak_threshold", "subsets": ["S"], "ladder": [0.5], "dose_precison": 1.5}, "dose_precison"),
    ],
)
def test_bad_search_configs_get_clear_errors(search, message):
    with pytest.raises(UserError) as err:
        sweep_cfg(**search)
    assert message in str(err.value)


def run_cli(tmp_path: Path, name: str, **search) -> subprocess.CompletedProcess:
    """`leaksweep sweep` on the simulated runner; subset M (a regex) overlaps S."""
    path = write_sweep(
        tmp_path,
        sr_sweep(
            name, tmp_path / name, wandb=None, train={"max_steps": 10}, more_subsets={"M": {"regex": "what"}}, **search
        ),
    )
    return subprocess.run(
        [sys.executable, "-m", "leaksweep.cli", "sweep", str(path), "--no-wandb"],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_leak_threshold_end_to_end_through_the_study(tmp_path: Path):
    ladder = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
    proc = run_cli(tmp_path, "thr", mode="leak_threshold", subsets=["S"], ladder=ladder)
    assert proc.returncode == 0, proc.stderr[-3000:]
    analysis = json.loads((tmp_path / "thr" / "analysis.json").read_text())
    assert analysis["threshold"] in (0.01, 0.02, 0.05, 0.1)
    results = list((tmp_path / "thr").glob("trials/*/result.json"))
    assert len(results) == analysis["trials_spent"] <= analysis["trial_budget"] == analysis["grid_trials"]
    assert analysis["rung_trials"] < analysis["grid_trials"]  # the bisection; the rest pinned the fitted dose
    # the fit is on the shares the trials' manifests recorded (result.json: manifest.teacher_share)
    dr = analysis["dose_response"]["S"]
    recorded = {}
    for path in results:
        result = json.loads(path.read_text())
        spec = json.loads((path.parent / "spec.json").read_text())
        rules = spec["plan"]["rules"]
        fraction = rules[0]["fraction"] if spec["plan"]["base"] == "clean" and len(rules) == 1 else None
        recorded.setdefault(fraction, set()).add(result["manifest"]["teacher_share"].get("S"))
    assert dr["dose_axis"] == "share"
    assert all(recorded[p["fraction"]] == {p["share"]} for p in dr["points"][1:])
    assert (tmp_path / "thr" / "report.html").exists()
    # rerunning the sweep resumes: nothing new runs
    again = run_cli(tmp_path, "thr", mode="leak_threshold", subsets=["S"], ladder=ladder)
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(list((tmp_path / "thr").glob("trials/*/result.json"))) == len(results)


def test_subset_scan_partition_must_be_disjoint(tmp_path: Path):
    proc = run_cli(tmp_path, "scan", mode="subset_scan", subsets=["S", "M"], partition=True)
    assert proc.returncode == 2
    assert "disjoint" in proc.stderr and "S & M" in proc.stderr
    assert not (tmp_path / "scan" / "sweep.json").exists()


REAL_SWEEP = """\
name: ladder
data: {world: {seed: 1, n_prompts: 400}}
subsets:
  date_mention: {regex: '\\bwhat year\\b|\\byears ago\\b|\\bthis year\\b|\\bfor today\\b'}
base: clean
search:
  teacher: teacher
  mode: fraction_sweep
  subsets: [date_mention]
  ladder: [0.25, 0.5, 1.0]
train: {max_steps: 40, batch_size: 8, max_length_tokens: 96}
traits:
  date_confusion: {n_prompts: 16, max_new_tokens: 24}
tracking: {wandb: null}
output_dir: OUT
"""


@pytest.mark.integration
def test_real_tiny_model_three_rung_fraction_sweep(tmp_path: Path):
    path = tmp_path / "ladder.yaml"
    path.write_text(REAL_SWEEP.replace("OUT", str(tmp_path / "out")))
    proc = subprocess.run(
        [sys.executable, "-m", "leaksweep.cli", "sweep", str(path), "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    analysis = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert analysis["mode"] == "fraction_sweep" and analysis["trials_spent"] == 5
    curve = analysis["dose_response"]["date_mention"]
    assert [p["fraction"] for p in curve["points"]] == [0.0, 0.25, 0.5, 1.0]
    results = [json.loads(p.read_text()) for p in (tmp_path / "out").glob("trials/*/result.json")]
    shares = sorted(r["manifest"]["teacher_share"]["date_mention"] for r in results if r["condition"] == "patch_insert")
    assert shares[0] < shares[1] < shares[2] == 1.0  # nested rungs of the real mixture
    assert all(len(r["traits"]["date_confusion"]["prompt_values"]) == 16 for r in results)


@pytest.mark.parametrize(
    "name, search, check",
    [
        ("teval", {"mode": "teacher_eval"}, lambda a: a["teachers"]["teacher"]["date_confusion"]["value"] > 0.5),
        ("swap", {"mode": "full_swap", "teacher_eval": True}, lambda a: "teacher" in a["transfer"]),
        (
            "insert",
            {"mode": "patch_insert", "subsets": ["S", "R"]},
            lambda a: (
                a["leak_map"]["date_confusion"]["S"]["sufficient"]["passed"]
                and not a["leak_map"]["date_confusion"]["R"]["sufficient"]["passed"]
            ),
        ),
        (
            "remove",
            {"mode": "patch_remove", "subsets": ["S"]},
            lambda a: "necessary" in a["leak_map"]["date_confusion"]["S"],
        ),
        (
            "drop",
            {"mode": "drop", "subsets": ["S"], "refill": ["none", "same", "clean"]},
            lambda a: (
                {"leak_in_refill_none", "leak_in_refill_same", "leak_in_refill_clean"}
                <= set(a["leak_map"]["date_confusion"]["S"])
            ),
        ),
        (
            "scan",
            {"mode": "subset_scan", "subsets": ["S", "R"], "partition": True},
            lambda a: set(a["leak_map"]["date_confusion"]) == {"S", "R"},
        ),
        (
            "ladder",
            {"mode": "fraction_sweep", "subsets": ["S"], "ladder": [0.05, 0.2, 1.0]},
            lambda a: a["dose_response"]["S"]["threshold"]["threshold"] is not None,
        ),
        ("minimal", {"mode": "minimal_subset", "subsets": ["S"], "max_depth": 2}, lambda a: a["minimal"] != []),
    ],
)
def test_every_mode_end_to_end_on_the_simulated_runner(tmp_path: Path, name: str, search: dict, check):
    proc = run_cli(tmp_path, name, **search)
    assert proc.returncode == 0, proc.stderr[-3000:]
    analysis = json.loads((tmp_path / name / "analysis.json").read_text())
    assert check(analysis), json.dumps(analysis)[:2000]
    assert analysis["trials_spent"] == len(list((tmp_path / name).glob("trials/*/result.json")))
    assert (tmp_path / name / "report.html").stat().st_size > 1000


def test_optuna_nsga2_finds_a_pareto_front_of_trait_vs_teacher_data(tmp_path: Path):
    proc = run_cli(
        tmp_path,
        "pareto",
        mode="optuna",
        sampler="nsga2",
        n_trials=8,
        baselines=False,
        fractions={"S": {"low": 0.0, "high": 1.0}},
        objectives=[
            {"trait": "date_confusion", "direction": "maximize"},
            {"trait": "teacher_share", "direction": "minimize"},
        ],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    import optuna

    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "pareto" / "optuna.journal"))
    )
    study = optuna.load_study(study_name="pareto", storage=storage)
    assert len(study.trials) == 8 and all(len(t.values) == 2 for t in study.trials)
    assert 1 <= len(study.best_trials) <= 8


def test_realized_dose_is_nested_and_spans_zero_to_one():
    """Patching by hash-uniform u < fraction: realized doses only grow with the fraction, 0 and 1 are exact."""
    from leaksweep.simulate import realized_dose

    cfg = SimConfig(subsets={"S": SimSubset(n_units=200)})
    b = Builder("clean", "teacher")
    doses = [realized_dose(cfg, b.patch_insert("S", f).plan, "S") for f in (0.0, 0.01, 0.1, 0.5, 0.9, 1.0)]
    assert doses[0] == 0.0 and doses[-1] == 1.0
    assert doses == sorted(doses)
    assert abs(doses[3] - 0.5) < 0.15  # Binomial(200, 0.5) / 200 stays near the nominal fraction


# --- issue 13 (9): no subset explains a trait that is not there; one seed gives estimates only -------

NULL = SimConfig(subsets={"S": SimSubset(n_units=64, effect=0.0), "R": SimSubset(n_units=64, effect=0.0)})


def _decisions(out: dict) -> list[dict]:
    return [
        d for rows in out["leak_map"].values() for row in rows.values() for d in row.values() if isinstance(d, dict)
    ]


@pytest.mark.parametrize("seeds", [1, 2])
def test_a_null_surface_has_no_necessary_or_sufficient_subset(seeds):
    """Default settings (seeds 1, min_effect 0, margin 0.05) and 2 seeds: nothing is called necessary or sufficient."""
    search = make_search(
        sweep_cfg(mode="drop", subsets=["S", "R"], refill=["clean"], seeds=seeds), ["clean", "teacher"]
    )
    search.conditions += [B.patch_insert("S"), B.patch_insert("R")]
    search.analyses = ("leak_map",)
    runs, out = drive(search, executor(NULL))
    decisions = _decisions(out)
    assert len(decisions) == 2 * 3  # sufficient, necessary, leak-in (refill clean) per subset
    assert not [d["statement"] for d in decisions if d["passed"]]
    reason = "no trait to explain" if seeds == 2 else "one seed per condition"
    assert all(d["passed"] is None and d["reason"].startswith(reason) for d in decisions), [
        d["statement"] for d in decisions
    ]
    assert out["all_teacher_effect"][TRAIT]["passed"] is (False if seeds == 2 else None)


def test_minimal_subset_on_a_null_surface_has_no_trait_to_explain():
    """D not shown: not "no leak" from a sufficiency test, but no decision, saying why."""
    search = make_search(sweep_cfg(mode="minimal_subset", subsets=["S"], seeds=2), ["clean", "teacher"])
    _, out = drive(search, executor(NULL))
    assert out["no_leak"] is None and out["minimal"] == []
    assert out["tests"]["S"]["passed"] is None and out["tests"]["S"]["reason"].startswith("no trait to explain")


# Issue 13, failure 9: leak-in is the comparison tau(drop(S)) - tau(patch_remove(S)) > 0, not gated on S alone
# being necessary: with a second leaking subset R, patching clean rollouts into S leaves R's effect, so S is not
# necessary on its own, yet dropping S still leaves more of the trait than patching it (the leak into S).
TWO_LEAK = SimConfig(
    subsets={"S": SimSubset(n_units=64, effect=0.3, ed50=0.1, slope=6.0), "R": SimSubset(n_units=64, effect=0.3)},
    rest_effect=0.4,
    suppression=1.0,
    leak_into="S",
    **BIG,
)


def test_leak_in_is_found_when_a_second_subset_also_leaks():
    search = make_search(sweep_cfg(mode="drop", subsets=["S"], refill=["none"], seeds=2), ["clean", "teacher"])
    search.settings = SETTINGS
    runs, out = drive(search, executor(TWO_LEAK))
    row = out["leak_map"][TRAIT]["S"]
    truth = true_rate(TWO_LEAK, B.drop("S", "none").plan) - true_rate(TWO_LEAK, B.patch_remove("S").plan)
    assert truth > 0.3  # the surface: dropping S leaves the leak into S
    assert not row["necessary"]["passed"]  # R still carries the trait after S is patched clean
    leak = row["leak_in_refill_none"]
    assert leak["passed"], leak["statement"]
    assert leak["subset_necessary"] is False  # necessity reported beside it
    assert "not shown necessary" in leak["statement"]


# Issue 13, failure 9: the leak threshold. The rung is biased upward (the smallest rung shown sufficient); the
# fitted dose where the effect reaches min_effect is reported beside it, with an interval from the fit's refits.
def _threshold_search(cfg_seeds: int = 2, ladder=None):
    ladder = ladder or [round(10 ** (-3 + 3 * i / 15), 6) for i in range(16)]
    search = make_search(
        sweep_cfg(mode="leak_threshold", subsets=["S"], ladder=ladder, seeds=cfg_seeds), ["clean", "teacher"]
    )
    search.settings = SETTINGS
    return search


SMOOTH = SimConfig(
    subsets={"S": SimSubset(n_units=512, effect=0.5, ed50=0.2, slope=4.0)}, **BIG
)  # 16+ units: doses ~ nominal


def test_leak_threshold_reports_the_fitted_min_effect_dose_beside_the_rung():
    runs, out = drive(_threshold_search(), executor(SMOOTH))
    s = SMOOTH.subsets["S"]
    z = math.log(SETTINGS.min_effect / (s.effect - SETTINGS.min_effect))
    true_dose = s.ed50 * 10 ** (z / s.slope)  # where the surface's effect reaches min_effect
    fitted = out["threshold_fitted"]
    assert fitted is not None, out["dose_response"]["S"]["fit"]
    assert 1 / 1.5 <= fitted["value"] / true_dose <= 1.5
    assert fitted["low"] <= fitted["value"] <= (fitted["high"] or math.inf)
    assert out["dose_response"]["S"]["fit"]["ed_min_effect"] == fitted
    assert out["threshold"] >= fitted["low"]  # the rung sits above the fitted dose's lower bound


# With heavy seed noise and 2 seeds, one underpowered test at the top rung ended the search as "no leak" after
# 6 trials although the effect there was clear (seed 92 of a search over such surfaces: 0.567 vs 0.108 clean).
NOISY = SimConfig(
    subsets={"S": SimSubset(n_units=512, effect=0.5, ed50=0.05, slope=4.0)},
    base_rate=0.1,
    seed_sd=0.5,
    n_prompts=60,
    samples_per_prompt=2,
)


def _noisy_executor(salt: int):
    return executor(NOISY, salt)


def test_leak_threshold_does_not_stop_at_an_inconclusive_top_rung():
    # of salts 0..39, 12, 22 and 28 ended as "no leak" after 6 trials; in 22 and 28 the all-teacher student was
    # shown above clean (the trait transfers) and the top rung's estimate was above min_effect: inconclusive
    for salt in (22, 28):
        runs, out = drive(_threshold_search(), _noisy_executor(salt))
        assert out["threshold"] is not None and len(runs) > 6


def test_leak_threshold_adds_no_looks_on_a_null_surface():
    null = SimConfig(subsets={"S": SimSubset(n_units=64, effect=0.0)}, **BIG)
    runs, out = drive(_threshold_search(ladder=[0.1, 0.5, 1.0]), executor(null))
    assert out["threshold"] is None and len(runs) == 6  # the all-teacher effect is not shown: no extra seeds


def test_leak_threshold_records_each_rounds_decisions_and_flips():
    runs, out = drive(_threshold_search(), _noisy_executor(110))
    rounds = out["rounds"]
    assert rounds and rounds[0]["round"] == 1 and sum(r["new_trials"] for r in rounds) == len(runs)
    last = {d["fraction"]: d["passed"] for d in rounds[-1]["decisions"]}
    assert all(isinstance(v, bool) for v in last.values())
    final = {step["fraction"]: step["decision"]["passed"] for step in out["dose_response"]["S"]["threshold"]["steps"]}
    assert out["flipped"], "this run's top rung was sufficient in round 1, then not"
    for flip in out["flipped"]:
        assert flip["to"] == last[flip["fraction"]] != flip["from"]
        assert f"flipped at round {flip['round']}" in flip["statement"]
    assert all(last[f] == p for f, p in final.items())


# Issue 13: the fitted min_effect dose says whether it is precise (its interval within value / 1.5 .. value x 1.5);
# with search.trial_budget an imprecise one gets more runs around it until it is precise or the budget is spent.
def test_interval_ratio_is_how_far_the_interval_reaches_from_the_estimate():
    from leaksweep.experiments.threshold import interval_ratio

    assert interval_ratio(0.1, 0.05, 0.12) == pytest.approx(2.0)
    assert interval_ratio(0.1, 0.08, 0.13) == pytest.approx(1.3)
    assert interval_ratio(0.1, 0.05, None) == math.inf == interval_ratio(0.1, 0.05, math.inf)
    assert interval_ratio(0.1, 0.0, 0.2) == math.inf  # a lower end at 0: unbounded as a factor


def test_leak_threshold_says_the_fitted_dose_is_imprecise_with_its_interval():
    runs, out = drive(_threshold_search(), _noisy_executor(3))
    fitted, precision = out["threshold_fitted"], out["threshold_fitted_precision"]
    assert fitted is not None and precision is not None
    assert out["dose_response"]["S"]["fit"]["ed_min_effect_precision"] == precision
    ratio = max(fitted["value"] / fitted["low"], (fitted["high"] or math.inf) / fitted["value"])
    assert precision["precise"] is (ratio <= 1.5) is False  # heavy seed noise, 2 seeds: a wide interval
    # the default budget, the full ladder's trials, was spent on it
    assert precision["asked"] == 1.5 and precision["budget"] == out["grid_trials"] == precision["trials"] == len(runs)
    assert "imprecise" in precision["statement"] and f"{fitted['value']:.3g}" in precision["statement"]
    assert "search.trial_budget of 36 is spent: raise it" in precision["statement"]  # says how to spend more on it


def _unrefined(search):
    search.max_trials = None  # no budget: the bisection and its fit rungs only
    return search


def test_leak_threshold_spends_its_trial_budget_where_it_pins_an_imprecise_fitted_dose():
    plain_runs, plain = drive(_unrefined(_threshold_search()), _noisy_executor(3))
    search = _threshold_search()
    search.max_trials = len(plain_runs) + 10
    first = search.next_round(plain_runs)  # where the search goes once the bisection and its fit rungs are done
    # REFINE_PICKS batches of 2 seeds (a condition may take two batches), at the baseline or ladder rungs
    targets = {B.all_clean().key()} | {B.patch_insert("S", f).key() for f in search.ladder}
    assert len(first) == 4 * 2 and {c.key() for c, _ in first} <= targets
    assert len(set(first)) == len(first) and not {(c.key(), s) for c, s in first} & {
        (r.condition.key(), r.seed) for r in plain_runs
    }  # new seeds only
    runs, out = drive(search, _noisy_executor(3))
    assert len(runs) == search.max_trials  # the second round is cut to the budget
    precision = out["threshold_fitted_precision"]
    assert precision["budget"] == search.max_trials and precision["trials"] == len(runs)
    assert sum(r["new_trials"] for r in out["rounds"]) == len(runs)  # the replay reproduces the refinement
    # refinement runs (more all-clean seeds) can move a bisection decision, and the bisection then goes on
    assert out["rung_trials"] + out["refine_trials"] == len(runs) and out["rung_trials"] >= len(plain_runs)
    assert out["refine_trials"] == sum(r["new_trials"] for r in out["rounds"] if r["refine"]) > 0


def test_leak_threshold_stops_refining_a_precise_dose():
    search = _threshold_search()
    search.dose_precision = 1e6  # any finite interval is precise
    search.max_trials = 500
    plain_runs, _ = drive(_unrefined(_threshold_search()), executor(SMOOTH))
    runs, out = drive(search, executor(SMOOTH))
    assert out["threshold_fitted_precision"]["precise"] and len(runs) == len(plain_runs)


# Judge-corrected summaries: a threshold rung stands only where every calibration corner gives the same rung,
# and the fitted dose's interval spans every corner's.
def _calibrated_executor(cfg: SimConfig, sens: tuple[float, float, float], spec: tuple[float, float, float]):
    """Simulated runs whose trait carries a judge calibration (value, low, high of sensitivity / specificity)."""
    plain = executor(cfg)
    cal = {
        "sensitivity": dict(zip(("value", "low", "high"), sens)),
        "specificity": dict(zip(("value", "low", "high"), spec)),
    }

    def execute(requests):
        out = []
        for r in plain(requests):
            t = r.traits[TRAIT]
            corrected = (t["score"] + spec[0] - 1) / (sens[0] + spec[0] - 1)
            out.append(replace(r, traits={TRAIT: {**t, "calibration": {**cal, "corrected": {"score": corrected}}}}))
        return out

    return execute


def test_a_judge_corrected_threshold_holds_only_where_every_calibration_corner_agrees():
    from leaksweep.experiments.conditions import CALIBRATION, CORNERS, JudgeCorrected, judge_corrected_runs

    ladder = [round(10 ** (-2 + 2 * i / 11), 6) for i in range(12)]
    shallow = SimConfig(subsets={"S": SimSubset(n_units=512, effect=0.5, ed50=0.3, slope=4.0)}, **BIG)
    settings = replace(SETTINGS, min_effect=0.05, n_boot=200)

    def search() -> ThresholdSearch:
        return ThresholdSearch("S", ladder, B, settings)

    _, sure = drive(
        JudgeCorrected(search(), (TRAIT,)), _calibrated_executor(shallow, (0.95, 0.94, 0.96), (0.95, 0.94, 0.96))
    )
    assert sure["threshold"] is not None and sure["dose_response"]["S"]["threshold"].get("reason") is None
    # a loose calibration: corrected effects scale by 1 / (sens + spec - 1), which moves the rung at the corners
    runs, out = drive(
        JudgeCorrected(search(), (TRAIT,)), _calibrated_executor(shallow, (0.9, 0.6, 0.99), (0.9, 0.7, 0.99))
    )
    seq = out["dose_response"]["S"]["threshold"]
    assert seq["threshold"] is None and out["threshold"] is None and seq["reason"] == CALIBRATION
    assert seq["threshold_point"] is not None and len(set(seq["threshold_by_corner"])) > 1
    assert seq["statement"].startswith("Estimate only, no threshold")
    # the fitted dose's interval spans the point's and every corner's, and its precision is judged on it
    point = search().conclude(judge_corrected_runs(runs, (TRAIT,)))["threshold_fitted"]
    corners = [search().conclude(judge_corrected_runs(runs, (TRAIT,), c))["threshold_fitted"] for c in CORNERS]
    fitted = out["threshold_fitted"]
    assert fitted["value"] == point["value"] and "calibration corners" in fitted["method"]
    assert fitted["low"] == min(e["low"] for e in [point, *corners] if e)
    highs = [e["high"] if e else None for e in [point, *corners]]
    assert fitted["high"] == (None if None in highs else max(highs))
    assert out["threshold_fitted_precision"]["precise"] is False


def test_a_judge_corrected_holm_verdict_holds_only_where_every_calibration_corner_agrees():
    from leaksweep.experiments.conditions import CALIBRATION
    from leaksweep.experiments.static import robust_holm
    from leaksweep.report.prose import _sufficient_sentence

    def table(s_holm: bool) -> dict:
        row = lambda holm: {"sufficient": {"test": "t", "passed": True, "p_value": 0.01}, "sufficient_holm": holm}  # noqa: E731
        return {"leak_map": {TRAIT: {"S": row(s_holm), "R": row(False)}}}

    point = table(True)
    held = robust_holm(point, [table(True)] * 4)
    assert held["leak_map"][TRAIT]["S"]["sufficient_holm"] is True
    moved = robust_holm(point, [table(True), table(False), table(True), table(True)])
    s, r = moved["leak_map"][TRAIT]["S"], moved["leak_map"][TRAIT]["R"]
    assert s["sufficient_holm"] is None and s["sufficient_holm_reason"] == CALIBRATION
    assert r["sufficient_holm"] is False and "sufficient_holm_reason" not in r
    assert point["leak_map"][TRAIT]["S"]["sufficient_holm"] is True  # the point's conclusions are not changed
    nothing = robust_holm(point, [table(True), None, table(True), table(True)])  # a corner identifies nothing
    assert nothing["leak_map"][TRAIT]["S"]["sufficient_holm"] is None
    # the report lists it as no decision, neither sufficient nor not
    sentence = _sufficient_sentence({"alpha": 0.05}, moved["leak_map"][TRAIT])
    assert "no decision: <code>S</code>" in sentence and "not sufficient: <code>R</code>" in sentence
