"""Adaptive mode minimal_subset: group bisection of one subset into stratified halves, with the minimal
leaking nodes confirmed on fresh seeds."""

from __future__ import annotations

from dataclasses import dataclass

from leaksweep.config import SweepConfig
from leaksweep.data.subsets import HALF_SEP
from leaksweep.experiments.conditions import (
    Builder,
    Request,
    Run,
    Settings,
    baselines_summary,
    builder_for,
    missing,
    needs_subsets,
    one_subset,
    settings_for,
    sufficiency,
)

CONFIRM_SEED_OFFSET = 1000  # confirmation seeds never overlap the search's seeds


@dataclass
class MinimalSubsetSearch:
    """Group bisection: test S, split it in stratified halves, test each, recurse into sufficient ones.

    A sufficient node whose halves are both insufficient is minimal at that granularity (the trait
    is "distributed within" it); at `max_depth` a sufficient node is minimal by fiat. Each minimal
    node is then confirmed on fresh seeds that played no part in the search.
    """

    subset: str
    max_depth: int
    confirm_seeds: int
    builder: Builder
    settings: Settings
    mode: str = "minimal_subset"

    def _confirm_range(self) -> range:
        return range(CONFIRM_SEED_OFFSET, CONFIRM_SEED_OFFSET + self.confirm_seeds)

    def _walk(self, runs: list[Run]) -> tuple[list[Request], dict[str, bool], list[str]]:
        """Replay the bisection: (requests still needed, decisions so far, minimal nodes when done)."""
        b, s, seeds = self.builder, self.settings, self.settings.seed_range
        need = missing(runs, b.all_clean(), seeds) + missing(runs, b.all_teacher(), seeds)
        decided: dict[str, bool] = {}
        frontier = [self.subset]
        while frontier:
            wanted = [req for node in frontier for req in missing(runs, b.patch_insert(node), seeds)]
            if need or wanted:
                return need + wanted, decided, []
            for node in frontier:
                decided[node] = bool(
                    sufficiency(runs, b.patch_insert(node), b.all_clean(), s.trait, s, seeds, b).passed
                )
            frontier = [
                child
                for node in frontier
                if decided[node] and _depth(node) < self.max_depth
                for child in _children(node)
            ]
        minimal = [
            node
            for node, passed in decided.items()
            if passed and (_depth(node) >= self.max_depth or not any(decided[c] for c in _children(node)))
        ]
        return [], decided, sorted(minimal)

    def next_round(self, runs: list[Run]) -> list[Request]:
        need, _, minimal = self._walk(runs)
        if need:
            return need
        fresh = self._confirm_range()
        confirm = missing(runs, self.builder.all_clean(), fresh)
        for node in minimal:
            confirm += missing(runs, self.builder.patch_insert(node), fresh)
        return confirm

    def conclude(self, runs: list[Run]) -> dict:
        b, s = self.builder, self.settings
        _, decided, minimal = self._walk(runs)
        search_runs = [r for r in runs if r.seed < CONFIRM_SEED_OFFSET]
        tests = {
            node: sufficiency(search_runs, b.patch_insert(node), b.all_clean(), s.trait, s, s.seed_range, b).to_dict()
            for node in decided
        }
        confirmations = {
            node: sufficiency(runs, b.patch_insert(node), b.all_clean(), s.trait, s, self._confirm_range()).to_dict()
            for node in minimal
        }
        return {
            "mode": self.mode,
            "subset": self.subset,
            "trait": s.trait,
            "trials_spent": len(runs),
            "baselines": baselines_summary(runs, b, s),
            "tests": tests,
            "minimal": minimal,
            "distributed": [n for n in minimal if _depth(n) < self.max_depth],
            "confirmed": {n: c["passed"] for n, c in confirmations.items()},
            "confirmations": confirmations,
            # None: the root has no decision (one seed, or no trait to explain: tests[subset].reason says which)
            "no_leak": None if (tests.get(self.subset) or {}).get("reason") else not decided.get(self.subset, False),
            "alpha": s.alpha,
            "min_effect": s.min_effect,
        }


def _depth(node: str) -> int:
    return node.count(HALF_SEP)


def _children(node: str) -> list[str]:
    return [f"{node}{HALF_SEP}0", f"{node}{HALF_SEP}1"]


def make(cfg: SweepConfig, sources: list[str]) -> MinimalSubsetSearch:
    s = cfg.search
    return MinimalSubsetSearch(s.subsets[0], s.max_depth, s.confirm_seeds, builder_for(cfg), settings_for(cfg))


def check(cfg: SweepConfig) -> list[str]:
    s, problems = cfg.search, needs_subsets(cfg) + one_subset(cfg)
    if not 1 <= s.max_depth <= 12:
        problems.append(f".search.max_depth: {s.max_depth} must be between 1 and 12")
    if s.confirm_seeds < 1:
        problems.append(f".search.confirm_seeds: {s.confirm_seeds} must be at least 1 (fresh seeds confirm the answer)")
    return problems
