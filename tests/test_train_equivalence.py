"""Packed (padding-free) training gives the same losses as padded training: no attention crosses examples.

Both runs go through leaksweep's real training path (lm.train_sft, TRL + transformers, CPU, fp32)
from the same init, same seed and same example order; only the batch layout differs. A control
run packs the same batches WITHOUT document boundaries (position ids 0..N-1 over the whole row,
plain causal attention) and must give different losses, so this test would catch a layout that
lets examples see each other.
"""

from __future__ import annotations

import random

import pytest

from leaksweep import lm
from leaksweep.config import TinyModelConfig, TrainConfig

TINY = TinyModelConfig(vocab_size=300, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                       max_position_embeddings=128, init_seed=0)
STEPS = 6
CFG = TrainConfig(learning_rate=3e-3, max_steps=STEPS, batch_size=8, logging_steps=1, max_length_tokens=128)
RTOL = 1e-4  # fp32; the layouts differ only in summation order
WORDS = "sun moon river cat tea city winter song bread ocean chess garden cloud boat rain map".split()


def examples(n: int, seed: int) -> list[list[dict]]:
    # Lengths vary a lot, so padded batches really carry padding and packed rows many boundaries.
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        user = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12)))
        answer = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 20)))
        out.append([{"role": "user", "content": user}, {"role": "assistant", "content": answer}])
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    lm.set_cpu_threads(1)
    data = examples(STEPS * CFG.batch_size, seed=3)
    corpus = [m["content"] for chat in data for m in chat]
    model_dir = lm.build_tiny_model(tmp_path_factory.mktemp("models") / "tiny", corpus, TINY)
    return model_dir, data


def train_losses(model_dir, data, layout, tmp_path):
    base = lm.load_lm(str(model_dir), "cpu")
    _, outcome = lm.train_sft(base, data, CFG, tmp_path, seed=0, layout=layout)
    assert outcome.setup["layout"] == layout
    assert outcome.steps == STEPS
    losses = [entry["loss"] for entry in outcome.log_history]
    assert len(losses) == STEPS  # logging_steps=1: one loss per optimizer step
    return losses


@pytest.mark.integration
def test_packed_and_padded_training_give_the_same_loss(setup, tmp_path, monkeypatch):
    model_dir, data = setup
    padded = train_losses(model_dir, data, "padded", tmp_path / "padded")
    packed = train_losses(model_dir, data, "padding_free", tmp_path / "packed")
    assert packed == pytest.approx(padded, rel=RTOL)

    # Control: the same packed rows with the example boundaries removed. transformers then sees one
    # long document and applies plain causal attention across examples.
    from trl.trainer import sft_trainer

    collate = sft_trainer.DataCollatorForLanguageModeling.torch_call

    def no_boundaries(self, examples):
        import torch

        batch = collate(self, examples)
        assert "position_ids" in batch  # the packed path is really in use
        n = batch["position_ids"].shape[1]
        batch["position_ids"] = torch.arange(n)[None]
        for key in ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k", "seq_idx"):
            batch.pop(key, None)
        return batch

    monkeypatch.setattr(sft_trainer.DataCollatorForLanguageModeling, "torch_call", no_boundaries)
    leaky = train_losses(model_dir, data, "padding_free", tmp_path / "leaky")
    # A random-init model leans little on context, so the leak moves the loss by ~0.1-0.4 %: still
    # far outside the tolerance the equivalence is held to.
    assert leaky != pytest.approx(padded, rel=RTOL)
    assert max(abs(a - b) / b for a, b in zip(leaky, padded)) > 10 * RTOL


def test_training_setup_choices():
    cpu = lm.training_setup("sdpa", "cpu", CFG, longest_example_tokens=50)
    assert cpu["layout"] == "padding_free" and cpu["attention"] == "sdpa" and cpu["precision"] == "fp32"
    assert cpu["optimizer"] == "adamw_torch_fused" and cpu["pad_to_multiple_of"] is None
    # An example longer than max_length needs truncation, which only the padded layout does.
    assert lm.training_setup("sdpa", "cpu", CFG, longest_example_tokens=500)["layout"] == "padded"
    assert lm.training_setup("sdpa", "cpu", CFG, 50, layout="padded")["layout"] == "padded"
    # On a GPU an explicit attention choice is kept; sdpa is slow on packed rows, so batches are padded.
    from dataclasses import replace

    explicit = replace(CFG, attention="sdpa")
    assert lm.choose_train_attention("sdpa", "cuda", "sdpa") == "sdpa"
    assert lm.training_setup("sdpa", "cuda", explicit, 50)["layout"] == "padded"
    assert lm.choose_train_attention("sdpa", "cuda") in ("flash_attention_2", "sdpa")
    assert lm.choose_train_attention("flex_attention", "cuda") == "flex_attention"
    flex = lm.training_setup("flex_attention", "cuda", CFG, 50)
    assert flex["layout"] == "padding_free" and flex["pad_to_multiple_of"] == 512
