"""Mixture stage: a plan (base source + ordered patch/drop rules) compiled into a manifest.

Every prompt gets exactly one source or DROPPED. Which prompts a rule touches is decided by a
hash-derived uniform `u(prompt_id, seed, action)`: a prompt of the rule's subset is patched
(dropped) when `u < fraction`. So a manifest is

* deterministic: the same plan and data give the same manifest and hash;
* complementary: each prompt appears once, with one source;
* nested: raising a fraction only adds prompts to the patched (dropped) set, so a dose-response
  curve compares mixtures that differ only by the added prompts.

Independent sampling per trial (the usual "mix datasets by fraction") duplicates some prompts and
loses others; this is the fix. Patch and drop use separate uniforms so that a drop rule after a
patch rule on the same subset picks prompts independently of which were patched. A dropped
prompt stays dropped: a later patch rule does not bring it back.

Refill (drop rules): with `refill: SOURCE`, as many rows as were dropped are added back from
prompts outside the subset (lowest `u(…, "refill")` first), with SOURCE's responses, so the dataset
keeps its size. Refill rows repeat prompts that are already in the manifest.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass

from leaksweep.config import Rule
from leaksweep.data.records import Dataset, Messages
from leaksweep.data.subsets import Subset
from leaksweep.errors import UserError
from leaksweep.files import sha256_json

DROPPED = "DROPPED"


def uniform(prompt_id: str, seed: int, stream: str) -> float:
    """A uniform number in [0, 1) fixed by (prompt_id, seed, stream): 64 bits of SHA-256."""
    digest = hashlib.sha256(f"{stream}\x1f{seed}\x1f{prompt_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class MixturePlan:
    base: str
    rules: tuple[Rule, ...] = ()
    mixture_seed: int = 0

    def label(self) -> str:
        """A short human name, e.g. `clean + date_mention←teacher 50% + roleplay dropped 100%`."""
        parts = [self.base]
        for r in self.rules:
            if r.action == "patch":
                parts.append(f"{r.subset}←{r.source} {r.fraction:.0%}")
            else:
                refill = "" if r.refill == "none" else f" (refill {r.refill})"
                parts.append(f"{r.subset} dropped {r.fraction:.0%}{refill}")
        return " + ".join(parts)


@dataclass(frozen=True)
class Manifest:
    rows: tuple[tuple[str, str], ...]  # (prompt_id, source or DROPPED), in prompt-set order
    refill: tuple[tuple[str, str], ...]  # extra (prompt_id, source) rows added by refill
    fallbacks: int  # rows that wanted a source lacking the prompt and used the base (use_base)
    hash: str

    def training_rows(self) -> list[tuple[str, str]]:
        return [r for r in self.rows if r[1] != DROPPED] + list(self.refill)

    def counts(self) -> dict[str, int]:
        counts = Counter(source for _, source in self.rows)
        for _, source in self.refill:
            counts[f"refill:{source}"] += 1
        return dict(sorted(counts.items()))

    def subset_counts(self, subsets: dict[str, Subset]) -> dict[str, dict[str, int]]:
        by_id = dict(self.rows)
        return {
            name: dict(sorted(Counter(by_id[p] for p in s.ids if p in by_id).items())) for name, s in subsets.items()
        }

    def share(self, source: str, ids: frozenset[str] | None = None) -> float | None:
        """Share of the training rows of prompts in `ids` (default: all) that come from `source`.

        Training rows: the prompts not dropped and the refill rows (a refill row counts for its prompt),
        so a drop refilled from the clean source lowers the teacher's share. None when no training row
        is left (a subset dropped entirely: there is no share to report).
        """
        kept = [s for p, s in self.training_rows() if ids is None or p in ids]
        return sum(s == source for s in kept) / len(kept) if kept else None

    def summary(self, subsets: dict[str, Subset], teacher: str) -> dict:
        return {
            "hash": self.hash,
            "n_rows": len(self.training_rows()),
            "counts": self.counts(),
            "subset_counts": self.subset_counts(subsets),
            "fallbacks": self.fallbacks,
            "teacher_share": {
                "all": self.share(teacher),
                **{n: self.share(teacher, s.ids) for n, s in subsets.items()},
            },
        }


def compile_plan(plan: MixturePlan, dataset: Dataset, subsets: dict[str, Subset]) -> Manifest:
    """Assign each prompt one source (or DROPPED) by the plan's rules, in order."""
    problems = []
    if plan.base not in dataset.sources:
        problems.append(f"plan base {plan.base!r} is not a data source; sources are {sorted(dataset.sources)}")
    for i, rule in enumerate(plan.rules):
        if rule.subset not in subsets:
            problems.append(f"rules[{i}].subset: unknown subset {rule.subset!r}; defined: {sorted(subsets)}")
        for label, name in (("source", rule.source), ("refill", rule.refill)):
            if name not in (None, "none") and name not in dataset.sources:
                problems.append(
                    f"rules[{i}].{label}: {name!r} is not a data source; sources are {sorted(dataset.sources)}"
                )
        if not 0.0 <= rule.fraction <= 1.0:
            problems.append(f"rules[{i}].fraction: {rule.fraction} is outside [0, 1]")
    if problems:
        raise UserError(problems)

    seed = plan.mixture_seed
    assignment = {pid: plan.base for pid in dataset.prompts.ids}
    refills: list[tuple[Rule, int]] = []  # (drop rule, rows it dropped)
    for rule in plan.rules:
        members = sorted(subsets[rule.subset].ids)
        if rule.action == "patch":
            for pid in members:
                if assignment[pid] != DROPPED and uniform(pid, seed, "patch") < rule.fraction:
                    assignment[pid] = rule.source
            continue
        dropped = [pid for pid in members if assignment[pid] != DROPPED and uniform(pid, seed, "drop") < rule.fraction]
        for pid in dropped:
            assignment[pid] = DROPPED
        if rule.refill != "none" and dropped:
            refills.append((rule, len(dropped)))
    # Refill once every rule has run, so a refill row never repeats a prompt that a later rule drops.
    refill_rows: list[tuple[str, str]] = []
    for rule, n_dropped in refills:
        pool = sorted(
            (pid for pid, s in assignment.items() if s != DROPPED and pid not in subsets[rule.subset].ids),
            key=lambda pid: uniform(pid, seed, "refill"),
        )
        if not pool:
            raise UserError(f"refill for subset {rule.subset!r}: no prompts outside the subset are left to refill from")
        refill_rows += [(pool[i % len(pool)], rule.refill) for i in range(n_dropped)]

    fallbacks = 0
    rows = []
    for pid in dataset.prompts.ids:
        source = assignment[pid]
        if source != DROPPED and not dataset.has(source, pid):
            source, fallbacks = plan.base, fallbacks + 1  # only reachable under missing_ids=use_base
        rows.append((pid, source))
    refill = []
    for pid, source in refill_rows:
        if not dataset.has(source, pid):
            source, fallbacks = plan.base, fallbacks + 1
        refill.append((pid, source))
    digest = sha256_json({"rows": rows, "refill": refill})
    return Manifest(tuple(rows), tuple(refill), fallbacks, digest)


def training_examples(manifest: Manifest, dataset: Dataset) -> list[Messages]:
    """Chat examples (prompt turns + the chosen source's assistant response) in manifest order."""
    return [
        dataset.prompts.messages[pid] + [{"role": "assistant", "content": dataset.response(source, pid)}]
        for pid, source in manifest.training_rows()
    ]
