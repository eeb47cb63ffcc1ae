"""Load a causal language model with its tokenizer, pick the device and attention kernel, save it.

The model room (leaksweep.model) is the only part of leaksweep that imports torch, transformers,
trl, peft, tokenizers (and datasets for the trainer's input). Those imports take seconds, so they
happen inside the functions that need them: `import leaksweep.model.loading` stays cheap, and
`leaksweep --help` or a config check never pays for the model stack.

Choices, measured on these exact library versions:
* one torch thread per process on CPU (`set_cpu_threads`): two threads next to any other busy
  process made each step stall ~2 s;
* weights in float32 (on CUDA the trainer adds bf16 autocast), so optimizer updates are never
  rounded away;
* transformers 5 removed `torch_dtype` (now `dtype`) and `warmup_ratio` (a float `warmup_steps`
  below 1 is a fraction now); `apply_chat_template(tokenize=True)` returns a dict.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from leaksweep.errors import UserError
from leaksweep.model.callbacks import quiet_progress_bars
from leaksweep.model.train_setup import flash_attn_installed
from leaksweep.model.varlen import VARLEN


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
    num_processes: int = 1  # DDP training processes (accelerate launch; model/ddp.py)


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
    if device == "cuda" and flash_attn_installed():
        return "flash_attention_2"
    return "sdpa"


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
        with quiet_progress_bars():
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

    _prepare_tokenizer(tokenizer, model)
    net.config.pad_token_id = tokenizer.pad_token_id
    net.generation_config.pad_token_id = tokenizer.pad_token_id
    net.to(device)
    net.eval()
    return LM(net, tokenizer, device, net.config._attn_implementation)


def load_tokenizer(model: str):
    """The tokenizer `load_lm(model)` returns (pad token, left padding), without loading the weights."""
    from transformers import AutoTokenizer

    folder = local_folder(model)
    with quiet_progress_bars():
        tokenizer = AutoTokenizer.from_pretrained(str(folder) if folder is not None else model)
    _prepare_tokenizer(tokenizer, model)
    return tokenizer


def _prepare_tokenizer(tokenizer, model: str) -> None:
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # generation appends on the right, so prompts must end flush
    if tokenizer.chat_template is None:
        raise UserError(f"train.model: {model!r} has no chat template; leaksweep trains and samples chat messages")


def local_folder(model: str, key: str = "train.model") -> Path | None:
    """The folder `model` names, or None for a hub name. A path-looking name must exist."""
    path = Path(model).expanduser()
    if model.startswith(("/", ".", "~")):
        if not path.exists():
            raise UserError(f"{key}: {model!r} does not exist; give an existing folder, an HF model name, or `tiny`")
        return path
    return path if path.exists() else None


BUILT_IN_MODELS = ("smollm2", "tiny")  # train.model names leaksweep builds (tiny) or converts (smollm2) itself
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set, now or when huggingface_hub was imported
    (it reads them once, at import)."""
    from huggingface_hub import constants

    now = any(os.environ.get(v, "").upper() in ("1", "ON", "YES", "TRUE") for v in OFFLINE_VARIABLES)
    return now or bool(constants.HF_HUB_OFFLINE)


def check_model(model: str, key: str = "train.model", built_in: tuple[str, ...] = BUILT_IN_MODELS) -> None:
    """UserError unless `model` names a model that can be loaded: a local folder (a path-looking name, or
    one that exists) holding a config.json, or a Hugging Face hub id whose config.json is in the local HF
    cache or, unless the hub is off (HF_HUB_OFFLINE), downloadable from the hub. The built-in names are
    the caller's to handle. Called before anything is written (a sweep's prepare, `rollouts generate`),
    so that a typo in the name is found before the first trial; imports huggingface_hub only, for a hub
    id (no torch, no transformers). `built_in`: the names the caller also accepts, for the hint."""
    names = ", ".join(f"`{n}`" for n in built_in)
    fix = (
        f"give a local model folder (one with a config.json){', ' + names if names else ''}, or a Hugging Face "
        "hub id that is in the local cache or reachable"
    )
    folder = local_folder(model, key)
    if folder is not None:
        if not folder.is_dir() or not (folder / "config.json").is_file():
            raise UserError(f"{key}: {model!r} is not a model folder (no config.json in {folder}); {fix}")
        return
    _check_hub_model(model, key, fix)


def _check_hub_model(model: str, key: str, fix: str) -> None:
    """The hub id's config.json: from the local cache, or (online) the hub, as transformers would fetch it."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = hub_offline()
    try:
        hf_hub_download(model, "config.json", local_files_only=offline)  # a few kB; cached for the trials
        return
    except HFValidationError as exc:
        why = f"neither an existing folder nor a valid hub id ({_first_line(exc)})"
    except GatedRepoError:  # before RepositoryNotFoundError, its base class
        why = "a gated model on the Hugging Face hub: accept its terms there and log in (HF_TOKEN)"
    except RepositoryNotFoundError:
        why = "not a model on the Hugging Face hub (a private one needs HF_TOKEN); check the spelling"
    except RevisionNotFoundError as exc:
        why = f"not found on the Hugging Face hub ({_first_line(exc)})"
    except RemoteEntryNotFoundError:
        why = "a hub repository without a config.json: not a transformers model"
    except LocalEntryNotFoundError as exc:
        if offline:
            variable = next((v for v in OFFLINE_VARIABLES if os.environ.get(v)), "HF_HUB_OFFLINE")
            why = (
                f"not in the local Hugging Face cache ({constants.HF_HUB_CACHE}), and {variable} is set, so the hub "
                "is not asked (download it where there is network, or unset it)"
            )
        else:
            why = (
                f"not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) and the hub cannot be reached "
                f"({_first_line(exc)})"
            )
    except OSError as exc:  # the hub's HTTP errors are OSErrors too
        why = f"cannot be fetched from the Hugging Face hub ({type(exc).__name__}: {_first_line(exc)})"
    raise UserError(f"{key}: {model!r} is {why}; {fix}")


def _first_line(exc: BaseException) -> str:
    return " ".join(str(exc).strip().splitlines()[:1])[:300]


def save_lm(lm: LM, out_dir: Path) -> None:
    """Save model and tokenizer (LoRA merged in) as a plain HF folder, replacing `out_dir` atomically."""
    model = lm.model
    if hasattr(model, "merge_and_unload"):  # a PEFT wrapper, should one reach here
        model = model.merge_and_unload()

    def write(folder: Path) -> None:
        model.save_pretrained(folder)
        lm.tokenizer.save_pretrained(folder)

    with quiet_progress_bars():
        write_folder_atomically(Path(out_dir), write, replace=True)


def write_folder_atomically(out_dir: Path, write: Callable[[Path], None], replace: bool) -> None:
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
