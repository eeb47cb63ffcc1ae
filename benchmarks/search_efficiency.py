"""How many trials do the adaptive searches save, and are they still right?

On a family of simulated response surfaces (leaksweep.simulate) with known truth:

* leak threshold: the adaptive bisection (experiments.threshold.ThresholdSearch) against the full ladder
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

Usage: python benchmarks/search_efficiency.py [--surfaces N] [--seed S]
Prints a table; the last line is a one-line summary.
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
import time
from dataclasses import replace

from leaksweep.data.subsets import resolve_path
from leaksweep.experiments.conditions import Builder, Run, Settings, drive
from leaksweep.experiments.minimal import MinimalSubsetSearch
from leaksweep.experiments.static import StaticSearch, dose_response
from leaksweep.experiments.threshold import ThresholdSearch
from leaksweep.simulate import SimConfig, SimSubset, realized_dose, simulate, subset_units, true_rate

SUBSET = "S"
LADDER = [round(10 ** (-3 + 3 * i / 31), 6) for i in range(32)]  # 0.001 .. 1, factor 1.25 per rung
TRAIT = "trait"


def executor(cfg: SimConfig):
    counter = itertools.count()

    def execute(requests):
        return [Run(c, seed, next(counter), simulate(cfg, c.plan, c.kind, seed, [TRAIT])) for c, seed in requests]

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
    tally = {k: {"trials": 0, "correct": 0, "n": 0, "null_ok": 0, "null_n": 0} for k in ("adaptive", "grid", "random")}
    for name, cfg in surfaces:
        truth = true_threshold(cfg, builder, settings.min_effect)
        doses = realized_doses(cfg, builder)
        execute = executor(cfg)
        runs, out = drive(ThresholdSearch(SUBSET, LADDER, builder, settings), execute)
        found = {"adaptive": (out["threshold"], len(runs))}
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
    return tally


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
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    builder = Builder("clean", "teacher")
    settings = Settings(
        TRAIT,
        (TRAIT,),
        args.seeds_per_point,
        alpha=0.05,
        min_effect=args.min_effect,
        margin=0.05,
        n_boot=1000,
        fit_curves=False,
    )  # only thresholds are scored here; fits would dominate the run time
    started = time.time()
    thr = run_threshold(threshold_surfaces(args.surfaces, rng), settings, builder, rng, args.verbose)
    depth = 4
    mini = run_minimal(planted_surfaces(args.surfaces, rng, depth), replace(settings, min_effect=0.02), builder, depth)
    grid_trials = thr["grid"]["trials"]
    print(
        f"leak threshold: {len(LADDER)}-rung ladder 0.001..1, {args.seeds_per_point} seeds per point, "
        f"{args.surfaces} surfaces ({thr['adaptive']['null_n']} null)"
    )
    print(f"{'search':<12}{'trials':>8}{'vs grid':>9}{'within 1 step':>15}{'null: no leak':>15}")
    for name, t in thr.items():
        print(
            f"{name:<12}{t['trials']:>8}{t['trials'] / grid_trials:>9.0%}{t['correct'] / max(1, t['n']):>15.0%}"
            f"{t['null_ok'] / max(1, t['null_n']):>15.0%}"
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
    share = a["trials"] / grid_trials
    correct = a["correct"] / max(1, a["n"])
    null_ok = a["null_ok"] / max(1, a["null_n"])
    met = share <= 0.25 and correct >= 0.9 and null_ok >= 0.9
    print(
        f"\nsummary: adaptive threshold search used {share:.0%} of the grid's trials, {correct:.0%} within one step, "
        f"{null_ok:.0%} 'no leak' on null surfaces; bisection recall {mini['bisection']['recall'] / max(1, mini['bisection']['n']):.0%}; "
        f"targets {'met' if met else 'NOT met'} ({time.time() - started:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
