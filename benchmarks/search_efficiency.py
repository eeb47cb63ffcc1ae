"""How many trials do the adaptive searches save, and are they still right?

On a family of simulated response surfaces (leaksweep.simulate) with known truth:

* leak threshold: the adaptive bisection (experiments.threshold.ThresholdSearch; "adaptive" with no
  budget finds the rung, "adaptive+dose" also spends the default budget on the fitted dose) against the full ladder
  (fraction_sweep + fixed-sequence testing) and against random search that runs as many rungs as
  the adaptive search did, all at the same seeds per point. Correct = the reported threshold is
  within one ladder step of the true one (the smallest rung whose true effect exceeds
  min_effect), or "no leak" on a null surface. Steps are counted in realized doses: a prompt is
  patched when its hash-uniform u < fraction (see leaksweep.data.mixture), so on a 512-unit subset the low rungs
  (0.001 is half a unit) realize Binomial counts, and several adjacent rungs often compile to the
  same manifest. A reported rung is within one step when its realized dose lies between those of
  the rungs one below and one above the truth, so two rungs that trained on identical data are
  never counted as different answers.
* minimal leaking subset: group bisection (experiments.minimal.MinimalSubsetSearch) against testing every
  leaf at the same depth: recall and precision of the planted leaking units, trials spent.

* honesty (issue 13): threshold surfaces with heavy independent seed noise per condition (each
  condition's seed draws its own logit offset, seed_sd 0.3..0.5) and shallow noisy curves (slope
  1.5..2.5): the rung within one step, the fitted min_effect dose (analysis: fit.ed_min_effect, the
  dose where the fitted effect reaches min_effect) within 1.5x of the true one, decisions that
  flipped as runs arrived; null surfaces at the default settings (seeds 1, min_effect 0); a leak map
  (subset_scan) and leak-in (drop, refill none) on surfaces with two leaking subsets S and R and
  leak-in into S. A leak-in is eligible when the surface's true tau(drop) - tau(patch_remove) >= 0.1,
  false when it is <= 0. The threshold search runs three ways on the same surfaces and seeds: as
  before this benchmark's last change (runs without their manifests' shares, so the fit is on
  nominal fractions, scored against the true nominal fraction; no budget), on the shares with no
  budget, and on the shares with the default budget (the full ladder's trials; --trial-budget N
  changes it) spent where it pins the fitted dose; shares are scored against the simulator's own
  dose, the share of S's rows from the teacher. Beside the accuracy: whether the search called the
  dose precise (its interval within 1.5x) and whether the trials it spent could resolve it within
  1.5x even for an oracle that knows where it is (dose_yardstick.trials_to_resolve).

Usage: python benchmarks/search_efficiency.py [--surfaces N] [--seed S] [--quick] [--only-honesty] [--trial-budget N]
Prints a table; the last lines are one-line summaries.
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import sys
import time
from dataclasses import replace

from dose_yardstick import print_dose_precision, trials_to_resolve

from leaksweep.data.subsets import resolve_path
from leaksweep.experiments.conditions import Builder, Run, Settings, drive
from leaksweep.experiments.minimal import MinimalSubsetSearch
from leaksweep.experiments.static import StaticSearch, dose_response
from leaksweep.experiments.threshold import ThresholdSearch, grid_trials
from leaksweep.simulate import SimConfig, SimSubset, realized_dose, simulate, subset_units, teacher_shares, true_rate

SUBSET = "S"
LADDER = [round(10 ** (-3 + 3 * i / 31), 6) for i in range(32)]  # 0.001 .. 1, factor 1.25 per rung
TRAIT = "trait"


def executor(cfg: SimConfig, salt: int | None = None, shares: bool = True):
    """Runs of `cfg`; with `salt`, each surface draws its own seed noise (the simulator keys noise by plan
    and seed only, so without it every surface reuses the same draws for the same condition). Each run
    records its manifest's teacher shares, as a real trial's result.json does; shares=False leaves them
    out, which is how runs looked before the fit moved onto them (it then fits nominal fractions)."""
    counter = itertools.count()

    def noise_seed(seed: int) -> int | str:
        return seed if salt is None else f"{salt}:{seed}"

    def execute(requests):
        return [
            Run(
                c,
                seed,
                next(counter),
                simulate(cfg, c.plan, c.kind, noise_seed(seed), [TRAIT]),
                teacher_shares(cfg, c.plan) if shares else {},
            )
            for c, seed in requests
        ]

    return execute


def realized_doses(cfg: SimConfig, builder: Builder) -> list[float]:
    """Share of the subset's units that each rung's compiled manifest gives the teacher."""
    return [realized_dose(cfg, builder.patch_insert(SUBSET, f).plan, SUBSET) for f in LADDER]


def true_threshold(cfg: SimConfig, builder: Builder, min_effect: float) -> int | None:
    """Index of the smallest rung whose noiseless effect exceeds min_effect (None: no leak)."""
    tau0 = true_rate(cfg, builder.all_clean().plan)
    for i, f in enumerate(LADDER):
        if true_rate(cfg, builder.patch_insert(SUBSET, f).plan) - tau0 > min_effect:
            return i
    return None


def within_one(found: float | None, truth: int | None, doses: list[float]) -> bool:
    """Within one ladder step of the truth, counted in realized doses (rungs with one manifest are one step)."""
    if truth is None or found is None:
        return truth is None and found is None
    low, high = doses[max(0, truth - 1)], doses[min(len(doses) - 1, truth + 1)]
    return low <= doses[LADDER.index(found)] <= high


def threshold_surfaces(n: int, rng: random.Random) -> list[tuple[str, SimConfig]]:
    surfaces = []
    for i in range(n):
        null = i % 5 == 4  # every fifth surface has no leak at all
        s = SimSubset(
            n_units=512,
            effect=0.0 if null else rng.choice([0.3, 0.5, 0.7]),
            ed50=10 ** rng.uniform(-2.3, -0.5),
            slope=rng.choice([4.0, 6.0, 10.0]),
        )
        cfg = SimConfig(
            subsets={SUBSET: s},
            base_rate=rng.choice([0.02, 0.05, 0.1]),
            seed_sd=rng.choice([0.05, 0.15]),
            n_prompts=200,
            samples_per_prompt=4,
        )
        name = "null" if null else f"ed50={s.ed50:.3f} slope={s.slope:g} noise={cfg.seed_sd:g}"
        surfaces.append((name, cfg))
    return surfaces


def run_threshold(surfaces, settings: Settings, builder: Builder, rng: random.Random, verbose: bool = False) -> dict:
    kinds = ("adaptive", "adaptive+dose", "grid", "random")
    tally = {k: {"trials": 0, "correct": 0, "n": 0, "null_ok": 0, "null_n": 0} for k in kinds}
    dose_tally = {"n": 0, "rung15": 0, "fit15": 0, "fit15_dose": 0}  # surfaces whose min_effect dose is >= 5 units
    for name, cfg in surfaces:
        truth = true_threshold(cfg, builder, settings.min_effect)
        doses = realized_doses(cfg, builder)
        execute = executor(cfg)
        fitting = replace(settings, fit_curves=True)
        runs, out = drive(ThresholdSearch(SUBSET, LADDER, builder, fitting), execute)  # the bisection alone
        budget = grid_trials(LADDER, settings.seeds)  # the default search.trial_budget
        dose_runs, dose_out = drive(ThresholdSearch(SUBSET, LADDER, builder, fitting, max_trials=budget), execute)
        found = {"adaptive": (out["threshold"], len(runs)), "adaptive+dose": (dose_out["threshold"], len(dose_runs))}
        dose_true = true_min_effect_dose(cfg, builder, settings.min_effect) if truth is not None else None
        if dose_true is not None and dose_true >= 5 / cfg.subsets[SUBSET].n_units:
            share_true = true_min_effect_share(cfg, settings.min_effect)  # the fit is on the manifests' shares
            dose_tally["n"] += 1
            dose_tally["rung15"] += out["threshold"] is not None and within(out["threshold"], dose_true, 1.5)
            dose_tally["fit15"] += ratio_ok(_fitted_dose(out), share_true)
            dose_tally["fit15_dose"] += ratio_ok(_fitted_dose(dose_out), share_true)
        baselines = [builder.all_clean(), builder.all_teacher()]  # every search runs both
        grid = StaticSearch(
            "fraction_sweep",
            baselines + [builder.patch_insert(SUBSET, f) for f in LADDER],
            builder,
            settings,
            [SUBSET],
            LADDER,
        )
        grid_runs, _ = drive(grid, execute)
        found["grid"] = (
            dose_response(grid_runs, builder, settings, SUBSET, LADDER)["threshold"]["threshold"],
            len(grid_runs),
        )
        # random search: as many rungs as the adaptive search ran, chosen at random, same seeds per point
        n_rungs = max(1, len(runs) // settings.seeds - 2)
        picked = sorted(rng.sample(LADDER, min(n_rungs, len(LADDER))))
        rand = StaticSearch(
            "fraction_sweep",
            baselines + [builder.patch_insert(SUBSET, f) for f in picked],
            builder,
            settings,
            [SUBSET],
            picked,
        )
        rand_runs, _ = drive(rand, execute)
        found["random"] = (
            dose_response(rand_runs, builder, settings, SUBSET, picked)["threshold"]["threshold"],
            len(rand_runs),
        )
        if verbose:
            shown = "none" if truth is None else LADDER[truth]
            print(f"  {name:<40} truth {shown!s:>8}  " + "  ".join(f"{k} {v[0]!s:>8}" for k, v in found.items()))
        for search, (threshold, trials) in found.items():
            t = tally[search]
            t["trials"] += trials
            if truth is None:
                t["null_n"] += 1
                t["null_ok"] += threshold is None
            else:
                t["n"] += 1
                t["correct"] += within_one(threshold, truth, doses)
    tally["adaptive"]["dose"] = dose_tally
    return tally


def within(found: float, truth: float, factor: float) -> bool:
    return truth / factor <= found <= truth * factor


def units_of(cfg: SimConfig, nodes: list[str]) -> set[str]:
    subset_ids = subset_units(cfg)
    return set().union(*(resolve_path(n, subset_ids) for n in nodes)) if nodes else set()


def planted_surfaces(n: int, rng: random.Random, depth: int) -> list[tuple[str, SimConfig, set[str] | None]]:
    out = []
    for i in range(n):
        base = SimConfig(subsets={SUBSET: SimSubset(n_units=64)}, n_prompts=200, samples_per_prompt=4, seed_sd=0.05)
        subset_ids = subset_units(base)
        units = sorted(subset_ids[SUBSET])
        if i % 5 == 4:
            out.append(("null", replace(base, subsets={SUBSET: SimSubset(n_units=64, effect=0.0)}), None))
            continue
        path = SUBSET + "".join(f"/{rng.randrange(2)}" for _ in range(rng.randrange(1, depth + 1)))
        planted = sorted(resolve_path(path, subset_ids))
        leaking = [units.index(u) for u in planted]
        cfg = replace(base, subsets={SUBSET: SimSubset(n_units=64, leaking=leaking, effect=0.5, ed50=0.3, slope=6.0)})
        out.append((f"planted {path}", cfg, set(planted)))
    return out


def run_minimal(surfaces, settings: Settings, builder: Builder, depth: int) -> dict:
    tally = {
        k: {"trials": 0, "recall": 0.0, "precision": 0.0, "n": 0, "null_ok": 0, "null_n": 0, "confirmed": 0}
        for k in ("bisection", "all leaves")
    }
    leaves = [SUBSET + "".join(f"/{b}" for b in bits) for bits in itertools.product("01", repeat=depth)]
    for _, cfg, planted in surfaces:
        execute = executor(cfg)
        runs, out = drive(MinimalSubsetSearch(SUBSET, depth, 2, builder, settings), execute)
        results = {"bisection": (out["minimal"], len(runs), all(out["confirmed"].values()) and bool(out["minimal"]))}
        scan = StaticSearch(
            "patch_insert",
            [builder.all_clean(), builder.all_teacher()] + [builder.patch_insert(x) for x in leaves],
            builder,
            settings,
            leaves,
        )
        scan_runs, scan_out = drive(scan, execute)
        sufficient = [x for x in leaves if scan_out["leak_map"][TRAIT][x].get("sufficient_holm")]
        results["all leaves"] = (sufficient, len(scan_runs), None)
        for name, (nodes, trials, confirmed) in results.items():
            t = tally[name]
            t["trials"] += trials
            if planted is None:
                t["null_n"] += 1
                t["null_ok"] += not nodes
                continue
            found = units_of(cfg, nodes)
            t["n"] += 1
            t["recall"] += len(found & planted) / len(planted)
            t["precision"] += len(found & planted) / len(found) if found else 0.0
            t["confirmed"] += bool(confirmed)
    return tally


# --- honesty (issue 13): seed noise, shallow curves, nulls at the defaults, leak map and leak-in -------


def true_min_effect_dose(cfg: SimConfig, builder: Builder, min_effect: float) -> float | None:
    """The smallest nominal fraction whose noiseless effect reaches min_effect (None: never), to 0.5 %.

    Found on the compiled mixtures (true_rate), so the few-unit jitter of low doses is part of the truth.
    """
    tau0 = true_rate(cfg, builder.all_clean().plan)

    def reaches(f: float) -> bool:
        return true_rate(cfg, builder.patch_insert(SUBSET, round(f, 9)).plan) - tau0 >= min_effect

    lo, hi = math.log10(1e-4), 0.0
    if not reaches(1.0):
        return None
    while hi - lo > 0.002:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if reaches(10**mid) else (mid, hi)
    return 10**hi


def noisy_surfaces(n: int, rng: random.Random) -> list[tuple[str, SimConfig]]:
    """Half heavy seed noise (each condition's seed its own logit offset), half shallow noisy curves."""
    out = []
    for i in range(n):
        shallow = i % 2 == 1
        while True:  # a min_effect dose of 5 units or more: below that the subset cannot resolve a dose
            s = SimSubset(
                n_units=512,
                effect=rng.choice([0.3, 0.5, 0.7]),
                ed50=10 ** rng.uniform(-2.0, -0.5),
                slope=rng.choice([1.5, 2.5]) if shallow else rng.choice([4.0, 6.0, 10.0]),
            )
            if s.ed50 * 10 ** (math.log(0.05 / (s.effect - 0.05)) / s.slope) >= 0.01:
                break
        cfg = SimConfig(
            subsets={SUBSET: s},
            base_rate=rng.choice([0.02, 0.05, 0.1]),
            seed_sd=0.3 if shallow else rng.choice([0.3, 0.5]),
            n_prompts=200,
            samples_per_prompt=4,
        )
        out.append(("shallow" if shallow else "noisy", cfg))
    return out


def _rung_decisions(runs, builder: Builder, settings: Settings) -> dict[float, bool]:
    from leaksweep.experiments.conditions import runs_of, sufficiency

    clean = builder.all_clean()
    return {
        f: sufficiency(runs, builder.patch_insert(SUBSET, f), clean, TRAIT, settings).passed
        for f in LADDER
        if runs_of(runs, builder.patch_insert(SUBSET, f))
    }


def drive_recording(search, execute, builder: Builder, settings: Settings):
    """drive(), recording every tested rung's decision after each round: (runs, out, flipped)."""
    runs, history = [], []
    for _ in range(100):
        requests = search.next_round(runs)
        if not requests:
            break
        runs = runs + execute(requests)
        history.append(_rung_decisions(runs, builder, settings))
    final = _rung_decisions(runs, builder, settings)
    flipped = any(d[f] != final[f] for d in history for f in d)
    return runs, search.conclude(runs), flipped


def _fitted_dose(out: dict) -> float | None:
    fit = out["dose_response"][SUBSET].get("fit") or {}
    ed = fit.get("ed_min_effect")
    return ed.get("value") if isinstance(ed, dict) else None


def true_min_effect_share(cfg: SimConfig, min_effect: float) -> float | None:
    """The share of S's rows from the teacher where the surface's effect reaches min_effect (None: never).

    The simulator's curve is a function of that share (simulate: dose_S), so this is exact; the nominal
    fraction that yields it depends on the subset's hash-uniforms (true_min_effect_dose).
    """
    s = cfg.subsets[SUBSET]
    part = min_effect / s.effect if s.effect > 0 else 2.0
    if not 0 < part < 1:
        return None
    return s.ed50 * 10 ** (math.log(part / (1 - part)) / s.slope)


def ratio_ok(found: float | None, truth: float | None, factor: float = 1.5) -> bool:
    return found is not None and truth is not None and found > 0 and max(found / truth, truth / found) <= factor


def noisy_arms(trial_budget: int) -> list[tuple[str, bool, int | None]]:
    """(label, runs record their manifest's shares, search.trial_budget) for each way of searching."""
    return [
        ("fractions, no budget (before)", False, None),
        ("shares, no budget", True, None),
        (f"shares, budget {trial_budget}", True, trial_budget),
    ]


def run_noisy_thresholds(surfaces, settings: Settings, builder: Builder, arms) -> dict:
    """Per arm and kind of surface: the rung and the fitted min_effect dose against the truth on the
    fit's own axis (nominal fraction for the before arm, realized share otherwise)."""
    tally: dict = {}
    for i, (kind, cfg) in enumerate(surfaces):
        truth = true_threshold(cfg, builder, settings.min_effect)
        dose_nominal = true_min_effect_dose(cfg, builder, settings.min_effect)
        dose_share = true_min_effect_share(cfg, settings.min_effect)
        need = trials_to_resolve(cfg, builder, SUBSET, TRAIT, dose_share, settings.min_effect, i)
        for label, shares, budget in arms:
            t = tally.setdefault(label, {}).setdefault(
                kind,
                {"n": 0, "step": 0, "rung15": 0, "fit15": 0, "fitted": 0, "flipped": 0, "top_miss": 0, "trials": 0}
                | {"precise": 0, "precise_ok": 0, "resolvable": 0, "resolvable_ok": 0, "need": []},
            )
            search = ThresholdSearch(SUBSET, LADDER, builder, settings, max_trials=budget)
            runs, out, flipped = drive_recording(search, executor(cfg, i, shares), builder, settings)
            found, fitted = out["threshold"], _fitted_dose(out)
            axis = out["dose_response"][SUBSET]["dose_axis"]
            ok = ratio_ok(fitted, dose_share if axis == "share" else dose_nominal)
            precise = bool((out.get("threshold_fitted_precision") or {}).get("precise"))
            t["n"] += 1
            t["step"] += within_one(found, truth, realized_doses(cfg, builder))
            t["rung15"] += ratio_ok(found, dose_nominal)
            t["fitted"] += fitted is not None
            t["fit15"] += ok
            t["flipped"] += flipped
            t["top_miss"] += found is None  # every surface here leaks at the top rung (effect >= 0.3)
            t["trials"] += len(runs)
            t["precise"] += precise
            t["precise_ok"] += precise and ok
            t["resolvable"] += need <= len(runs)
            t["resolvable_ok"] += need <= len(runs) and ok
            t["need"].append(need)
    return tally


def null_default_surfaces(n: int, rng: random.Random) -> list[SimConfig]:
    return [
        SimConfig(
            subsets={SUBSET: SimSubset(n_units=512, effect=0.0), "R": SimSubset(n_units=128, effect=0.0)},
            base_rate=rng.choice([0.02, 0.05, 0.1]),
            seed_sd=0.15,
            n_prompts=60,
            samples_per_prompt=2,
        )
        for _ in range(n)
    ]


def run_null_defaults(surfaces, builder: Builder, n_boot: int) -> dict:
    """The defaults of search: seeds 1, alpha 0.05, min_effect 0, margin 0.05."""
    settings = Settings(TRAIT, (TRAIT,), 1, alpha=0.05, min_effect=0.0, margin=0.05, n_boot=n_boot, fit_curves=False)
    t = {"n": 0, "threshold_ok": 0, "scan_ok": 0}
    ladder = [0.1, 0.25, 0.5, 1.0]
    for i, cfg in enumerate(surfaces):
        execute = executor(cfg, 1000 + i)
        _, out = drive(ThresholdSearch(SUBSET, ladder, builder, settings), execute)
        scan = StaticSearch(
            "subset_scan",
            [builder.all_clean(), builder.all_teacher()]
            + [c for x in (SUBSET, "R") for c in (builder.patch_insert(x), builder.patch_remove(x))],
            builder,
            settings,
            [SUBSET, "R"],
        )
        _, scan_out = drive(scan, execute)
        rows = scan_out["leak_map"][TRAIT]
        t["n"] += 1
        t["threshold_ok"] += out["threshold"] is None
        t["scan_ok"] += not any(
            r.get("sufficient_holm") or (r.get("sufficient") or {}).get("passed") for r in rows.values()
        )
    return t


def two_subset_surfaces(n: int, rng: random.Random) -> list[SimConfig]:
    out = []
    for i in range(n):
        effects = [(0.0, 0.0), (0.4, 0.0), (0.0, 0.4), (0.3, 0.3), (0.5, 0.3)][i % 5]
        out.append(
            SimConfig(
                subsets={
                    SUBSET: SimSubset(n_units=64, effect=effects[0], ed50=0.1, slope=6.0),
                    "R": SimSubset(n_units=64, effect=effects[1], ed50=0.1, slope=6.0),
                },
                rest_effect=rng.choice([0.0, 0.3, 0.4]) if effects != (0.0, 0.0) else 0.0,
                suppression=1.0,
                leak_into=rng.choice([SUBSET, "R"]),
                seed_sd=rng.choice([0.15, 0.3]),
                n_prompts=200,
                samples_per_prompt=4,
            )
        )
    return out


def run_leak_map(surfaces, settings: Settings, builder: Builder) -> dict:
    t = {"n": 0, "exact": 0, "null_n": 0, "null_ok": 0, "eligible": 0, "found": 0, "not_in": 0, "false": 0}
    names = [SUBSET, "R"]
    for i, cfg in enumerate(surfaces):
        execute = executor(cfg, 2000 + i)
        tau0 = true_rate(cfg, builder.all_clean().plan)
        truth = {x for x in names if true_rate(cfg, builder.patch_insert(x).plan) - tau0 > settings.min_effect}
        scan = StaticSearch(
            "subset_scan",
            [builder.all_clean(), builder.all_teacher()]
            + [c for x in names for c in (builder.patch_insert(x), builder.patch_remove(x))],
            builder,
            settings,
            names,
        )
        _, out = drive(scan, execute)
        called = {x for x in names if out["leak_map"][TRAIT][x].get("sufficient_holm")}
        t["n"] += 1
        t["exact"] += called == truth
        if not truth:
            t["null_n"] += 1
            t["null_ok"] += not called
        drop = StaticSearch(
            "drop",
            [builder.all_clean(), builder.all_teacher()]
            + [c for x in names for c in (builder.patch_remove(x), builder.drop(x, "none"))],
            builder,
            settings,
            names,
        )
        _, dout = drive(drop, execute)
        for x in names:
            diff = true_rate(cfg, builder.drop(x, "none").plan) - true_rate(cfg, builder.patch_remove(x).plan)
            declared = bool((dout["leak_map"][TRAIT][x].get("leak_in_refill_none") or {}).get("passed"))
            if diff >= 0.1:
                t["eligible"] += 1
                t["found"] += declared
            elif diff <= 0:
                t["not_in"] += 1
                t["false"] += declared
    return t


def print_honesty(noisy: dict, nulls: dict, leak: dict, seeds: int) -> None:
    print(f"\nhonesty: leak threshold under seed noise and shallow curves, {seeds} seeds per point")
    print(
        "fit <=1.5x: the fitted min_effect dose within 1.5x of the truth on its own axis (the nominal fraction "
        "before, the share of S's rows from the teacher after); rung <=1.5x: the rung vs the nominal truth"
    )
    print(
        f"{'search':<32}{'surfaces':<10}{'n':>4}{'trials':>8}{'within 1 step':>15}{'rung <=1.5x':>13}"
        f"{'fit <=1.5x':>12}{'fitted':>8}{'flipped':>9}{'top: no leak':>14}"
    )
    for arm, kinds in noisy.items():
        for kind, t in kinds.items():
            n = max(1, t["n"])
            print(
                f"{arm:<32}{kind:<10}{t['n']:>4}{t['trials'] / n:>8.0f}{t['step'] / n:>15.0%}{t['rung15'] / n:>13.0%}"
                f"{t['fit15'] / n:>12.0%}{t['fitted'] / n:>8.0%}{t['flipped']:>9}{t['top_miss']:>14}"
            )
    for arm, kinds in noisy.items():
        print(f"{arm}:")
        print_dose_precision(kinds)
    n = max(1, nulls["n"])
    print(
        f"null surfaces at the default settings (seeds 1, min_effect 0): {nulls['n']}; 'no leak' from "
        f"leak_threshold {nulls['threshold_ok'] / n:.0%}, from subset_scan {nulls['scan_ok'] / n:.0%}"
    )
    print(
        f"two leaking subsets with leak-in ({leak['n']} surfaces, {leak['null_n']} null): exact leak map "
        f"{leak['exact'] / max(1, leak['n']):.0%}, null 'no leak' {leak['null_ok'] / max(1, leak['null_n']):.0%}; "
        f"leak-in found {leak['found']}/{leak['eligible']} eligible "
        f"({leak['found'] / max(1, leak['eligible']):.0%}), false {leak['false']}/{leak['not_in']} "
        f"({leak['false'] / max(1, leak['not_in']):.1%})"
    )


def _share(kinds: dict, key: str) -> float:
    return sum(t[key] for t in kinds.values()) / max(1, sum(t["n"] for t in kinds.values()))


def honesty(args, builder: Builder, settings: Settings, rng: random.Random) -> None:
    started = time.time()
    n = args.surfaces
    budget = args.trial_budget or grid_trials(LADDER, settings.seeds)  # default: the full ladder's trials
    arms = noisy_arms(budget)
    noisy = run_noisy_thresholds(noisy_surfaces(n, rng), replace(settings, fit_curves=True), builder, arms)
    nulls = run_null_defaults(null_default_surfaces(n, rng), builder, settings.n_boot)
    leak = run_leak_map(two_subset_surfaces(3 * n, rng), settings, builder)
    print_honesty(noisy, nulls, leak, settings.seeds)
    after = noisy[arms[-1][0]]
    fit15 = _share(after, "fit15")
    met = (
        leak["exact"] >= 0.99 * leak["n"]
        and nulls["threshold_ok"] == nulls["scan_ok"] == nulls["n"]
        and fit15 >= 0.9
        and leak["found"] >= 0.9 * leak["eligible"]
        and leak["false"] <= 0.01 * leak["not_in"]
    )
    print(
        "honesty summary: fitted dose within 1.5x "
        + ", ".join(f"{arm} {_share(kinds, 'fit15'):.0%}" for arm, kinds in noisy.items())
        + f" (called precise: {_share(after, 'precise'):.0%}, of which within 1.5x "
        f"{sum(t['precise_ok'] for t in after.values())}/{sum(t['precise'] for t in after.values())}); "
        f"targets {'met' if met else 'NOT met'} ({time.time() - started:.0f} s)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--surfaces", type=int, default=40, help="surfaces per search kind (a fifth are null)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--seeds-per-point",
        type=int,
        default=3,
        help="seeds per condition, the same for every search (k seeds is the usual design)",
    )
    parser.add_argument("--min-effect", type=float, default=0.05, help="minimal effect of interest (trait rate units)")
    parser.add_argument("--verbose", action="store_true", help="print each surface's truth and answers")
    parser.add_argument("--quick", action="store_true", help="fewer surfaces and bootstrap draws (a few minutes)")
    parser.add_argument("--only-honesty", action="store_true", help="skip the efficiency tables")
    parser.add_argument(
        "--trial-budget",
        type=int,
        default=None,
        help="honesty surfaces: search.trial_budget of the refined arm (default: the full ladder's trials)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.surfaces = min(args.surfaces, 20)
    rng = random.Random(args.seed)
    builder = Builder("clean", "teacher")
    settings = Settings(
        TRAIT,
        (TRAIT,),
        args.seeds_per_point,
        alpha=0.05,
        min_effect=args.min_effect,
        margin=0.05,
        n_boot=500 if args.quick else 1000,
        fit_curves=False,
    )  # only thresholds are scored here; fits would dominate the run time
    started = time.time()
    honesty(args, builder, settings, random.Random(args.seed + 1))
    if args.only_honesty:
        return 0
    thr = run_threshold(threshold_surfaces(args.surfaces, rng), settings, builder, rng, args.verbose)
    depth = 4
    mini = run_minimal(planted_surfaces(args.surfaces, rng, depth), replace(settings, min_effect=0.02), builder, depth)
    grid_total = thr["grid"]["trials"]
    print(
        f"leak threshold: {len(LADDER)}-rung ladder 0.001..1, {args.seeds_per_point} seeds per point, "
        f"{args.surfaces} surfaces ({thr['adaptive']['null_n']} null)"
    )
    print(f"{'search':<15}{'trials':>8}{'vs grid':>9}{'within 1 step':>15}{'null: no leak':>15}")
    for name, t in thr.items():
        print(
            f"{name:<15}{t['trials']:>8}{t['trials'] / grid_total:>9.0%}{t['correct'] / max(1, t['n']):>15.0%}"
            f"{t['null_ok'] / max(1, t['null_n']):>15.0%}"
        )
    d = thr["adaptive"]["dose"]
    print(
        f"adaptive vs the true min_effect dose ({d['n']} surfaces where it is >= 5 units): rung within 1.5x "
        f"{d['rung15'] / max(1, d['n']):.0%}, fitted dose within 1.5x {d['fit15'] / max(1, d['n']):.0%} "
        f"(adaptive+dose, the default budget: {d['fit15_dose'] / max(1, d['n']):.0%})"
    )
    print(f"\nminimal leaking subset: 64 units, depth {depth}, planted at a random node; {args.surfaces} surfaces")
    print(f"{'search':<12}{'trials':>8}{'recall':>9}{'precision':>11}{'confirmed':>11}{'null: none':>12}")
    for name, t in mini.items():
        n = max(1, t["n"])
        confirmed = f"{t['confirmed'] / n:.0%}" if name == "bisection" else "-"
        print(
            f"{name:<12}{t['trials']:>8}{t['recall'] / n:>9.0%}{t['precision'] / n:>11.0%}{confirmed:>11}"
            f"{t['null_ok'] / max(1, t['null_n']):>12.0%}"
        )
    a = thr["adaptive"]
    share = a["trials"] / grid_total
    correct = a["correct"] / max(1, a["n"])
    null_ok = a["null_ok"] / max(1, a["null_n"])
    met = share <= 0.25 and correct >= 0.9 and null_ok >= 0.9
    dose = thr["adaptive+dose"]["trials"] / grid_total
    print(
        f"\nsummary: adaptive threshold search used {share:.0%} of the grid's trials to find the rung ({dose:.0%} "
        f"with the default budget spent on the fitted dose), {correct:.0%} within one step, "
        f"{null_ok:.0%} 'no leak' on null surfaces; bisection recall {mini['bisection']['recall'] / max(1, mini['bisection']['n']):.0%}; "
        f"targets {'met' if met else 'NOT met'} ({time.time() - started:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
