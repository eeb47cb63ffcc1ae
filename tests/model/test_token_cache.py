"""The token cache (model/token_cache.py): each source tokenized once, trials select rows, and training on
the selected rows is the same training as on chat examples (TRL tokenizing them), to the last bit on CPU.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from leaksweep.model import token_cache
from leaksweep.model.loading import load_lm, set_cpu_threads
from leaksweep.model.sft import build_trainer, plan_training, sft_arguments, train_sft
from leaksweep.model.tiny import build_tiny_model
from leaksweep.model.token_cache import TokenCache, TokenRows, cache_key, select_rows
from leaksweep.train_config import TinyModelConfig, TrainConfig

TINY = TinyModelConfig(
    vocab_size=300,
    hidden_size=32,
    num_layers=2,
    num_heads=2,
    intermediate_size=64,
    max_position_embeddings=256,
    init_seed=0,
)
CFG = TrainConfig(learning_rate=3e-3, max_steps=5, batch_size=8, logging_steps=1, max_length_tokens=128)
WORDS = "sun moon river cat tea city winter song bread ocean chess garden cloud boat rain map".split()
N_PROMPTS = 60


def _text(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


class World:
    """Prompts and two sources: `clean` (short answers, one prompt missing) and `teacher` (some long)."""

    def __init__(self, seed: int = 0):
        rng = random.Random(seed)
        self.prompts = [[{"role": "user", "content": _text(rng, 1, 12)}] for _ in range(N_PROMPTS)]
        # prompt 6's long question leaves no room for its answer at a short max length: TRL drops that row
        self.prompts[6] = [{"role": "user", "content": _text(rng, 60, 60)}]
        self.responses = {
            "clean": {i: _text(rng, 1, 20) for i in range(N_PROMPTS) if i != 3},
            "teacher": {i: _text(rng, 1, 90 if i % 5 == 0 else 20) for i in range(N_PROMPTS)},
        }

    def conversation(self, source: str, index: int) -> list[dict] | None:
        response = self.responses[source].get(index)
        return None if response is None else self.prompts[index] + [{"role": "assistant", "content": response}]

    def rows(self, seed: int, n: int) -> list[tuple[int, str]]:
        rng = random.Random(seed)
        indices = rng.sample([i for i in range(N_PROMPTS) if i != 3], n)
        return [(i, rng.choice(["clean", "teacher"])) for i in indices]

    def examples(self, rows) -> list[list[dict]]:
        return [self.conversation(s, i) for i, s in rows]


@pytest.fixture(scope="module")
def world():
    return World()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, world):
    set_cpu_threads(1)
    corpus = [m["content"] for p in world.prompts for m in p] + list(world.responses["teacher"].values())
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny", corpus, TINY)


@pytest.fixture(scope="module")
def tokenizer(tiny_dir):
    return load_lm(str(tiny_dir), "cpu").tokenizer


def _select(tmp_path, tokenizer, world, rows, max_length):
    cache = TokenCache(tmp_path / "tokens", tokenizer, max_length, "world-0")
    return cache.select(rows, world.conversation, N_PROMPTS)


def _trl_prepared(tiny_dir, examples, cfg, tmp_path, pretokenized=False):
    """The dataset TRL trains on (after its own preparation when given chat examples), as (ids, labels) rows."""
    lm = load_lm(str(tiny_dir), "cpu")
    plan = plan_training(lm, examples, cfg)
    args = sft_arguments(cfg, plan, tmp_path, 0, "cpu", pretokenized=pretokenized)
    trainer, _ = build_trainer(lm, examples, cfg, args, 0, None)
    return plan, [(r["input_ids"], r["labels"]) for r in trainer.train_dataset]


@pytest.mark.integration
@pytest.mark.parametrize("max_length", [128, 40])  # 40: the long rows are truncated, one is dropped
def test_selected_rows_are_what_trl_makes_of_the_chat_examples(tiny_dir, tokenizer, world, tmp_path, max_length):
    rows = world.rows(seed=1, n=40) + [(6, "clean"), (0, "teacher"), (5, "teacher")]
    cfg = replace(CFG, max_length_tokens=max_length)
    selected = _select(tmp_path, tokenizer, world, rows, max_length)
    assert len(selected) == len(rows)
    # the lengths plan_training reads: the untruncated chat lengths
    assert selected.lengths == token_cache_lengths(tokenizer, world.examples(rows))
    plan, want = _trl_prepared(tiny_dir, world.examples(rows), cfg, tmp_path / "chat")
    assert plan.setup["layout"] == ("padding_free" if max_length == 128 else "padded")
    got = [(r["input_ids"], r["labels"]) for r in selected.dataset()]
    assert got == want
    if max_length == 40:
        assert len(got) == len(rows) - 1  # row (6, clean): its answer starts after token 40
    # and TRL takes the pre-tokenized dataset as it is
    token_plan, trained_on = _trl_prepared(tiny_dir, selected, cfg, tmp_path / "tokens", pretokenized=True)
    assert trained_on == want and token_plan == plan


def token_cache_lengths(tokenizer, examples):
    from leaksweep.model.sft import _chat_lengths

    return _chat_lengths(tokenizer, examples)


@pytest.mark.integration
@pytest.mark.parametrize("max_length", [128, 40])  # padding-free rows with varlen; padded and truncated rows
def test_training_on_token_rows_gives_the_same_losses_as_on_chat_examples(
    tiny_dir, tokenizer, world, tmp_path, max_length
):
    rows = world.rows(seed=2, n=50)
    if max_length == 128:  # only rows that fit: the padding-free layout
        lengths = token_cache_lengths(tokenizer, world.examples(rows))
        rows = [r for r, n in zip(rows, lengths) if n <= max_length]
    rows = rows[:40]
    cfg = replace(CFG, max_length_tokens=max_length)
    outcomes = {}
    for kind, examples in [
        ("chat", world.examples(rows)),
        ("tokens", _select(tmp_path, tokenizer, world, rows, max_length)),
    ]:
        _, outcome = train_sft(load_lm(str(tiny_dir), "cpu"), examples, cfg, tmp_path / kind, seed=0)
        outcomes[kind] = outcome
    chat, tokens = outcomes["chat"], outcomes["tokens"]
    assert chat.setup == tokens.setup
    assert chat.setup["layout"] == ("padding_free" if max_length == 128 else "padded")
    assert len(chat.log_history) == CFG.max_steps
    assert tokens.log_history == chat.log_history  # exact: same batches, same kernels, same order of sums
    assert tokens.train_tokens == chat.train_tokens


def test_a_second_trial_reuses_the_cached_sources(tokenizer, world, tmp_path, monkeypatch):
    encoded = []
    encode = token_cache._encode

    def counted(tok, chats, template):
        encoded.append(len(chats))
        return encode(tok, chats, template)

    monkeypatch.setattr(token_cache, "_encode", counted)
    first = _select(tmp_path, tokenizer, world, world.rows(seed=3, n=30), 128)
    assert sum(encoded) == N_PROMPTS * 2 - 1  # every prompt of both sources once (clean lacks one)
    files = sorted(first.folder.glob("*.arrow"))
    assert [f.name for f in files] == ["clean.arrow", "teacher.arrow"]
    before = [(f.stat().st_ino, f.stat().st_mtime_ns) for f in files]
    token_cache._OPEN.clear()  # as a fresh worker process would: read from the files
    second = _select(tmp_path, tokenizer, world, world.rows(seed=4, n=30), 128)
    assert sum(encoded) == N_PROMPTS * 2 - 1  # nothing tokenized again
    assert [(f.stat().st_ino, f.stat().st_mtime_ns) for f in files] == before
    assert second.folder == first.folder
    # the rows a trial gets do not depend on what was cached before: select from a fresh cache
    fresh = _select(tmp_path / "fresh", tokenizer, world, world.rows(seed=4, n=30), 128)
    assert fresh.table.equals(second.table) and fresh.lengths == second.lengths
    # a job file's description selects the same rows again (model/ddp.py)
    assert TokenRows.from_json(second.to_json()).table.equals(second.table)
    assert not [p for p in first.folder.iterdir() if p.name.endswith(".tmp")]  # written atomically


def test_the_key_names_tokenizer_template_max_length_and_data(tiny_dir, tokenizer, world, tmp_path):
    key = cache_key(tokenizer, 128, "world-0")
    assert cache_key(load_lm(str(tiny_dir), "cpu").tokenizer, 128, "world-0") == key  # same files, same key
    assert cache_key(tokenizer, 64, "world-0") != key
    assert cache_key(tokenizer, 128, "world-1") != key
    other_dir = build_tiny_model(tmp_path / "other", ["a b c d e f g h"] * 20, replace(TINY, vocab_size=280))
    assert cache_key(load_lm(str(other_dir), "cpu").tokenizer, 128, "world-0") != key
    retemplated = load_lm(str(tiny_dir), "cpu").tokenizer
    retemplated.chat_template = retemplated.chat_template.replace("<|eos|>{% endgeneration %}", "{% endgeneration %}")
    assert cache_key(retemplated, 128, "world-0") != key


def test_a_row_the_source_lacks_is_an_error_naming_it(tokenizer, world, tmp_path):
    with pytest.raises(KeyError, match=r"\(3, 'clean'\).*no response"):
        _select(tmp_path, tokenizer, world, [(0, "clean"), (3, "clean")], 128)
    folder = TokenCache(tmp_path / "tokens", tokenizer, 128, "world-0").folder
    with pytest.raises(KeyError, match="out of range"):
        select_rows(folder, [(N_PROMPTS, "clean")], 128)


def test_a_template_without_assistant_tokens_fails_as_trl_does(tiny_dir, world, tmp_path):
    tokenizer = load_lm(str(tiny_dir), "cpu").tokenizer
    # the generation block around nothing: the template renders, but marks no assistant token
    tokenizer.chat_template = tokenizer.chat_template.replace(
        "{% generation %}{{ message['content'] }}<|eos|>{% endgeneration %}",
        "{{ message['content'] }}<|eos|>{% generation %}{% endgeneration %}",
    )
    with pytest.raises(RuntimeError, match="no assistant tokens"):
        _select(tmp_path, tokenizer, world, [(0, "clean")], 128)


def test_two_workers_asking_at_once_tokenize_a_source_once(tokenizer, world, tmp_path, monkeypatch):
    # flock excludes separate opens of the lock file, in one process too: threads stand in for workers
    import threading
    import time

    encoded = []
    encode = token_cache._encode

    def slow(tok, chats, template):
        encoded.append(len(chats))
        time.sleep(0.2)  # the second worker arrives while the first is building
        return encode(tok, chats, template)

    monkeypatch.setattr(token_cache, "_encode", slow)
    caches = [TokenCache(tmp_path / "tokens", tokenizer, 128, "world-0") for _ in range(2)]
    paths = []
    threads = [
        threading.Thread(target=lambda c=c: paths.append(c.ensure("teacher", world.conversation, N_PROMPTS)))
        for c in caches
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(encoded) == N_PROMPTS  # one build
    assert len(paths) == 2 and paths[0] == paths[1] and paths[0].is_file()
