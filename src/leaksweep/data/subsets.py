"""Subsets stage: named, frozen sets of prompt ids defined by rules.

A rule is a regex or keyword list on the prompt text or on a named source's response, a judge's
verdict on one of those texts, a metadata field equality, an id list (inline or a file with one id
per line), or a union, intersection or difference of other subsets (computed after them, in
dependency order). A subset that matches nothing is an error: it is almost always a typo in the
pattern or field name.

Judges live downstream (leaksweep.traits), so a judge subset's verdicts come from a callback the
caller supplies (`JudgeTexts`, built by leaksweep.traits.subset_judge), which also caches them.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from leaksweep.config import SUBSET_SET_OPS, SubsetRule
from leaksweep.data.records import Dataset
from leaksweep.errors import UserError
from leaksweep.files import read_utf8, sha256_json

# (subset name, its rule, [(prompt id, text, the prompt's metadata)]) -> {prompt id: verdict}, where a
# verdict has `.value` (None: unjudged) and `.reason`; a prompt missing from the answer counts as unjudged.
JudgeTexts = Callable[[str, SubsetRule, list[tuple[str, str, dict[str, Any]]]], Mapping[str, Any]]


@dataclass(frozen=True)
class Subset:
    name: str
    ids: frozenset[str]
    rule: str  # a one-line description of the defining rule
    hash: str
    n_unjudged: int | None = None  # judge subsets: texts the judge could not judge (left out); None otherwise
    n_judged_texts: int = 0  # judge subsets: texts sent to the judge
    unjudged_reasons: tuple[tuple[str, int], ...] = ()  # (reason, count), most frequent first

    def __len__(self) -> int:
        return len(self.ids)


def describe_rule(rule: SubsetRule) -> str:
    kind = rule.kind()
    where = f" on {rule.source}'s response" if rule.text == "response" else " on the prompt"
    if kind == "regex":
        return f"regex {rule.regex!r}{where}"
    if kind == "keyword":
        return f"keyword any of {rule.keyword}{where}"
    if kind == "judge":
        judge = rule.judge if isinstance(rule.judge, str) else ", ".join(f"{k}: {v!r}" for k, v in rule.judge.items())
        verdict = f">= {rule.threshold:g}" if rule.threshold is not None else "= 1"
        return f"judge {judge}{where}, verdict {verdict}"
    if kind == "metadata":
        return "metadata " + ", ".join(f"{k} = {v!r}" for k, v in rule.metadata.items())
    if kind == "ids":
        return f"{len(rule.ids)} listed ids"
    if kind == "union":
        return " | ".join(rule.union)
    if kind == "intersection":
        return " & ".join(rule.intersection)
    if kind == "difference":
        first, *rest = rule.difference
        return f"{first} - " + (rest[0] if len(rest) == 1 else f"({' | '.join(rest)})")
    return f"ids from {rule.ids_file}"


def _matcher(name: str, rule: SubsetRule):
    flags = 0 if rule.case_sensitive else re.IGNORECASE
    if rule.regex is not None:
        try:
            pattern = re.compile(rule.regex, flags)
        except re.error as exc:
            raise UserError(f"subsets.{name}.regex: invalid pattern {rule.regex!r}: {exc}") from exc
        return pattern.search
    words = [re.escape(w) for w in rule.keyword or []]
    if not words:
        raise UserError(f"subsets.{name}.keyword: the keyword list is empty")
    # Whole words: no word character on either side (unlike \b, this also works for "C++" or ".NET").
    return re.compile(r"(?<!\w)(?:" + "|".join(words) + r")(?!\w)", flags).search


def _ids_from_list(name: str, listed: list[str], dataset: Dataset, where: str) -> set[str]:
    known = set(dataset.prompts.ids)
    unknown = [i for i in listed if i not in known]
    if unknown:
        raise UserError(f"{where}: {len(unknown)} id(s) not in the prompt set (first: {', '.join(unknown[:3])})")
    return set(listed)


def _texts(name: str, rule: SubsetRule, dataset: Dataset) -> dict[str, str]:
    """The texts a regex, keyword or judge rule looks at, by prompt id (prompts without a response are left out)."""
    prompts = dataset.prompts
    if rule.text != "response":
        return {p: prompts.text(p) for p in prompts.ids}
    if rule.source not in dataset.sources:
        raise UserError(
            f"subsets.{name}.source: {rule.source!r} is not a data source; sources are {sorted(dataset.sources)}"
        )
    responses = dataset.sources[rule.source]
    return {p: responses[p] for p in prompts.ids if p in responses}


def _judged(name: str, rule: SubsetRule, dataset: Dataset, judge_texts: JudgeTexts | None) -> dict[str, Any]:
    """A judge subset's ids and its unjudged count: the prompts whose verdict is 1 (or >= threshold)."""
    if judge_texts is None:
        raise UserError(
            f"subsets.{name}.judge: a subset defined by a judge needs the judge, which was not supplied here; "
            "compute subsets through leaksweep (trial.prepare_data, `leaksweep subsets`), which builds it"
        )
    texts = _texts(name, rule, dataset)
    items = []
    for pid, text in texts.items():
        meta = dict(dataset.prompts.metadata[pid])
        if rule.text == "response":
            meta.setdefault("prompt", dataset.prompts.text(pid))
        items.append((pid, text, meta))
    verdicts = judge_texts(name, rule, items)
    threshold = rule.threshold if rule.threshold is not None else 1.0
    ids: set[str] = set()
    reasons: Counter[str] = Counter()
    for pid in texts:
        verdict = verdicts.get(pid)
        value = getattr(verdict, "value", None)
        if value is None:
            reasons[str(getattr(verdict, "reason", "") or "no verdict")] += 1
        elif value >= threshold:
            ids.add(pid)
    n_unjudged = sum(reasons.values())
    if texts and n_unjudged / len(texts) > rule.max_unjudged_share:
        top = "; ".join(f"{r} ({n})" for r, n in reasons.most_common(3))
        raise UserError(
            f"subsets.{name}.judge: {n_unjudged} of {len(texts)} texts ({n_unjudged / len(texts):.1%}) could not be "
            f"judged, above max_unjudged_share {rule.max_unjudged_share:g}; reasons: {top}. Fix the judge "
            "(its endpoint, model or rubric) or raise `max_unjudged_share:`"
        )
    return {
        "ids": ids,
        "n_unjudged": n_unjudged,
        "n_judged_texts": len(texts),
        "unjudged_reasons": tuple(reasons.most_common()),
    }


def _combined(name: str, rule: SubsetRule, others: Mapping[str, Subset]) -> set[str]:
    kind = rule.kind()
    operands = rule.operands()
    missing = [n for n in operands if n not in others]
    if missing:
        raise UserError(
            f"subsets.{name}.{kind}: {', '.join(map(repr, missing))} is not a defined subset; defined: {sorted(others)}"
        )
    sets = [others[n].ids for n in operands]
    if kind == "union":
        return set().union(*sets)
    if kind == "intersection":
        return set(sets[0]).intersection(*sets[1:])
    return set(sets[0]) - set().union(*sets[1:])


def compute_subset(
    name: str,
    rule: SubsetRule,
    dataset: Dataset,
    judge_texts: JudgeTexts | None = None,
    others: Mapping[str, Subset] | None = None,
) -> Subset:
    """One subset. A judge rule needs `judge_texts`; a union, intersection or difference needs the
    subsets it names in `others` (compute_subsets computes them first)."""
    prompts = dataset.prompts
    kind = rule.kind()
    extra: dict[str, Any] = {}
    if kind in ("regex", "keyword"):
        match = _matcher(name, rule)
        ids = {p for p, text in _texts(name, rule, dataset).items() if match(text)}
    elif kind == "judge":
        extra = _judged(name, rule, dataset, judge_texts)
        ids = extra.pop("ids")
    elif kind in SUBSET_SET_OPS:
        ids = _combined(name, rule, others or {})
    elif kind == "metadata":

        def fits(pid: str) -> bool:
            meta = prompts.metadata[pid]
            return all(
                (meta.get(k) in v) if isinstance(v, list) else meta.get(k) == v for k, v in rule.metadata.items()
            )

        ids = {p for p in prompts.ids if fits(p)}
    elif kind == "ids":
        ids = _ids_from_list(name, [str(i) for i in rule.ids], dataset, f"subsets.{name}.ids")
    else:
        try:
            listed = [line.strip() for line in read_utf8(Path(rule.ids_file)).splitlines() if line.strip()]
        except OSError as exc:
            raise UserError(f"subsets.{name}.ids_file: cannot read {rule.ids_file} ({exc.strerror})") from exc
        ids = _ids_from_list(name, listed, dataset, f"subsets.{name}.ids_file ({rule.ids_file})")
    description = describe_rule(rule)
    if not ids:
        fix = (
            "check the subsets it combines"
            if kind in SUBSET_SET_OPS
            else "check the pattern, judge, field name or value"
        )
        if kind == "metadata":
            fix = f"{metadata_found(prompts, rule.metadata)}; check the field name or value"
        raise UserError(f"subsets.{name}: {description} matches none of the {len(prompts.ids)} prompts; {fix}")
    return Subset(name, frozenset(ids), description, sha256_json(sorted(ids)), **extra)


def metadata_found(prompts, wanted: Mapping[str, Any], shown: int = 5) -> str:
    """What the prompts' metadata holds, for a metadata rule that matched none: each key the rule names
    that no prompt has, every key found, and a few values of each."""
    values: dict[str, set[str]] = {}
    for pid in prompts.ids:
        for key, value in prompts.metadata[pid].items():
            values.setdefault(key, set()).add(repr(value))

    def few(key: str) -> str:
        found = sorted(values[key])
        more = f" (and {len(found) - shown} more)" if len(found) > shown else ""
        return ", ".join(found[:shown]) + more

    parts = [f"no prompt has `{k}`" for k in wanted if k not in values]
    parts += [f"{k} takes {few(k)}" for k in wanted if k in values]
    if not values:
        return "; ".join(parts + ["the prompts carry no metadata (keys besides prompt_id, messages, prompt)"])
    listing = "; ".join(f"{k}: {few(k)}" for k in sorted(values) if k not in wanted)
    parts.append(f"metadata keys found: {', '.join(sorted(values))}" + (f" ({listing})" if listing else ""))
    return "; ".join(parts)


def subset_order(rules: Mapping[str, SubsetRule]) -> list[str]:
    """Subset names in an order where each comes after the subsets it is built from. An unknown name
    or a cycle is a UserError naming the subset and the cycle's path."""
    order: list[str] = []
    state: dict[str, str] = {}  # name -> "visiting" | "done"

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = path[path.index(name) :] + [name]
            raise UserError(
                f"subsets.{cycle[0]}.{rules[cycle[0]].kind()}: the subsets are built from each other in a cycle: "
                f"{' -> '.join(cycle)}; break it by defining one of them directly"
            )
        state[name] = "visiting"
        rule = rules[name]
        for operand in rule.operands():
            if operand not in rules:
                raise UserError(
                    f"subsets.{name}.{rule.kind()}: {operand!r} is not a defined subset; defined: {sorted(rules)}"
                )
            visit(operand, [*path, name])
        state[name] = "done"
        order.append(name)

    for name in rules:
        visit(name, [])
    return order


def needs_judge(rules: Mapping[str, SubsetRule]) -> bool:
    """Whether any subset is defined by a judge (so computing the subsets may call a judge)."""
    return any(rule.judge is not None for rule in rules.values())


def compute_subsets(
    rules: dict[str, SubsetRule], dataset: Dataset, judge_texts: JudgeTexts | None = None
) -> dict[str, Subset]:
    """Every subset, in the order defined; judge subsets through `judge_texts` (see JudgeTexts)."""
    computed: dict[str, Subset] = {}
    for name in subset_order(rules):
        computed[name] = compute_subset(name, rules[name], dataset, judge_texts, computed)
    return {name: computed[name] for name in rules}


def overlap_matrix(subsets: dict[str, Subset]) -> dict[str, dict[str, int]]:
    """Number of prompts shared by each pair of subsets (the diagonal is each subset's size)."""
    return {a: {b: len(sa.ids & sb.ids) for b, sb in subsets.items()} for a, sa in subsets.items()}


def subsets_table(subsets: dict[str, Subset], n_prompts: int) -> str:
    """A plain-text table: size, share of the prompt set, hash, rule; then the overlap matrix."""
    if not subsets:
        return "no subsets defined"
    width = max(len(n) for n in subsets) + 2
    lines = [f"{'subset':<{width}}{'size':>7}{'share':>9}  {'hash':<17}rule"]
    for name, s in subsets.items():
        lines.append(f"{name:<{width}}{len(s):>7}{len(s) / n_prompts:>9.2%}  {s.hash:<17}{s.rule}")
    in_any = len(frozenset().union(*(s.ids for s in subsets.values())))
    lines.append(f"{'(in none)':<{width}}{n_prompts - in_any:>7}{(n_prompts - in_any) / n_prompts:>9.2%}")
    judged = {name: s for name, s in subsets.items() if s.n_unjudged is not None}
    if judged:
        lines += ["", "judge subsets (unjudged texts are in no judge subset):"]
        for name, s in judged.items():
            share = s.n_unjudged / s.n_judged_texts if s.n_judged_texts else 0.0
            reasons = "; ".join(f"{r} ({n})" for r, n in s.unjudged_reasons[:3])
            lines.append(
                f"{name:<{width}}n_unjudged {s.n_unjudged} of {s.n_judged_texts} texts ({share:.1%})"
                + (f": {reasons}" if reasons else "")
            )
    lines += ["", "overlap (prompts in both):", " " * width + "".join(f"{n:>{width}}" for n in subsets)]
    for a, row in overlap_matrix(subsets).items():
        lines.append(f"{a:<{width}}" + "".join(f"{row[b]:>{width}}" for b in subsets))
    return "\n".join(lines)


# --- halves for the minimal-leaking-subset search ---------------------------------------------------

HALF_SEP = "/"


def split_half(ids: frozenset[str], half: int, strata: dict[str, str] | None = None) -> frozenset[str]:
    """One half (0 or 1) of `ids`, stratified by `strata` (id -> stratum) when given.

    Deterministic: within each stratum, ids are ordered by a hash of the id and dealt alternately
    to the halves, so each half holds about half of every stratum and the split never changes.
    """
    import hashlib

    def key(pid: str) -> tuple[str, bytes]:
        return ((strata or {}).get(pid, ""), hashlib.sha256(f"split\x1f{pid}".encode()).digest())

    by_stratum: dict[str, list[str]] = {}
    for pid in sorted(ids, key=key):
        by_stratum.setdefault(key(pid)[0], []).append(pid)
    return frozenset(pid for members in by_stratum.values() for i, pid in enumerate(members) if i % 2 == half)


def resolve_path(name: str, subsets: dict[str, frozenset[str]], strata: dict[str, str] | None = None) -> frozenset[str]:
    """Ids of a subset name, where `S/0/1` is half 1 of half 0 of subset S (see split_half)."""
    root, *halves = name.split(HALF_SEP)
    if root not in subsets:
        raise UserError(f"subset {name!r}: {root!r} is not a defined subset; defined: {sorted(subsets)}")
    ids = subsets[root]
    for bit in halves:
        if bit not in ("0", "1"):
            raise UserError(f"subset {name!r}: halves are written /0 or /1, got /{bit}")
        ids = split_half(ids, int(bit), strata)
    return ids
