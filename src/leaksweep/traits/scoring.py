"""Trait scoring: judge every sample, then a score with its interval (Wilson for a rate, a bootstrap
over eval prompts for a scale).

Generation is handed in as a function (the trial passes the trained model's `generate`), so this
room never imports the model stack and its judges are unit-testable on strings.
"""

from __future__ import annotations

from typing import Protocol

from leaksweep.data.records import Messages
from leaksweep.errors import UserError
from leaksweep.stats import cluster_bootstrap, wilson
from leaksweep.traits.evalset import Trait


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


def score(trait: Trait, responses: list[list[str]], seed: int = 0) -> tuple[dict, list[dict]]:
    """Judge every sample; return the trait score with its interval and one record per sample."""
    samples, clusters = [], []
    for prompt, outs in zip(trait.prompts, responses, strict=True):
        values = []
        for i, response in enumerate(outs):
            verdict = trait.judge(response, prompt.meta)
            values.append(verdict.value)
            samples.append(
                {
                    "trait": trait.name,
                    "prompt_id": prompt.prompt_id,
                    "sample": i,
                    "prompt": prompt.messages[-1]["content"],
                    "response": response,
                    "value": verdict.value,
                    "reason": verdict.reason,
                }
            )
        clusters.append(values)
    flat = [v for c in clusters for v in c]
    if trait.kind == "rate":
        value, low, high = wilson(int(sum(flat)), len(flat))
        interval = "wilson95"
    else:
        value, low, high = cluster_bootstrap(clusters, seed=seed)
        interval = "prompt_bootstrap95"
    result = {
        "kind": trait.kind,
        "score": value,
        "low": low,
        "high": high,
        "interval": interval,
        "n_samples": len(flat),
        "n_prompts": len(clusters),
        "judge": trait.judge_name,
        "eval_duplicates_removed": trait.n_removed_as_duplicates,
        # per eval prompt, the mean judge value: what seed-and-prompt bootstraps resample
        "prompt_values": [round(sum(c) / len(c), 6) for c in clusters],
    }
    return result, samples


def evaluate_responses(
    traits: dict[str, Trait], responses: dict[str, str], where: str
) -> tuple[dict[str, dict], list[dict]]:
    """Judge given responses (prompt_id -> response), one per eval prompt: a teacher's own score."""
    scores, records = {}, []
    for name, trait in traits.items():
        absent = [p.prompt_id for p in trait.prompts if p.prompt_id not in responses]
        if absent:
            raise UserError(
                f"{where}: no response for {len(absent)} eval prompt(s) of {name} (first: {', '.join(absent[:3])})"
            )
        scores[name], samples = score(trait, [[responses[p.prompt_id]] for p in trait.prompts])
        records += samples
    return scores, records


def evaluate(traits: dict[str, Trait], generate: Generate, seed: int) -> tuple[dict[str, dict], list[dict]]:
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
        scores[name], samples = score(trait, responses, seed)
        records += samples
    return scores, records
