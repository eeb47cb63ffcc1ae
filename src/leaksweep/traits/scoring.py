"""Trait scoring: judge every sample, then a score with its interval (Wilson for a rate, a bootstrap
over eval prompts for a scale).

Generation is handed in as a function (the trial passes the trained model's `generate`), so this
room never imports the model stack and its judges are unit-testable on strings.
"""

from __future__ import annotations

from collections import Counter
from typing import Protocol

from leaksweep.data.records import Messages
from leaksweep.errors import UserError
from leaksweep.stats import cluster_bootstrap, wilson
from leaksweep.traits.cache import VerdictCache
from leaksweep.traits.evalset import Trait
from leaksweep.traits.validation import calibrated


class Generate(Protocol):
    def __call__(
        self,
        prompts: list[Messages],
        samples_per_prompt: int,
        temperature: float,
        max_new_tokens: int,
        batch_size: int,
        seed: int,
        desc: str,
    ) -> list[list[str]]: ...


def score(
    trait: Trait, responses: list[list[str]], seed: int = 0, cache: VerdictCache | None = None
) -> tuple[dict, list[dict]]:
    """Judge every sample (through `cache`: a verdict already given by the same judge is not asked
    again); return the trait score with its interval and one record per sample.

    Unjudged samples (value None) are left out of the score and counted with their reasons; a trait
    whose unjudged share exceeds `max_unjudged_share` fails the trial instead of scoring what is left.
    """
    items = [(p, i, r) for p, outs in zip(trait.prompts, responses, strict=True) for i, r in enumerate(outs)]
    verdicts = (cache if cache is not None else VerdictCache()).judge(
        trait.built, [(p.prompt_id, r, p.meta) for p, _, r in items]
    )
    samples = [
        {
            "trait": trait.name,
            "prompt_id": p.prompt_id,
            "sample": i,
            "prompt": p.messages[-1]["content"],
            "response": r,
            "value": v.value,
            "reason": v.reason,
        }
        for (p, i, r), v in zip(items, verdicts)
    ]
    return score_samples(trait, samples, seed), samples


def score_samples(trait: Trait, samples: list[dict], seed: int = 0) -> dict:
    """The trait's score from judged sample records (what `score` writes to samples.jsonl): a Wilson
    interval for a rate, a bootstrap over eval prompts for a scale, over the judged samples only."""
    clusters: dict[str, list[float]] = {p.prompt_id: [] for p in trait.prompts}
    unjudged: Counter[str] = Counter()
    for s in samples:
        if s["value"] is None:
            unjudged[s["reason"]] += 1
        else:
            clusters.setdefault(s["prompt_id"], []).append(float(s["value"]))
    judged = [c for c in clusters.values() if c]  # a prompt none of whose samples was judged drops out
    flat = [v for c in judged for v in c]
    _check_unjudged(trait, len(samples), unjudged)
    if trait.kind == "rate":
        value, low, high = wilson(int(sum(flat)), len(flat))
        interval = "wilson95"
    else:
        value, low, high = cluster_bootstrap(judged, seed=seed)
        interval = "prompt_bootstrap95"
    out = {
        "kind": trait.kind,
        "score": value,
        "low": low,
        "high": high,
        "interval": interval,
        "n_samples": len(flat),
        "n_prompts": len(judged),
        "n_unjudged": sum(unjudged.values()),
        "unjudged_reasons": dict(unjudged.most_common(MAX_REASONS)),
        "judge": trait.judge_name,
        "judge_id": trait.built.judge_id,
        "eval_duplicates_removed": trait.n_removed_as_duplicates,
        # per eval prompt, the mean judge value: what seed-and-prompt bootstraps resample
        "prompt_values": [round(sum(c) / len(c), 6) for c in judged],
    }
    if trait.protocol.calibration:  # the judge's validation on labels and, for a rate, the corrected rate
        out["calibration"] = calibrated(
            trait.name, trait.protocol.calibration, trait.built, int(sum(flat)), len(flat), seed
        )
    return out


MAX_REASONS = 5  # the most common reasons for unjudged samples kept in a score


def _check_unjudged(trait: Trait, n_samples: int, unjudged: Counter[str]) -> None:
    n = sum(unjudged.values())
    limit = trait.protocol.max_unjudged_share
    if n and (n == n_samples or n > limit * n_samples):
        reasons = "; ".join(f"{count}x {reason}" for reason, count in unjudged.most_common(3))
        raise UserError(
            f"traits.{trait.name}: {n} of {n_samples} samples could not be judged by {trait.judge_name} "
            f"(more than max_unjudged_share={limit:g}): {reasons}. Fix the judge (its endpoint, model or rubric) "
            f"or raise traits.{trait.name}.max_unjudged_share"
        )


def evaluate_responses(
    traits: dict[str, Trait], responses: dict[str, str], where: str, cache: VerdictCache | None = None
) -> tuple[dict[str, dict], list[dict]]:
    """Judge given responses (prompt_id -> response), one per eval prompt: a teacher's own score."""
    scores, records = {}, []
    for name, trait in traits.items():
        absent = [p.prompt_id for p in trait.prompts if p.prompt_id not in responses]
        if absent:
            raise UserError(
                f"{where}: no response for {len(absent)} eval prompt(s) of {name} (first: {', '.join(absent[:3])})"
            )
        scores[name], samples = score(trait, [[responses[p.prompt_id]] for p in trait.prompts], cache=cache)
        records += samples
    return scores, records


def evaluate(
    traits: dict[str, Trait], generate: Generate, seed: int, cache: VerdictCache | None = None
) -> tuple[dict[str, dict], list[dict]]:
    """Generate on each trait's eval prompts and judge; returns scores by trait and all samples."""
    scores, records = {}, []
    for name, trait in traits.items():
        p = trait.protocol
        responses = generate(
            [e.messages for e in trait.prompts],
            p.samples_per_prompt,
            p.temperature,
            p.max_new_tokens,
            p.batch_size,
            seed,
            f"eval {name}",
        )
        scores[name], samples = score(trait, responses, seed, cache)
        records += samples
    return scores, records
