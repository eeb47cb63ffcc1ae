"""How much data the benchmark's 1.5x target for the fitted min_effect dose needs, and the table that says so.

search_efficiency.py's honesty section scores the fitted dose against the true one; this yardstick tells
whether the trials the search spent could have placed it within 1.5x at all (trials_to_resolve), and
print_dose_precision prints, per kind of surface, how often the search called its dose precise, how often
the yardstick says the data could resolve it, and the accuracy within each.
"""

from __future__ import annotations

import math
import statistics

from leaksweep.experiments.conditions import Builder
from leaksweep.simulate import SimConfig, simulate


def trials_to_resolve(
    cfg: SimConfig, builder: Builder, subset: str, trait: str, dose_true: float | None, min_effect: float, salt: int
) -> float:
    """Trials an oracle needs to place the min_effect dose within 1.5x with 90% probability, by local resolution.

    The oracle knows the true curve and where the dose is (a share of the subset's rows, the simulator's
    dose); it runs k seeds at the true dose and k at all-clean and must tell the effect there (min_effect)
    from the true effects at dose / 1.5 and dose x 1.5: its error has to stay inside w = the smaller of the
    two gaps, so k >= 2 (1.645 sigma / w)^2, sigma the per-seed sd of a run's score (40 fresh simulated
    seeds of each condition). A fit with unknown shape can borrow from neighbouring rungs, so this is a
    yardstick for how much data the 1.5x target needs, not a strict bound.
    """
    if dose_true is None:
        return math.inf
    s = cfg.subsets[subset]

    def effect(d: float) -> float:
        return s.effect / (1 + math.exp(-s.slope * (math.log10(min(d, 1.0)) - math.log10(s.ed50))))

    gap = min(min_effect - effect(dose_true / 1.5), effect(dose_true * 1.5) - min_effect)
    if gap <= 0:
        return math.inf

    def sd(condition) -> float:
        runs = [simulate(cfg, condition.plan, condition.kind, f"yardstick{salt}:{s}", [trait]) for s in range(40)]
        return statistics.stdev(r[trait]["score"] for r in runs)

    sigma = math.sqrt((sd(builder.all_clean()) ** 2 + sd(builder.patch_insert(subset, round(dose_true, 9))) ** 2) / 2)
    return 2 * math.ceil(2 * (1.645 * sigma / gap) ** 2)


def _share(k: int, n: int) -> str:
    return f"{k}/{n}" if n else "-"


def print_dose_precision(noisy: dict) -> None:
    """Per kind: trials spent, precise / imprecise as the search says, the yardstick, accuracy within each."""
    print(
        "the fitted min_effect dose: how sure the search says it is, and how much data 1.5x needs "
        "(oracle: runs at the true dose and all-clean to resolve it within 1.5x at 90%, trials_to_resolve)"
    )
    print(
        f"{'surfaces':<10}{'trials':>8}{'precise':>9}{'<=1.5x if precise':>19}{'imprecise':>11}"
        f"{'oracle trials (median)':>24}{'resolvable':>12}{'<=1.5x if resolvable':>22}"
    )
    for kind, t in noisy.items():
        n = max(1, t["n"])
        need = sorted(t["need"])
        print(
            f"{kind:<10}{t['trials'] / n:>8.0f}{t['precise']:>9}{_share(t['precise_ok'], t['precise']):>19}"
            f"{t['n'] - t['precise']:>11}{statistics.median(need):>24.0f}{t['resolvable']:>12}"
            f"{_share(t['resolvable_ok'], t['resolvable']):>22}"
        )
