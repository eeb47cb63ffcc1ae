"""Trait eval sets: held-out eval prompts + the generation protocol + the judge, as one Trait.

Eval prompts come from the trait's `prompts:` file, or for a built-in trait from the demo world's
reserved eval prompts. Any eval prompt whose user text also occurs among the training prompts is
dropped (and counted), so a trait never scores the student on what it was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from leaksweep.config import TraitConfig
from leaksweep.data.dataset import text_key, user_text
from leaksweep.data.records import Messages, prompt_messages, read_records
from leaksweep.data.world import BUILTIN_EVAL_TRAITS, eval_prompts
from leaksweep.errors import UserError
from leaksweep.traits.judges import BuiltJudge, Judge, make_judge


@dataclass(frozen=True)
class EvalPrompt:
    prompt_id: str
    messages: Messages
    meta: dict[str, Any]


@dataclass(frozen=True)
class Trait:
    name: str
    kind: str  # "rate" or "scale"
    built: BuiltJudge  # the judge with its identity (recorded with every score) and its batch call
    prompts: tuple[EvalPrompt, ...]
    protocol: TraitConfig
    n_removed_as_duplicates: int

    @property
    def judge(self) -> Judge:
        return self.built.judge

    @property
    def judge_name(self) -> str:
        return self.built.name  # e.g. rule:date_confusion@rule-v1


def _eval_records(name: str, cfg: TraitConfig) -> list[EvalPrompt]:
    if cfg.prompts:
        rows = read_records(cfg.prompts)
        return [
            EvalPrompt(
                str(r.get("prompt_id", f"{name}-{i}")),
                prompt_messages(r, f"{cfg.prompts}: record {i + 1}"),
                {k: v for k, v in r.items() if k not in ("prompt_id", "messages", "prompt")},
            )
            for i, r in enumerate(rows)
        ]
    if name in BUILTIN_EVAL_TRAITS:
        return [
            EvalPrompt(
                r["prompt_id"],
                r["messages"],
                {k: v for k, v in r.items() if k not in ("prompt_id", "messages") and not k.startswith("_")},
            )
            for r in eval_prompts(name, 4 * cfg.n_prompts)
        ]
    raise UserError(f"traits.{name}.prompts: a user-defined trait needs a file of eval prompts")


def build_trait(name: str, cfg: TraitConfig, training_keys: np.ndarray) -> Trait:
    """Resolve a trait's judge and eval prompts; drop eval prompts that occur among training prompts
    (`training_keys`: the sorted `text_key` of every training prompt, see data.dataset)."""
    built = make_judge(name, cfg)
    records = _eval_records(name, cfg)
    keys = np.array([text_key(user_text(p.messages)) for p in records], dtype=np.int64)
    at = np.searchsorted(training_keys, keys).clip(0, max(len(training_keys) - 1, 0))
    seen = training_keys[at] == keys if len(training_keys) else np.zeros(len(keys), bool)
    kept = [p for p, repeated in zip(records, seen.tolist()) if not repeated]
    if not kept:
        raise UserError(
            f"traits.{name}: every eval prompt also occurs among the training prompts; use held-out prompts"
        )
    return Trait(name, built.trait_kind, built, tuple(kept[: cfg.n_prompts]), cfg, len(records) - len(kept))


def build_traits(cfgs: dict[str, TraitConfig], training_prompts: list[str] | np.ndarray) -> dict[str, Trait]:
    """Every trait; `training_prompts` is the training prompts' texts, or their sorted text keys
    (`Dataset.text_keys()`, cached with the data so a million prompts are not folded per trial)."""
    if isinstance(training_prompts, np.ndarray):
        keys = training_prompts
    else:
        keys = np.sort(np.array([text_key(t) for t in training_prompts], dtype=np.int64))
    return {name: build_trait(name, cfg, keys) for name, cfg in cfgs.items()}
