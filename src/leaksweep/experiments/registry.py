"""The registry of experiment modes, and loading a sweep file with every registry's checks.

A mode is one `Mode` entry: its name, `check(cfg) -> problems` (its own config rules, as
`.search.KEY: message` paths from the top of the sweep file), `make_search(cfg, sources) -> Search`
and the analysis kinds its conclusions carry (conditions.LEAK_MAP, DOSE_RESPONSE, THRESHOLD,
MINIMAL, TRANSFER: the analysis.json keys the report and the W&B summary render). One new mode is
one file (its Search, make and check) plus one `register_mode(Mode(...))` call; the built-in modes
are registered at the bottom of this file. `optuna` is a mode too, but the study room runs it
itself (make_search is None) and its keys are checked by config.SearchConfig.

`load_sweep` / `sweep_from_dict` are what entry points use to read a sweep: config's loader plus
the mode and judge-kind checks, every problem reported together (exit code 2 at the CLI).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from leaksweep import sweepfile
from leaksweep.config import OPTUNA, SweepConfig
from leaksweep.errors import UserError
from leaksweep.experiments import minimal, static, threshold
from leaksweep.experiments.conditions import (
    DOSE_RESPONSE,
    MINIMAL,
    THRESHOLD,
    Search,
    judge_corrected,
    judge_corrected_problems,
    needs_ladder,
    needs_subsets,
)
from leaksweep.traits.judges import judge_problems
from leaksweep.traits.validation import calibration_problems

ModeCheck = Callable[[SweepConfig], list[str]]
MakeSearch = Callable[[SweepConfig, list[str]], Search]


@dataclass(frozen=True)
class Mode:
    name: str
    check: ModeCheck  # the mode's config problems, `.search.KEY: message`; [] when none
    make_search: MakeSearch | None  # (config, source names) -> the search; None: run by the study room
    analyses: tuple[str, ...] = ()  # analysis.json keys its conclusions carry


MODES: dict[str, Mode] = {}


def register_mode(mode: Mode) -> None:
    """Make `search.mode: NAME` available (a later call with the same name replaces the entry)."""
    MODES[mode.name] = mode


def get_mode(name: str) -> Mode:
    if name not in MODES:
        raise UserError(f"search.mode: {name!r} is not a mode; known modes: {', '.join(MODES)}")
    return MODES[name]


def make_search(cfg: SweepConfig, sources: list[str]) -> Search:
    """The search for a sweep's `search.mode` (all modes but `optuna`, which the study room runs itself)."""
    mode = get_mode(cfg.search.mode)
    if mode.make_search is None:
        raise ValueError(f"mode {mode.name!r} is not run as a search")  # callers branch on optuna first
    return judge_corrected(cfg, mode.make_search(cfg, sources))


def check_sweep(cfg: SweepConfig) -> list[str]:
    """The registries' checks of a typed sweep: its mode is known and its keys fit; judge kinds are known."""
    name, problems = cfg.search.mode, judge_problems(cfg.traits)
    if name not in MODES:
        return [f".search.mode: {name!r} is not a mode; known modes: {', '.join(MODES)}"] + problems
    if cfg.search.partition and name != "subset_scan":
        problems.append(".search.partition: applies to mode subset_scan only")
    if cfg.search.trial_budget is not None and name != "leak_threshold":
        problems.append(
            f".search.trial_budget: {cfg.search.trial_budget} applies to mode leak_threshold only; remove it"
        )
    return MODES[name].check(cfg) + problems + judge_corrected_problems(cfg)


def load_sweep(path: str | Path) -> SweepConfig:
    """sweepfile.load_sweep with the mode and judge checks: what the CLI and the study room call. Calibration
    label files (traits.T.calibration) are checked once their paths are resolved against the file's folder."""
    cfg = sweepfile.load_sweep(path, check=check_sweep)
    problems = calibration_problems(cfg.traits)
    if problems:
        raise UserError([f"{path}: {p.removeprefix('.')}" for p in problems])
    return cfg


def sweep_from_dict(raw: Any, where: str) -> SweepConfig:
    return sweepfile.sweep_from_dict(raw, where, check=check_sweep)


# --- the built-in modes ---------------------------------------------------------------------------


def _no_problems(cfg: SweepConfig) -> list[str]:
    return []


def _ladder_problems(cfg: SweepConfig) -> list[str]:
    return needs_subsets(cfg) + needs_ladder(cfg)


for _mode in (
    Mode(OPTUNA, _no_problems, None),
    Mode("teacher_eval", _no_problems, static.teacher_eval, static.ANALYSES["teacher_eval"]),
    Mode("full_swap", _no_problems, static.full_swap, static.ANALYSES["full_swap"]),
    Mode("patch_insert", needs_subsets, static.patch_insert, static.ANALYSES["patch_insert"]),
    Mode("patch_remove", needs_subsets, static.patch_remove, static.ANALYSES["patch_remove"]),
    Mode("drop", static.check_drop, static.drop, static.ANALYSES["drop"]),
    Mode("fraction_sweep", _ladder_problems, static.fraction_sweep, static.ANALYSES["fraction_sweep"]),
    Mode("subset_scan", needs_subsets, static.subset_scan, static.ANALYSES["subset_scan"]),
    Mode("leak_threshold", threshold.check, threshold.make, (THRESHOLD, DOSE_RESPONSE)),
    Mode("minimal_subset", minimal.check, minimal.make, (MINIMAL,)),
):
    register_mode(_mode)
