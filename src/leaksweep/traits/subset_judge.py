"""Subsets defined by a judge: the judge of `subsets.NAME.judge`, and its verdicts cached once per sweep.

data.subsets computes a judge subset through a `judge_texts` callback (it must not import traits);
`SubsetJudges` is that callback. It builds the subset's judge through the judge registry (any kind a
trait can use: regex, module, autorater, ...) and keeps its verdicts in a VerdictCache keyed by
(judge id, prompt id, sha256 of the text), one file per subset in the sweep folder (judgments/NAME.jsonl):

* the study's prepare (under the folder's prepare lock) judges what is not cached and saves it
  (`SubsetJudges.for_prepare`);
* trials, in every worker process, only read those verdicts (`for_trials`): a text without one is an
  error, never a judge call, so no trial pays for a judge and every trial sees the same subset;
* outside a sweep folder (`leaksweep subsets FILE`, `mix`), verdicts are judged into memory, starting
  from the sweep folder's cache when it exists, and never written (`in_memory`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from leaksweep.config import SubsetRule
from leaksweep.errors import UserError
from leaksweep.traits.cache import VerdictCache
from leaksweep.traits.judges import BuiltJudge, Verdict, build_judge, parse_judge_value

RATE_ONLY_KINDS = ("rule", "regex")  # judge kinds that can only give a rate (0/1)


def subset_judge(name: str, rule: SubsetRule) -> BuiltJudge:
    """The judge of `subsets.NAME.judge`; a scale judge needs `threshold:`, a rate judge must not have one."""
    where = f"subsets.{name}"
    if rule.judge is None:
        raise UserError(f"{where}: not a judge subset")
    trait_kind = "scale" if rule.threshold is not None else None
    spec = parse_judge_value(rule.judge, name, trait_kind, section="subsets")
    if rule.threshold is not None and spec.judge_kind in RATE_ONLY_KINDS:
        raise UserError(
            f"{where}.threshold: the {spec.judge_kind} judge gives a rate (0 or 1): a prompt is in the subset "
            "when its verdict is 1; remove `threshold:`"
        )
    built = build_judge(spec)
    if built.trait_kind == "scale" and rule.threshold is None:
        raise UserError(
            f"{where}.threshold: the {spec.judge_kind} judge gives a scale (0..10); set `threshold:` "
            "(a prompt is in the subset when its verdict is at least the threshold)"
        )
    if built.trait_kind == "rate" and rule.threshold is not None:
        raise UserError(f"{where}.threshold: the {spec.judge_kind} judge gives a rate (0 or 1); remove `threshold:`")
    return built


class SubsetJudges:
    """The `judge_texts` callback of data.subsets.compute_subsets (see the module docstring).

    folder: where the per-subset caches live (a sweep's judgments/), or None for memory only.
    judge_missing: ask the judge about texts without a cached verdict (False: that is an error).
    save: write each subset's cache after judging it.
    """

    def __init__(self, folder: Path | None, judge_missing: bool = True, save: bool = False):
        self.folder = Path(folder) if folder is not None else None
        self.judge_missing = judge_missing
        self.save = save and self.folder is not None
        self.caches: dict[str, VerdictCache] = {}

    @classmethod
    def for_prepare(cls, judgments: Path) -> "SubsetJudges":
        return cls(judgments, judge_missing=True, save=True)

    @classmethod
    def for_trials(cls, judgments: Path) -> "SubsetJudges":
        return cls(judgments, judge_missing=False, save=False)

    @classmethod
    def in_memory(cls, judgments: Path | None = None) -> "SubsetJudges":
        """Judges into memory; starts from `judgments` (a sweep folder's caches) when that folder exists."""
        existing = judgments if judgments is not None and Path(judgments).is_dir() else None
        return cls(existing, judge_missing=True, save=False)

    def cache_path(self, name: str) -> Path | None:
        return self.folder / f"{name}.jsonl" if self.folder is not None else None

    def __call__(self, name: str, rule: SubsetRule, items: list[tuple[str, str, dict[str, Any]]]) -> dict[str, Verdict]:
        built = subset_judge(name, rule)
        if name not in self.caches:
            self.caches[name] = VerdictCache(self.cache_path(name))
        cache = self.caches[name]
        judge = built if self.judge_missing else self._cache_only(name, built)
        verdicts = cache.judge(judge, items)
        if self.save:
            cache.save()
        return {pid: verdict for (pid, _, _), verdict in zip(items, verdicts)}

    def _cache_only(self, name: str, built: BuiltJudge) -> BuiltJudge:
        """The judge with the same id, which fails instead of judging (trials read verdicts, never judge)."""
        path = self.cache_path(name)

        def refuse(items: list[tuple[str, dict[str, Any]]]) -> list[Verdict]:
            raise UserError(
                f"subsets.{name}.judge: {len(items)} text(s) have no cached verdict of {built.name} in {path}; "
                "a judge subset is judged once, by the sweep's prepare (`leaksweep sweep` / `leaksweep launch`), "
                "not by trials. Did the data or the judge change after the sweep was prepared? Prepare it again "
                "(or start a new sweep folder)"
            )

        return dataclasses.replace(built, judge=lambda response, meta: refuse([(response, meta)])[0], batch=refuse)
