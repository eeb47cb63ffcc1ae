"""Subsets stage: named, frozen sets of prompt ids defined by rules.

A rule is a regex or keyword list on the prompt text or on a named source's response, a metadata
field equality, or an id list (inline or a file with one id per line). A subset that matches
nothing is an error: it is almost always a typo in the pattern or field name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from leaksweep.config import SubsetRule
from leaksweep.data.records import Dataset
from leaksweep.errors import UserError
from leaksweep.files import sha256_json


@dataclass(frozen=True)
class Subset:
    name: str
    ids: frozenset[str]
    rule: str  # a one-line description of the defining rule
    hash: str

    def __len__(self) -> int:
        return len(self.ids)


def describe_rule(rule: SubsetRule) -> str:
    kind = rule.kind()
    where = f" on {rule.source}'s response" if rule.text == "response" else " on the prompt"
    if kind == "regex":
        return f"regex {rule.regex!r}{where}"
    if kind == "keyword":
        return f"keyword any of {rule.keyword}{where}"
    if kind == "metadata":
        return "metadata " + ", ".join(f"{k} = {v!r}" for k, v in rule.metadata.items())
    if kind == "ids":
        return f"{len(rule.ids)} listed ids"
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


def compute_subset(name: str, rule: SubsetRule, dataset: Dataset) -> Subset:
    prompts = dataset.prompts
    kind = rule.kind()
    if kind in ("regex", "keyword"):
        match = _matcher(name, rule)
        if rule.text == "response":
            if rule.source not in dataset.sources:
                raise UserError(
                    f"subsets.{name}.source: {rule.source!r} is not a data source; sources are {sorted(dataset.sources)}"
                )
            responses = dataset.sources[rule.source]
            ids = {p for p in prompts.ids if p in responses and match(responses[p])}
        else:
            ids = {p for p in prompts.ids if match(prompts.text(p))}
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
            listed = [line.strip() for line in Path(rule.ids_file).read_text().splitlines() if line.strip()]
        except OSError as exc:
            raise UserError(f"subsets.{name}.ids_file: cannot read {rule.ids_file} ({exc.strerror})") from exc
        ids = _ids_from_list(name, listed, dataset, f"subsets.{name}.ids_file ({rule.ids_file})")
    description = describe_rule(rule)
    if not ids:
        raise UserError(
            f"subsets.{name}: {description} matches none of the {len(prompts.ids)} prompts; "
            "check the pattern, field name or value"
        )
    return Subset(name, frozenset(ids), description, sha256_json(sorted(ids)))


def compute_subsets(rules: dict[str, SubsetRule], dataset: Dataset) -> dict[str, Subset]:
    return {name: compute_subset(name, rule, dataset) for name, rule in rules.items()}


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
