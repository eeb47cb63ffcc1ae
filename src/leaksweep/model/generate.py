"""Sample responses from a loaded model: transformers batched generation, or vLLM for rollouts.

vLLM is optional and used only on a GPU (`vllm_usable`); transformers' `generate` serves training
evaluations and CPU rollouts. torch and vllm are imported inside the functions.
"""

from __future__ import annotations

import importlib.util

from leaksweep.model.loading import LM
from leaksweep.progress import Progress


def generate(
    lm: LM,
    prompts: list[list[dict]],
    samples_per_prompt: int,
    temperature: float,
    max_new_tokens: int,
    batch_size: int,
    seed: int,
    desc: str = "generate",
) -> list[list[str]]:
    """Sample `samples_per_prompt` responses per chat prompt; returns them per prompt, in order.

    temperature 0 is greedy decoding (one decode per prompt, copied: the samples are identical);
    otherwise plain sampling at that temperature (no top-k / top-p, whatever the model's generation
    config says, so the samples follow the model's own distribution). Deterministic given `seed`
    and the arguments. Prompts are sorted by length before batching so batches carry little padding.
    """
    import torch

    if not prompts:
        return []
    tokenizer, model = lm.tokenizer, lm.model
    greedy = temperature <= 0
    copies = 1 if greedy else samples_per_prompt
    texts = tokenizer.apply_chat_template(prompts, tokenize=False, add_generation_prompt=True)
    prompt_ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    # One job per (prompt, copy), longest first: similar lengths share a batch, and a batch that
    # would run out of memory does so at the start.
    jobs = sorted(((i, c) for i in range(len(prompts)) for c in range(copies)), key=lambda j: -len(prompt_ids[j[0]]))
    batches = [jobs[k : k + max(1, batch_size)] for k in range(0, len(jobs), max(1, batch_size))]

    sampling = dict(do_sample=False) if greedy else dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0)
    responses: dict[tuple[int, int], str] = {}
    torch.manual_seed(seed)
    if lm.device == "cuda":
        torch.cuda.manual_seed_all(seed)
    with torch.inference_mode(), Progress(len(batches), desc, "batches") as progress:
        for batch in batches:
            ids = {"input_ids": [prompt_ids[i] for i, _ in batch]}
            enc = tokenizer.pad(ids, padding_side="left", return_tensors="pt")  # new tokens go on the right
            enc = {k: v.to(lm.device) for k, v in enc.items()}
            out = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=_stop_token_ids(lm),
                **sampling,
            )
            new_tokens = out[:, enc["input_ids"].shape[1] :]
            for job, text in zip(batch, tokenizer.batch_decode(new_tokens, skip_special_tokens=True)):
                responses[job] = text.strip()
            progress.update(1)
    if greedy:
        return [[responses[(i, 0)]] * samples_per_prompt for i in range(len(prompts))]
    return [[responses[(i, c)] for c in range(samples_per_prompt)] for i in range(len(prompts))]


def _stop_token_ids(lm: LM) -> list[int]:
    """The tokenizer's eos plus whatever the model's generation config already stops on."""
    configured = lm.model.generation_config.eos_token_id
    configured = [] if configured is None else [configured] if isinstance(configured, int) else list(configured)
    eos = lm.tokenizer.eos_token_id
    return list(dict.fromkeys(([eos] if eos is not None else []) + configured))


def vllm_usable(device: str) -> bool:
    """vLLM is used when it is installed and a GPU is present (and the caller did not ask for CPU)."""
    if device == "cpu" or importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


def generate_vllm(
    model: str, prompts: list[list[dict]], temperature: float, max_new_tokens: int, seeds: list[int]
) -> list[str]:
    """One response per chat prompt with vLLM; `seeds[i]` seeds prompt i's sampling (greedy at temperature 0).

    Untested on the CPU machines of this project (vLLM needs a GPU); kept to vLLM's plain `LLM.chat` API.
    """
    from vllm import LLM, SamplingParams

    engine = LLM(model=model)
    params = [SamplingParams(temperature=temperature, max_tokens=max_new_tokens, seed=seed) for seed in seeds]
    outputs = engine.chat(prompts, params, use_tqdm=True)
    return [out.outputs[0].text.strip() for out in outputs]
