"""How the report writes numbers, intervals, shares, estimates and decisions, and how it escapes text.

Every piece of text from the sweep folder goes through `esc` (responses are untrusted model output);
`json_for_script` makes JSON safe to embed in a <script> element. Decisions and estimates are the
dicts of analysis.json (decisions.Decision.to_dict(), experiments' estimates); they are shown, never recomputed.
"""

from __future__ import annotations

import html
import json
import math

esc = html.escape


def num(x: float | None) -> str:
    """A score: three decimals; – when absent, n/a when not finite."""
    if x is None:
        return "–"
    return f"{x:.3f}" if math.isfinite(x) else "n/a"


def interval(score: float, low: float, high: float) -> str:
    return f"{num(score)} [{num(low)}, {num(high)}]"


def pct(share: float) -> str:
    """A share as a percentage, one decimal below 10%."""
    return f"{share:.1%}" if 0 < share < 0.1 else f"{share:.0%}"


def tick(value: float) -> str:
    return f"{round(value, 10):g}"


def tick_pct(share: float) -> str:
    return f"{round(share * 100, 6):g}%"


def g(x: float | None) -> str:
    """A parameter as written (alpha, margin, a fraction): shortest round form."""
    return "–" if x is None else f"{round(float(x), 10):g}"


def frac(f: float | None) -> str:
    """A fraction of a subset, with its percentage: `0.05 (5%)`."""
    return "–" if f is None else f"{g(f)} ({tick_pct(f)})"


def est(e: dict | None) -> str:
    """`value [low, high]` of an estimate dict (an unbounded side, stored as null, shows as ∞); – when absent."""
    if not e or e.get("value") is None:
        return "–"
    low, high = e.get("low"), e.get("high")
    return f"{num(e['value'])} [{'−∞' if low is None else num(low)}, {'∞' if high is None else num(high)}]"


def est_runs(e: dict | None) -> str:
    if not e or e.get("value") is None:
        return "– (no trial)"
    runs = e.get("n_runs")
    return est(e) + (f" over {runs} run{'s' if runs != 1 else ''}" if runs else "")


def p_value(p: float | None) -> str:
    if p is None or not math.isfinite(p):
        return "p –"
    return "p &lt; 0.001" if p < 0.001 else f"p = {p:.3f}"


def trial_list(numbers) -> str:
    return ", ".join(str(n) for n in numbers or []) or "none"


def code_list(names: list[str]) -> str:
    return ", ".join(f"<code>{esc(n)}</code>" for n in names) if names else "none"


def clip(text: str, max_chars: int, note: str) -> str:
    """`text` cut at `max_chars`, then ` … [<note with {n}>]` saying how long it was."""
    return text if len(text) <= max_chars else text[:max_chars] + f" … [{note.format(n=len(text))}]"


def json_for_script(data) -> str:
    """JSON that is safe inside <script>: ASCII only, and no `<`, `>` or `&` that could end the element."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def objective_name(name: str, direction: str) -> str:
    """`trait (direction)`; study_summary already names a trait that way when it is both maximised and minimised."""
    return esc(name) if name.endswith(f"({direction})") else f"{esc(name)} ({esc(direction)})"


# decisions (decisions.Decision.to_dict(): test, alpha, margin, estimate, p_value, passed, trials, statement) ------


def decision_title(d: dict) -> str:
    """The hover text of a decision: its statement, then test, alpha, margin and trials."""
    return (
        f"{d.get('statement', '')} (test: {d.get('test', '?')}; alpha {g(d.get('alpha'))}; "
        f"margin {g(d.get('margin'))}; trials {trial_list(d.get('trials'))})"
    )


def verdict(d: dict) -> str:
    if d.get("passed") is None and d.get("reason"):
        return f"– no decision: {esc(short_reason(d))}"
    return "✓ passed" if d.get("passed") else "✗ not passed"


def short_reason(d: dict) -> str:
    """Why a decision made none, in a few words: `no trait to explain`, `one seed: estimate only`."""
    reason = str(d.get("reason") or "")
    if reason.startswith("no trait to explain"):
        return "no trait to explain"
    if reason.startswith("one seed"):
        return "one seed: estimate only"
    return reason.split(":")[0]


def interval_level(decisions: list[dict]) -> str:
    """The level of the decisions' intervals (`90%` at alpha 0.05), or `decision` when they differ."""
    levels = {(d.get("estimate") or {}).get("level") for d in decisions if isinstance(d, dict)}
    levels.discard(None)
    return f"{levels.pop():.0%}" if len(levels) == 1 else "decision"


def decision_short(d: dict) -> str:
    """`estimate [low, high], p = x`."""
    return f"{est(d.get('estimate'))}, {p_value(d.get('p_value'))}"


def test_levels(analysis: dict, *, margin: bool = False) -> str:
    """The test settings of analysis.json: `alpha A, min effect M[, margin E]`."""
    text = f"alpha {g(analysis.get('alpha'))}, min effect {g(analysis.get('min_effect'))}"
    return text + (f", margin {g(analysis.get('margin'))}" if margin and "margin" in analysis else "")
