"""The report's answer paragraph: the sweep's question answered in English sentences.

An Optuna sweep (no analysis.json) is answered from the trials' scores: the baselines, then each
patched subset against the clean baseline, then the study. An experiment mode is answered from its
analysis.json by ANSWERS[mode]; a mode without an entry gets one sentence saying so (its conclusions
still show, see analysis.py). A new mode's answer = one function + one ANSWERS entry.
"""

from __future__ import annotations

from typing import Callable

from leaksweep.layout import SweepDir
from leaksweep.report.fmt import (
    code_list,
    decision_short,
    esc,
    est,
    est_runs,
    frac,
    g,
    num,
    objective_name,
    pct,
    test_levels,
)
from leaksweep.report.view import LEAK_MAP_COLUMNS, LEAK_MAP_MODES, Pooled, SweepView, Trial, mean_score, pool


def answer(view: SweepView) -> str:
    """The paragraph that answers the sweep's question: from analysis.json in an experiment mode, else the scores."""
    if view.analysis is not None:
        return analysis_answer(view)
    trait, _ = view.objective
    clean, teacher = pool(view.of("all_clean"), trait), pool(view.of("all_teacher"), trait)
    text = (
        []
        if view.mode == "optuna"
        else [
            f"This <code>{esc(view.mode)}</code> sweep has no {esc(SweepDir.ANALYSIS)} yet (its search writes one "
            f"when it finishes); until then, what the complete trials show."
        ]
    )
    text += [
        f"Which data carries <b>{esc(trait)}</b> from the teacher source <code>{esc(view.teacher)}</code> "
        f"into the student? Scores are {esc(trait)} with 95% intervals."
    ]
    text.append(_baselines_sentence(clean, teacher))
    text.append(_one_seed_sentence(view))
    patched = view.patched_subsets()
    if not patched:
        text.append("No trial patched a subset with the teacher's rollouts, so this sweep tests no subset.")
    text += [_subset_sentence(view, subset, trait, clean) for subset in patched]
    text.append(_study_sentence(view.study))
    return _paragraph(text)


def _one_seed_sentence(view: SweepView) -> str:
    """With one seed per condition the intervals below hold eval noise only: comparisons, not decisions."""
    try:
        seeds = int(view.search.get("seeds", 1) or 1)
    except (TypeError, ValueError):
        return ""
    if seeds >= 2:
        return ""
    return (
        "<b>One seed per condition</b>: each interval holds the eval samples' noise only, not the variance "
        "between training seeds (unestimable from one seed), so the comparisons below are estimates, a first "
        "look, not decisions; set <code>search.seeds: 2</code> or more to decide."
    )


def _paragraph(text: list[str]) -> str:
    return '<p id="answer">' + " ".join(t for t in text if t) + "</p>"


def _study_sentence(study: dict | None) -> str:
    """The Optuna study in a sentence: the Pareto front's size, the most important parameter per objective."""
    if not study:
        return ""
    text = []
    if len(study.get("directions", [])) > 1:
        objectives = " and ".join(objective_name(n, d) for n, d in zip(study["objectives"], study["directions"]))
        text.append(
            f"{len(study.get('pareto', []))} of {study.get('n_complete', 0)} complete trials are on the "
            f"Pareto front of {objectives}."
        )
    for objective, by_param in (study.get("importances") or {}).items():
        if len(by_param) > 1:
            top, value = max(by_param.items(), key=lambda kv: kv[1])
            text.append(
                f"For {esc(objective)}, Optuna ranks <code>{esc(top)}</code> the most important parameter "
                f"(importance {value:.2f} of 1)."
            )
    return " ".join(text)


def _baselines_sentence(clean: Pooled | None, teacher: Pooled | None) -> str:
    if clean is None:
        missing = "" if teacher is None else f" The all-teacher student scores τ1 = {teacher.describe()}."
        return f"No all-clean baseline trial is complete, so nothing can be compared with it.{missing}"
    text = f"The all-clean student scores τ0 = {clean.describe()}"
    if teacher is None:
        return text + "; no all-teacher baseline trial is complete."
    if teacher.low > clean.high:
        verdict = "the all-teacher interval lies above the all-clean one: the teacher's data carries the trait"
    elif teacher.high < clean.low:
        verdict = "the all-teacher interval lies below the all-clean one: the teacher's data lowers the trait"
    else:
        verdict = "the two intervals overlap: even all-teacher data does not clearly move the trait"
    return (
        f"{text}; the all-teacher student scores τ1 = {teacher.describe()}, "
        f"D = τ1 − τ0 = {num(teacher.score - clean.score)}; {verdict}."
    )


def _subset_sentence(view: SweepView, subset: str, trait: str, clean: Pooled | None) -> str:
    """Whether the highest teacher share tested on `subset` lifts the trait clearly above τ0."""
    patching = [t for t in view.trials if t.patches(subset, view.teacher) and t.score(trait)]
    alone = [t for t in patching if t.patches_only(subset, view.teacher)]
    trials = alone or patching
    if not trials:
        return f"{esc(subset)}: no trial that patched it scored {esc(trait)}."
    caveat = "" if alone else " (these trials always patched other subsets too)"
    top_share = max(t.share(subset) for t in trials)
    top = pool([t for t in trials if abs(t.share(subset) - top_share) < 1e-9], trait)
    doses = "; ".join(f"{pct(share)}: {num(pool(group, trait).score)}" for share, group in _by_share(trials, subset))
    dose_text = f" Scores by teacher share of {esc(subset)}: {doses}."
    name = f"<code>{esc(subset)}</code>"
    at_top = f"at the highest teacher share tested ({pct(top_share)}) the student scores {top.describe()}"
    if clean is None:
        return f"Patching {name} with the teacher{caveat}: {at_top}; there is no clean baseline to compare.{dose_text}"
    if top.low > clean.high:
        return (
            f"Patching {name} with the teacher raises {esc(trait)} above the clean baseline{caveat}: {at_top}, "
            f"lower bound {num(top.low)} above the clean baseline's upper bound {num(clean.high)}.{dose_text}"
        )
    return (
        f"Patching {name} with the teacher does not clearly raise {esc(trait)} above the clean baseline{caveat}: "
        f"{at_top}, lower bound {num(top.low)} not above the clean baseline's upper bound "
        f"{num(clean.high)}.{dose_text}"
    )


def _by_share(trials: list[Trial], subset: str) -> list[tuple[float, list[Trial]]]:
    groups: dict[float, list[Trial]] = {}
    for t in trials:
        groups.setdefault(round(t.share(subset), 9), []).append(t)
    return sorted(groups.items())


# --- experiment modes: from analysis.json ------------------------------------------------------------------


def analysis_answer(view: SweepView) -> str:
    """The opening paragraph of an experiment mode, from analysis.json."""
    answer_of = ANSWERS.get(view.mode)
    if answer_of is None:
        return _paragraph(
            [f"analysis.json holds conclusions of mode <code>{esc(view.mode)}</code>, which this report does not know."]
        )
    return _paragraph(answer_of(view))


def _baselines_from_analysis(analysis: dict, trait: str) -> str:
    b = analysis.get("baselines", {}).get(trait, {})
    clean, teacher = b.get("all_clean"), b.get("all_teacher")
    if not clean and not teacher:
        return ""
    text = f"The all-clean student scores τ0 = {est_runs(clean)}"
    if teacher and teacher.get("value") is not None:
        text += f", the all-teacher student τ1 = {est_runs(teacher)}"
        if clean and clean.get("value") is not None:
            text += f", D = τ1 − τ0 = {num(teacher['value'] - clean['value'])}"
    return text + "."


def _threshold_bracket(dr: dict, f: float, stop: float | None) -> str:
    """The ladder interval in which the smallest dose that carries the trait lies."""
    below = [r for r in sorted(float(x) for x in (dr.get("ladder") or dr.get("tested") or [])) if r < float(f)]
    if stop is not None:
        return f"more than {frac(stop)} and at most {frac(f)}"
    if below:
        return f"at most {frac(f)} (rungs below it were not tested)"
    return f"at most {frac(f)}, the lowest rung of the ladder"


def _fitted_dose_sentence(fit: dict) -> str:
    """The fitted dose where the effect reaches min_effect (the rung sits above it by up to a ladder step)."""
    if fit.get("ed_min_effect"):
        what = (
            "share of the subset's rows from the teacher (what the trials' manifests gave it)"
            if fit.get("dose_axis") == "share"
            else "fraction"
        )
        return (
            f" The fitted dose at which the effect reaches min effect {g(fit.get('min_effect'))} is "
            f"<b>{est(fit['ed_min_effect'])}</b> as a {what} (logistic fit; interval from its bootstrap "
            f"refits); the rung above is the smallest tested dose shown to exceed it, so it sits above this dose."
            + (f" {esc(fit['ed_min_effect_precision']['statement'])}" if fit.get("ed_min_effect_precision") else "")
        )
    if fit.get("ed_min_effect_reason"):
        return f" No fitted dose for min effect: {esc(fit['ed_min_effect_reason'])}."
    return ""


def _fit_sentence(fit: dict) -> str:
    """What the logistic dose-response fit says (ED50 / ED10, the min-effect dose), or why there is none."""
    if fit.get("fit") == "ok":
        text = _fitted_dose_sentence(fit)
        eds = [f"{name} = {est(fit.get(key))}" for key, name in (("ed50", "ED50"), ("ed10", "ED10")) if fit.get(key)]
        if eds:
            unit = "shares of the subset's rows" if fit.get("dose_axis") == "share" else "fractions of the subset"
            text += f" A logistic fit in log-dose puts {' and '.join(eds)} ({unit})."
        if fit.get("extrapolated"):
            text += " (ED50 lies outside the tested fractions: extrapolated.)"
        return text
    if fit.get("fit"):
        why = {
            "flat": "flat (it does not beat a constant)",
            "failed": "failed (no start converged)",
            "insufficient": "not possible (it needs 5 points and 3 distinct fractions above 0)",
            "skipped": "not made for this sweep",
        }
        return f" A logistic dose-response fit is {why.get(fit['fit'], esc(str(fit['fit'])))}, so there is no ED50."
    return ""


def _threshold_sentence(dr: dict, analysis: dict) -> str:
    """The threshold of one dose-response entry, with the test that found it and the fit's ED50/ED10."""
    subset, trait = dr.get("subset", "?"), dr.get("trait", "?")
    seq = dr.get("threshold") or {}
    f = seq.get("threshold")
    tested = dr.get("tested") or []
    test = (
        f"fixed-sequence sufficiency tests vs the all-clean baseline from the highest rung down at alpha "
        f"{g(seq.get('alpha', analysis.get('alpha')))}, "
        f"min effect {g(seq.get('margin', analysis.get('min_effect')))}"
    )
    name = f"<code>{esc(subset)}</code>"
    if f is not None:
        stop = seq.get("stopped_at")
        how = (
            f"testing stopped at the first rung not rejected, {frac(stop)}"
            if stop is not None
            else "every rung tested was rejected"
        )
        share = next((p.get("share") for p in dr.get("points") or [] if p.get("fraction") == f), None)
        realized = f", which gave the teacher {frac(share)} of its rows" if share is not None and share != f else ""
        text = (
            f"The leak threshold of {esc(trait)} on {name} is <b>{frac(f)}</b> of the subset from the teacher "
            f"({test}; {how}){realized}: the smallest dose that carries the trait lies in that ladder interval, "
            f"<b>{_threshold_bracket(dr, f, stop)}</b>."
        )
    else:
        top = max(tested) if tested else (dr.get("ladder") or [None])[-1]
        step = next((s.get("decision") for s in seq.get("steps", []) if s.get("fraction") == top), None)
        why = f" The top rung's test: {esc(step['statement'])}" if step and step.get("statement") else ""
        verdict = f"<b>No decision</b> ({esc(seq['reason'])})" if seq.get("reason") else "<b>No leak</b>"
        text = f"{verdict} of {esc(trait)} on {name} up to the top rung, {frac(top)} from the teacher ({test}).{why}"
    return text + _fit_sentence(dr.get("fit") or {})


def _threshold_answer(view: SweepView) -> list[str]:
    a, text = view.analysis or {}, []
    for dr in (a.get("dose_response") or {}).values():
        text.append(_threshold_sentence(dr, a))
        text.append(_baselines_from_analysis(a, dr.get("trait", "")))
    spent, grid = a.get("trials_spent"), a.get("grid_trials")
    if spent is not None:
        refined = a.get("refine_trials") or 0
        text.append(
            f"Found with <b>{spent}</b> trials"
            + (f" ({spent - refined} for the bisection, {refined} pinning the fitted dose)" if refined else "")
            + (f" (a full ladder needs {grid})." if grid else ".")
        )
    flips = a.get("flipped") or []
    if flips:  # a decision that changed as runs arrived: the search's path rested on a decision later reversed
        text.append("<b>Decisions that flipped as runs arrived:</b> " + " ".join(esc(f["statement"]) for f in flips))
    return text or ["analysis.json holds no dose-response."]


def _fraction_sweep_answer(view: SweepView) -> list[str]:
    a = view.analysis or {}
    curves = a.get("dose_response") or {}
    if not curves:
        return ["analysis.json holds no dose-response."]
    text = [_threshold_sentence(dr, a) for dr in curves.values()]
    trait = next(iter(curves.values())).get("trait", "")
    return text + [_baselines_from_analysis(a, trait)]


def _minimal_found(a: dict, minimal: list[str], tests: dict, levels: str) -> list[str]:
    """The minimal subsets with their tests, and whether each is distributed or at the maximum depth."""
    root, trait = a.get("subset", "?"), a.get("trait", "?")
    text = [
        f"The minimal leaking subset{'s' if len(minimal) > 1 else ''} of <code>{esc(root)}</code> for "
        f"{esc(trait)} ({levels}): "
        + "; ".join(
            f"<b><code>{esc(n)}</code></b> ({decision_short(tests[n])})" if n in tests else f"<b>{esc(n)}</b>"
            for n in minimal
        )
        + "."
    ]
    distributed = [n for n in minimal if n in set(a.get("distributed", []))]
    at_depth = [n for n in minimal if n not in distributed]
    one = len(distributed) == 1
    if distributed:
        text.append(
            f"The trait is <b>distributed within</b> {code_list(distributed)}: "
            f"{'it is' if one else 'each is'} sufficient but neither of {'its' if one else 'their'} halves is."
        )
    if at_depth:
        text.append(
            f"{code_list(at_depth)} {'is' if len(at_depth) == 1 else 'are'} at the maximum bisection depth, "
            f"so minimal at that granularity only (halves not tested)."
        )
    return text


def _confirmation_sentences(a: dict, minimal: list[str]) -> list[str]:
    confirmations, confirmed = a.get("confirmations", {}), a.get("confirmed", {})
    verdicts = [
        f"<b>{'yes' if confirmed[n] else 'no'}</b> for <code>{esc(n)}</code>"
        + (f" ({decision_short(confirmations[n])})" if n in confirmations else "")
        for n in minimal
        if n in confirmed
    ]
    text = []
    if verdicts:
        text.append("Confirmed on fresh seeds that played no part in the search: " + "; ".join(verdicts) + ".")
    unconfirmed = [n for n in minimal if n not in confirmed]
    if unconfirmed:
        text.append(f"No confirmation run on fresh seeds for {code_list(unconfirmed)}.")
    return text


def _minimal_answer(view: SweepView) -> list[str]:
    a = view.analysis or {}
    root, trait = a.get("subset", "?"), a.get("trait", "?")
    tests, minimal = a.get("tests", {}), a.get("minimal", [])
    levels = f"sufficiency tests at {test_levels(a)}"
    spent = f"{a.get('trials_spent')} trials in all." if a.get("trials_spent") is not None else ""
    if (tests.get(root) or {}).get("reason") and a.get("no_leak") is None:
        d = tests[root]
        return [
            f"<b>No decision</b> ({esc(d['reason'])}): patching all of <code>{esc(root)}</code> with the teacher "
            f"gives {esc(trait)} {decision_short(d)} against the all-clean baseline ({levels}); the bisection "
            f"needs a decision there to narrow anything down.",
            spent,
        ]
    if a.get("no_leak"):
        d = tests.get(root)
        detail = f": {decision_short(d)}" if d else ""
        return [
            f"<b>No leak</b>: patching all of <code>{esc(root)}</code> with the teacher is not sufficient for "
            f"{esc(trait)} ({levels}){detail}, so there is no leaking subset to narrow down.",
            spent,
        ]
    if not minimal:
        return [
            f"The bisection of <code>{esc(root)}</code> found no minimal leaking subset (the search did not finish).",
            spent,
        ]
    return (
        _minimal_found(a, minimal, tests, levels)
        + _confirmation_sentences(a, minimal)
        + [_baselines_from_analysis(a, trait), spent]
    )


def _sufficient_sentence(a: dict, rows: dict) -> str:
    tested = [s for s, r in rows.items() if "sufficient" in r]
    if not tested:
        return ""
    holm = {s: rows[s].get("sufficient_holm", rows[s]["sufficient"]["passed"]) for s in tested}
    alone = [s for s in tested if rows[s]["sufficient"]["passed"] and holm[s] is False]
    undecided = [s for s in tested if holm[s] is None]
    return (
        f"<b>Sufficient</b> (patching the teacher's rollouts into the subset alone raises the trait; "
        f"{test_levels(a)}, Holm across {len(tested)} subset{'s' if len(tested) > 1 else ''}): "
        f"{code_list([s for s in tested if holm[s]])}; not sufficient: "
        f"{code_list([s for s in tested if holm[s] is False])}"
        + (f"; no decision: {code_list(undecided)}" if undecided else "")
        + "."
        + (f" ({code_list(alone)} passed alone but not after the Holm correction.)" if alone else "")
    )


def _necessary_sentence(a: dict, rows: dict) -> str:
    tested = [s for s, r in rows.items() if "necessary" in r]
    if not tested:
        return ""
    return (
        f"<b>Necessary</b> (clean rollouts patched into the subset bring the all-teacher student to the "
        f"clean baseline within margin {g(a.get('margin'))}, two one-sided tests at alpha "
        f"{g(a.get('alpha'))}): {code_list([s for s in tested if rows[s]['necessary']['passed']])}; "
        f"not shown necessary: {code_list([s for s in tested if not rows[s]['necessary']['passed']])}."
    )


def _leak_in_sentence(rows: dict) -> str:
    leak_keys = [(k, label) for k, label in LEAK_MAP_COLUMNS if k.startswith("leak_in")]
    tested = [s for s, r in rows.items() if any(k in r for k, _ in leak_keys)]
    if not tested:
        return ""
    refills = {
        s: [label.removeprefix("leak-in, ") for k, label in leak_keys if rows[s].get(k, {}).get("passed")]
        for s in tested
    }
    found = [f"<code>{esc(s)}</code> ({', '.join(r)})" for s, r in refills.items() if r]
    return (
        "<b>Leak-in</b> (dropping the subset leaves the trait higher than patching clean rollouts into it, "
        "whether or not the subset alone is necessary; see the necessary column): "
        + (", ".join(found) if found else "none")
        + "."
    )


def _leak_map_answer(view: SweepView) -> list[str]:
    a, trait = view.analysis or {}, view.decision_trait
    table = a.get("leak_map") or {}
    if trait not in table:
        trait = next(iter(table), trait)
    rows = table.get(trait, {})
    if not rows:
        return ["analysis.json holds no leak map.", _drop_effect_sentence(view)]
    undecided = _undecided_sentence(a, trait, rows)
    decided = {
        s: {k: d for k, d in r.items() if not (isinstance(d, dict) and d.get("passed") is None)}
        for s, r in rows.items()
    }
    return [
        f"Which subsets carry <b>{esc(trait)}</b> from the teacher into the student?",
        _baselines_from_analysis(a, trait),
        undecided,
        _sufficient_sentence(a, decided),
        _necessary_sentence(a, decided),
        _leak_in_sentence(decided),
        _drop_effect_sentence(view),
        _tiny_eval_sentence(rows),
    ]


def _undecided_sentence(a: dict, trait: str, rows: dict) -> str:
    """Why some decisions are estimates only: no trait to explain (D not shown), or one seed per condition."""
    reasons = {d["reason"] for r in rows.values() for d in r.values() if isinstance(d, dict) and d.get("reason")}
    text = []
    if any(r.startswith("no trait") for r in reasons):
        effect = (a.get("all_teacher_effect") or {}).get(trait) or {}
        detail = f" ({decision_short(effect)})" if effect else ""
        text.append(
            f"<b>No trait to explain</b>: the all-teacher effect D = τ1 − τ0 is not shown above min effect "
            f"{g(a.get('min_effect'))}{detail}, so no subset is called sufficient, necessary or leak-in."
        )
    if any(r.startswith("one seed") for r in reasons):
        text.append(
            "<b>Estimates only</b>: one seed per condition, so the training-seed variance is unestimable and "
            "the intervals leave it out; no decision is made. Set <code>search.seeds: 2</code> or more."
        )
    return " ".join(text)


def _tiny_eval_sentence(rows: dict) -> str:
    notes = {
        (d.get("estimate") or {}).get("note")
        for r in rows.values()
        for d in r.values()
        if isinstance(d, dict) and "tiny eval" in str((d.get("estimate") or {}).get("note"))
    }
    return f"<b>Warning</b>: {esc(sorted(notes)[0])}." if notes else ""


def _drop_effect_sentence(view: SweepView) -> str:
    """How much of D = τ1 − τ0 is left when a subset is dropped (per refill), next to patching clean rollouts in.

    Means over the seeds' trials, from their result.json: analysis.json holds the decisions, not these means.
    """
    a, trait = view.analysis or {}, view.decision_trait
    b = (a.get("baselines") or {}).get(trait) or {}
    clean, teacher = (b.get("all_clean") or {}).get("value"), (b.get("all_teacher") or {}).get("value")
    if clean is None or teacher is None:
        return ""
    effect = teacher - clean
    shown = _effect_shown(a, trait, b)
    left = lambda v: f"{(v - clean) / effect:.0%}" if shown else "no share"  # noqa: E731
    parts = []
    for subset in view.subsets:
        drops: dict[str, list[Trial]] = {}
        for t in view.of("drop"):
            if t.result.params.get("subset") == subset:
                drops.setdefault(str(t.result.params.get("refill", "none")), []).append(t)
        if not drops:
            continue
        said = "; ".join(
            f"refill {esc(r)}: τ = {num(m)}, <b>{left(m)}</b> of D left"
            for r, ts in drops.items()
            if (m := mean_score(ts, trait)) is not None
        )
        removed = mean_score([t for t in view.of("patch_remove") if t.result.params.get("subset") == subset], trait)
        patched = (
            f"; patching clean rollouts into it instead (patch-remove): τ = {num(removed)}, "
            f"<b>{left(removed)}</b> of D left"
            if removed is not None
            else ""
        )
        parts.append(f"dropping <code>{esc(subset)}</code> from the all-teacher data ({said}){patched}")
    if not parts:
        return ""
    if not shown:
        parts = [p.replace(", <b>no share</b> of D left", "") for p in parts]
        return (
            f"The all-teacher effect D = τ1 − τ0 = {num(effect)} on {esc(trait)} is not shown, so no share of it is "
            f"given; the means over seeds: " + "; ".join(parts) + "."
        )
    return (
        f"How much of the all-teacher effect D = τ1 − τ0 = {num(effect)} on {esc(trait)} is left (means over "
        f"seeds): " + "; ".join(parts) + "."
    )


def _effect_shown(a: dict, trait: str, baselines: dict) -> bool:
    """D shown: analysis.json's all_teacher_effect passed (else the baselines' intervals do not overlap)."""
    effect = (a.get("all_teacher_effect") or {}).get(trait)
    if effect:
        return effect.get("passed") is True
    low, high = (baselines.get("all_teacher") or {}).get("low"), (baselines.get("all_clean") or {}).get("high")
    return low is not None and high is not None and low > high


def _transfer_answer(view: SweepView) -> list[str]:
    a, trait = view.analysis or {}, view.decision_trait
    transfer = a.get("transfer") or {}
    text = []
    for key, what, symbol in (
        ("teachers", "The teachers' own scores on the eval prompts (no training)", "τT"),
        ("students", "Students trained on all of one source's rollouts", "τS"),
    ):
        if a.get(key):
            text.append(
                f"{what}: "
                + "; ".join(
                    f"<code>{esc(src)}</code>: {esc(trait)} {symbol} = {est(by_trait.get(trait))}"
                    for src, by_trait in a[key].items()
                )
                + "."
            )
    for src, by_trait in transfer.items():
        for t, tr in by_trait.items():
            if t != trait and trait in by_trait:
                continue
            ratio = tr.get("ratio")
            text.append(
                f"Teacher <code>{esc(src)}</code> vs the student trained on all of its rollouts, on {esc(t)}: offset "
                f"τS − τT = <b>{num(tr.get('offset'))}</b>, transfer ratio (τS − τ0)/(τT − τ0) = <b>"
                f"{num(ratio) if ratio is not None else 'undefined (the teacher scores the same as τ0)'}</b>."
            )
    if not transfer:
        text.append(
            "No teacher has both a teacher eval and a student trained on all of its rollouts (with the "
            "all-clean baseline), so there is no offset or transfer ratio."
        )
    return text + [_baselines_from_analysis(a, trait)]


# experiment mode -> the sentences of its answer (empty strings are skipped)
ANSWERS: dict[str, Callable[[SweepView], list[str]]] = {
    "leak_threshold": _threshold_answer,
    "fraction_sweep": _fraction_sweep_answer,
    "minimal_subset": _minimal_answer,
    **{mode: _leak_map_answer for mode in LEAK_MAP_MODES},
    "full_swap": _transfer_answer,
    "teacher_eval": _transfer_answer,
}
