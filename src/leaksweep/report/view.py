"""What the report reads from a sweep folder, typed: the complete trials, the config, analysis.json.

Everything is read through leaksweep.layout (SweepDir, TrialDir, TrialResult, TraitScore), so the
report spells no file name and walks no nested result dict. A `Trial` is a TrialResult plus its folder;
a `SweepView` is what every section gets: the config (sweep.json as written), the complete trials,
analysis.json (read once, by page.write_report) and the Optuna study's summary.

analysis.json holds an experiment mode's conclusions as named kinds (leak_map, dose_response, ...,
see analysis.py); ANALYSIS_SETTINGS are its keys that belong to no kind (the mode, the test levels,
the budget). Its decision and estimate records stay plain dicts: they are shown as written.
"""

from __future__ import annotations

from dataclasses import dataclass

from leaksweep.layout import SweepDir, TraitScore, TrialDir, TrialResult, set_aside_duplicates
from leaksweep.report.fmt import interval, num

# keys of analysis.json shared by its kinds of conclusion (the experiment searches' `conclude`)
ANALYSIS_SETTINGS = (
    "mode",
    "alpha",
    "min_effect",
    "margin",
    "trials_spent",
    "grid_trials",
    "subset",
    "trait",
    "duplicates_set_aside",  # shown by the trials' status line (view.duplicates)
)
# leak_map's tests per subset, as named in analysis.json, with their column labels
LEAK_MAP_COLUMNS = (
    ("sufficient", "sufficient"),
    ("necessary", "necessary"),
    ("leak_in_refill_none", "leak-in, refill none"),
    ("leak_in_refill_same", "leak-in, refill same"),
    ("leak_in_refill_clean", "leak-in, refill clean"),
)
LEAK_MAP_MODES = ("patch_insert", "patch_remove", "drop", "subset_scan")


@dataclass(frozen=True)
class Trial:
    """One complete trial: its folder and its result.json."""

    dir: TrialDir
    result: TrialResult

    @property
    def number(self) -> int:
        return self.result.trial

    @property
    def condition(self) -> str:
        return self.result.condition

    @property
    def label(self) -> str:
        return self.result.label

    def share(self, subset: str) -> float:
        """The teacher's share of `subset`'s prompts in this trial's manifest (0 when not recorded)."""
        return self.result.share(subset)

    def share_or_none(self, subset: str) -> float | None:
        """As share, but None (shown n/a) when every row of the subset was dropped."""
        return self.result.share_or_none(subset)

    def score(self, trait: str) -> TraitScore | None:
        """The trait's score with its interval, or None when the trial did not score it."""
        return self.result.score(trait)

    def patches(self, subset: str, teacher: str) -> bool:
        """Whether the plan patches `subset` with the teacher's rollouts (at a fraction above 0)."""
        return any(r.is_teacher_patch(teacher) and r.subset == subset for r in self.result.plan.rules)

    def patches_only(self, subset: str, teacher: str) -> bool:
        """Whether every rule of the plan patches `subset` with the teacher (no other subsets, no drops)."""
        rules = self.result.plan.rules
        return bool(rules) and all(r.is_teacher_patch(teacher) and r.subset == subset for r in rules)


def complete_trials(sweep: SweepDir) -> list[Trial]:
    """The complete trials, sorted by trial number, each (condition, seed) once (duplicates: `duplicate_trials`);
    UserError when `sweep` is not a sweep folder."""
    return _split(sweep)[0]


def duplicate_trials(sweep: SweepDir) -> list[dict]:
    """Complete trials set aside as reruns of an earlier trial: [{"trial", "kept", "label", "seed"}]."""
    return _split(sweep)[1]


def _split(sweep: SweepDir) -> tuple[list[Trial], list[dict]]:
    sweep.require()
    every = sorted((Trial(t, t.read_result()) for t in sweep.complete()), key=lambda t: t.number)
    return set_aside_duplicates(every, lambda t: t.result)


def load_trials(sweep_dir) -> list[dict]:
    """The result.json dicts of the sweep's complete trials, sorted by trial number.

    Raises UserError when `sweep_dir` has no sweep.json; returns [] while no trial is complete.
    """
    return [t.result.to_dict() for t in complete_trials(SweepDir(sweep_dir))]


def unfinished(sweep: SweepDir) -> tuple[list[str], list[tuple[str, str]]]:
    """Trial folders started but without a result: (running or stopped, [(failed, error message)])."""
    running, failed = [], []
    for trial in sweep.trials():
        if trial.is_complete():
            continue
        if trial.error.exists():
            failed.append((trial.name, trial.read_error()))
        else:
            running.append(trial.name)
    return running, failed


@dataclass(frozen=True)
class Pooled:
    """Trials of one condition summarised conservatively: mean score, lowest low, highest high."""

    trials: tuple[Trial, ...]
    score: float
    low: float
    high: float

    def describe(self) -> str:
        if len(self.trials) == 1:
            return f"{interval(self.score, self.low, self.high)} (trial {self.trials[0].number})"
        numbers = ", ".join(str(t.number) for t in self.trials)
        return (
            f"mean {num(self.score)} over {len(self.trials)} trials ({numbers}), "
            f"their intervals within [{num(self.low)}, {num(self.high)}]"
        )


def pool(trials: list[Trial], trait: str) -> Pooled | None:
    """Pool the trials that scored `trait`; None when none did."""
    scored = [(t, s) for t in trials if (s := t.score(trait))]
    if not scored:
        return None
    return Pooled(
        trials=tuple(t for t, _ in scored),
        score=sum(s.score for _, s in scored) / len(scored),
        low=min(s.low for _, s in scored),
        high=max(s.high for _, s in scored),
    )


def mean_score(trials: list[Trial], trait: str) -> float | None:
    """The plain mean of the trials' scores of `trait`; None when none scored it."""
    scores = [s.score for t in trials if (s := t.score(trait))]
    return sum(scores) / len(scores) if scores else None


@dataclass(frozen=True)
class SweepView:
    """Everything the sections need: the config, the complete trials and names derived from them."""

    sweep: SweepDir
    config: dict  # sweep.json as written
    trials: list[Trial]
    analysis: dict | None = None  # analysis.json of an experiment mode; None for optuna sweeps
    study: dict | None = None  # study.status.study_summary(): the Optuna study's directions, Pareto front, importances
    study_error: str | None = None  # why the study could not be read, when it could not
    duplicates: tuple[
        dict, ...
    ] = ()  # complete trials set aside as reruns of an earlier one (layout.set_aside_duplicates)

    @property
    def name(self) -> str:
        return str(self.config.get("name", self.sweep.name))

    @property
    def search(self) -> dict:
        return self.config.get("search", {})

    @property
    def teacher(self) -> str:
        return str(self.search.get("teacher", "teacher"))

    @property
    def traits(self) -> list[str]:
        """Trait names: the config's order first, then any other trait a trial scored."""
        names = list(self.config.get("traits", {}))
        return names + sorted({n for t in self.trials for n in t.result.traits} - set(names))

    @property
    def subsets(self) -> list[str]:
        """Subset names: the config's order first, then any other subset a manifest reports."""
        names = list(self.config.get("subsets", {}))
        seen = {k for t in self.trials for k in t.result.teacher_share}
        return names + sorted(seen - set(names) - {"all"})

    @property
    def objective(self) -> tuple[str, str]:
        """(trait, direction) of the first objective; the first trait, maximised, when none is usable."""
        for obj in self.search.get("objectives", []):
            if obj.get("trait") in self.traits:
                return obj["trait"], obj.get("direction", "maximize")
        return (self.traits[0] if self.traits else "", "maximize")

    @property
    def search_mode(self) -> str:
        """The sweep's search mode as configured (optuna unless an experiment mode is named)."""
        return str(self.search.get("mode", "optuna"))

    @property
    def mode(self) -> str:
        """The mode that concluded: analysis.json's, else the configured one."""
        return str(self.analysis.get("mode") if self.analysis else self.search_mode)

    @property
    def decision_trait(self) -> str:
        """The trait an experiment mode decides on, chosen as experiments.conditions.settings_for chooses it."""
        if self.search.get("trait"):
            return str(self.search["trait"])
        if self.search.get("objectives"):
            return str(self.search["objectives"][0].get("trait"))
        return self.traits[0] if self.traits else ""

    def of(self, condition: str) -> list[Trial]:
        return [t for t in self.trials if t.condition == condition]

    def patched_subsets(self) -> list[str]:
        """Subsets that at least one trial patched with the teacher."""
        return [s for s in self.subsets if any(t.patches(s, self.teacher) for t in self.trials)]

    def varied_subsets(self) -> list[str]:
        """Subsets where some mixture trial gave the teacher a nonzero share."""
        return [s for s in self.subsets if any(t.share(s) > 0 for t in self.of("mixture"))]

    def ranked(self) -> list[Trial]:
        """Mixture trials (all trials when there are none) best first by the first objective."""
        trait, direction = self.objective
        candidates = [t for t in (self.of("mixture") or self.trials) if t.score(trait)]
        return sorted(candidates, key=lambda t: t.score(trait).score, reverse=direction == "maximize")

    def best_and_worst(self) -> list[tuple[str, Trial]]:
        """[("best", trial), ("worst", trial)] by the first objective; just the best when one trial is ranked."""
        ranked = self.ranked()
        if not ranked:
            return []
        return [("best", ranked[0])] + ([("worst", ranked[-1])] if len(ranked) > 1 else [])
