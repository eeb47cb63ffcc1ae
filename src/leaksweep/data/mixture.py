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

Compiled on row positions with numpy (the uniforms are cached per dataset), so a million-prompt
manifest compiles in well under a second; `tests/data/test_mixture.py` checks it against the plain
per-prompt definition above, manifest and hash, bit for bit.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from leaksweep.config import Rule
from leaksweep.data.dataset import Dataset, Messages, string_bytes, uniform
from leaksweep.data.subsets import Subset
from leaksweep.errors import UserError

DROPPED = "DROPPED"
DROPPED_CODE = -1
__all__ = ["DROPPED", "Manifest", "MixturePlan", "compile_plan", "training_examples", "uniform"]


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


@dataclass(frozen=True, eq=False)
class Manifest:
    """Each prompt's source (a code into `dataset.source_names`, -1 for DROPPED) and the refill rows."""

    dataset: Dataset
    codes: np.ndarray  # int16 per prompt, prompt-set order
    refill_positions: np.ndarray  # int64 row positions of the refill rows, in order
    refill_codes: np.ndarray  # int16 source codes of the refill rows
    fallbacks: int  # rows that wanted a source lacking the prompt and used the base (use_base)
    hash: str

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Manifest)
            and self.dataset.fingerprint() == other.dataset.fingerprint()
            and np.array_equal(self.codes, other.codes)
            and np.array_equal(self.refill_positions, other.refill_positions)
            and np.array_equal(self.refill_codes, other.refill_codes)
            and (self.fallbacks, self.hash) == (other.fallbacks, other.hash)
        )

    __hash__ = None  # mutable arrays inside: not hashable

    def source_of(self, code: int) -> str:
        return DROPPED if code == DROPPED_CODE else self.dataset.source_names[code]

    @property
    def rows(self) -> tuple[tuple[str, str], ...]:
        """(prompt_id, source or DROPPED) in prompt-set order (small uses: it builds Python tuples)."""
        names = self.dataset.source_names
        return tuple(
            (pid, DROPPED if c == DROPPED_CODE else names[c])
            for pid, c in zip(self.dataset.id_list, self.codes.tolist())
        )

    @property
    def refill(self) -> tuple[tuple[str, str], ...]:
        ids = self.dataset.ids_at(self.refill_positions)
        return tuple((pid, self.dataset.source_names[c]) for pid, c in zip(ids, self.refill_codes.tolist()))

    def training_positions(self) -> tuple[np.ndarray, np.ndarray]:
        """(row positions, source codes) of the training rows: the kept prompts in order, then the refill."""
        kept = np.flatnonzero(self.codes != DROPPED_CODE)
        return (
            np.concatenate([kept, self.refill_positions]).astype(np.int64),
            np.concatenate([self.codes[kept], self.refill_codes]).astype(np.int16),
        )

    def training_rows(self) -> list[tuple[str, str]]:
        return [r for r in self.rows if r[1] != DROPPED] + list(self.refill)

    def counts(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        values, n = np.unique(self.codes, return_counts=True)
        for code, count in zip(values.tolist(), n.tolist()):
            counts[self.source_of(code)] += count
        values, n = np.unique(self.refill_codes, return_counts=True)
        for code, count in zip(values.tolist(), n.tolist()):
            counts[f"refill:{self.source_of(code)}"] += count
        return dict(sorted(counts.items()))

    def subset_counts(self, subsets: dict[str, Subset]) -> dict[str, dict[str, int]]:
        out = {}
        for name, s in subsets.items():
            values, n = np.unique(self.codes[s.positions(self.dataset)], return_counts=True)
            out[name] = dict(sorted((self.source_of(c), k) for c, k in zip(values.tolist(), n.tolist())))
        return out

    def share(self, source: str, subset: Subset | None = None) -> float | None:
        """Share of the training rows of prompts in `subset` (default: all) that come from `source`.

        Training rows: the prompts not dropped and the refill rows (a refill row counts for its prompt),
        so a drop refilled from the clean source lowers the teacher's share. None when no training row
        is left (a subset dropped entirely: there is no share to report).
        """
        positions, codes = self.training_positions()
        if subset is not None:
            inside = np.zeros(self.dataset.n, dtype=bool)
            inside[subset.positions(self.dataset)] = True
            codes = codes[inside[positions]]
        if not len(codes):
            return None
        if source not in self.dataset.source_names:
            return 0.0
        return float(np.count_nonzero(codes == self.dataset.source_names.index(source)) / len(codes))

    def summary(self, subsets: dict[str, Subset], teacher: str) -> dict:
        return {
            "hash": self.hash,
            "n_rows": int(np.count_nonzero(self.codes != DROPPED_CODE) + len(self.refill_codes)),
            "counts": self.counts(),
            "subset_counts": self.subset_counts(subsets),
            "fallbacks": self.fallbacks,
            "teacher_share": {
                "all": self.share(teacher),
                **{n: self.share(teacher, s) for n, s in subsets.items()},
            },
        }


def check_plan(plan: MixturePlan, dataset: Dataset, subsets: dict[str, Subset]) -> None:
    problems = []
    sources = dataset.source_names
    if plan.base not in sources:
        problems.append(f"plan base {plan.base!r} is not a data source; sources are {sorted(sources)}")
    for i, rule in enumerate(plan.rules):
        if rule.subset not in subsets:
            problems.append(f"rules[{i}].subset: unknown subset {rule.subset!r}; defined: {sorted(subsets)}")
        for label, name in (("source", rule.source), ("refill", rule.refill)):
            if name not in (None, "none") and name not in sources:
                problems.append(f"rules[{i}].{label}: {name!r} is not a data source; sources are {sorted(sources)}")
        if not 0.0 <= rule.fraction <= 1.0:
            problems.append(f"rules[{i}].fraction: {rule.fraction} is outside [0, 1]")
    if problems:
        raise UserError(problems)


def compile_plan(plan: MixturePlan, dataset: Dataset, subsets: dict[str, Subset]) -> Manifest:
    """Assign each prompt one source (or DROPPED) by the plan's rules, in order."""
    check_plan(plan, dataset, subsets)
    names = dataset.source_names
    seed = plan.mixture_seed
    codes = np.full(dataset.n, names.index(plan.base), dtype=np.int16)
    refills: list[tuple[Rule, int]] = []  # (drop rule, rows it dropped)
    for rule in plan.rules:
        members = subsets[rule.subset].positions(dataset)
        live = members[codes[members] != DROPPED_CODE]
        if rule.action == "patch":
            codes[live[dataset.uniforms(seed, "patch")[live] < rule.fraction]] = names.index(rule.source)
            continue
        dropped = live[dataset.uniforms(seed, "drop")[live] < rule.fraction]
        codes[dropped] = DROPPED_CODE
        if rule.refill != "none" and len(dropped):
            refills.append((rule, len(dropped)))
    # Refill once every rule has run, so a refill row never repeats a prompt that a later rule drops.
    refill_positions, refill_codes = [], []
    for rule, n_dropped in refills:
        outside = np.ones(dataset.n, dtype=bool)
        outside[subsets[rule.subset].positions(dataset)] = False
        pool = np.flatnonzero((codes != DROPPED_CODE) & outside)
        if not len(pool):
            raise UserError(f"refill for subset {rule.subset!r}: no prompts outside the subset are left to refill from")
        pool = pool[np.argsort(dataset.uniforms(seed, "refill")[pool], kind="stable")]
        refill_positions.append(pool[np.arange(n_dropped) % len(pool)])
        refill_codes.append(np.full(n_dropped, names.index(rule.refill), dtype=np.int16))
    refill_at = np.concatenate(refill_positions) if refill_positions else np.zeros(0, np.int64)
    refill_code = np.concatenate(refill_codes) if refill_codes else np.zeros(0, np.int16)

    fallbacks = _fall_back(dataset, codes, np.arange(dataset.n), names.index(plan.base))
    fallbacks += _fall_back(dataset, refill_code, refill_at, names.index(plan.base))
    return Manifest(
        dataset, codes, refill_at, refill_code, fallbacks, manifest_hash(dataset, codes, refill_at, refill_code)
    )


def _fall_back(dataset: Dataset, codes: np.ndarray, positions: np.ndarray, base_code: int) -> int:
    """Rows whose source lacks the prompt take the base (only reachable under missing_ids=use_base)."""
    lacking = np.zeros(len(codes), dtype=bool)
    for code, name in enumerate(dataset.source_names):
        lacking |= (codes == code) & ~dataset.has_mask(name)[positions]
    codes[lacking] = base_code
    return int(lacking.sum())


def manifest_hash(dataset: Dataset, codes: np.ndarray, refill_at: np.ndarray, refill_code: np.ndarray) -> str:
    """sha256_json({"rows": [[id, source], ...], "refill": [[id, source], ...]}), streamed from the
    dataset's JSON-encoded ids instead of building a million-element Python list first."""
    labels = [json.dumps(DROPPED)] + [json.dumps(n) for n in dataset.source_names]  # code -1 -> labels[0]
    digest = hashlib.sha256(b'{"refill":[')
    _feed_rows(digest, dataset, refill_at, refill_code, labels)
    digest.update(b'],"rows":[')
    _feed_rows(digest, dataset, np.arange(dataset.n), codes, labels)
    digest.update(b"]}")
    return digest.hexdigest()[:16]


def _feed_rows(digest, dataset: Dataset, positions: np.ndarray, codes: np.ndarray, labels: list[str]) -> None:
    ids_json = dataset.column("prompt_id_json")
    step = 1 << 18
    for start in range(0, len(positions), step):
        at = positions[start : start + step]
        if len(at) == len(ids_json) and start == 0 and np.array_equal(at, np.arange(len(at))):
            ids = ids_json.combine_chunks()
        else:
            ids = ids_json.take(pa.array(at, pa.int64())).combine_chunks()
        label = pa.array(labels, pa.string()).take(pa.array(codes[start : start + step].astype(np.int64) + 1))
        row = pc.binary_join_element_wise("[", ids, ",", label, "],", "")
        joined = string_bytes(row)
        if start + step >= len(positions):
            joined = joined[:-1]  # no comma after the last row
        digest.update(joined)


def training_examples(manifest: Manifest, dataset: Dataset) -> list[Messages]:
    """Chat examples (prompt turns + the chosen source's assistant response) in manifest order."""
    positions, codes = manifest.training_positions()
    names = dataset.source_names
    return [dataset.conversation(names[c], p) for p, c in zip(positions.tolist(), codes.tolist())]
