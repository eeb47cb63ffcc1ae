"""Adaptive mode leak_threshold: bisection on a ladder fixed in advance, then fixed-sequence testing
on the rungs it ran (the threshold and a dose-response fit over them)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from leaksweep.config import SweepConfig
from leaksweep.dose import effect_dose_design
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
from leaksweep.experiments.static import dose_points, dose_response, fit_points, robust_dose_responses, share

REFINE_PICKS = 4  # batches of `seeds` runs per refinement round (a round's trials run in parallel)
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
    testing over the rungs actually run, beside the fitted dose where the effect reaches min_effect,
    which is called precise when its interval lies within value / dose_precision .. value x
    dose_precision, else reported as imprecise with its interval. The fit is on the share of the
    subset's rows each run's manifest gave the teacher (static.dose_points). With max_trials
    (search.trial_budget; make() defaults it to the full ladder's trials) the search never spends more
    trials than that (it may cut the bisection short), and once the bisection is done it spends what is
    left where it best pins an imprecise fitted dose (_refine).
    """

    subset: str
    ladder: list[float]
    builder: Builder
    settings: Settings
    mode: str = "leak_threshold"
    dose_precision: float | None = (
        1.5  # the fitted dose is precise when its interval lies within value / p .. value * p
    )
    max_trials: int | None = None  # total trials, refining an imprecise fitted dose; None: no cap, no refinement
    _fits: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _decisions: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def _decision(self, runs: list[Run], f: float):
        """The sufficiency decision at rung f over `runs`, cached: rounds() and each round replay the same runs."""
        key = (_runs_key(runs), f)
        if key not in self._decisions:
            self._decisions[key] = sufficiency(
                runs,
                self.builder.patch_insert(self.subset, f),
                self.builder.all_clean(),
                self.settings.trait,
                self.settings,
            )
        return self._decisions[key]

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
        """The next round's requests; with max_trials, cut so the search never spends more (the first round whole)."""
        requests = self._next(runs)
        if self.max_trials is None or not runs:
            return requests
        return requests[: max(0, self.max_trials - len(runs))]

    def _next(self, runs: list[Run]) -> list[Request]:
        requests, hi = self._bisection(runs)
        return requests or (self._refine(runs, hi) if hi is not None else [])

    def _bisection(self, runs: list[Run]) -> tuple[list[Request], int | None]:
        """(the bisection's next requests, the threshold rung's index once it is done and leaks, else None)."""
        b, seeds = self.builder, self.settings.seed_range
        first = [
            req
            for c in (b.all_clean(), b.all_teacher(), b.patch_insert(self.subset, self.ladder[-1]))
            for req in missing(runs, c, seeds)
        ]
        if first:
            return first, None
        if not self._passed(runs, self.ladder[-1]):
            return self._more_top_seeds(runs), None  # [] : no leak even with the whole subset from the teacher
        lo, hi = -1, len(self.ladder) - 1  # ladder[lo] assumed not to leak (lo = -1: fraction 0), ladder[hi] leaks
        while hi - lo > 1:
            mid = (lo + hi) // 2
            need = missing(runs, b.patch_insert(self.subset, self.ladder[mid]), seeds)
            if need:
                return need, None
            lo, hi = (lo, mid) if self._passed(runs, self.ladder[mid]) else (mid, hi)
        return [req for f in self._fit_rungs(hi) for req in missing(runs, b.patch_insert(self.subset, f), seeds)], hi

    def _fitted_dose(self, runs: list[Run]):
        """The fit's min_effect dose (an Estimate, or None) over `runs`."""
        return self._fit(runs).get("ed_min_effect")

    def _fit(self, runs: list[Run]) -> dict:
        """The logistic fit over `runs` (fit_points), cached: rounds() replays the same runs."""
        key = _runs_key(runs)
        if key not in self._fits:
            b = self.builder
            present = [(f, runs_of(runs, b.patch_insert(self.subset, f))) for f in self.ladder]
            points = [(0.0, runs_of(runs, b.all_clean()))] + [(f, r) for f, r in present if r]
            _, doses = dose_points(points, self.subset)
            self._fits[key] = fit_points(list(zip(doses, (r for _, r in points))), self.settings)
        return self._fits[key]

    def _expected_doses(self, runs: list[Run]) -> list[float]:
        """Each rung's dose on the fit's axis: the share its manifest recorded where it was run; else its
        fraction scaled by the share / fraction of the nearest rung that was (the subset's hash-uniforms
        are what they are at every fraction), or the fraction itself when no rung records a share."""
        known = {}
        for f in self.ladder:
            r = runs_of(runs, self.builder.patch_insert(self.subset, f))
            x = share(r, self.subset) if r else None
            if x:
                known[f] = x
        if not known:
            return list(self.ladder)
        out = []
        for f in self.ladder:
            near = min(known, key=lambda k: abs(math.log(k / f)))
            out.append(known.get(f, f * known[near] / near))
        return out

    def _refine(self, runs: list[Run], hi: int) -> list[Request]:
        """More runs where they inform the fitted min_effect dose, while its interval is wider than dose_precision.

        Only with a budget (max_trials), which next_round enforces. Each round adds REFINE_PICKS batches of
        `seeds` runs where they most reduce the fitted dose's variance under the current fit
        (dose.effect_dose_design: the all-clean baseline, which the effect is counted from, or a ladder
        rung at its expected dose), until the fitted dose's interval lies within value / p .. value x p
        (p = dose_precision) or the budget is spent. Without a fitted dose yet, the baseline and the rungs
        nearest the threshold rung / p, the rung and x p get them. Refinement rungs do not enter the
        bisection; the fixed-sequence threshold and the fit use them like any other rung that was run.
        """
        s, b, p = self.settings, self.builder, self.dose_precision
        if not p or self.max_trials is None or not s.fit_curves or s.min_effect <= 0 or len(runs) >= self.max_trials:
            return []
        fit = self._fit(runs)
        ed = fit.get("ed_min_effect")
        if ed is not None and interval_ratio(ed.value, ed.low, ed.high) <= p:
            return []
        doses = self._expected_doses(runs)
        targets = [b.all_clean()] + [b.patch_insert(self.subset, f) for f in self.ladder]
        picks = []
        if ed is not None and fit.get("fit") == "ok":
            counts = [len(runs_of(runs, c)) for c in targets]
            run = [i for i, n in enumerate(counts) if n]
            picks = effect_dose_design(
                fit["params"],
                [([0.0] + doses)[i] for i in run],
                [counts[i] for i in run],
                [0.0] + doses,
                s.min_effect,
                REFINE_PICKS,
                s.seeds,
            )
        if not picks:
            nearest = lambda x: min(range(len(doses)), key=lambda i: abs(math.log(doses[i] / x)))  # noqa: E731
            picks = [0] + sorted({1 + nearest(x) for x in (doses[hi] / p, doses[hi], doses[hi] * p)})
        requests = []
        for i in sorted(set(picks)):
            have = len(runs_of(runs, targets[i]))
            requests += missing(runs, targets[i], range(have + s.seeds * picks.count(i)))
        return requests

    def _fit_rungs(self, hi: int) -> list[float]:
        """Rungs a third and two thirds of the way (in ladder steps) from the threshold rung to the top.

        Bisection leaves the curve above the threshold untested (one decade or more between its last rung
        and the top), so the logistic fit could not tell its slope, and with it the dose where the effect
        reaches min_effect; these two rungs pin it down. They do not enter the bisection.
        """
        top = len(self.ladder) - 1
        return [self.ladder[i] for i in sorted({hi + (top - hi) // 3, hi + 2 * (top - hi) // 3}) if hi < i < top]

    def rounds(self, runs: list[Run]) -> list[dict]:
        """Replay the search over `runs`: per round, its new trials, whether it refined the fitted dose (after
        the bisection), and every tested rung's decision after it."""
        out, so_far, index = [], [], {(r.condition.key(), r.seed): r for r in runs}
        while len(out) < 100:
            refining = bool(so_far) and not self._bisection(so_far)[0]
            new = [index[c.key(), s] for c, s in self.next_round(so_far) if (c.key(), s) in index]
            if not new:
                break
            so_far = so_far + new
            tested = [f for f in self.ladder if runs_of(so_far, self.builder.patch_insert(self.subset, f))]
            decisions = {f: self._passed(so_far, f) for f in tested}
            out.append(
                {
                    "round": len(out) + 1,
                    "new_trials": len(new),
                    "trials": len(so_far),
                    "refine": refining,
                    "decisions": decisions,
                }
            )
        return out

    def conclude(self, runs: list[Run]) -> dict:
        s, b = self.settings, self.builder
        result = dose_response(runs, b, s, self.subset, self.ladder)
        rounds = self.rounds(runs)
        fit = result.get("fit") or {}
        precision = self.precision(fit.get("ed_min_effect"), len(runs))
        if precision is not None:
            fit["ed_min_effect_precision"] = precision
        refined = sum(r["new_trials"] for r in rounds if r["refine"])
        return {
            "mode": self.mode,
            "trials_spent": len(runs),
            "rung_trials": len(runs) - refined,  # the bisection and its fit rungs
            "refine_trials": refined,  # spent after them, pinning the fitted dose
            "trial_budget": self.max_trials,
            "grid_trials": grid_trials(self.ladder, s.seeds),
            "baselines": baselines_summary(runs, b, s),
            "dose_response": {self.subset: result},
            "threshold": result["threshold"]["threshold"],
            "threshold_fitted": fit.get("ed_min_effect"),
            "threshold_fitted_reason": fit.get("ed_min_effect_reason") or _no_fit_reason(fit),
            "threshold_fitted_precision": precision,
            "rounds": [
                {**r, "decisions": [{"fraction": f, "passed": p} for f, p in r["decisions"].items()]} for r in rounds
            ],
            "flipped": flips(rounds),
            "alpha": s.alpha,
            "min_effect": s.min_effect,
        }

    def robust_summaries(self, out: dict, corners: list[dict | None]) -> dict:
        """Judge-corrected conclusions (conditions.JudgeCorrected): the rung and the fitted dose's interval held
        to every calibration corner (static.robust_dose_responses), and the dose's precision judged again on
        the widened interval."""
        out = robust_dose_responses(out, corners)
        fit = out["dose_response"][self.subset].get("fit") or {}
        precision = self.precision(fit.get("ed_min_effect"), out.get("trials_spent", 0))
        if precision is not None:
            fit["ed_min_effect_precision"] = precision
        out["threshold_fitted_precision"] = precision
        return out

    def precision(self, ed: dict | None, trials: int) -> dict | None:
        """Whether the fitted dose's interval lies within value / dose_precision .. value * dose_precision, and
        a statement saying so (an imprecise dose is reported with its interval, as imprecise); None without one."""
        if ed is None or not self.dose_precision:
            return None
        ratio = interval_ratio(ed["value"], ed["low"], ed["high"])
        precise = ratio <= self.dose_precision
        shown = f"{ed['value']:.3g} [{ed['low']:.3g}, {_bound(ed['high'])}]"
        budget = (
            "no search.trial_budget: no runs were added for it"
            if self.max_trials is None
            else f"the search.trial_budget of {self.max_trials} is spent: raise it to pin the dose further"
            if trials >= self.max_trials
            else f"search.trial_budget {self.max_trials}; the fit gave no design for more runs"
        )
        if precise:
            statement = (
                f"The fitted dose {shown} is precise: its interval reaches {ratio:.2f}x from the estimate, "
                f"within the {self.dose_precision:g}x asked (search.dose_precision)."
            )
        else:
            statement = (
                f"The fitted dose {shown} is imprecise: its interval reaches {_bound(ratio, 'x')} from the "
                f"estimate, wider than the {self.dose_precision:g}x asked (search.dose_precision), after {trials} "
                f"trials ({budget}). Read it as somewhere in its interval."
            )
        return {
            "precise": precise,
            "ratio": ratio if math.isfinite(ratio) else None,
            "asked": self.dose_precision,
            "trials": trials,
            "budget": self.max_trials,
            "statement": statement,
        }


def _runs_key(runs: list[Run]) -> frozenset:
    return frozenset((r.condition.key(), r.seed) for r in runs)


def interval_ratio(value: float | None, low: float | None, high: float | None) -> float:
    """How far (as a factor) the interval reaches from the estimate: max(value / low, high / value); inf if unbounded."""
    if value is None or low is None or high is None or not (0 < low <= value <= high) or not math.isfinite(high):
        return math.inf
    return max(value / low, high / value)


def _bound(x: float | None, unit: str = "") -> str:
    return f"{x:.3g}{unit}" if x is not None and math.isfinite(x) else "unbounded"


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
    s = cfg.search
    return ThresholdSearch(
        s.subsets[0],
        list(s.ladder),
        builder_for(cfg),
        settings_for(cfg),
        dose_precision=s.dose_precision,
        max_trials=s.trial_budget if s.trial_budget is not None else grid_trials(s.ladder, s.seeds),
    )


def grid_trials(ladder: list[float], seeds: int) -> int:
    """The trials of the full ladder (every rung and both baselines, `seeds` each): the default trial_budget."""
    return (len(ladder) + 2) * seeds


def check(cfg: SweepConfig) -> list[str]:
    return needs_subsets(cfg) + one_subset(cfg) + needs_ladder(cfg) + _budget_problems(cfg)


def _budget_problems(cfg: SweepConfig) -> list[str]:
    s = cfg.search
    if s.trial_budget is not None and s.trial_budget < 3 * s.seeds:
        return [
            f".search.trial_budget: {s.trial_budget} is below the first round's {3 * s.seeds} trials (all-clean, "
            f"all-teacher and the top rung at seeds {s.seeds}); raise it, or leave it out for the full ladder's trials"
        ]
    return []
