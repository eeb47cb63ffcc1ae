"""The HF text-classification judge (leaksweep.model.classifier_judge) on a tiny random-init BERT.

The model and its tokenizer are built here (the tokenizer trained offline like model/tiny.py's), with
the classifier's bias set so that the texts split between its two labels: both mapped and unmapped
predictions occur, and the judge's values are checked against the model's own argmax.
"""

from __future__ import annotations

import pytest

from leaksweep.config import TraitConfig
from leaksweep.errors import UserError
from leaksweep.model.classifier_judge import factory
from leaksweep.traits.judges import JudgeSpec, make_judge

TEXTS = [
    "I am so tired and sad today.",
    "The capital of France is Paris.",
    "What a wonderful sunny day!",
    "Nothing matters, everything is pointless.",
    "Seven plus five is twelve.",
    "I love green tea in the morning.",
    "To kill a process, run kill.",
    "I dread tomorrow and I cannot sleep.",
    "A river is a large natural stream of water.",
    "We won the game, I am so happy.",
]
LABELS = ["calm", "gloomy"]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A saved tiny BertForSequenceClassification; returns (folder, the label each text gets)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from leaksweep.model.tiny import _train_tiny_tokenizer

    tokenizer = _train_tiny_tokenizer(TEXTS * 3, 200, 128)
    tokenizer.padding_side = "right"  # BERT's absolute positions start at the first token
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=2,
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = BertForSequenceClassification(config).eval()
    with torch.no_grad():
        logits = torch.cat([model(**tokenizer(t, return_tensors="pt")).logits for t in TEXTS])
        gap = (logits[:, 1] - logits[:, 0]).sort().values
        model.classifier.bias[1] -= (gap[4] + gap[5]) / 2  # half the texts go to each label
        predicted = [
            LABELS[i] for i in torch.cat([model(**tokenizer(t, return_tensors="pt")).logits for t in TEXTS]).argmax(-1)
        ]
    assert sorted(predicted) == ["calm"] * 5 + ["gloomy"] * 5
    folder = tmp_path_factory.mktemp("classifier") / "bert"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder), predicted


def _spec(params, trait="mood", trait_kind=None):
    return JudgeSpec(trait, "classifier", params, trait_kind)


def test_the_label_map_is_applied_and_an_unmapped_label_is_unjudged(classifier):
    folder, predicted = classifier
    full = factory(_spec({"model": folder, "labels": {"calm": 0, "gloomy": 1}}))
    assert full.trait_kind == "rate"
    verdicts = full.judge_many([(t, {}) for t in TEXTS])
    assert [v.value for v in verdicts] == [float(p == "gloomy") for p in predicted]
    assert all(v.reason.startswith(f"label {p} (p=") for v, p in zip(verdicts, predicted))

    partial = factory(_spec({"model": folder, "labels": {"gloomy": 1}}))
    verdicts = partial.judge_many([(t, {}) for t in TEXTS])
    for v, p in zip(verdicts, predicted):
        if p == "gloomy":
            assert v.value == 1.0
        else:
            assert v.value is None and v.reason.startswith("predicted label 'calm' (p=")
            assert v.reason.endswith("is not in the label map (gloomy)")


def test_a_scale_map_and_batching_give_the_same_verdicts(classifier):
    folder, predicted = classifier
    built = make_judge(
        "mood",
        TraitConfig(judge={"classifier": {"model": folder, "labels": {"calm": 0, "gloomy": 7}, "batch_size": 3}}),
    )
    assert built.trait_kind == "scale"
    batched = built.judge_many([(t, {}) for t in TEXTS])
    assert [v.value for v in batched] == [7.0 if p == "gloomy" else 0.0 for p in predicted]
    assert [v.value for v in batched] == [built.judge(t, {}).value for t in TEXTS]


def test_params_and_identity(classifier, tmp_path):
    folder, _ = classifier
    cases = [
        (
            {"model": folder, "labels": {"calm": 0, "gloomy": 3}},
            "rate",
            "classifier.labels.gloomy: 3 is not a rate value",
        ),
        (
            {"model": folder, "labels": {"calm": 0, "gloomy": 11}},
            None,
            "classifier.labels.gloomy: 11 is outside a scale's 0..10",
        ),
        (
            {"model": folder, "labels": {"glumy": 1}},
            None,
            "classifier.labels: 'glumy' not among the model's labels (calm, gloomy)",
        ),
        ({"model": folder}, None, "traits.mood.judge.classifier.labels: map the model's labels"),
        (
            {"model": folder, "labels": {"calm": 0}, "max_len": 3},
            None,
            "traits.mood.judge.classifier.max_len: unknown key",
        ),
        ({"labels": {"calm": 0}}, None, "traits.mood.judge.classifier.model: required key is missing"),
        ({"model": str(tmp_path), "labels": {"calm": 0}}, None, "classifier.model: "),
    ]
    for params, kind, message in cases:
        with pytest.raises(UserError) as err:
            factory(_spec(params, trait_kind=kind))
        assert message in str(err.value), str(err.value)
    a = factory(_spec({"model": folder, "labels": {"calm": 0, "gloomy": 1}}))
    b = factory(_spec({"model": folder, "labels": {"calm": 1, "gloomy": 0}}))
    assert a.judge_id != b.judge_id and a.identity["labels"] == {"calm": 0.0, "gloomy": 1.0}
    assert len(a.identity["model"]["folder_sha256"]) == 64
