"""Adaptive mode leak_threshold: bisection on a ladder fixed in advance, then fixed-sequence testing
on the rungs it ran (the threshold and a dose-response fit over them)."""

from __future__ import annotations

from dataclasses import dataclass

from leaksweep.config import SweepConfig
from leaksweep.experiments.conditions import (
    Builder,
    Request,
    Run,
    Settings,
    baselines_summary,
    builder_for,
    missing,
    needs_ladder,
    needs_subsets,
    one_subset,
    settings_for,
    sufficiency,
)
from leaksweep.experiments.static import dose_response


@dataclass
class ThresholdSearch:
    """Bisection on a ladder fixed in advance (ascending fractions).

    Test the top rung first (no leak there: stop, "no leak"); then bisect between the highest
    rung known not to leak and the lowest known to leak, assuming a monotone dose-response.
    Each test is a sufficiency test of patch_insert(subset, f) against the all-clean baseline.
    The threshold is then reported by fixed-sequence testing over the rungs actually run.
    """

    subset: str
    ladder: list[float]
    builder: Builder
    settings: Settings
    mode: str = "leak_threshold"

    def _passed(self, runs: list[Run], f: float) -> bool:
        return sufficiency(
            runs,
            self.builder.patch_insert(self.subset, f),
            self.builder.all_clean(),
            self.settings.trait,
            self.settings,
        ).passed

    def next_round(self, runs: list[Run]) -> list[Request]:
        b, seeds = self.builder, self.settings.seed_range
        first = [
            req
            for c in (b.all_clean(), b.all_teacher(), b.patch_insert(self.subset, self.ladder[-1]))
            for req in missing(runs, c, seeds)
        ]
        if first:
            return first
        if not self._passed(runs, self.ladder[-1]):
            return []  # no leak even with the whole subset from the teacher
        lo, hi = -1, len(self.ladder) - 1  # ladder[lo] assumed not to leak (lo = -1: fraction 0), ladder[hi] leaks
        while hi - lo > 1:
            mid = (lo + hi) // 2
            need = missing(runs, b.patch_insert(self.subset, self.ladder[mid]), seeds)
            if need:
                return need
            lo, hi = (lo, mid) if self._passed(runs, self.ladder[mid]) else (mid, hi)
        return []

    def conclude(self, runs: list[Run]) -> dict:
        s, b = self.settings, self.builder
        grid_trials = (len(self.ladder) + 2) * s.seeds  # every rung plus both baselines
        result = dose_response(runs, b, s, self.subset, self.ladder)
        return {
            "mode": self.mode,
            "trials_spent": len(runs),
            "grid_trials": grid_trials,
            "baselines": baselines_summary(runs, b, s),
            "dose_response": {self.subset: result},
            "threshold": result["threshold"]["threshold"],
            "alpha": s.alpha,
            "min_effect": s.min_effect,
        }


def make(cfg: SweepConfig, sources: list[str]) -> ThresholdSearch:
    return ThresholdSearch(cfg.search.subsets[0], list(cfg.search.ladder), builder_for(cfg), settings_for(cfg))


def check(cfg: SweepConfig) -> list[str]:
    return needs_subsets(cfg) + one_subset(cfg) + needs_ladder(cfg)
