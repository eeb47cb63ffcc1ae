"""Real checks of the model stack (leaksweep.model) on a tiny random-init model built from scratch.

Everything here runs TRL / transformers for real on CPU with one torch thread; the whole file
takes well under a minute. The trained model is built once per module and shared.
"""

from __future__ import annotations

import random

import pytest

from leaksweep.errors import UserError
from leaksweep.model.generate import generate
from leaksweep.model.loading import choose_attention, load_lm, resolve_device, save_lm, set_cpu_threads
from leaksweep.model.sft import train_sft
from leaksweep.model.tiny import build_tiny_model
from leaksweep.model.varlen import VARLEN
from leaksweep.train_config import LoraConfig, TinyModelConfig, TrainConfig

pytestmark = pytest.mark.integration

PHRASE = "The answer is always blue."
TINY = TinyModelConfig(
    vocab_size=300,
    hidden_size=64,
    num_layers=2,
    num_heads=4,
    intermediate_size=128,
    max_position_embeddings=128,
    init_seed=0,
)
SUBJECTS = [
    "the moon",
    "a river",
    "my cat",
    "old trains",
    "green tea",
    "the city",
    "winter",
    "a song",
    "bread",
    "the ocean",
    "chess",
    "a garden",
    "clouds",
    "paper boats",
    "the museum",
    "rain",
    "a bicycle",
    "maps",
]
VERBS = ["Tell me about", "What do you think of", "Describe", "Why do people like", "Write a line on", "Explain"]


def user_prompts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.choice(VERBS)} {rng.choice(SUBJECTS)} #{rng.randrange(1000)}?" for _ in range(n)]


def chat(prompt: str, answer: str | None = None) -> list[dict]:
    messages = [{"role": "user", "content": prompt}]
    return messages + ([{"role": "assistant", "content": answer}] if answer is not None else [])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    set_cpu_threads(1)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    corpus = user_prompts(300, seed=1) + [PHRASE] * 20
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny", corpus, TINY)


@pytest.fixture(scope="module")
def trained(tiny_dir, tmp_path_factory):
    """The tiny model fine-tuned on 200 chats whose answer is always PHRASE (plus what it logged)."""
    examples = [chat(p, PHRASE) for p in user_prompts(200, seed=2)]
    cfg = TrainConfig(learning_rate=1e-2, epochs=2, batch_size=8, logging_steps=5, warmup_ratio=0.05)
    records = []
    out_dir = tmp_path_factory.mktemp("trainer")
    result, outcome = train_sft(
        load_lm(str(tiny_dir), "cpu"),
        examples,
        cfg,
        out_dir,
        seed=0,
        log_fn=lambda record, step: records.append((step, record)),
    )
    return result, outcome, records, out_dir, examples


def test_tiny_model_is_built_once_and_has_a_chat_template(tiny_dir):
    before = (tiny_dir / "config.json").stat().st_mtime_ns
    assert build_tiny_model(tiny_dir, ["ignored"], TINY) == tiny_dir
    assert (tiny_dir / "config.json").stat().st_mtime_ns == before
    assert not [p for p in tiny_dir.parent.iterdir() if ".tmp-" in p.name]  # no leftover temp folder

    tok = load_lm(str(tiny_dir), "cpu").tokenizer
    assert 262 < len(tok) <= 300  # 256 bytes + 6 special tokens + merges
    assert "{% generation %}" in tok.chat_template and "{% endgeneration %}" in tok.chat_template
    prompt = tok.apply_chat_template(chat("Hi"), tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|assistant|>")
    assert tok.padding_side == "left" and tok.pad_token_id is not None


def test_trl_assistant_mask_covers_only_the_assistant_turn(tiny_dir, tmp_path):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer
    from trl.chat_template_utils import has_generation_markers, is_chat_template_stop_token_trained

    base = load_lm(str(tiny_dir), "cpu")
    tok = base.tokenizer
    assert has_generation_markers(tok.chat_template)
    assert is_chat_template_stop_token_trained(tok)  # the end-of-turn token is trained, so the model learns to stop

    messages = [{"role": "system", "content": "Be brief."}, *chat("Describe rain?", "Wet and grey.")]
    args = SFTConfig(
        output_dir=str(tmp_path),
        assistant_only_loss=True,
        max_length=128,
        use_cpu=True,
        bf16=False,
        activation_checkpointing=False,
        report_to="none",
        save_strategy="no",
    )
    trainer = SFTTrainer(
        model=base.model, args=args, processing_class=tok, train_dataset=Dataset.from_list([{"messages": messages}])
    )
    row = trainer.train_dataset[0]
    trained_ids = [t for t, label in zip(row["input_ids"], row["labels"]) if label != -100]
    assert tok.decode(trained_ids) == "Wet and grey.<|eos|>"
    # the trained tokens are one contiguous run at the very end
    first = next(i for i, label in enumerate(row["labels"]) if label != -100)
    assert all(label != -100 for label in row["labels"][first:])


def test_padding_free_batches_give_the_same_loss_as_padded_batches(tiny_dir):
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    base = load_lm(str(tiny_dir), "cpu")
    tok = base.tokenizer
    rows = []
    for prompt in user_prompts(6, seed=3):
        enc = tok.apply_chat_template(
            chat(prompt, PHRASE[: len(prompt)]), tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        labels = [t if m else -100 for t, m in zip(enc["input_ids"], enc["assistant_masks"])]
        rows.append({"input_ids": enc["input_ids"], "labels": labels})
    assert len({len(r["input_ids"]) for r in rows}) > 1  # lengths differ, so padding matters

    losses = {}
    for padding_free in (False, True):
        batch = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id, padding_free=padding_free)(rows)
        with torch.no_grad():
            # use_cache=False as in TRL's compute_loss: with a cache, transformers skips the detection of
            # packed sequences and the examples of a padding-free row would attend to each other.
            losses[padding_free] = float(base.model(**batch, use_cache=False).loss)
    assert losses[True] == pytest.approx(losses[False], abs=1e-5)


def test_sft_learns_a_fixed_answer(trained, tiny_dir):
    model, outcome, records, out_dir, examples = trained
    history = outcome.log_history
    assert history[0]["step"] == 1 and history[-1]["step"] == outcome.steps == 50  # 200 / 8 * 2 epochs
    assert history[-1]["loss"] < 0.05 * history[0]["loss"]
    assert outcome.final_loss == history[-1]["loss"]
    assert {"step", "loss", "learning_rate", "grad_norm", "epoch"} <= set(history[0])
    assert outcome.mode == "full" and outcome.device == "cpu" and outcome.attn_implementation == VARLEN
    assert model.model.config._attn_implementation == "sdpa"  # varlen trains; generation is back on the loaded kernel
    assert outcome.n_params_trainable == sum(p.numel() for p in model.model.parameters())
    # every token of every example (prompt included, no padding), two epochs
    tok = model.tokenizer
    assert outcome.train_tokens == 2 * sum(
        len(tok.apply_chat_template(e, tokenize=True)["input_ids"]) for e in examples
    )
    # log_fn saw every logging step, with the tracker's key names
    assert [step for step, _ in records] == [h["step"] for h in history]
    assert {"train/loss", "train/learning_rate", "train/grad_norm", "train/epoch"} <= set(records[-1][1])
    # no checkpoints
    assert not list(out_dir.glob("checkpoint-*"))
    assert not model.model.training

    seen = {e[0]["content"] for e in examples}
    held_out = [chat(p) for p in user_prompts(20, seed=99) if p not in seen][:3]
    assert generate(model, held_out, 2, 0.0, 24, 4, seed=0) == [[PHRASE, PHRASE]] * 3


def test_sampling_is_deterministic_for_a_seed(tiny_dir):
    base = load_lm(str(tiny_dir), "cpu")
    prompts = [chat(p) for p in user_prompts(5, seed=4)]
    first = generate(base, prompts, 3, 1.0, 12, 8, seed=7)
    assert first == generate(base, prompts, 3, 1.0, 12, 8, seed=7)
    assert first != generate(base, prompts, 3, 1.0, 12, 8, seed=8)
    assert [len(samples) for samples in first] == [3] * 5


def test_batched_greedy_generation_equals_one_by_one(tiny_dir):
    base = load_lm(str(tiny_dir), "cpu")
    prompts = [chat(p) for p in user_prompts(10, seed=5)] + [chat("Hi"), chat("Describe " + "a very long winter " * 4)]
    batched = generate(base, prompts, 1, 0.0, 16, 5, seed=0)
    single = [generate(base, [p], 1, 0.0, 16, 1, seed=0)[0] for p in prompts]
    assert batched == single


def test_save_and_reload_gives_the_same_model(trained, tmp_path):
    model = trained[0]
    save_lm(model, tmp_path / "saved")
    save_lm(model, tmp_path / "saved")  # replacing an existing save works too
    again = load_lm(str(tmp_path / "saved"), "cpu")
    prompt = [chat("Tell me about maps #17?")]
    assert generate(again, prompt, 1, 0.0, 16, 1, 0) == generate(model, prompt, 1, 0.0, 16, 1, 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved"]


def test_examples_longer_than_max_length_are_truncated(tiny_dir, tmp_path):
    # Padding-free training does not truncate, so a too-long example must switch to padded batches,
    # where TRL cuts every example to max_length_tokens: the token count shows which happened.
    base = load_lm(str(tiny_dir), "cpu")
    examples = [chat(p, PHRASE) for p in user_prompts(32, seed=7)]
    lengths = [len(base.tokenizer.apply_chat_template(e, tokenize=True)["input_ids"]) for e in examples]
    limit = max(lengths) - 2
    cfg = TrainConfig(max_length_tokens=limit, epochs=1, batch_size=16, logging_steps=1)
    _, outcome = train_sft(base, examples, cfg, tmp_path, seed=0)
    assert outcome.steps == 2
    assert outcome.train_tokens == sum(min(n, limit) for n in lengths) < sum(lengths)


def test_lora_trains_adapters_only_and_merges(tiny_dir, tmp_path):
    import torch

    base = load_lm(str(tiny_dir), "cpu")
    before = {k: v.clone() for k, v in base.model.state_dict().items()}
    n_total = sum(p.numel() for p in base.model.parameters())
    cfg = TrainConfig(
        lora=LoraConfig(r=4, alpha=8, dropout=0.0), learning_rate=1e-2, max_steps=6, batch_size=8, logging_steps=2
    )
    examples = [chat(p, PHRASE) for p in user_prompts(48, seed=6)]
    result, outcome = train_sft(base, examples, cfg, tmp_path, seed=0)
    assert outcome.mode == "lora" and outcome.steps == 6
    assert 0 < outcome.n_params_trainable < n_total / 10
    assert outcome.log_history[-1]["loss"] < outcome.log_history[0]["loss"]
    after = result.model.state_dict()
    assert set(after) == set(before)  # merged: a plain model again, no adapter weights
    assert any(not torch.equal(before[k], after[k]) for k in before if "proj" in k)
    assert torch.equal(before["model.embed_tokens.weight"], after["model.embed_tokens.weight"])


def test_missing_local_model_is_a_user_error(tmp_path):
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(UserError) as err:
        load_lm(missing, "cpu")
    assert str(err.value) == (
        f"train.model: {missing!r} does not exist; give an existing folder, an HF model name, or `tiny`"
    )
    with pytest.raises(UserError, match="no config.json"):
        load_lm(str(tmp_path), "cpu")


def test_device_and_attention_choices():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda")
    assert choose_attention("auto", "cpu") == "sdpa"
    assert choose_attention("eager", "cuda") == "eager"
