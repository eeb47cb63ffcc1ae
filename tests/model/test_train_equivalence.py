"""Packed (padding-free) training gives the same losses as padded training: no attention crosses examples.

The runs go through leaksweep's real training path (train_sft, TRL + transformers, CPU, fp32)
from the same init, same seed and same example order; only the batch layout and the attention
kernel differ: padded sdpa, padding-free sdpa (block-diagonal mask from the position ids) and
padding-free `varlen` (one attention per example, from the collator's cu_seq_lens; on CPU its
kernel is varlen_attention._varlen_reference, on CUDA PyTorch's flash varlen kernel, checked at the end of this
file when a GPU is present). A control run packs the same batches WITHOUT document boundaries
(position ids 0..N-1 over the whole row, no cu_seq_lens) and must give different losses, so this
test would catch a layout that lets examples see each other.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from leaksweep.errors import UserError
from leaksweep.model import train_setup
from leaksweep.model import varlen as varlen_attention
from leaksweep.model.loading import choose_attention, load_lm, set_cpu_threads
from leaksweep.model.sft import train_sft
from leaksweep.model.tiny import build_tiny_model
from leaksweep.model.train_setup import choose_train_attention, has_sliding_window, training_setup
from leaksweep.model.varlen import VARLEN, varlen_problem
from leaksweep.train_config import TinyModelConfig, TrainConfig

TINY = TinyModelConfig(
    vocab_size=300,
    hidden_size=32,
    num_layers=2,
    num_heads=2,
    intermediate_size=64,
    max_position_embeddings=128,
    init_seed=0,
)
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
    set_cpu_threads(1)
    data = examples(STEPS * CFG.batch_size, seed=3)
    corpus = [m["content"] for chat in data for m in chat]
    model_dir = build_tiny_model(tmp_path_factory.mktemp("models") / "tiny", corpus, TINY)
    return model_dir, data


def train_losses(model_dir, data, layout, tmp_path, attention="auto", device="cpu", steps=STEPS):
    cfg = replace(CFG, attention=attention, max_steps=steps)
    base = load_lm(str(model_dir), device, attention)
    _, outcome = train_sft(base, data, cfg, tmp_path, seed=0, layout=layout)
    assert outcome.setup["layout"] == layout
    assert outcome.steps == steps
    losses = [entry["loss"] for entry in outcome.log_history]
    assert len(losses) == steps  # logging_steps=1: one loss per optimizer step
    return losses, outcome.setup


@pytest.fixture
def varlen_calls(monkeypatch):
    """Counts the attention calls that went through the varlen kernel (so a fallback cannot pass)."""
    calls = []
    reference = varlen_attention._varlen_reference

    def counted(*args, **kwargs):
        calls.append(len(args[3]) - 1)  # examples in the row
        return reference(*args, **kwargs)

    monkeypatch.setattr(varlen_attention, "_varlen_reference", counted)
    return calls


@pytest.mark.integration
def test_packed_and_padded_training_give_the_same_loss(setup, tmp_path, monkeypatch, varlen_calls):
    model_dir, data = setup
    padded, _ = train_losses(model_dir, data, "padded", tmp_path / "padded")
    masked, masked_setup = train_losses(model_dir, data, "padding_free", tmp_path / "masked", attention="sdpa")
    assert masked_setup["attention"] == "sdpa" and not varlen_calls
    assert masked == pytest.approx(padded, rel=RTOL)
    varlen, varlen_setup = train_losses(model_dir, data, "padding_free", tmp_path / "varlen")
    assert varlen_setup["attention"] == VARLEN  # what `auto` picks on CPU
    # every layer of every forward: 2 layers x 6 steps, each row holding a batch of 8 examples
    assert len(varlen_calls) == TINY.num_layers * STEPS and set(varlen_calls) == {CFG.batch_size}
    assert varlen == pytest.approx(padded, rel=RTOL)

    # Control: the same packed rows with the example boundaries removed. transformers then sees one
    # long document and applies plain causal attention across examples, and so does varlen
    # without cu_seq_lens.
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
    for attention in ("sdpa", VARLEN):
        leaky, _ = train_losses(model_dir, data, "padding_free", tmp_path / f"leaky-{attention}", attention=attention)
        # A random-init model leans little on context, so the leak moves the loss by ~0.1-0.4 %: still
        # far outside the tolerance the equivalence is held to.
        assert leaky != pytest.approx(padded, rel=RTOL)
        assert max(abs(a - b) / b for a, b in zip(leaky, padded)) > 10 * RTOL


def _attention_inputs(n_tokens=40, heads=4, kv_heads=2, dim=8, seed=0):
    import torch

    gen = torch.Generator().manual_seed(seed)
    # (1, H, T, D) views of (1, T, H, D) tensors, the layout transformers' attention modules pass
    q, k, v = (torch.randn(1, n_tokens, h, dim, generator=gen).transpose(1, 2) for h in (heads, kv_heads, kv_heads))
    return q, k, v


class _Module:
    is_causal = True


@pytest.mark.parametrize("causal", [True, False])
def test_varlen_attention_matches_sdpa_with_a_block_diagonal_mask(causal):
    import torch
    import torch.nn.functional as F

    q, k, v = _attention_inputs()
    cu = torch.tensor([0, 7, 8, 25, 40], dtype=torch.int32)
    doc = torch.repeat_interleave(torch.arange(4), cu.diff())
    allowed = doc[:, None] == doc[None, :]
    if causal:
        allowed &= torch.ones(40, 40, dtype=torch.bool).tril()
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=0.3, enable_gqa=True).transpose(1, 2)
    got, weights = varlen_attention._varlen_attention_forward(
        _Module(), q, k, v, None, scaling=0.3, is_causal=causal, cu_seq_lens_q=cu, max_length_q=17
    )
    assert weights is None and got.shape == (1, 40, 4, 8)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    # without boundaries the row is one example
    whole, _ = varlen_attention._varlen_attention_forward(_Module(), q, k, v, None, scaling=0.3)
    torch.testing.assert_close(
        whole, F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3, enable_gqa=True).transpose(1, 2)
    )


def test_varlen_attention_refuses_padded_batches_and_dropout():
    import torch

    q, k, v = _attention_inputs()
    with pytest.raises(RuntimeError, match="padding-free rows only.*padding mask"):
        varlen_attention._varlen_attention_forward(_Module(), q, k, v, torch.ones(1, 40, dtype=torch.bool))
    two = [torch.cat([x, x]) for x in (q, k, v)]
    with pytest.raises(RuntimeError, match="batch of 2 rows"):
        varlen_attention._varlen_attention_forward(_Module(), *two, None)
    with pytest.raises(RuntimeError, match="no attention dropout"):
        varlen_attention._varlen_attention_forward(_Module(), q, k, v, None, dropout=0.1)
    with pytest.raises(RuntimeError, match=r"asks for \['sliding_window'\]"):
        varlen_attention._varlen_attention_forward(_Module(), q, k, v, None, sliding_window=16)
    assert varlen_problem("cpu") is None  # the CPU kernel is the reference itself


def test_varlen_check_catches_a_wrong_or_failing_kernel(monkeypatch):
    # The check varlen_problem runs on CUDA, here on CPU with stand-in kernels in place of torch's.
    assert varlen_attention._check_varlen("cpu") is None  # the reference against itself

    def not_causal(*args, **kwargs):
        return varlen_attention._varlen_reference(*args, **{**kwargs, "window_size": (-1, -1)})

    monkeypatch.setattr(varlen_attention, "_varlen_kernel", lambda device_type: not_causal)
    assert "disagrees with the reference (output" in varlen_attention._check_varlen("cpu")

    def broken(*args, **kwargs):
        raise RuntimeError("FlashAttention only supports Ampere GPUs or newer.")

    monkeypatch.setattr(varlen_attention, "_varlen_kernel", lambda device_type: broken)
    assert varlen_attention._check_varlen("cpu") == (
        "torch's varlen kernel failed a test pass (RuntimeError: FlashAttention only supports Ampere GPUs or newer.)"
    )


def test_training_setup_choices(monkeypatch):
    cpu = training_setup("sdpa", "cpu", CFG, longest_example_tokens=50)
    assert cpu["layout"] == "padding_free" and cpu["attention"] == VARLEN and cpu["precision"] == "fp32"
    assert cpu["optimizer"] == "adamw_torch_fused" and cpu["pad_to_multiple_of"] is None
    # An example longer than max_length needs truncation, which only the padded layout does; varlen
    # trains padding-free rows only, so the loaded kernel takes over.
    long = training_setup("sdpa", "cpu", CFG, longest_example_tokens=500)
    assert long["layout"] == "padded" and long["attention"] == "sdpa"
    assert training_setup("sdpa", "cpu", CFG, 50, layout="padded")["attention"] == "sdpa"
    explicit_sdpa = replace(CFG, attention="sdpa")
    assert training_setup("sdpa", "cpu", explicit_sdpa, 50)["layout"] == "padding_free"
    assert choose_attention(VARLEN, "cuda") == "sdpa"  # a training-only kernel: load (and generate) with sdpa
    # sliding-window models (Mistral, Gemma) keep their loaded kernel; asking for varlen is an error
    sliding = training_setup("sdpa", "cpu", CFG, 50, sliding_window=True)
    assert sliding["attention"] == "sdpa" and sliding["layout"] == "padding_free"
    with pytest.raises(UserError, match="sliding-window"):
        training_setup("sdpa", "cpu", replace(CFG, attention=VARLEN), 50, sliding_window=True)
    from transformers import Gemma2Config, LlamaConfig, MistralConfig, Qwen2Config

    assert not has_sliding_window(LlamaConfig()) and not has_sliding_window(Qwen2Config())
    assert has_sliding_window(MistralConfig()) and has_sliding_window(Gemma2Config())

    # CUDA without flash-attn: varlen when its check passes, else padded sdpa with the reason recorded.
    monkeypatch.setattr(train_setup, "flash_attn_installed", lambda: False)
    monkeypatch.setattr(varlen_attention, "_VARLEN_PROBLEM", {"cuda": None})
    gpu = training_setup("sdpa", "cuda", CFG, 50)
    assert gpu["layout"] == "padding_free" and gpu["attention"] == VARLEN and "varlen_unavailable" not in gpu
    monkeypatch.setattr(varlen_attention, "_VARLEN_PROBLEM", {"cuda": "torch 2.9 has no torch.nn.attention.varlen"})
    old = training_setup("sdpa", "cuda", CFG, 50)
    assert old["layout"] == "padded" and old["attention"] == "sdpa"
    assert old["varlen_unavailable"].startswith("torch 2.9")
    with pytest.raises(UserError, match="varlen cannot train on this GPU: torch 2.9"):
        training_setup("sdpa", "cuda", replace(CFG, attention=VARLEN), 50)
    # an explicit choice is kept; sdpa is slow on packed rows on a GPU, so its batches are padded
    assert training_setup("sdpa", "cuda", explicit_sdpa, 50)["layout"] == "padded"
    assert choose_train_attention("flex_attention", "cuda", "flex_attention") == "flex_attention"
    flex = training_setup("flex_attention", "cuda", replace(CFG, attention="flex_attention"), 50)
    assert flex["layout"] == "padding_free" and flex["pad_to_multiple_of"] == 512


# ---------------------------------------------------------------------------------------------
# CUDA only (benchmarks/gpu_check.sh runs these on a GPU machine; skipped elsewhere)

needs_cuda = pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
def test_cuda_varlen_kernel_passes_its_check():
    assert varlen_problem("cuda") is None


@needs_cuda
@pytest.mark.integration
def test_cuda_varlen_training_matches_padded_training(setup, tmp_path):
    # bf16 autocast on both sides, so the tolerance is bf16's, not fp32's
    model_dir, data = setup
    padded, padded_setup = train_losses(model_dir, data, "padded", tmp_path / "padded", attention="sdpa", device="cuda")
    varlen, varlen_setup = train_losses(model_dir, data, "padding_free", tmp_path / "varlen", device="cuda")
    assert padded_setup["precision"] == varlen_setup["precision"] == "bf16"
    assert varlen_setup["attention"] in (VARLEN, "flash_attention_2")
    assert varlen == pytest.approx(padded, rel=2e-2)


def test_varlen_call_adapts_to_older_torch_signatures():
    # torch 2.10's varlen_attn: is_causal, no scale, no grouped-query heads (repeated for it)
    import torch

    seen = {}

    def torch_2_10(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, is_causal=False):
        seen.update(is_causal=is_causal, kv_heads=key.shape[1])
        return varlen_attention._varlen_reference(
            query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, window_size=(-1, 0) if is_causal else (-1, -1)
        )

    q, k, v = (x[0].transpose(0, 1) for x in _attention_inputs())
    cu = torch.tensor([0, 10, 40], dtype=torch.int32)
    call = varlen_attention._with_current_signature(torch_2_10)
    got = call(q, k, v, cu, cu, 30, 30, scale=8**-0.5, window_size=(-1, 0), enable_gqa=True)
    assert seen == {"is_causal": True, "kv_heads": 4}
    want = varlen_attention._varlen_reference(q, k, v, cu, cu, 30, 30, window_size=(-1, 0), enable_gqa=True)
    torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="no scale argument"):
        call(q, k, v, cu, cu, 30, 30, scale=0.3, window_size=(-1, 0), enable_gqa=True)
    # the current signature passes straight through
    current = varlen_attention._with_current_signature(varlen_attention._varlen_reference)
    torch.testing.assert_close(
        current(q, k, v, cu, cu, 30, 30, scale=0.3, window_size=(-1, 0), enable_gqa=True),
        varlen_attention._varlen_reference(q, k, v, cu, cu, 30, 30, scale=0.3, window_size=(-1, 0), enable_gqa=True),
    )
