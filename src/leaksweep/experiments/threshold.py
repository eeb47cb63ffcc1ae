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
    runs_of,
    settings_for,
    sufficiency,
)
from leaksweep.experiments.static import dose_response

TOP_SEED_FACTOR = 3  # an inconclusive top rung gets more seeds, up to this many times `seeds`, before "no leak"


@dataclass
class ThresholdSearch:
    """Bisection on a ladder fixed in advance (ascending fractions).

    Test the top rung first. Not shown sufficient there while its estimated effect exceeds min_effect
    and the all-teacher student is shown above the clean one is inconclusive, not "no leak": the top
    rung and the all-clean baseline get another `seeds` seeds (up to TOP_SEED_FACTOR x seeds) before
    the search stops with "no leak". (Requiring the all-teacher effect keeps the extra looks from
    inflating false leaks on a surface with no effect at all.) Then bisect between the
    highest rung known not to leak and the lowest known to leak, assuming a monotone dose-response.
    Each test is a sufficiency test of patch_insert(subset, f) against the all-clean baseline, made
    with every run so far (so a decision can flip as runs arrive: conclude replays the rounds and
    reports each round's decisions and every flip). The threshold is then reported by fixed-sequence
    testing over the rungs actually run, beside the fitted dose where the effect reaches min_effect.
    """

    subset: str
    ladder: list[float]
    builder: Builder
    settings: Settings
    mode: str = "leak_threshold"

    def _decision(self, runs: list[Run], f: float):
        return sufficiency(
            runs,
            self.builder.patch_insert(self.subset, f),
            self.builder.all_clean(),
            self.settings.trait,
            self.settings,
        )

    def _passed(self, runs: list[Run], f: float) -> bool:
        return self._decision(runs, f).passed

    def _more_top_seeds(self, runs: list[Run]) -> list[Request]:
        """More seeds for an inconclusive top rung (effect estimate above min_effect, not shown sufficient)."""
        top = self.builder.patch_insert(self.subset, self.ladder[-1])
        have = len(runs_of(runs, top))
        if have >= TOP_SEED_FACTOR * self.settings.seeds:
            return []
        if self._decision(runs, self.ladder[-1]).estimate.value <= self.settings.min_effect:
            return []
        teacher = sufficiency(
            runs, self.builder.all_teacher(), self.builder.all_clean(), self.settings.trait, self.settings
        )
        if not teacher.passed:  # the trait is not shown to transfer at all: more looks would only add false leaks
            return []
        seeds = range(have + self.settings.seeds)
        return [req for c in (self.builder.all_clean(), top) for req in missing(runs, c, seeds)]

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
            return self._more_top_seeds(runs)  # [] : no leak even with the whole subset from the teacher
        lo, hi = -1, len(self.ladder) - 1  # ladder[lo] assumed not to leak (lo = -1: fraction 0), ladder[hi] leaks
        while hi - lo > 1:
            mid = (lo + hi) // 2
            need = missing(runs, b.patch_insert(self.subset, self.ladder[mid]), seeds)
            if need:
                return need
            lo, hi = (lo, mid) if self._passed(runs, self.ladder[mid]) else (mid, hi)
        return [req for f in self._fit_rungs(hi) for req in missing(runs, b.patch_insert(self.subset, f), seeds)]

    def _fit_rungs(self, hi: int) -> list[float]:
        """Rungs a third and two thirds of the way (in ladder steps) from the threshold rung to the top.

        Bisection leaves the curve above the threshold untested (one decade or more between its last rung
        and the top), so the logistic fit could not tell its slope, and with it the dose where the effect
        reaches min_effect; these two rungs pin it down. They do not enter the bisection.
        """
        top = len(self.ladder) - 1
        return [self.ladder[i] for i in sorted({hi + (top - hi) // 3, hi + 2 * (top - hi) // 3}) if hi < i < top]

    def rounds(self, runs: list[Run]) -> list[dict]:
        """Replay the search over `runs`: per round, its new trials and every tested rung's decision after it."""
        out, so_far, index = [], [], {(r.condition.key(), r.seed): r for r in runs}
        while len(out) < 100:
            new = [index[c.key(), s] for c, s in self.next_round(so_far) if (c.key(), s) in index]
            if not new:
                break
            so_far = so_far + new
            tested = [f for f in self.ladder if runs_of(so_far, self.builder.patch_insert(self.subset, f))]
            decisions = {f: self._passed(so_far, f) for f in tested}
            out.append({"round": len(out) + 1, "new_trials": len(new), "trials": len(so_far), "decisions": decisions})
        return out

    def conclude(self, runs: list[Run]) -> dict:
        s, b = self.settings, self.builder
        grid_trials = (len(self.ladder) + 2) * s.seeds  # every rung plus both baselines
        result = dose_response(runs, b, s, self.subset, self.ladder)
        rounds = self.rounds(runs)
        fit = result.get("fit") or {}
        return {
            "mode": self.mode,
            "trials_spent": len(runs),
            "grid_trials": grid_trials,
            "baselines": baselines_summary(runs, b, s),
            "dose_response": {self.subset: result},
            "threshold": result["threshold"]["threshold"],
            "threshold_fitted": fit.get("ed_min_effect"),
            "threshold_fitted_reason": fit.get("ed_min_effect_reason") or _no_fit_reason(fit),
            "rounds": [
                {**r, "decisions": [{"fraction": f, "passed": p} for f, p in r["decisions"].items()]} for r in rounds
            ],
            "flipped": flips(rounds),
            "alpha": s.alpha,
            "min_effect": s.min_effect,
        }


def _no_fit_reason(fit: dict) -> str | None:
    if fit.get("ed_min_effect") is not None:
        return None
    return f"the logistic fit is {fit.get('fit', 'missing')}" if fit.get("fit") != "ok" else None


def flips(rounds: list[dict]) -> list[dict]:
    """Rungs whose decision changed as runs arrived: the round of the last change, and from / to."""
    out = []
    for f in rounds[-1]["decisions"] if rounds else []:
        seen = [(r["round"], r["decisions"][f]) for r in rounds if f in r["decisions"]]
        changes = [(k, prev, now) for (_, prev), (k, now) in zip(seen, seen[1:]) if prev != now]
        if changes:
            k, prev, now = changes[-1]
            word = {True: "sufficient", False: "not shown sufficient"}
            out.append(
                {
                    "fraction": f,
                    "round": k,
                    "from": prev,
                    "to": now,
                    "changes": len(changes),
                    "statement": f"The decision at rung {f:g} flipped at round {k}: {word[prev]} in round "
                    f"{k - 1}, {word[now]} from round {k} on, as more runs arrived ({len(changes)} change(s)).",
                }
            )
    return out


def make(cfg: SweepConfig, sources: list[str]) -> ThresholdSearch:
    return ThresholdSearch(cfg.search.subsets[0], list(cfg.search.ladder), builder_for(cfg), settings_for(cfg))


def check(cfg: SweepConfig) -> list[str]:
    return needs_subsets(cfg) + one_subset(cfg) + needs_ladder(cfg)
