"""The `train:` section of a sweep file: one supervised fine-tune (the model, LoRA or full, steps,
learning rate, the tiny model's shape). config.py assembles it into SweepConfig.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class LoraConfig:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"


@dataclass(frozen=True)
class TinyModelConfig:
    """Shape of the built-in random-init causal LM used when `train.model` is `tiny`."""

    vocab_size: int = 1024
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 256
    max_position_embeddings: int = 256
    init_seed: int = 0


@dataclass(frozen=True)
class TrainConfig:
    """One supervised fine-tune. `model` is `tiny` (built-in), a local folder, or an HF hub name.

    LoRA when `lora` is given, else a full fine-tune. Steps: `max_steps` when set, else `epochs`.
    attention: `auto` picks flash_attention_2 when flash-attn imports on a GPU, else sdpa.
    device: `auto` uses CUDA when available. torch_threads applies on CPU (one per process).
    """

    model: str = "tiny"
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    lora: LoraConfig | None = None
    learning_rate: float = 3e-3
    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 16
    grad_accum_steps: int = 1
    max_length_tokens: int = 256
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    lr_scheduler: str = "linear"
    logging_steps: int = 5
    attention: str = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    torch_threads: int = 1
    save_model: bool = False
    # Training processes of one trial (DDP through `accelerate launch`, one per GPU of the node). `auto`:
    # LEAKSWEEP_NUM_GPUS (set by slurm/sweep.sh from the allocation) when above 1, else 1 (in-process).
    num_processes: int | Literal["auto"] = "auto"

    def check(self) -> list[str]:
        problems = []
        if self.learning_rate <= 0:
            problems.append(f".learning_rate: {self.learning_rate} must be > 0")
        if self.max_steps is not None and self.max_steps < 1:
            problems.append(f".max_steps: {self.max_steps} must be at least 1")
        if self.epochs <= 0:
            problems.append(f".epochs: {self.epochs} must be > 0")
        if isinstance(self.num_processes, int) and self.num_processes < 1:
            problems.append(f".num_processes: {self.num_processes} must be at least 1 (or auto)")
        for name in ("batch_size", "grad_accum_steps", "logging_steps", "max_length_tokens", "torch_threads"):
            if getattr(self, name) < 1:
                problems.append(f".{name}: {getattr(self, name)} must be at least 1")
        if not 0.0 <= self.warmup_ratio <= 1.0:
            problems.append(f".warmup_ratio: {self.warmup_ratio} is outside [0, 1]")
        if self.lr_scheduler not in LR_SCHEDULERS:
            problems.append(f".lr_scheduler: {self.lr_scheduler!r} is unknown; use one of {', '.join(LR_SCHEDULERS)}")
        return problems


LR_SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial")
SEARCHABLE_TRAIN_KEYS = ("learning_rate", "epochs", "max_steps", "batch_size", "warmup_ratio", "weight_decay")
