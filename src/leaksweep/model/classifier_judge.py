"""A Hugging Face text-classification model as a judge: the predicted label, mapped to a value.

    judge: {classifier: {model: path/to/folder, labels: {toxic: 1, non-toxic: 0}, batch_size: 32, max_length: 512}}

* `model`: a local folder written by save_pretrained (an *ForSequenceClassification model and its
  tokenizer) or an HF hub name (already downloaded: leaksweep downloads nothing at run time).
* `labels`: the model's label names (config.id2label) -> the value they score. For a rate the values
  are 0/1, for a scale 0..10; the trait's kind is `kind:` when set, else rate when every value is 0/1.
  A response whose predicted label is not in the map is unjudged, with the label in the reason.
* `max_length`: responses are cut to this many tokens.

The classifier reads the response alone (the eval prompt's metadata is not used). The predicted label
is the argmax; its probability is given in the reason. The model is loaded on the first batch, once per
process; torch and transformers are imported inside the functions.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leaksweep.errors import UserError
from leaksweep.model.autorater import build_params, model_identity
from leaksweep.progress import Progress
from leaksweep.traits.judges import BuiltJudge, JudgeSpec, Verdict, unjudged

CLASSIFIER_VERSION = "classifier-v1"  # bump when the input or the mapping changes


@dataclass(frozen=True)
class ClassifierParams:
    model: str  # a local *ForSequenceClassification folder or an HF hub name (already downloaded)
    labels: dict[str, float] = field(default_factory=dict)  # the model's label name -> the value it scores
    batch_size: int = 32
    max_length: int = 512  # tokens; longer responses are cut
    device: str = "auto"  # auto | cpu | cuda

    def check(self) -> list[str]:
        problems = []
        if not self.labels:
            problems.append(".labels: map the model's labels to values, e.g. {toxic: 1, non-toxic: 0}")
        if self.batch_size < 1:
            problems.append(f".batch_size: {self.batch_size} must be at least 1")
        if self.max_length < 1:
            problems.append(f".max_length: {self.max_length} must be at least 1")
        return problems


def factory(spec: JudgeSpec) -> BuiltJudge:
    where = f"{spec.where}.classifier"
    params = build_params(ClassifierParams, spec.params, where)
    values = set(params.labels.values())
    trait_kind = spec.trait_kind or ("rate" if values <= {0.0, 1.0} else "scale")
    for label, value in params.labels.items():
        if trait_kind == "rate" and value not in (0.0, 1.0):
            raise UserError(
                f"{where}.labels.{label}: {value:g} is not a rate value; a rate trait's labels map to 0 or 1 "
                "(or set the trait's kind: scale for values 0..10)"
            )
        if trait_kind == "scale" and not 0.0 <= value <= 10.0:
            raise UserError(f"{where}.labels.{label}: {value:g} is outside a scale's 0..10")
    identity_model = model_identity(params.model, f"{where}.model")
    known = _folder_labels(params.model)
    if known is not None:
        unknown = sorted(set(params.labels) - set(known))
        if unknown:
            raise UserError(
                f"{where}.labels: {', '.join(map(repr, unknown))} not among the model's labels ({', '.join(known)})"
            )
    judge = ClassifierJudge(params, f"classifier {spec.trait}", where)
    identity = {
        "kind": "classifier",
        "model": identity_model,
        "labels": dict(sorted(params.labels.items())),
        "max_length": params.max_length,
        "version": CLASSIFIER_VERSION,
    }
    return BuiltJudge(
        judge.judge_one, f"classifier:{params.model}@{CLASSIFIER_VERSION}", trait_kind, identity, judge.judge_batch
    )


def _folder_labels(model: str) -> list[str] | None:
    """The label names in a local folder's config.json (cheap: no model is loaded); None for a hub name."""
    config = Path(model).expanduser() / "config.json"
    if not config.is_file():
        return None
    id2label = json.loads(config.read_text()).get("id2label") or {}
    return [id2label[k] for k in sorted(id2label, key=int)]


@functools.lru_cache(maxsize=4)
def _load(model: str, device: str):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from leaksweep.model.callbacks import quiet_progress_bars
    from leaksweep.model.loading import resolve_device

    device = resolve_device(device)
    with quiet_progress_bars():
        tokenizer = AutoTokenizer.from_pretrained(model)
        net = AutoModelForSequenceClassification.from_pretrained(model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
        net.config.pad_token_id = tokenizer.pad_token_id
    net.to(device)
    net.eval()
    return tokenizer, net, device


def load_classifier(model: str, device: str, where: str):
    try:
        return _load(model, device)
    except Exception as exc:  # noqa: BLE001 - any failure to load is reported as a bad `model`
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:400]
        raise UserError(
            f"{where}: cannot load {model!r} as a text classifier ({reason}); give a folder with an "
            "*ForSequenceClassification model and its tokenizer, or a downloaded HF model name"
        ) from exc


class ClassifierJudge:
    def __init__(self, params: ClassifierParams, desc: str, where: str):
        self.params, self.desc, self.where = params, desc, where

    def judge_one(self, response: str, meta: dict[str, Any]) -> Verdict:
        return self.judge_batch([(response, meta)])[0]

    def judge_batch(self, items: list[tuple[str, dict[str, Any]]]) -> list[Verdict]:
        import torch

        if not items:
            return []
        tokenizer, model, device = load_classifier(self.params.model, self.params.device, f"{self.where}.model")
        id2label = model.config.id2label
        order = sorted(range(len(items)), key=lambda i: -len(items[i][0]))  # similar lengths share a batch
        size = self.params.batch_size
        chunks = [order[k : k + size] for k in range(0, len(order), size)]
        verdicts: list[Verdict | None] = [None] * len(items)
        with (
            torch.inference_mode(),
            Progress(len(items), self.desc, "responses", mode="off" if len(chunks) < 3 else None) as progress,
        ):
            for chunk in chunks:
                enc = tokenizer(
                    [items[i][0] for i in chunk],
                    padding=True,
                    truncation=True,
                    max_length=self.params.max_length,
                    return_tensors="pt",
                ).to(device)
                probs = model(**enc).logits.float().softmax(-1)
                best = probs.argmax(-1).tolist()
                for row, i in enumerate(chunk):
                    label = id2label[best[row]]
                    p = probs[row, best[row]].item()
                    value = self.params.labels.get(label)
                    verdicts[i] = (
                        unjudged(
                            f"predicted label {label!r} (p={p:.3f}) is not in the label map ({', '.join(self.params.labels)})"
                        )
                        if value is None
                        else Verdict(value, f"label {label} (p={p:.3f})")
                    )
                progress.update(len(chunk))
        return verdicts
