"""The report page: every section in order, with the CSS and scripts of assets/ inlined.

The page is one self-contained file (nothing loaded from elsewhere, readable offline): inline CSS,
inline SVG charts (so it reads without JS) and small hand-written scripts (no library): tooltips from
each mark's <title>, legend entries that toggle their series (interact.js), sortable tables (sort.js)
and a filterable, paged table of the generations embedded as JSON (samples.js). The assets are real
files of this package, read with importlib.resources, so they ship with a wheel as package data.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

from leaksweep.errors import UserError
from leaksweep.files import atomic_write_text
from leaksweep.layout import SweepDir, TrialDir
from leaksweep.report.analysis import analysis_sections, budget_line
from leaksweep.report.fmt import esc
from leaksweep.report.prose import answer
from leaksweep.report.sections import (
    SAMPLES_PAGE_ROWS,
    best_worst_section,
    charts_section,
    curves_section,
    judge_validation_section,
    provenance,
    samples_section,
    samples_table_section,
    status_line,
    study_section,
    trials_table,
)
from leaksweep.report.view import SweepView, complete_trials, duplicate_trials, unfinished


@lru_cache(maxsize=None)
def asset(name: str) -> str:
    """A file of assets/, on a line of its own in the page."""
    return "\n" + (resources.files("leaksweep.report") / "assets" / name).read_text(encoding="utf-8")


def _style() -> str:
    return f"<style>{asset('report.css')}</style>"


def _scripts() -> str:
    samples = asset("samples.js").replace("__PAGE_ROWS__", str(SAMPLES_PAGE_ROWS))
    return f"<script>{asset('sort.js')}{asset('interact.js')}{samples}</script>"


def _head_sections(view: SweepView) -> tuple[list[str], list[str]]:
    """(the answer and the conclusions, the trait-vs-share charts when they apply)."""
    charts = ["<h2>Trait score vs teacher share</h2>", charts_section(view)]
    if view.analysis is None:
        return [answer(view)], charts
    # an experiment mode: its conclusions first, then the trials behind them; experiment conditions are
    # not mixtures, but Optuna mixture trials in the same folder still get their charts
    return [answer(view), budget_line(view.analysis)] + analysis_sections(view), charts if view.varied_subsets() else []


def render(view: SweepView) -> str:
    """The whole page as a string (ASCII: other characters become HTML character references)."""
    head, charts = _head_sections(view)
    # the study is Optuna's in an optuna-mode sweep; an experiment mode only uses it to queue its conditions
    optuna_mode = view.search_mode == "optuna"
    study = study_section(view) if optuna_mode or len((view.study or {}).get("directions", [])) > 1 else ""
    sections = [
        f"<h1>{esc(view.name)}</h1>",
        *head,
        "<h2>Trials</h2>",
        status_line(view),
        trials_table(view),
        judge_validation_section(view),
        *charts,
        *(["<h2>Optuna study</h2>", study] if study else []),
        f"<h2>Best and worst {'mixtures' if view.analysis is None else 'trials'}</h2>",
        best_worst_section(view),
        "<h2>Training curves</h2>",
        curves_section(view),
        "<h2>Sample generations</h2>",
        samples_table_section(view),
        "<h3>Best and worst trial, first generations per trait</h3>",
        samples_section(view),
        "<h2>Provenance</h2>",
        provenance(view),
    ]
    page = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(view.name)}: leaksweep report'
        f"</title>{_style()}</head><body>{''.join(sections)}{_scripts()}</body></html>\n"
    )
    # ASCII keeps the file correct whatever encoding the writer's locale picks.
    return page.encode("ascii", "xmlcharrefreplace").decode("ascii")


def write_report(sweep_dir: Path, out_path: Path | None = None) -> Path:
    """Write the sweep's HTML report (default `sweep_dir/report.html`) atomically; return its path."""
    sweep = SweepDir(sweep_dir)
    trials = complete_trials(sweep)
    if not trials:
        running, failed = unfinished(sweep)
        raise UserError(
            f"{sweep.path}: no complete trial yet (no {SweepDir.TRIALS}/*/{TrialDir.RESULT}; {len(running)} not "
            f"finished, {len(failed)} failed); run the sweep until a trial finishes, then make the report again"
        )
    out = Path(out_path) if out_path is not None else sweep.report
    study, study_error = read_study(sweep.path)
    duplicates = tuple(duplicate_trials(sweep))
    view = SweepView(sweep, sweep.read_config(), trials, sweep.read_analysis(), study, study_error, duplicates)
    atomic_write_text(out, render(view))
    return out


def read_study(sweep_dir: Path) -> tuple[dict | None, str | None]:
    """(study.status.study_summary(sweep_dir), None), or (None, why not): the report is still written without it."""
    # Imported here, not at the top: the study stage imports optuna, which rendering a page does not need.
    from leaksweep.study.status import study_summary

    try:
        return study_summary(sweep_dir), None
    except UserError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - an unreachable RDB or a corrupt journal must not cost the whole report
        return None, f"{type(exc).__name__}: {exc}"
