"""Supervised fine-tuning with TRL on chat examples, loss on the assistant's tokens only.

`train_sft` reads like the recipe it runs: plan the run (steps, layout, attention: `plan_training`),
build the Trainer (`sft_arguments`, `build_trainer`), train, then either hand back a checkpoint
(preemption) or the merged model and its `TrainOutcome`. Settings that differ from TRL's defaults,
measured on these library versions:
* CPU training: `use_cpu=True`, `bf16=False`, activation checkpointing off (TRL's default is on;
  at these model sizes it only costs time);
* the batch layout and attention kernel come from `training_setup` (model/train_setup.py);
* nothing is checkpointed unless preemption is requested (cluster preemption): then the Trainer
  saves one checkpoint and training stops.

The examples are chat examples (lists of messages: TRL applies the chat template and tokenizes them)
or a trial's pre-tokenized rows (`TokenRows`, model/token_cache.py: each source tokenized once per
sweep); both train the same (tests/model/test_token_cache.py).

torch, trl, peft and datasets are imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

import math
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from leaksweep.cluster import preemption
from leaksweep.errors import UserError
from leaksweep.model.callbacks import install_callbacks, preempt_callback, quiet_progress_bars
from leaksweep.model.loading import LM, TrainOutcome
from leaksweep.model.token_cache import TokenRows
from leaksweep.model.train_setup import allow_flex_recompiles, has_sliding_window, training_setup
from leaksweep.model.varlen import VARLEN, register_varlen_attention
from leaksweep.train_config import LoraConfig, TrainConfig

LAYOUTS = ("auto", "padding_free", "padded")
Examples = list[list[dict]] | TokenRows  # chat examples, or rows tokenized by model/token_cache.py


@dataclass(frozen=True)
class TrainPlan:
    """What a run will do, decided before the Trainer exists."""

    setup: dict  # training_setup's record: layout, attention, precision, optimizer, loss
    total_steps: int  # optimizer steps of the whole run

    @property
    def padding_free(self) -> bool:
        return self.setup["layout"] == "padding_free"


def train_sft(
    lm: LM,
    examples: Examples,
    cfg: TrainConfig,
    out_dir: Path,
    seed: int,
    log_fn: Callable[[dict, int], None] | None = None,
    layout: str = "auto",
    resume_from: Path | None = None,
) -> tuple[LM, TrainOutcome]:
    """Supervised fine-tune on chat examples (or their pre-tokenized rows) with TRL, loss on assistant tokens only.

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
    _check_request(examples, layout, resume_from)
    plan = plan_training(lm, examples, cfg, layout)
    _use_attention(lm, plan.setup["attention"])
    args = sft_arguments(cfg, plan, out_dir, seed, lm.device, pretokenized=isinstance(examples, TokenRows))
    trainer, stop = build_trainer(lm, examples, cfg, args, seed, log_fn)
    n_trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    runtime_s = _train(trainer, lm, plan.setup["attention"], resume_from)
    _raise_if_preempted(stop, out_dir)
    for old in Path(out_dir).glob("checkpoint-*"):  # finished: a resume point is no longer needed
        shutil.rmtree(old, ignore_errors=True)
    trained, outcome = _outcome(trainer, lm, cfg, plan, runtime_s, n_trainable)
    del trainer  # drops the optimizer state before evaluation generates
    return trained, outcome


def _check_request(examples: Examples, layout: str, resume_from: Path | None) -> None:
    if not examples:
        raise UserError("train: there are no training examples (did the mixture drop every prompt?)")
    if preemption.requested.is_set():  # the signal came before training: keep the checkpoint we have
        raise preemption.Preempted(resume_from, None)
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}: use auto, padding_free or padded")


def plan_training(lm: LM, examples: Examples, cfg: TrainConfig, layout: str = "auto") -> TrainPlan:
    """The run's setup (`training_setup`, from the longest example) and its optimizer steps."""
    if isinstance(examples, TokenRows):
        if examples.max_length != cfg.max_length_tokens:
            raise ValueError(
                f"token rows cut at {examples.max_length} tokens, but train.max_length_tokens is {cfg.max_length_tokens}"
            )
        lengths = examples.lengths
    else:
        lengths = _chat_lengths(lm.tokenizer, examples)
    setup = training_setup(
        lm.attn_implementation, lm.device, cfg, max(lengths), layout, sliding_window=has_sliding_window(lm.model.config)
    )
    return TrainPlan(setup, cfg.max_steps or _optimizer_steps(len(examples), cfg))


def _use_attention(lm: LM, attention: str) -> None:
    """Switch the model to the training kernel (`_train` switches it back to the loaded one)."""
    if attention == VARLEN:
        register_varlen_attention()
    if attention != lm.attn_implementation:
        lm.model.set_attn_implementation(attention)
    if attention == "flex_attention":
        allow_flex_recompiles()


def sft_arguments(cfg: TrainConfig, plan: TrainPlan, out_dir: Path, seed: int, device: str, pretokenized: bool = False):
    """The SFTConfig of a run: the train config's settings plus the plan's layout, precision and optimizer.

    `pretokenized`: the dataset is TokenRows' (input_ids, labels already masked to the assistant's tokens
    and truncated): TRL skips its preparation, and assistant_only_loss is off because the labels carry it
    (TRL refuses assistant_only_loss on a dataset without messages).
    """
    setup = plan.setup
    return _sft_config(
        output_dir=str(out_dir),
        assistant_only_loss=not pretokenized,
        dataset_kwargs={"skip_prepare_dataset": True} if pretokenized else None,
        padding_free=plan.padding_free,
        max_length=None if plan.padding_free else cfg.max_length_tokens,
        pad_to_multiple_of=setup["pad_to_multiple_of"],
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum_steps,
        # transformers 5: a float below 1 is a fraction of the steps; 1 or more would mean steps.
        warmup_steps=cfg.warmup_ratio if cfg.warmup_ratio < 1 else plan.total_steps,
        weight_decay=cfg.weight_decay,
        lr_scheduler_type=cfg.lr_scheduler,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,  # the curve needs its starting point
        seed=seed,
        data_seed=seed,
        save_strategy="no",  # only a preemption saves (callbacks.preempt_callback)
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


def build_trainer(
    lm: LM, examples: Examples, cfg: TrainConfig, args, seed: int, log_fn: Callable[[dict, int], None] | None
) -> tuple:
    """The SFTTrainer (LoRA adapters added when `cfg.lora`) with our callbacks; returns it and its
    preemption callback (whose `stopped_at` says whether training stopped for a checkpoint)."""
    import torch
    from trl import SFTTrainer

    peft_config = _peft_config(cfg.lora) if cfg.lora else None
    torch.manual_seed(seed)  # the LoRA init happens before the Trainer seeds itself
    with quiet_progress_bars(), warnings.catch_warnings():
        # peft 0.21 reads a property transformers 5 deprecated; nothing for us to change.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        trainer = SFTTrainer(
            model=lm.model,
            args=args,
            train_dataset=examples.dataset() if isinstance(examples, TokenRows) else _messages_dataset(examples),
            processing_class=lm.tokenizer,
            peft_config=peft_config,
        )
    install_callbacks(trainer, log_fn)
    stop = preempt_callback()
    trainer.add_callback(stop)
    return trainer, stop


def _train(trainer, lm: LM, attention: str, resume_from: Path | None) -> float:
    """Train (from `resume_from` when given); the seconds it took."""
    started = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    finally:
        if attention != lm.attn_implementation:
            # generation keeps the loaded kernel (flex / varlen kernels gain nothing on padded prompts)
            lm.model.set_attn_implementation(lm.attn_implementation)
    return time.perf_counter() - started


def _raise_if_preempted(stop, out_dir: Path) -> None:
    """preemption.Preempted with the checkpoint the Trainer saved, when training stopped for one."""
    if stop.stopped_at is None:
        return
    from transformers.trainer_utils import get_last_checkpoint

    checkpoint = get_last_checkpoint(str(out_dir))
    if checkpoint is None:
        raise RuntimeError(f"preempted at step {stop.stopped_at}, but no checkpoint was written under {out_dir}")
    raise preemption.Preempted(Path(checkpoint), stop.stopped_at)


def _outcome(
    trainer, lm: LM, cfg: TrainConfig, plan: TrainPlan, runtime_s: float, n_trainable: int
) -> tuple[LM, TrainOutcome]:
    """The trained model (LoRA merged in, eval mode, the loaded attention kernel) and what the run did."""
    model = trainer.model
    if cfg.lora:
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
        attn_implementation=plan.setup["attention"],
        device=lm.device,
        mode="lora" if cfg.lora else "full",
        n_params_trainable=int(n_trainable),
        setup=plan.setup,
        log_history=history,
    )
    return LM(model, lm.tokenizer, lm.device, lm.attn_implementation), outcome


def _sft_config(**kwargs):
    """SFTConfig, with the value errors of a bad train setting (an unknown scheduler name, a
    negative warmup) reported as a UserError instead of a traceback."""
    from trl import SFTConfig

    try:
        return SFTConfig(**kwargs)
    except ValueError as exc:
        raise UserError(f"train: invalid training settings: {' '.join(str(exc).split())}") from exc


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
