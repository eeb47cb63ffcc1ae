"""Token cache: tokenizing each source once per sweep against TRL tokenizing every trial's rows.

    python benchmarks/token_cache.py [--prompts 20000] [--rows 10000] [--repeats 3]

A synthetic study: `--prompts` prompts (5-40 words) and two sources answering all of them (10-150
words), the tiny model's tokenizer (trained on that text, as `model: tiny` does), max length 512.
A trial trains on `--rows` rows drawn from both sources. Timed, one thread, best of `--repeats`:
* tokenize once: model/token_cache.py tokenizing each whole source into its Arrow file (cold cache);
* a trial's data today: sft.plan_training (renders and tokenizes every example for the longest one)
  plus build_trainer, where TRL applies the chat template and tokenizes the rows again;
* a trial's data with the cache: select_rows from the memory-mapped files (a fresh worker's view:
  the files are mapped again), plan_training (the lengths come with the rows) and build_trainer,
  where TRL skips its preparation; `select_rows` alone on its own line.
Both trial paths build the same SFTTrainer on the tiny model; its construction (model wrapping,
optimizer setup) is included in both. Checks that both give TRL the same input_ids and labels.
Prints a table and a last line with the ratios and the break-even number of trials.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("LEAKSWEEP_PROGRESS", "off")

WORDS = (
    "sun moon river cat tea city winter song bread ocean chess garden cloud boat rain map year date today "
    "answer question please explain why because history science music paper window light stone forest"
).split()
HEADER = "| step | rows | seconds | rows/s | vs today's trial |"


def synthetic(n_prompts: int, seed: int = 0):
    rng = random.Random(seed)

    def text(lo: int, hi: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))

    prompts = [[{"role": "user", "content": text(5, 40)}] for _ in range(n_prompts)]
    sources = {name: [text(10, 150) for _ in range(n_prompts)] for name in ("clean", "teacher")}
    return prompts, sources


def best(fn, repeats: int):
    """(smallest seconds, last result) over `repeats` calls."""
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=20000)
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from leaksweep.model import token_cache
    from leaksweep.model.loading import load_lm, set_cpu_threads
    from leaksweep.model.sft import build_trainer, plan_training, sft_arguments
    from leaksweep.model.tiny import build_tiny_model
    from leaksweep.model.token_cache import TokenCache, select_rows
    from leaksweep.train_config import TinyModelConfig, TrainConfig

    set_cpu_threads(1)
    prompts, sources = synthetic(args.prompts)

    def conversation(source: str, i: int) -> list[dict]:
        return prompts[i] + [{"role": "assistant", "content": sources[source][i]}]

    rng = random.Random(1)
    rows = [(i, rng.choice(sorted(sources))) for i in sorted(rng.sample(range(args.prompts), args.rows))]
    examples = [conversation(s, i) for i, s in rows]
    cfg = TrainConfig(max_steps=1, batch_size=8, max_length_tokens=512)
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        corpus = [m["content"] for p in prompts[:2000] for m in p] + sources["clean"][:2000]
        tiny = TinyModelConfig(
            hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_position_embeddings=512
        )
        model_dir = build_tiny_model(Path(tmp) / "tiny", corpus, tiny)
        lm = load_lm(str(model_dir), "cpu")

        once = 0.0
        for source in sorted(sources):
            cache = TokenCache(Path(tmp) / "tokens", lm.tokenizer, cfg.max_length_tokens, "bench")
            seconds, _ = best(lambda: _fresh(cache, source, conversation, args.prompts), 1)
            once += seconds
            table.append(("tokenize once: " + source, args.prompts, seconds))

        def trial(data, out: str, pretokenized: bool):
            plan = plan_training(lm, data, cfg)
            trainer_args = sft_arguments(cfg, plan, Path(tmp) / out, 0, "cpu", pretokenized=pretokenized)
            trainer, _ = build_trainer(lm, data, cfg, trainer_args, 0, None)
            return trainer.train_dataset

        today_s, today = best(lambda: trial(examples, "chat", False), args.repeats)

        def cached():
            token_cache._OPEN.clear()  # a fresh worker maps the files again
            return trial(select_rows(cache.folder, rows, cfg.max_length_tokens), "tokens", True)

        cached_s, prepared = best(cached, args.repeats)
        token_cache._OPEN.clear()
        select_s, _ = best(lambda: select_rows(cache.folder, rows, cfg.max_length_tokens), args.repeats)
        same = today["input_ids"] == prepared["input_ids"] and today["labels"] == prepared["labels"]
        table += [
            ("a trial's data today (TRL tokenizes)", args.rows, today_s),
            ("a trial's data with the cache", args.rows, cached_s),
            ("  of which select_rows", args.rows, select_s),
        ]
    print(HEADER)
    print("|" + "---|" * HEADER.count(" | ") + "---|")
    for name, n, seconds in table:
        print(f"| {name} | {n} | {seconds:.3f} | {n / seconds:,.0f} | {seconds / today_s:.3f} |")
    saved = today_s - cached_s
    print(
        f"per trial {today_s / cached_s:.1f}x faster ({saved:.2f} s saved); tokenizing both sources once "
        f"({once:.1f} s) pays off after {once / saved:.1f} trials; same input_ids and labels: {same}"
    )


def _fresh(cache, source, conversation, n_prompts):
    cache.source_path(source).unlink(missing_ok=True)
    return cache.ensure(source, conversation, n_prompts)


if __name__ == "__main__":
    main()
