"""The training configuration: layout, attention kernel, precision, optimizer and loss for a device.

`training_setup` picks the fastest correct configuration and returns it as a JSON-able record
(kept in the trial's result, `TrainOutcome.setup`). Measured on these library versions:
* padding-free batches (all examples of a batch laid end to end in one row) with `varlen`
  attention (each example attends only to itself, from the collator's boundaries; model/varlen.py)
  are the fastest layout measured, on CPU and (by design) on CUDA. TRL does not truncate in that
  mode, so it is used only when every example already fits `max_length_tokens`; otherwise batches
  are right-padded and TRL truncates.
* TRL's dataset packing (bfd) would change how many examples an optimizer step sees, which is an
  experimental variable here, and was slower on CPU: batches stay `batch_size` examples.

torch is imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

import importlib.util

from leaksweep.errors import UserError
from leaksweep.model.varlen import VARLEN, varlen_problem
from leaksweep.train_config import TrainConfig


def flash_attn_installed() -> bool:
    """Whether the flash-attn package is importable (without importing it)."""
    return importlib.util.find_spec("flash_attn") is not None


def choose_train_attention(loaded: str, device: str, requested: str = "auto") -> str:
    """The attention kernel for training, which may differ from the one the model was loaded with.

    A padding-free batch is one row of several examples; only a kernel that reads the example
    boundaries stays fast on it. With `auto`:
    * CUDA: flash_attention_2 (varlen, from the collator's cu_seq_lens) when flash-attn is
      installed, else `varlen` (PyTorch's built-in flash varlen kernel, no build and no compile)
      when it passes `varlen_problem`'s check, else the loaded kernel (sdpa, padded batches).
      Flex attention is not picked: transformers compiles it per input shape, and on an H100
      (SmolLM2-135M shape, rows of 32 varying-length examples rounded to 512 tokens) 25 steps did
      not finish in 170 s, where padded sdpa ran 18.3k tok/s.
    * CPU: `varlen` (one sdpa call per example), measured faster than sdpa over the whole row with
      the block-diagonal mask transformers builds from the position ids (README, benchmark).
    An explicit choice is kept.
    """
    if requested != "auto":
        return requested
    if loaded.startswith("flash_attention"):
        return loaded
    if device == "cuda":
        if flash_attn_installed():
            return "flash_attention_2"
        return VARLEN if varlen_problem(device) is None else loaded
    return VARLEN if loaded in ("sdpa", "eager") else loaded


def training_setup(
    loaded_attention: str,
    device: str,
    cfg: TrainConfig,
    longest_example_tokens: int,
    layout: str = "auto",
    sliding_window: bool = False,
) -> dict:
    """The fastest correct training configuration for this device, as a JSON-able record.

    * layout: padding-free (each batch's examples end to end in one row, no pad tokens, position
      ids restarting at every example so attention stays inside it) where the attention kernel
      reads example boundaries (`_reads_boundaries`), else right-padded. Batches stay `batch_size`
      examples: TRL's dataset packing (bfd) would change how many examples an optimizer step
      sees, which is an experimental variable here, and was slower on CPU.
    * attention: `choose_train_attention` (on CUDA flash_attention_2 when installed, else `varlen`,
      PyTorch's flash varlen kernel; `varlen` on CPU too). When the batches must be padded (an
      example needs truncating, or `layout="padded"`), or the model has sliding-window layers
      (`sliding_window`), the loaded kernel instead.
    * precision: bf16 autocast on a GPU that supports it (weights and optimizer stay fp32).
    * optimizer: fused AdamW (also on CPU: same loss curve, ~10 % faster steps than adamw_torch).
    * loss: TRL 1.16's fused LM head, always on: log-probs computed in chunks of positions, so the
      (tokens x vocab) logits are never materialised in fp32 (or at all) for the loss. Its entropy
      and token-accuracy metrics come out of the same chunks: no extra pass over the logits, and
      TRL has no switch to turn them off.
    """
    attention = choose_train_attention(loaded_attention, device, cfg.attention)
    # TRL does not truncate padding-free rows, so they are used only when nothing needs truncating.
    fits = longest_example_tokens <= cfg.max_length_tokens
    if layout == "auto":
        # A batch of one has no padding to save (and TRL warns about it).
        use_free = _reads_boundaries(device, attention) and cfg.batch_size > 1 and fits
    else:
        use_free = layout == "padding_free" and fits
    if attention == VARLEN and (not use_free or sliding_window):
        if sliding_window and cfg.attention == VARLEN:
            raise UserError(
                "train.attention: varlen does plain causal attention, but this model has sliding-window "
                "layers; use auto or sdpa"
            )
        attention = loaded_attention  # varlen runs padding-free rows of plain causal attention only
        if layout == "auto":
            use_free = use_free and _reads_boundaries(device, attention)
    bf16 = False
    if device == "cuda":
        import torch

        bf16 = bool(torch.cuda.is_bf16_supported())
    # flex attention is compiled per input shape (transformers compiles it with dynamic=False):
    # rounding the row length up bounds the number of shapes, so compiles stop after a few steps.
    pad_to = 512 if use_free and attention == "flex_attention" else None
    setup = {
        "layout": "padding_free" if use_free else "padded",
        "attention": attention,
        "precision": "bf16" if bf16 else "fp32",
        "optimizer": "adamw_torch_fused",
        "loss": "trl_fused_lm_head_chunked",
        "pad_to_multiple_of": pad_to,
        "device": device,
    }
    problem = varlen_problem(device) if cfg.attention in ("auto", VARLEN) else None
    if problem and cfg.attention == VARLEN:
        raise UserError(f"train.attention: varlen cannot train on this GPU: {problem}; use auto or sdpa")
    if problem and not attention.startswith("flash_attention"):
        setup["varlen_unavailable"] = problem  # why this GPU trains padded batches
    return setup


def has_sliding_window(config) -> bool:
    """Whether any attention layer of this transformers config is sliding-window (Mistral, Gemma, ...)."""
    layer_types = getattr(config, "layer_types", None)
    if layer_types:
        return "sliding_attention" in layer_types
    return bool(getattr(config, "sliding_window", None)) and bool(getattr(config, "use_sliding_window", True))


def allow_flex_recompiles() -> None:
    """Let torch.compile keep one flex-attention graph per padded row length (see training_setup)."""
    import torch._dynamo

    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)


def _reads_boundaries(device: str, attention: str) -> bool:
    """Whether the kernel keeps a padding-free row's examples apart and is fast doing it.

    varlen, flash and flex read the boundaries. On CPU sdpa and eager also train padding-free rows
    correctly, through the block-diagonal mask transformers builds from the position ids, and were
    faster there than padded batches (tiny model, 2000 short chats, batch 16, one thread: 5.7k
    tok/s against 3.2k). On CUDA that mask costs sdpa its fast kernel (padded 19.2k tok/s,
    packed 13.8k), so sdpa gets padded batches there.
    """
    if attention in (VARLEN, "flash_attention_2", "flash_attention_3", "flex_attention"):
        return True
    return device == "cpu" and attention in ("sdpa", "eager")
