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

import functools
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from leaksweep.config import SUBSET_SET_OPS, SubsetRule
from leaksweep.data.dataset import SOURCE_PREFIX, Dataset
from leaksweep.errors import UserError
from leaksweep.files import read_utf8, sha256_json

# (subset name, its rule, [(prompt id, text, the prompt's metadata)]) -> {prompt id: verdict}, where a
# verdict has `.value` (None: unjudged) and `.reason`; a prompt missing from the answer counts as unjudged.
JudgeTexts = Callable[[str, SubsetRule, list[tuple[str, str, dict[str, Any]]]], Mapping[str, Any]]


class Subset:
    """A named, frozen set of prompts: its ids, or its row positions in a dataset (each gives the other)."""

    def __init__(
        self,
        name: str,
        ids: frozenset[str] | None,
        rule: str,
        hash: str | None = None,
        n_unjudged: int | None = None,  # judge subsets: texts the judge could not judge (left out); None otherwise
        n_judged_texts: int = 0,  # judge subsets: texts sent to the judge
        unjudged_reasons: tuple[tuple[str, int], ...] = (),  # (reason, count), most frequent first
        *,
        index: np.ndarray | None = None,  # sorted row positions in `dataset`
        dataset: Dataset | None = None,
    ):
        if ids is None and (index is None or dataset is None):
            raise ValueError("a Subset needs its ids, or its positions and their dataset")
        self.name, self.rule = name, rule
        self.n_unjudged, self.n_judged_texts, self.unjudged_reasons = n_unjudged, n_judged_texts, unjudged_reasons
        self._ids, self._hash, self._index, self._dataset = ids, hash, index, dataset

    @property
    def ids(self) -> frozenset[str]:
        if self._ids is None:
            self._ids = frozenset(self._dataset.ids_at(self._index))
        return self._ids

    @property
    def hash(self) -> str:
        """16 hex digits of SHA-256 over the sorted ids."""
        if self._hash is None:
            self._hash = sha256_json(sorted(self.ids))
        return self._hash

    def positions(self, dataset: Dataset) -> np.ndarray:
        """Sorted row positions of the subset's prompts in `dataset`."""
        if self._index is not None and dataset is self._dataset:
            return self._index
        index = dataset.positions(self.ids)
        if self._dataset is None:
            self._index, self._dataset = index, dataset
        return index

    def __len__(self) -> int:
        return len(self._index) if self._index is not None else len(self._ids)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Subset):
            return NotImplemented
        described = (self.name, self.rule, self.n_unjudged, self.n_judged_texts, self.unjudged_reasons)
        if described != (other.name, other.rule, other.n_unjudged, other.n_judged_texts, other.unjudged_reasons):
            return False
        if self._dataset is not None and self._dataset is other._dataset:
            return np.array_equal(self._index, other._index)
        return self.ids == other.ids

    __hash__ = None  # compared by content; not a dict key

    def __repr__(self) -> str:
        return f"Subset({self.name!r}, {len(self)} prompts, {self.rule!r})"


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


def _listed_positions(listed: list[str], dataset: Dataset, where: str) -> np.ndarray:
    found = pc.index_in(pa.array(listed, pa.string()), dataset.column("prompt_id"))
    unknown = [i for i, at in zip(listed, found.to_pylist()) if at is None]
    if unknown:
        raise UserError(f"{where}: {len(unknown)} id(s) not in the prompt set (first: {', '.join(unknown[:3])})")
    return np.unique(found.to_numpy(zero_copy_only=False).astype(np.int64))


def _text_column(name: str, rule: SubsetRule, dataset: Dataset) -> str:
    """The column a regex, keyword or judge rule looks at: the prompt text or a source's responses."""
    if rule.text != "response":
        return "text"
    if rule.source not in dataset.source_names:
        raise UserError(
            f"subsets.{name}.source: {rule.source!r} is not a data source; sources are {sorted(dataset.source_names)}"
        )
    return SOURCE_PREFIX + rule.source


def _matching(name: str, rule: SubsetRule, dataset: Dataset) -> np.ndarray:
    match = _matcher(name, rule)
    hits = []
    for start, chunk in dataset.texts(_text_column(name, rule, dataset)):
        hits += [start + i for i, text in enumerate(chunk) if text is not None and match(text)]
    return np.array(hits, dtype=np.int64)


def _judged(name: str, rule: SubsetRule, dataset: Dataset, judge_texts: JudgeTexts | None) -> dict[str, Any]:
    """A judge subset's positions and its unjudged count: the prompts whose verdict is 1 (or >= threshold);
    prompts without a response (a source lacking them) are left out."""
    if judge_texts is None:
        raise UserError(
            f"subsets.{name}.judge: a subset defined by a judge needs the judge, which was not supplied here; "
            "compute subsets through leaksweep (trial.prepare_data, `leaksweep subsets`), which builds it"
        )
    items, at = [], []
    for start, chunk in dataset.texts(_text_column(name, rule, dataset)):
        for i, text in enumerate(chunk):
            if text is None:
                continue
            meta = dataset.metadata_at(start + i)
            if rule.text == "response":
                meta.setdefault("prompt", dataset.text_at(start + i))
            items.append((dataset.id_list[start + i], text, meta))
            at.append(start + i)
    verdicts = judge_texts(name, rule, items)
    threshold = rule.threshold if rule.threshold is not None else 1.0
    hits = []
    reasons: Counter[str] = Counter()
    for (pid, _, _), position in zip(items, at):
        verdict = verdicts.get(pid)
        value = getattr(verdict, "value", None)
        if value is None:
            reasons[str(getattr(verdict, "reason", "") or "no verdict")] += 1
        elif value >= threshold:
            hits.append(position)
    n_unjudged = sum(reasons.values())
    if items and n_unjudged / len(items) > rule.max_unjudged_share:
        top = "; ".join(f"{r} ({n})" for r, n in reasons.most_common(3))
        raise UserError(
            f"subsets.{name}.judge: {n_unjudged} of {len(items)} texts ({n_unjudged / len(items):.1%}) could not be "
            f"judged, above max_unjudged_share {rule.max_unjudged_share:g}; reasons: {top}. Fix the judge "
            "(its endpoint, model or rubric) or raise `max_unjudged_share:`"
        )
    return {
        "index": np.array(hits, dtype=np.int64),
        "n_unjudged": n_unjudged,
        "n_judged_texts": len(items),
        "unjudged_reasons": tuple(reasons.most_common()),
    }


def _combined(name: str, rule: SubsetRule, others: Mapping[str, Subset], dataset: Dataset) -> np.ndarray:
    kind = rule.kind()
    operands = rule.operands()
    missing = [n for n in operands if n not in others]
    if missing:
        raise UserError(
            f"subsets.{name}.{kind}: {', '.join(map(repr, missing))} is not a defined subset; defined: {sorted(others)}"
        )
    first, *rest = [others[n].positions(dataset) for n in operands]
    if kind == "union":
        return functools.reduce(np.union1d, rest, first)
    if kind == "intersection":
        return functools.reduce(np.intersect1d, rest, first)
    return np.setdiff1d(first, functools.reduce(np.union1d, rest, np.zeros(0, np.int64)))


def _metadata_fits(rule: SubsetRule, dataset: Dataset) -> np.ndarray:
    """Positions whose metadata equals every wanted value (or one of a listed set), compared as Python
    values: each column's distinct values are decoded once, then matched row-wise in Arrow."""
    fits = np.ones(dataset.n, dtype=bool)
    for key, wanted in rule.metadata.items():
        column = dataset.meta_column(key)
        accepted = wanted if isinstance(wanted, list) else [wanted]
        if column is None:
            fits &= any(v is None for v in accepted)
            continue
        decode = json.loads if dataset.meta_is_json(key) else (lambda v: v)
        try:
            distinct = pc.unique(column).drop_null()
        except pa.ArrowNotImplementedError:  # nested values (lists, objects): compare row by row
            values = [None if v is None else decode(v) for v in column.to_pylist()]
            fits &= np.array([v in accepted for v in values], dtype=bool)
            continue
        matching = [v for v in distinct.to_pylist() if decode(v) in accepted]
        row_fits = pc.is_in(column, value_set=pa.array(matching, distinct.type)).fill_null(False)
        if any(v is None for v in accepted):
            row_fits = pc.or_(row_fits, pc.is_null(column))
        fits &= np.asarray(row_fits.to_numpy(zero_copy_only=False), dtype=bool)
    return np.flatnonzero(fits)


def compute_subset(
    name: str,
    rule: SubsetRule,
    dataset: Dataset,
    judge_texts: JudgeTexts | None = None,
    others: Mapping[str, Subset] | None = None,
) -> Subset:
    """One subset. A judge rule needs `judge_texts`; a union, intersection or difference needs the
    subsets it names in `others` (compute_subsets computes them first)."""
    kind = rule.kind()
    extra: dict[str, Any] = {}
    if kind in ("regex", "keyword"):
        # saved in the data cache: trials read the positions instead of matching a million texts again
        index = dataset.cached_array(f"subset-{sha256_json(repr(rule))}.npy", lambda: _matching(name, rule, dataset))
    elif kind == "judge":
        extra = _judged(name, rule, dataset, judge_texts)
        index = extra.pop("index")
    elif kind in SUBSET_SET_OPS:
        index = _combined(name, rule, others or {}, dataset)
    elif kind == "metadata":
        index = _metadata_fits(rule, dataset)
    elif kind == "ids":
        index = _listed_positions([str(i) for i in rule.ids], dataset, f"subsets.{name}.ids")
    else:
        try:
            listed = [line.strip() for line in read_utf8(Path(rule.ids_file)).splitlines() if line.strip()]
        except OSError as exc:
            raise UserError(f"subsets.{name}.ids_file: cannot read {rule.ids_file} ({exc.strerror})") from exc
        index = _listed_positions(listed, dataset, f"subsets.{name}.ids_file ({rule.ids_file})")
    description = describe_rule(rule)
    if not len(index):
        fix = (
            "check the subsets it combines"
            if kind in SUBSET_SET_OPS
            else "check the pattern, judge, field name or value"
        )
        if kind == "metadata":
            fix = f"{metadata_found(dataset, rule.metadata)}; check the field name or value"
        raise UserError(f"subsets.{name}: {description} matches none of the {dataset.n} prompts; {fix}")
    return Subset(name, None, description, None, index=np.asarray(index, dtype=np.int64), dataset=dataset, **extra)


def metadata_found(dataset: Dataset, wanted: Mapping[str, Any], shown: int = 5) -> str:
    """What the prompts' metadata holds, for a metadata rule that matched none: each key the rule names
    that no prompt has, every key found, and a few values of each."""
    values: dict[str, list[str]] = {}
    for key in dataset.meta_keys:
        column = dataset.meta_column(key)
        try:
            distinct = pc.unique(column).drop_null().to_pylist()
        except pa.ArrowNotImplementedError:
            distinct = [v for v in column.to_pylist() if v is not None]
        decode = json.loads if dataset.meta_is_json(key) else (lambda v: v)
        if distinct:
            values[key] = sorted({repr(decode(v)) for v in distinct})

    def few(key: str) -> str:
        found = values[key]
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


def overlap_matrix(subsets: dict[str, Subset], dataset: Dataset) -> dict[str, dict[str, int]]:
    """Number of prompts shared by each pair of subsets (the diagonal is each subset's size)."""
    at = {name: s.positions(dataset) for name, s in subsets.items()}
    return {a: {b: len(np.intersect1d(at[a], at[b], assume_unique=True)) for b in at} for a in at}


def subsets_table(subsets: dict[str, Subset], dataset: Dataset) -> str:
    """A plain-text table: size, share of the prompt set, hash, rule; then the overlap matrix."""
    if not subsets:
        return "no subsets defined"
    n_prompts = dataset.n
    width = max(len(n) for n in subsets) + 2
    lines = [f"{'subset':<{width}}{'size':>7}{'share':>9}  {'hash':<17}rule"]
    for name, s in subsets.items():
        lines.append(f"{name:<{width}}{len(s):>7}{len(s) / n_prompts:>9.2%}  {s.hash:<17}{s.rule}")
    in_any = len(functools.reduce(np.union1d, (s.positions(dataset) for s in subsets.values())))
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
    for a, row in overlap_matrix(subsets, dataset).items():
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
