"""The report's HTML sections that every sweep gets: trials, charts, the Optuna study, best and worst,
training curves, sample generations and provenance. (analysis.py renders analysis.json's sections.)

Each section is one function of the SweepView returning HTML; page.render puts them in order.
"""

from __future__ import annotations

import json
import shlex

from leaksweep.files import file_sha256
from leaksweep.layout import SweepDir, TrialDir
from leaksweep.provenance import code_version, library_versions
from leaksweep.report.charts import (
    MAX_CURVE_POINTS,
    MAX_LEGEND_ENTRIES,
    importance_chart,
    loss_chart,
    loss_curve,
    pareto_chart,
    trait_chart,
)
from leaksweep.report.fmt import clip, esc, g, interval, json_for_script, num, pct
from leaksweep.report.view import SweepView, Trial, unfinished

SAMPLES_PER_TRAIT = 5  # generations shown per trait for the best and the worst trial
MAX_TEXT_CHARS = 1500  # longer prompts/responses are cut in the samples section
MAX_CURVE_POINTS_TOTAL = 12_000  # loss curve points over all curves, so 200 trials stay a few hundred kB
MAX_SAMPLE_ROWS = 3000  # generations embedded in the samples table, spread evenly over trials and traits
MAX_TABLE_TEXT_CHARS = 400  # prompts and responses are cut to this in the samples table
SAMPLES_PAGE_ROWS = 50  # rows per page of the samples table (assets/samples.js)


def status_line(view: SweepView) -> str:
    """A count of complete, not finished and failed trials, with each failure's message."""
    running, failed = unfinished(view.sweep)
    line = f'<p class="small">{len(view.trials)} complete, {len(running)} not finished, {len(failed)} failed.</p>'
    if view.duplicates:
        aside = "; ".join(f"trial {d['trial']} (a rerun of trial {d['kept']}: {d['label']})" for d in view.duplicates)
        line += (
            f'<p class="small">Set aside as duplicates, counted once: {esc(aside)}. Each condition and seed '
            "counts once in every table, chart and statistic.</p>"
        )
    if not failed:
        return line
    rows = "".join(
        f"<li>trial {esc(name)} failed: <code>{esc(msg[:MAX_TEXT_CHARS])}</code></li>" for name, msg in failed
    )
    return line + f'<ul class="small">{rows}</ul>'


def _cell(text: str, sort: float | str | None = None) -> str:
    key = "" if sort is None else f' data-sort="{esc(str(sort))}"'
    return f"<td{key}>{text}</td>"


def _trial_row(view: SweepView, t: Trial, shares: list[str]) -> str:
    train, manifest = t.result.train, t.result.manifest
    cells = [_cell(str(t.number), t.number), _cell(esc(t.condition)), _cell(esc(t.label))]
    cells += [_cell("n/a" if (x := t.share_or_none(s)) is None else pct(x), -1 if x is None else x) for s in shares]
    for trait in view.traits:
        s = t.score(trait)
        cells.append(_cell(interval(s.score, s.low, s.high) + _corrected_note(s), s.score) if s else _cell("–", ""))
    loss, steps = train.get("final_loss"), train.get("steps")
    wall_s = t.result.wall_s if t.result.wall_s is not None else 0
    cells += [
        _cell(num(loss), "" if loss is None else loss),
        _cell("–" if steps is None else str(steps), steps),
        _cell(f"{wall_s:.1f}", wall_s),
        _cell(f"<code>{esc(str(manifest.get('hash', ''))[:8])}</code>"),
    ]
    return "<tr>" + "".join(cells) + "</tr>"


def _corrected_note(s) -> str:
    """Under a calibrated rate: its judge-corrected value (traits.T.calibration), or why there is none."""
    c = (s.calibration or {}).get("corrected")
    if not c or s.kind != "rate":
        return ""
    text = "not identifiable" if c.get("score") is None else interval(c["score"], c["low"], c["high"])
    return (
        f'<br><span class="small" title="{esc(c.get("reason") or c.get("method") or "")}">judge-corrected {text}</span>'
    )


def judge_validation_section(view: SweepView) -> str:
    """Each calibrated trait's judge against its labels (traits.T.calibration), once per judge."""
    tables = {}
    for t in view.trials:
        for trait in view.traits:
            s = t.score(trait)
            if s and s.calibration:
                tables.setdefault((trait, s.calibration["judge_id"]), s.calibration)
    if not tables:
        return ""
    rows = []
    for (trait, _), c in tables.items():
        b = c if c["kind"] == "rate" else c["binary"]
        scale = (
            f"rho {_metric(c['spearman'])}, MAE {_metric(c['mae'])}; at &ge; {g(c['threshold'])}: "
            if c["kind"] == "scale"
            else ""
        )
        rows.append(
            f"<tr><td>{esc(trait)}</td><td><code>{esc(c['judge'])}</code></td><td>{c['n']} ({c['n_unjudged']} "
            f"unjudged)</td><td>{scale}sens {_metric(b['sensitivity'])}, spec {_metric(b['specificity'])}, "
            f"kappa {_metric(b['kappa'])}</td></tr>"
        )
    note = (
        "Judge-corrected rates (under each calibrated score above): Rogan-Gladen (p_obs + spec - 1) / (sens + spec "
        "- 1), clipped to [0, 1]; the 95% interval is a parametric bootstrap over the eval counts and the "
        "calibration counts (percentile); <i>not identifiable</i> when sens + spec - 1 is not clearly above 0."
    )
    head = "<tr><th>trait</th><th>judge</th><th>labels judged</th><th>agreement [95%]</th></tr>"
    return f'<h3>Judge validation</h3><table>{head}{"".join(rows)}</table><p class="small">{note}</p>'


def _metric(m: dict | None) -> str:
    if not m or m.get("value") is None:
        return "–"
    return num(m["value"]) if m.get("low") is None else interval(m["value"], m["low"], m["high"])


def trials_table(view: SweepView) -> str:
    """Every complete trial as one row; clicking a header sorts by that column."""
    shares = ["all"] + view.subsets
    head = (
        ["trial", "condition", "label"]
        + [f"teacher share: {s}" for s in shares]
        + [f"{t} [low, high]" for t in view.traits]
        + ["final loss", "steps", "wall s", "manifest"]
    )
    rows = [_trial_row(view, t, shares) for t in view.trials]
    header = "".join(f"<th>{esc(h)}</th>" for h in head)
    return f'<table class="sortable"><thead><tr>{header}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def charts_section(view: SweepView) -> str:
    subsets = view.varied_subsets()
    if not subsets:
        return "<p>No mixture trial gave the teacher a share of any subset, so there is nothing to plot.</p>"
    figures = [
        f"<figure>{trait_chart(view, s, trait)}<figcaption>{esc(trait)} vs teacher share of "
        f"{esc(s)}</figcaption></figure>"
        for s in subsets
        for trait in view.traits
        if any(t.score(trait) for t in view.of("mixture"))
    ]
    return "".join(figures)


def best_worst_section(view: SweepView) -> str:
    trait, direction = view.objective
    picks = view.best_and_worst()
    if not picks:
        return f"<p>No trial scored {esc(trait)}.</p>"
    kind = "mixture trial(s)" if view.of("mixture") else "trial(s) (there are no mixture trials)"
    intro = f"<p>By {esc(trait)} ({esc(direction)}) among {len(view.ranked())} {kind}."
    if len(picks) == 1:
        intro += " Only one trial is scored, so there is no ranking."
    else:
        (_, best), (_, worst) = picks
        b, w = best.score(trait), worst.score(trait)
        if max(b.low, w.low) <= min(b.high, w.high):
            intro += " The best and worst intervals overlap, so the ranking between them is not clear."
    rows = "".join(
        f"<tr><td>{role}</td><td>{t.number}</td><td>{esc(t.label)}</td>"
        f"<td>{interval(t.score(trait).score, t.score(trait).low, t.score(trait).high)}</td></tr>"
        for role, t in picks
    )
    return (
        f"{intro}</p><table><thead><tr><th></th><th>trial</th><th>label</th>"
        f"<th>{esc(trait)} [low, high]</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def curves_section(view: SweepView) -> str:
    per_curve = max(20, min(MAX_CURVE_POINTS, MAX_CURVE_POINTS_TOTAL // max(1, len(view.trials))))
    curves = {t.number: c for t in view.trials if (c := loss_curve(t, per_curve))}
    missing = [str(t.number) for t in view.trials if t.number not in curves]
    note = f'<p class="small">No loss log for trial(s) {", ".join(missing)}.</p>' if missing else ""
    hint = (
        ""
        if len(curves) <= MAX_LEGEND_ENTRIES
        else f'<p class="small">{len(curves)} curves: hover one for its trial (no legend for this many).</p>'
    )
    return (loss_chart(curves) + hint if curves else "<p>No trial has a loss log.</p>") + note


def study_section(view: SweepView) -> str:
    """Optuna's view of the study: Pareto front (several objectives) and parameter importances, or why not."""
    study = view.study or {}
    if view.study_error:
        return f'<p class="small">The Optuna study could not be read: {esc(view.study_error)}</p>'
    out = []
    if len(study.get("directions", [])) > 1:
        chart = pareto_chart(study)
        extra = (
            f" Only the first two of {len(study['directions'])} objectives are plotted."
            if len(study["directions"]) > 2
            else ""
        )
        out.append(
            "<h3>Pareto front</h3>"
            + (
                f"<figure>{chart}<figcaption>{len(study.get('pareto', []))} of {study.get('n_complete', 0)} complete "
                f"trials are on the Pareto front (filled). Hover a point for its trial, values and parameters; click "
                f"the legend to hide a group.{extra}</figcaption></figure>"
                if chart
                else "<p>No complete trial has values for two objectives.</p>"
            )
        )
    chart = importance_chart(study)
    if chart:
        out.append(
            f"<h3>Parameter importances</h3><figure>{chart}<figcaption>"
            f"{esc(study.get('importance_method', 'optuna.importance'))}: how much each suggested "
            f"parameter matters for reaching the best values of each objective.</figcaption></figure>"
        )
    elif study.get("importances_absent"):
        out.append(f"<h3>Parameter importances</h3><p>No importances: {esc(study['importances_absent'])}.</p>")
    return "".join(out)


# --- samples -------------------------------------------------------------------------------------------


def _clip(text: str) -> str:
    return clip(text, MAX_TEXT_CHARS, "cut, {n} characters")


def _text_cut(text: str) -> str:
    return clip(text, MAX_TABLE_TEXT_CHARS, "{n} chars")


def samples_block(trial: Trial, role: str) -> str:
    """The first SAMPLES_PER_TRAIT generations per trait of one trial, everything escaped."""
    title = f"<h3>{esc(role)}: trial {trial.number}, {esc(trial.label)}</h3>"
    if not trial.dir.samples.is_file():
        return title + "<p>No samples file (simulated trials and some runners write none).</p>"
    by_trait: dict[str, list[dict]] = {}
    for row in trial.dir.read_samples():
        group = by_trait.setdefault(str(row.get("trait", "")), [])
        if len(group) < SAMPLES_PER_TRAIT:
            group.append(row)
    blocks = []
    for trait, rows in by_trait.items():
        items = "".join(
            f'<div class="sample"><div class="small">prompt {esc(str(r.get("prompt_id", "")))}, '
            f"sample {esc(str(r.get('sample', '')))}: value <b>{esc(str(r.get('value', '')))}</b>"
            f" ({esc(str(r.get('reason', '')))})</div>"
            f'<pre class="prompt">{esc(_clip(str(r.get("prompt", ""))))}</pre>'
            f"<pre>{esc(_clip(str(r.get('response', ''))))}</pre></div>"
            for r in rows
        )
        blocks.append(f"<h4>{esc(trait)}</h4>{items}")
    return title + ("".join(blocks) or "<p>The samples file is empty.</p>")


def samples_section(view: SweepView) -> str:
    picks = view.best_and_worst()
    if not picks:
        return "<p>No scored trial to show samples from.</p>"
    return "".join(samples_block(t, role) for role, t in picks)


def sample_rows(view: SweepView) -> tuple[dict, int]:
    """({"prompts": {id: text}, "rows": [[trial, condition, trait, prompt_id, sample, value, reason, response]],
    "per_trial_trait": n}, total).

    At most MAX_SAMPLE_ROWS rows, the same number per (trial, trait) (its first ones in the file), so every
    trial and trait is represented however many trials there are; `total` counts every generation on disk.
    """
    per = max(1, MAX_SAMPLE_ROWS // max(1, len(view.trials) * max(1, len(view.traits))))
    prompts: dict[str, str] = {}
    rows, total = [], 0
    for t in view.trials:
        taken: dict[str, int] = {}
        for r in t.dir.read_samples():
            total += 1
            trait = str(r.get("trait", ""))
            if taken.get(trait, 0) >= per or len(rows) >= MAX_SAMPLE_ROWS:
                continue
            taken[trait] = taken.get(trait, 0) + 1
            pid = str(r.get("prompt_id", ""))
            prompts.setdefault(pid, _text_cut(str(r.get("prompt", ""))))
            value = r.get("value")
            rows.append(
                [
                    t.number,
                    t.condition,
                    trait,
                    pid,
                    r.get("sample", 0),
                    value if isinstance(value, (int, float)) else str(value),
                    _text_cut(str(r.get("reason", ""))),
                    _text_cut(str(r.get("response", ""))),
                ]
            )
    return {"prompts": prompts, "rows": rows, "per_trial_trait": per}, total


def _samples_controls(data: dict) -> str:
    """The filter box and the trait, verdict and condition selects above the samples table."""
    options = lambda values: "".join(f'<option value="{esc(v)}">{esc(v)}</option>' for v in values)  # noqa: E731
    conditions = sorted({r[1] for r in data["rows"]})
    traits = sorted({r[2] for r in data["rows"]})
    return (
        f'<div class="controls"><input id="samples-filter" type="search" placeholder="filter: text in prompt, '
        f'response, reason, condition" size="40" aria-label="filter samples"> '
        f'<label>trait <select id="samples-trait"><option value="">all</option>{options(traits)}</select></label> '
        f'<label>verdict <select id="samples-verdict"><option value="">all</option>'
        f'<option value="pos">shows the trait (value &gt; 0)</option>'
        f'<option value="zero">does not (value = 0)</option></select></label> '
        f'<label>condition <select id="samples-condition"><option value="">all</option>{options(conditions)}'
        f"</select></label></div>"
    )


def samples_table_section(view: SweepView) -> str:
    """A filterable, paged table of the embedded generations (rendered by assets/samples.js)."""
    data, total = sample_rows(view)
    shown = len(data["rows"])
    if not total:
        return "<p>No trial wrote a samples file (simulated trials and some runners write none).</p>"
    cap = (
        ""
        if shown == total
        else f" The page embeds {shown} of the {total} generations: the first {data['per_trial_trait']} per trial and "
        f"trait; every generation is in <code>{SweepDir.TRIALS}/NNNNN/{esc(TrialDir.SAMPLES)}</code>."
    )
    return (
        f'<p class="small">{total} generations over {len(view.trials)} trials.{cap} Prompts and responses are cut '
        f"at {MAX_TABLE_TEXT_CHARS} characters here. Value: the judge's verdict (1 = shows the trait, 0 = does "
        f"not) or score.</p>"
        + _samples_controls(data)
        + f'<p id="samples-count" class="small">{shown} generations embedded (JavaScript renders the table).</p>'
        f'<table id="samples-table"><thead><tr><th>trial</th><th>condition</th><th>trait</th><th>prompt</th>'
        f"<th>response</th><th>value</th><th>judge reason</th></tr></thead><tbody></tbody></table>"
        f'<div class="controls"><button id="samples-prev" type="button">previous</button> '
        f'<button id="samples-next" type="button">next</button></div>'
        f'<script type="application/json" id="samples-data">{json_for_script(data)}</script>'
    )


# --- provenance ----------------------------------------------------------------------------------------


def provenance(view: SweepView) -> str:
    fingerprints = sorted({t.result.data_fingerprint for t in view.trials if t.result.data_fingerprint})
    warn = "" if len(fingerprints) <= 1 else " <b>The trials used different data.</b>"
    runner = view.search.get("runner")
    shown = (
        f"Data fingerprint(s): {', '.join(f'<code>{esc(f)}</code>' for f in fingerprints)}.{warn}"
        if fingerprints
        else "No trial recorded a data fingerprint"
        + (f" (trials ran through <code>{esc(str(runner))}</code>, not on real data)." if runner else ".")
    )
    example = view.trials[0].dir.path
    config = json.dumps(view.config, indent=2, sort_keys=True, default=str)
    analysis = (
        ""
        if view.analysis is None
        else f"<details><summary>Conclusions ({esc(SweepDir.ANALYSIS)})</summary>"
        f"<pre>{esc(json.dumps(view.analysis, indent=2, sort_keys=True, default=str))}</pre></details>"
    )
    versions = ", ".join(f"{esc(k)} <code>{esc(v)}</code>" for k, v in library_versions().items())
    return (
        f"<p>{shown}</p>{judges_line(view)}"
        f'<p id="code-version">Code that wrote this report: leaksweep git commit '
        f"<code>{esc(code_version())}</code>. "
        f"Libraries: {versions}.</p>"
        f"<p>Rerun a trial from its folder: <code>leaksweep trial &lt;trial dir&gt;</code>, e.g. "
        f"<code>leaksweep trial {esc(shlex.quote(str(example)))}</code>.</p>"
        f"<details><summary>Per trial: data and manifest hashes, the command that reproduces it "
        f"({len(view.trials)} trials)</summary>{provenance_trials_table(view)}</details>"
        f"<details><summary>Sweep config ({esc(SweepDir.SWEEP)}, resolved)</summary>"
        f"<pre>{esc(config)}</pre></details>" + analysis
    )


def _manifest_sha256(t: Trial) -> str:
    """The manifest file's content hash (16 hex digits), – when the trial wrote none."""
    return file_sha256(t.dir.manifest)[:16] if t.dir.manifest.is_file() else "–"


def judges_line(view: SweepView) -> str:
    """Which judge scored each trait (its identity and id), and how many samples it could not judge."""
    parts = []
    for trait in view.traits:
        scores = [t.result.traits[trait] for t in view.trials if trait in t.result.traits]
        names = sorted({(s.judge or "not recorded", s.judge_id) for s in scores})
        unjudged = sum(s.n_unjudged for s in scores)
        shown = ", ".join(f"<code>{esc(n)}</code>" + (f" (id <code>{esc(i)}</code>)" if i else "") for n, i in names)
        warn = " <b>The trials were judged by different judges.</b>" if len(names) > 1 else ""
        parts.append(f"{esc(trait)}: {shown}; {unjudged} sample(s) unjudged{warn}")
    return f"<p>Judges: {'; '.join(parts)}.</p>" if parts else ""


def provenance_trials_table(view: SweepView) -> str:
    """Per trial: data fingerprint, manifest hash (ours and of the file on disk) and the command that reruns it."""
    rows = "".join(
        f"<tr><td>{t.number}</td><td>{esc(t.condition)}</td>"
        f"<td><code>{esc(t.result.data_fingerprint or '–')}</code></td>"
        f"<td><code>{esc(str(t.result.manifest.get('hash', '–')))}</code></td>"
        f"<td><code>{esc(_manifest_sha256(t))}</code></td>"
        f"<td><code>{esc(t.result.code or 'not recorded')}</code></td>"
        f"<td><code>leaksweep trial {esc(shlex.quote(str(t.dir.path.resolve())))}</code></td></tr>"
        for t in view.trials
    )
    return (
        '<table class="sortable" id="provenance-trials"><thead><tr><th>trial</th><th>condition</th>'
        f"<th>data fingerprint</th><th>manifest hash</th><th>{TrialDir.MANIFEST} sha256</th>"
        "<th>code (git commit)</th>"
        f"<th>reproduce (reruns the trial from its {TrialDir.SPEC})</th></tr></thead><tbody>{rows}</tbody></table>"
    )
