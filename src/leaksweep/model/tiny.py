"""The built-in tiny model (`train.model: tiny`): a byte-level BPE tokenizer and a random-init Llama.

Both are built from the sweep's own texts (prompts, every response, eval prompts), deterministically,
so a demo or a test needs no download. The chat template is the smallest one that gives TRL an
assistant mask and makes generation stop at the end of the assistant's turn.

tokenizers, transformers and torch are imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from leaksweep.errors import UserError
from leaksweep.model.callbacks import quiet_progress_bars
from leaksweep.model.loading import write_folder_atomically
from leaksweep.train_config import TinyModelConfig

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

    with quiet_progress_bars():
        write_folder_atomically(out_dir, write, replace=False)
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
