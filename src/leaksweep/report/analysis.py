"""analysis.json's sections, rendered by kind of conclusion through a small registry.

An experiment mode's `conclude` writes its conclusions as top-level keys of analysis.json; a *kind*
names the keys one renderer shows (leak_map, dose_response, minimal, transfer, baselines, ...). KINDS
maps each kind to its renderer, in page order; a renderer gets the SweepView and returns HTML parts,
heading first, or [] when its keys hold nothing. A key that no kind claims and that is not one of
view.ANALYSIS_SETTINGS is a kind this report does not know yet (a new experiment mode's): it is shown
by `generic_section`, as a plain table or as JSON, so the page still shows every conclusion.

A new kind of conclusion = one renderer function + one registry entry:

    @kind("my_kind", "my_key", "my_other_key")   # the keys default to the kind's name
    def _my_kind(view: SweepView) -> list[str]:
        a = view.analysis or {}
        return ["<h2>My kind</h2>", my_chart(a)] if a.get("my_key") else []

Every number shown is read from analysis.json, nothing is recomputed. Decisions are
decisions.Decision.to_dict() ({test, alpha, margin, estimate, p_value, passed, trials, statement}),
estimates {value, low, high, level, method, n_runs, n_prompts, trials}.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from leaksweep.data.subsets import HALF_SEP
from leaksweep.layout import SweepDir
from leaksweep.report.charts import leak_map_chart, offsets_chart
from leaksweep.report.dose_chart import dose_chart
from leaksweep.report.fmt import (
    decision_short,
    decision_title,
    esc,
    est,
    frac,
    g,
    interval_level,
    num,
    test_levels,
    trial_list,
    verdict,
)
from leaksweep.report.view import ANALYSIS_SETTINGS, LEAK_MAP_COLUMNS, SweepView

Renderer = Callable[[SweepView], list[str]]


@dataclass(frozen=True)
class Kind:
    name: str
    keys: tuple[str, ...]  # the top-level keys of analysis.json it shows
    render: Renderer


KINDS: dict[str, Kind] = {}


def kind(name: str, *keys: str) -> Callable[[Renderer], Renderer]:
    """Register a renderer for the kind `name`, showing analysis.json's `keys` (default: the key `name`)."""

    def register(render: Renderer) -> Renderer:
        KINDS[name] = Kind(name, keys or (name,), render)
        return render

    return register


def unknown_keys(analysis: dict) -> list[str]:
    """Top-level keys of analysis.json that neither a registered kind nor the shared settings claim."""
    claimed = {key for k in KINDS.values() for key in k.keys} | set(ANALYSIS_SETTINGS)
    return [key for key in analysis if key not in claimed]


def analysis_sections(view: SweepView) -> list[str]:
    """The sections analysis.json supports, in page order: every registered kind, then the unknown ones."""
    a = view.analysis or {}
    out = [part for k in KINDS.values() for part in k.render(view)]
    for key in unknown_keys(a):
        out += generic_section(key, a[key])
    return out


# --- shared pieces ------------------------------------------------------------------------------------


def budget_line(analysis: dict) -> str:
    """Trials the search spent (and what the full grid would have needed, where stated)."""
    spent, grid = analysis.get("trials_spent"), analysis.get("grid_trials")
    if spent is None:
        return ""
    text = f"Trial budget: <b>{spent}</b> trials spent"
    if grid:
        text += f" of the {grid} a full ladder (every rung and the baseline, each seed) would need"
        if grid > spent:
            text += f", {1 - spent / grid:.0%} saved"
    if analysis.get("refine_trials"):
        text += (
            f", of which {analysis['refine_trials']} pinning the fitted dose after the bisection "
            f"(search.trial_budget {analysis.get('trial_budget')})"
        )
    confirm = sorted({t for d in (analysis.get("confirmations") or {}).values() for t in d.get("trials", [])})
    if confirm:
        text += f", of which {len(confirm)} on fresh confirmation seeds"
    per_subset = {s: dr.get("trials_spent") for s, dr in (analysis.get("dose_response") or {}).items()}
    if len(per_subset) > 1:
        counts = ", ".join(f"{esc(s)}: {n}" for s, n in per_subset.items() if n is not None)
        text += f" ({counts} incl. the baseline)"
    return f'<p id="budget">{text}.</p>'


def decision_cell(d: dict | None, extra: str = "") -> str:
    """A table cell: passed or not, the estimate with its interval and p; the statement on hover."""
    if not d:
        return '<td class="na">not tested</td>'
    cls = "na" if d.get("passed") is None else ("pass" if d.get("passed") else "fail")
    return f'<td class="{cls}" title="{esc(decision_title(d))}"><b>{verdict(d)}</b><br>{decision_short(d)}{extra}</td>'


# --- judge-corrected decisions (search.judge_corrected) -------------------------------------------------


@kind("judge_corrected")
def _judge_corrected(view: SweepView) -> list[str]:
    jc = (view.analysis or {}).get("judge_corrected")
    if not jc:
        return []
    traits = ", ".join(esc(t) for t in jc.get("traits", []))
    return [f'<p class="small"><b>Judge-corrected decisions</b> ({traits}): {esc(jc.get("limitation", ""))}.</p>']


# --- baselines ------------------------------------------------------------------------------------------


@kind("baselines")
def _baselines(view: SweepView) -> list[str]:
    return []  # τ0 and τ1 are stated in the answer paragraph (prose.py)


# --- leak map -------------------------------------------------------------------------------------------


def leak_map_section(analysis: dict) -> str:
    """Rows subset; columns trait × sufficient / necessary / leak-in per refill."""
    table = analysis.get("leak_map") or {}
    subsets = list(dict.fromkeys(s for rows in table.values() for s in rows))
    columns = {
        t: [(k, label) for k, label in LEAK_MAP_COLUMNS if any(k in rows.get(s, {}) for s in subsets)]
        for t, rows in table.items()
    }
    columns = {t: c for t, c in columns.items() if c}
    if not columns:
        return "<p>analysis.json has no leak-map decision.</p>"
    top = '<th rowspan="2">subset</th>' + "".join(f'<th colspan="{len(c)}">{esc(t)}</th>' for t, c in columns.items())
    sub = "".join(f"<th>{esc(label)}</th>" for c in columns.values() for _, label in c)
    level = interval_level([d for rows in table.values() for row in rows.values() for d in row.values()])
    rows = []
    for s in subsets:
        cells = [f"<th><code>{esc(s)}</code></th>"]
        for t, cols in columns.items():
            row = table[t].get(s, {})
            for key, _ in cols:
                extra = ""
                if key == "sufficient" and "sufficient_holm" in row:
                    verdicts = {True: "rejected", False: "not rejected"}
                    holm = verdicts.get(row["sufficient_holm"], f"no decision ({row.get('sufficient_holm_reason')})")
                    extra = f'<br><span class="small">Holm: {holm}</span>'
                cells.append(decision_cell(row.get(key), extra))
        rows.append(f'<tr data-subset="{esc(s)}">' + "".join(cells) + "</tr>")
    note = (
        f'<p class="small">Sufficient: patch-insert of the subset vs the all-clean baseline, one-sided at '
        f"{test_levels(analysis)}, Holm across subsets. Necessary: patch-remove vs all-clean equivalent within "
        f"margin {g(analysis.get('margin'))} (two one-sided tests). Leak-in: drop "
        f"(with the stated refill) minus patch-remove has a lower bound above min_effect, whether or not the subset "
        f"alone is necessary (its necessity is stated beside it). Each cell: the estimate "
        f"[{level} interval, the decision's: 1 − 2 alpha] and p; hover for the test's statement, alpha, margin "
        f"and trials. No decision: the all-teacher effect D is not shown (no trait to explain), or one seed per "
        f"condition (the seed variance is unestimable: estimates only).</p>"
    )
    return (
        f'<table class="leakmap"><thead><tr>{top}</tr><tr>{sub}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>{note}"
    )


def _decisions(analysis: dict) -> list[dict]:
    table = analysis.get("leak_map") or {}
    return [d for rows in table.values() for row in rows.values() for d in row.values() if isinstance(d, dict)]


@kind("leak_map", "leak_map", "all_teacher_effect")
def _leak_map(view: SweepView) -> list[str]:
    a = view.analysis or {}
    if not a.get("leak_map"):
        return []
    chart = leak_map_chart(a)
    figure = (
        f"<figure>{chart}<figcaption>Red: the test passed (the subset carries the trait that way); green: "
        f"not passed; grey: not tested; grey with –: no decision (no trait to explain, or one seed). Cell text: "
        f"the estimate; its {interval_level(_decisions(a))} interval (the decision's) on hover.</figcaption>"
        f"</figure>"
        if chart
        else ""
    )
    return ["<h2>Leak map</h2>", figure, leak_map_section(a)]


# --- dose-response --------------------------------------------------------------------------------------


def _level(dr: dict) -> str:
    levels = {p.get("level") for p in dr.get("points", []) if p.get("level")}
    return f"{levels.pop():.0%}" if len(levels) == 1 else "bootstrap"


def dose_section(analysis: dict) -> str:
    """Per subset: the chart, then the fixed-sequence steps as a table."""
    out = []
    for subset, dr in (analysis.get("dose_response") or {}).items():
        seq = dr.get("threshold") or {}
        on_shares = dr.get("dose_axis") == "share"
        axis = "the share of its rows" if on_shares else "fraction"
        caption = (
            f"{esc(str(dr.get('trait', '')))} vs {axis} of <code>{esc(subset)}</code> from the teacher: mean "
            f"over seeds with {_level(dr)} intervals; {dr.get('trials_spent', '?')} trials."
        )
        shares = {p.get("fraction"): p.get("share") for p in dr.get("points") or []}
        steps = "".join(
            f"<tr><td>{frac(s['fraction'])}</td>"
            + (f"<td>{frac(shares.get(s['fraction']))}</td>" if on_shares else "")
            + f"{decision_cell(s.get('decision'))}</tr>"
            for s in seq.get("steps", [])
        )
        share_head = "<th>share of its rows from the teacher</th>" if on_shares else ""
        table = (
            (
                f'<table class="steps" data-subset="{esc(subset)}"><thead><tr><th>rung (highest first)</th>'
                f"{share_head}<th>sufficiency vs all-clean</th></tr></thead><tbody>{steps}</tbody></table>"
            )
            if steps
            else ""
        )
        statement = f'<p class="small">{esc(str(seq["statement"]))}</p>' if seq.get("statement") else ""
        out.append(
            f'<figure class="dose" data-subset="{esc(subset)}">{dose_chart(dr, analysis)}'
            f"<figcaption>{caption}</figcaption></figure>{statement}{table}"
        )
    return "".join(out) or "<p>analysis.json has no dose-response.</p>"


def _rounds(analysis: dict) -> str:
    """leak_threshold's decisions after each round (rungs shown sufficient marked +), and any flip."""
    rounds = analysis.get("rounds") or []
    if not rounds:
        return ""
    items = [
        f"round {r['round']} ({r['trials']} trials): "
        + ", ".join(f"{d['fraction']:g}{'+' if d['passed'] else '-'}" for d in r.get("decisions", []))
        for r in rounds
    ]
    flips = analysis.get("flipped") or []
    note = " ".join(esc(f["statement"]) for f in flips) or "No decision flipped as runs arrived."
    return (
        '<p class="small" id="rounds">The search\'s decisions after each round (rung: + shown sufficient, - not): '
        + esc("; ".join(items))
        + f". {note}</p>"
    )


# the top-level threshold keys repeat the dose-response's (threshold_fitted: its fit's ed_min_effect, with its
# precision: threshold_fitted_precision, the fit's ed_min_effect_precision)
@kind(
    "dose_response",
    "dose_response",
    "threshold",
    "threshold_fitted",
    "threshold_fitted_reason",
    "threshold_fitted_precision",
    "rounds",
    "flipped",
    "rung_trials",
    "refine_trials",
    "trial_budget",
)
def _dose_response(view: SweepView) -> list[str]:
    a = view.analysis or {}
    return ["<h2>Dose-response</h2>", dose_section(a) + _rounds(a)] if a.get("dose_response") else []


# --- minimal subset -------------------------------------------------------------------------------------


def _tree(analysis: dict, tests: dict) -> str:
    """The bisection tree: each node's sufficiency test, its halves below it, minimal nodes marked."""
    minimal, distributed = set(analysis.get("minimal", [])), set(analysis.get("distributed", []))

    def node_item(node: str) -> str:
        d = tests[node]
        children = [c for c in (f"{node}{HALF_SEP}0", f"{node}{HALF_SEP}1") if c in tests]
        tag = ""
        if node in minimal:
            tag = " — <b>minimal</b>, " + (
                "the trait is distributed within it" if node in distributed else "at the maximum depth"
            )
        cls = "minimal" if node in minimal else ("pass" if d.get("passed") else "fail")
        below = f"<ul>{''.join(node_item(c) for c in children)}</ul>" if children else ""
        return (
            f'<li class="{cls}" data-node="{esc(node)}" title="{esc(decision_title(d))}"><code>{esc(node)}</code>: '
            f"{verdict(d)}, {decision_short(d)}{tag}{below}</li>"
        )

    root = analysis.get("subset")
    roots = [root] if root in tests else sorted(n for n in tests if HALF_SEP not in n)
    return f'<ul class="tree">{"".join(node_item(r) for r in roots)}</ul>'


def minimal_section(analysis: dict) -> str:
    """The bisection tree (each node's sufficiency test), minimal nodes highlighted, then the confirmations."""
    tests = analysis.get("tests") or {}
    if not tests:
        return "<p>analysis.json has no bisection test.</p>"
    note = (
        f'<p class="small">Each node: sufficiency of patch-insert(node) vs all-clean on the search seeds '
        f"({test_levels(analysis)}); estimate = τ(insert) − τ0 [interval], p. <code>{esc(HALF_SEP)}0</code> and "
        f"<code>{esc(HALF_SEP)}1</code> are the stratified halves. Hover a node for its test and trials.</p>"
    )
    confirmations = analysis.get("confirmations") or {}
    if confirmations:
        rows = "".join(
            f'<tr data-node="{esc(n)}"><td><code>{esc(n)}</code></td>{decision_cell(d)}</tr>'
            for n, d in confirmations.items()
        )
        confirm = (
            '<h3>Confirmation on fresh seeds</h3><table class="confirm"><thead><tr><th>minimal node</th>'
            f"<th>sufficiency on seeds the search never used</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    else:
        confirm = "<p>No confirmation decision (no minimal node, or the confirmation runs are missing).</p>"
    return _tree(analysis, tests) + note + confirm


@kind("minimal", "tests", "minimal", "distributed", "confirmed", "confirmations", "no_leak")
def _minimal(view: SweepView) -> list[str]:
    a = view.analysis or {}
    if view.mode != "minimal_subset" and not a.get("tests"):
        return []
    return ["<h2>Minimal leaking subset</h2>", minimal_section(a)]


# --- teacher vs student ---------------------------------------------------------------------------------


def _per_source_table(sources: dict, what: str) -> str:
    traits = list(dict.fromkeys(t for by_trait in sources.values() for t in by_trait))
    head = "".join(f"<th>{esc(t)} [low, high]</th>" for t in traits)
    rows = "".join(
        f"<tr><td><code>{esc(src)}</code></td>"
        + "".join(
            f'<td title="trials {esc(trial_list((by_trait.get(t) or {}).get("trials")))}">{est(by_trait.get(t))}</td>'
            for t in traits
        )
        + "</tr>"
        for src, by_trait in sources.items()
    )
    return (
        f'<p class="small">Per source: {what}.</p><table><thead><tr><th>source</th>{head}</tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def transfer_section(analysis: dict) -> str:
    transfer = analysis.get("transfer") or {}
    parts = []
    if transfer:
        rows = "".join(
            f"<tr><td><code>{esc(src)}</code></td><td>{esc(t)}</td><td>{num(tr.get('offset'))}</td>"
            f"<td>{num(tr.get('ratio')) if tr.get('ratio') is not None else 'undefined'}</td></tr>"
            for src, by_trait in transfer.items()
            for t, tr in by_trait.items()
        )
        parts.append(
            "<table><thead><tr><th>teacher</th><th>trait</th><th>offset τS − τT</th>"
            "<th>transfer ratio (τS − τ0)/(τT − τ0)</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
        )
    for key, what in (
        ("teachers", "the teacher's own score τT (teacher eval, no training)"),
        ("students", "the student trained on all of the source's rollouts"),
    ):
        if analysis.get(key):
            parts.append(_per_source_table(analysis[key], what))
    return "".join(parts) or "<p>analysis.json has no teacher or transfer scores.</p>"


@kind("transfer", "transfer", "teachers", "students")
def _transfer(view: SweepView) -> list[str]:
    a = view.analysis or {}
    if not (a.get("transfer") or a.get("teachers") or a.get("students")):
        return []
    chart = offsets_chart(a, view.decision_trait)
    figure = (
        f"<figure>{chart}<figcaption>{esc(view.decision_trait)}: each source's own score (τT, square) "
        f"and the student trained on all of its rollouts (τS, circle) with intervals; the arrow is the "
        f"offset.</figcaption></figure>"
        if chart
        else ""
    )
    return ["<h2>Teacher vs student</h2>", figure, transfer_section(a)]


# --- a kind no renderer knows ---------------------------------------------------------------------------


def _plain_cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return esc(f"{value:.4g}")
    if isinstance(value, (bool, int, str)):
        return esc(str(value))
    return f"<code>{esc(json.dumps(value, sort_keys=True, default=str))}</code>"


def _plain_table(rows: list[tuple[str, dict]]) -> str:
    """Named records as a table: a row per record, a column per field any record has."""
    columns = list(dict.fromkeys(c for _, record in rows for c in record))
    head = "<th></th>" + "".join(f"<th>{esc(str(c))}</th>" for c in columns)
    body = "".join(
        f"<tr><th>{esc(name)}</th>" + "".join(f"<td>{_plain_cell(record.get(c))}</td>" for c in columns) + "</tr>"
        for name, record in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def plain(value: Any) -> str:
    """Any JSON value as plainly as possible: records as a table, a flat mapping as two columns, else JSON."""
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        return _plain_table([(str(k), v) for k, v in value.items()])
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return _plain_table([(str(i), v) for i, v in enumerate(value)])
    if isinstance(value, dict) and value:
        rows = "".join(f"<tr><th>{esc(str(k))}</th><td>{_plain_cell(v)}</td></tr>" for k, v in value.items())
        return f"<table><tbody>{rows}</tbody></table>"
    return f"<pre>{esc(json.dumps(value, indent=2, sort_keys=True, default=str))}</pre>"


def generic_section(key: str, value: Any) -> list[str]:
    """A kind of conclusion this report has no renderer for: its key as the heading, its value shown plainly."""
    return [
        f"<h2>{esc(key)}</h2>",
        f'<p class="small">Conclusions under <code>{esc(key)}</code> in {esc(SweepDir.ANALYSIS)}, a kind this '
        f"report has no view for yet, as written:</p>",
        plain(value),
    ]
