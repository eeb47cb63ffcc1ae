"""`varlen` attention: each example of a padding-free row attends only to itself, with no mask.

Padding-free batches (all examples of a batch laid end to end in one row) with this attention are
the fastest training layout measured, on CPU and (by design) on CUDA. The example boundaries come
from TRL's padding-free collator (`cu_seq_lens_q`); the kernel is registered with transformers as
an attention implementation named `varlen` (`register_varlen_attention`). On CUDA it is PyTorch's
own flash varlen kernel (torch.nn.attention.varlen, torch >= 2.10), checked once per process
against the reference (`varlen_problem`) before a trial trains with it; on CPU it is the reference
itself, one sdpa call per example.

torch is imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import math
from typing import Callable

VARLEN = "varlen"  # the attn_implementation name registered with transformers (train.attention: varlen)


def register_varlen_attention() -> None:
    """Make `varlen` an attention implementation transformers models can switch to (idempotent).

    Its mask function is flash attention's: None for unpadded rows, the 2-D padding mask otherwise,
    which `_varlen_attention_forward` refuses (it trains padding-free rows; padded batches and
    generation use the loaded kernel).
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask

    AttentionInterface.register(VARLEN, _varlen_attention_forward)
    AttentionMaskInterface.register(VARLEN, flash_attention_mask)


def _varlen_attention_forward(
    module,
    query,
    key,
    value,
    attention_mask,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs,
):
    """transformers attention interface over one padding-free row: (1, H, T, D) in, (1, T, H, D) out.

    The example boundaries come from TRL's padding-free collator (`cu_seq_lens_q`, computed on the
    CPU, and `max_length_q`), so no layer syncs with the GPU to find them. On CUDA the kernel is
    PyTorch's own flash-attention varlen kernel (torch.nn.attention.varlen, torch >= 2.10: no
    flash-attn build and no compile); elsewhere `_varlen_reference`, one sdpa call per example.
    """
    import torch

    if attention_mask is not None or query.shape[0] != 1:
        raise RuntimeError(
            f"varlen attention trains padding-free rows only (got a batch of {query.shape[0]} rows"
            f"{' with a padding mask' if attention_mask is not None else ''}); padded batches and generation "
            "use the model's loaded attention kernel"
        )
    if dropout:
        raise RuntimeError(
            f"varlen attention has no attention dropout (the model asks for {dropout}); "
            "use train.attention: sdpa for this model"
        )
    unsupported = {k: kwargs.get(k) for k in ("sliding_window", "softcap", "s_aux") if kwargs.get(k) is not None}
    if unsupported:
        raise RuntimeError(
            f"varlen attention does plain causal attention, and this model asks for {sorted(unsupported)}; "
            "use train.attention: sdpa for this model"
        )
    cu_seq_lens = kwargs.get("cu_seq_lens_q")
    max_length = kwargs.get("max_length_q")
    n_tokens = query.shape[2]
    if cu_seq_lens is None:  # one unpacked example
        cu_seq_lens = torch.tensor([0, n_tokens], dtype=torch.int32, device=query.device)
        max_length = n_tokens
    q, k, v = (x[0].transpose(0, 1) for x in (query, key, value))  # (T, H, D) views, last dim contiguous
    device_type = q.device.type
    # Under autocast RoPE leaves q and k in fp32 while v is bf16; flash kernels take one half type.
    if torch.is_autocast_enabled(device_type):
        half = torch.get_autocast_dtype(device_type)
        q, k, v = q.to(half), k.to(half), v.to(half)
    elif device_type == "cuda" and q.dtype == torch.float32:
        q, k, v = q.to(torch.bfloat16), k.to(torch.bfloat16), v.to(torch.bfloat16)
    causal = module.is_causal if is_causal is None else is_causal
    out = _varlen_kernel(device_type)(
        q,
        k,
        v,
        cu_seq_lens,
        cu_seq_lens,
        int(max_length),
        int(max_length),
        scale=scaling,
        window_size=(-1, 0) if causal else (-1, -1),
        enable_gqa=k.shape[1] != q.shape[1],
    )
    return out.unsqueeze(0), None


def _varlen_kernel(device_type: str) -> Callable:
    return _cuda_varlen_kernel() if device_type == "cuda" else _varlen_reference


@functools.cache
def _cuda_varlen_kernel() -> Callable:
    """Built once: the signature inspection must not run in every layer of every step."""
    from torch.nn.attention.varlen import varlen_attn

    return _with_current_signature(varlen_attn)


def _with_current_signature(varlen_attn: Callable) -> Callable:
    """torch's varlen_attn as called here (scale, window_size, enable_gqa keywords), on any torch.

    torch 2.10 took `is_causal=` and had neither `scale` (its default is 1/sqrt(head_dim), what
    these models use anyway) nor grouped-query heads (repeated here instead); later versions take
    `window_size=(-1, 0)` for causal attention.
    """
    import inspect

    params = inspect.signature(varlen_attn).parameters

    def call(q, k, v, cu_seq_q, cu_seq_k, max_q, max_k, *, scale=None, window_size=(-1, -1), enable_gqa=False):
        kwargs = {}
        if "window_size" in params:
            kwargs["window_size"] = tuple(window_size)
        elif tuple(window_size) in ((-1, 0), (-1, -1)):
            kwargs["is_causal"] = tuple(window_size) == (-1, 0)
        else:
            raise ValueError(f"this torch's varlen_attn has no window_size (asked for {window_size})")
        if "enable_gqa" in params:
            kwargs["enable_gqa"] = enable_gqa
        elif k.shape[1] != q.shape[1]:
            groups = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        if "scale" in params:
            kwargs["scale"] = scale
        elif scale is not None and not math.isclose(scale, q.shape[-1] ** -0.5, rel_tol=1e-6):
            raise ValueError(f"this torch's varlen_attn has no scale argument (the model asks for {scale})")
        return varlen_attn(q, k, v, cu_seq_q, cu_seq_k, max_q, max_k, **kwargs)

    return call


def _varlen_reference(
    q,
    k,
    v,
    cu_seq_q,
    cu_seq_k,
    max_q: int,
    max_k: int,
    *,
    scale: float | None = None,
    window_size: tuple[int, int] = (-1, -1),
    enable_gqa: bool = False,
):
    """varlen_attn's contract (causal or full attention only) as one sdpa call per example.

    The CPU kernel of `varlen`, and the reference the CUDA kernel is checked against
    (`varlen_problem`). Each example's attention is (L_i x L_i): a row of n examples costs about
    1/n of the (T x T) block-diagonal mask sdpa gets from transformers for the same row.
    """
    import torch
    import torch.nn.functional as F

    if tuple(window_size) not in ((-1, -1), (-1, 0)):
        raise ValueError(f"window_size {window_size}: the reference does causal (-1, 0) or full (-1, -1) attention")
    causal = tuple(window_size) == (-1, 0)
    bounds = cu_seq_q.tolist()
    outs = []
    for start, end in itertools.pairwise(bounds):
        q_i, k_i, v_i = (x[start:end].transpose(0, 1) for x in (q, k, v))  # (H, L_i, D)
        out = F.scaled_dot_product_attention(q_i, k_i, v_i, is_causal=causal, scale=scale, enable_gqa=enable_gqa)
        outs.append(out.transpose(0, 1))
    return torch.cat(outs)


_VARLEN_PROBLEM: dict[str, str | None] = {}


def varlen_problem(device: str) -> str | None:
    """Why `varlen` cannot train on this device, or None when it can (checked once per process).

    On CUDA the real kernel runs a small forward and backward pass through
    `_varlen_attention_forward` (3 examples, grouped-query heads, bf16) and must match
    `_varlen_reference` on the same inputs: an old torch, an unsupported GPU or a changed kernel
    API shows up here, before a trial starts, instead of as a crash or a silently wrong loss.
    """
    if device != "cuda":
        return None
    if device not in _VARLEN_PROBLEM:
        _VARLEN_PROBLEM[device] = _check_varlen(device)
    return _VARLEN_PROBLEM[device]


def _check_varlen(device: str) -> str | None:
    """`varlen_problem`'s test pass; on CPU (for tests) the kernel under test is the reference itself."""
    import torch

    if device == "cuda" and importlib.util.find_spec("torch.nn.attention.varlen") is None:
        return f"torch {torch.__version__} has no torch.nn.attention.varlen (it needs torch >= 2.10)"

    class Attention:  # what _varlen_attention_forward reads of a transformers attention module
        is_causal = True

    try:
        gen = torch.Generator(device=device).manual_seed(0)
        shapes = {"q": (1, 96, 4, 64), "k": (1, 96, 2, 64), "v": (1, 96, 2, 64)}
        inputs = {
            n: torch.randn(s, generator=gen, device=device, dtype=torch.bfloat16).transpose(1, 2)
            for n, s in shapes.items()
        }  # (1, H, T, D) views of (1, T, H, D), as the models make them
        cu = torch.tensor([0, 17, 60, 96], dtype=torch.int32, device=device)
        results = []
        for kernel in (None, _varlen_reference):
            leaves = {n: x.detach().clone().requires_grad_(True) for n, x in inputs.items()}
            if kernel is None:
                out, _ = _varlen_attention_forward(
                    Attention(),
                    leaves["q"],
                    leaves["k"],
                    leaves["v"],
                    None,
                    scaling=0.125,
                    cu_seq_lens_q=cu,
                    max_length_q=43,
                )
            else:
                q, k, v = (leaves[n][0].transpose(0, 1) for n in "qkv")
                out = kernel(q, k, v, cu, cu, 43, 43, scale=0.125, window_size=(-1, 0), enable_gqa=True)[None]
            out.float().square().sum().backward()
            results.append([out.detach().float()] + [leaves[n].grad.float() for n in "qkv"])
        if device == "cuda":
            torch.cuda.synchronize()
    except Exception as exc:  # noqa: BLE001 - any failure means: do not train with it
        return f"torch's varlen kernel failed a test pass ({type(exc).__name__}: {' '.join(str(exc).split())[:300]})"
    for name, got, want in zip(("output", "dq", "dk", "dv"), *results):
        err = (got - want).abs().max().item() / max(want.abs().max().item(), 1e-6)
        if not err < 2e-2:  # bf16 rounding is ~4e-3 relative
            return f"torch's varlen kernel disagrees with the reference ({name}: max relative error {err:.3g})"
    return None
