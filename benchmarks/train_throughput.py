"""Training throughput: leaksweep's training path against plain TRL defaults and a bare PyTorch loop.

Same model (random init, same weights), same chat examples, same number of optimizer steps for:

* trl_defaults  - TRL SFTTrainer with its defaults (right-padded batches, sdpa, activation
                  checkpointing on, bf16 on a GPU); only what CPU needs is set (use_cpu, no bf16).
* leaksweep     - leaksweep.model.sft.train_sft with a TrainConfig: the configuration it picks itself
                  (printed in the `setup` column; README "Training path").
* leaksweep:sdpa - the same path told to use sdpa (train.attention: sdpa), the kernel leaksweep
                  picked before `varlen`: padding-free rows with a block-diagonal mask on CPU,
                  padded batches on a GPU. Any `leaksweep:<attention>` works with --configs.
* bare_loop     - upper reference: a plain PyTorch causal-LM loop over fixed-length rows cut from
                  the same examples laid end to end (no padding, no document masks, fused AdamW,
                  bf16 autocast on a GPU). It does less work than a correct SFT step (attention
                  crosses examples, loss on every token), so it bounds what any SFT path can reach.

tokens/s counts real (non-pad) tokens per second of training over the steps after `--warmup`
(kernel compiles and allocator growth happen there). Peak memory: the process's resident-set
high-water mark on CPU (getrusage), torch.cuda.max_memory_allocated on a GPU. Every configuration
runs in its own subprocess, with one torch thread on CPU.

Usage:
  python benchmarks/train_throughput.py --quick      # tiny model on CPU, a few minutes
  python benchmarks/train_throughput.py              # GPU: SmolLM2-135M and Qwen2.5-0.5B shapes
  python benchmarks/train_throughput.py --shapes smollm2-135m --steps 40

Prints a table; with --quick the last line is "leaksweep / TRL defaults: X.XX×".
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Shapes (random init from the config; nothing is downloaded). Batches are in examples; lengths are
# log-normal in tokens, like the chat data the GPU throughput anchor was measured on (median ~400, max 2048).
SHAPES = {
    "tiny": dict(
        arch="llama",
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        vocab_size=None,
        tie_word_embeddings=False,
        rope_theta=10000.0,
        batch_size=16,
        max_length=256,
        median_tokens=60,
        sigma=0.6,
    ),
    "smollm2-135m": dict(
        arch="llama",
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        vocab_size=49152,
        tie_word_embeddings=True,
        rope_theta=100000.0,
        batch_size=32,
        max_length=2048,
        median_tokens=400,
        sigma=0.6,
    ),
    "qwen2.5-0.5b": dict(
        arch="qwen2",
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        vocab_size=151936,
        tie_word_embeddings=True,
        rope_theta=1000000.0,
        batch_size=16,
        max_length=2048,
        median_tokens=400,
        sigma=0.6,  # ~8k real tokens per step
    ),
}
CONFIGS = ["trl_defaults", "leaksweep:sdpa", "leaksweep", "bare_loop"]
WORDS = [
    a + b
    for a in ("ka", "lo", "mi", "nu", "pe", "ri", "so", "ta", "ve", "zu", "bo", "da", "fe", "gi")
    for b in ("n", "r", "s", "l", "m", "t", "k", "x", "p", "d")
]  # 140 words, about one token each
LEARNING_RATE = 1e-4


# ---------------------------------------------------------------------------------------------
# data and model (built once, in a subprocess, shared by all configurations)


def make_examples(n: int, median_tokens: int, sigma: float, max_tokens: int, seed: int) -> list[list[dict]]:
    """Chat examples whose lengths (in words, ~tokens) are log-normal, capped so all fit max_tokens."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        length = int(min(max_tokens - 16, max(8, rng.lognormvariate(math.log(median_tokens), sigma))))
        user_len = max(2, length // 8)
        user = " ".join(rng.choice(WORDS) for _ in range(user_len))
        answer = " ".join(rng.choice(WORDS) for _ in range(length - user_len))
        out.append([{"role": "user", "content": user}, {"role": "assistant", "content": answer}])
    return out


def build(shape_name: str, folder: Path) -> None:
    from leaksweep.model.tiny import build_tiny_model
    from leaksweep.train_config import TinyModelConfig

    shape = SHAPES[shape_name]
    corpus = [" ".join(WORDS)] * 4 + [" ".join(random.Random(i).sample(WORDS, 40)) for i in range(400)]
    tiny = TinyModelConfig(
        vocab_size=512,
        hidden_size=shape["hidden_size"],
        num_layers=shape["num_hidden_layers"],
        num_heads=shape["num_attention_heads"],
        intermediate_size=shape["intermediate_size"],
        max_position_embeddings=max(shape["max_length"], 256),
        init_seed=0,
    )
    if shape["vocab_size"] is None:
        build_tiny_model(folder, corpus, tiny)
        return
    # A real shape: the small trained tokenizer only uses the first few hundred ids, but the model
    # carries the full vocabulary, so the LM head and the loss cost what they cost on the real model.
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    tok_dir = folder.with_name(folder.name + "-tokenizer")
    tiny_small = TinyModelConfig(
        vocab_size=512,
        hidden_size=32,
        num_layers=1,
        num_heads=2,
        intermediate_size=64,
        max_position_embeddings=shape["max_length"],
        init_seed=0,
    )
    build_tiny_model(tok_dir, corpus, tiny_small)
    tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
    config_class, model_class = (
        (LlamaConfig, LlamaForCausalLM) if shape["arch"] == "llama" else (Qwen2Config, Qwen2ForCausalLM)
    )
    config = config_class(
        vocab_size=shape["vocab_size"],
        hidden_size=shape["hidden_size"],
        intermediate_size=shape["intermediate_size"],
        num_hidden_layers=shape["num_hidden_layers"],
        num_attention_heads=shape["num_attention_heads"],
        num_key_value_heads=shape["num_key_value_heads"],
        tie_word_embeddings=shape["tie_word_embeddings"],
        rope_theta=shape["rope_theta"],
        max_position_embeddings=max(shape["max_length"], 4096),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = model_class(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


# ---------------------------------------------------------------------------------------------
# one configuration per process


def _peak_memory_mib(device: str) -> float:
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _rate(marks: list[tuple[float, int]], warmup: int) -> tuple[float, int, float]:
    """tokens/s over the steps after `warmup`, from (time, cumulative real tokens) after each step."""
    start_t, start_tok = marks[warmup - 1]  # warmup >= 1 (checked in main)
    end_t, end_tok = marks[-1]
    return (end_tok - start_tok) / max(end_t - start_t, 1e-9), end_tok - start_tok, end_t - start_t


def worker(
    name: str, folder: Path, examples: list[list[dict]], shape: dict, steps: int, warmup: int, device: str
) -> dict:
    import torch

    if device == "cpu":
        torch.set_num_threads(1)
    if name == "bare_loop":
        return bare_loop(folder, examples, shape, steps, warmup, device)
    marks: list[tuple[float, int]] = []

    def mark(tokens_seen: int) -> None:
        if device == "cuda":
            torch.cuda.synchronize()
        marks.append((time.perf_counter(), int(tokens_seen)))

    setup: dict = {}
    with tempfile.TemporaryDirectory() as out_dir:
        if name == "trl_defaults":
            from datasets import Dataset
            from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
            from trl import SFTConfig, SFTTrainer

            class Marks(TrainerCallback):
                def on_log(self, args, state, control, logs=None, **kwargs):
                    if logs and "loss" in logs:
                        mark(state.num_input_tokens_seen)

            tokenizer = AutoTokenizer.from_pretrained(str(folder))
            model = AutoModelForCausalLM.from_pretrained(str(folder)).to(device)
            cpu = dict(use_cpu=True, bf16=False) if device == "cpu" else {}
            args = SFTConfig(
                output_dir=out_dir,
                per_device_train_batch_size=shape["batch_size"],
                max_steps=steps,
                max_length=shape["max_length"],
                learning_rate=LEARNING_RATE,
                logging_steps=1,
                save_strategy="no",
                report_to="none",
                disable_tqdm=True,
                seed=0,
                include_num_input_tokens_seen="non_padding",
                **cpu,
            )
            trainer = SFTTrainer(
                model=model,
                args=args,
                processing_class=tokenizer,
                train_dataset=Dataset.from_list([{"messages": m} for m in examples]),
            )
            trainer.add_callback(Marks())
            trainer.train()
            setup = {
                "layout": "padded",
                "attention": model.config._attn_implementation,
                "precision": "bf16" if args.bf16 else "fp32",
                "optimizer": str(args.optim.value),
                "activation_checkpointing": bool(args.gradient_checkpointing),
            }
            steps_done = trainer.state.global_step
        elif name.split(":")[0] == "leaksweep":
            from leaksweep.model.loading import load_lm
            from leaksweep.model.sft import train_sft
            from leaksweep.train_config import TrainConfig

            attention = name.partition(":")[2] or "auto"
            cfg = TrainConfig(
                model=str(folder),
                learning_rate=LEARNING_RATE,
                max_steps=steps,
                batch_size=shape["batch_size"],
                logging_steps=1,
                max_length_tokens=shape["max_length"],
                device=device,
                lr_scheduler="constant",
                attention=attention,
            )
            base = load_lm(str(folder), device, attention)
            _, outcome = train_sft(
                base,
                examples,
                cfg,
                Path(out_dir),
                seed=0,
                log_fn=lambda record, step: mark(record["train/num_input_tokens_seen"]),
            )
            setup, steps_done = outcome.setup, outcome.steps
        else:
            raise ValueError(f"unknown configuration {name!r}")
    rate, tokens, seconds = _rate(marks, warmup)
    return {
        "config": name,
        "tokens_per_s": rate,
        "tokens": tokens,
        "seconds": seconds,
        "steps": steps_done,
        "peak_mib": _peak_memory_mib(device),
        "setup": setup,
    }


def bare_loop(folder: Path, examples: list[list[dict]], shape: dict, steps: int, warmup: int, device: str) -> dict:
    """Fixed-length causal rows cut from the concatenated examples: as many real tokens per step as
    the SFT batches carry on average, no padding, no masks beyond plain causal attention."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    texts = tokenizer.apply_chat_template(examples, tokenize=False)
    ids = [t for row in tokenizer(texts, add_special_tokens=False)["input_ids"] for t in row]
    row_len = min(shape["max_length"] * 4, 8192) if device == "cuda" else shape["max_length"]
    tokens_per_step = len(ids) / math.ceil(len(examples) / shape["batch_size"])
    rows = max(1, round(tokens_per_step / row_len))
    stream = torch.tensor(ids)
    need = steps * rows * row_len
    stream = stream.repeat(math.ceil(need / len(stream)))[:need].view(steps, rows, row_len)

    model = AutoModelForCausalLM.from_pretrained(str(folder), attn_implementation="sdpa").to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, fused=True)
    bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    marks = []
    status = "ok"
    try:
        for step in range(steps):
            batch = stream[step].to(device)
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
                loss = model(input_ids=batch, labels=batch, use_cache=False).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if device == "cuda":
                torch.cuda.synchronize()
            marks.append((time.perf_counter(), (step + 1) * rows * row_len))
    except torch.OutOfMemoryError:
        status = "out of memory"
    if status != "ok" or len(marks) <= warmup:
        return {
            "config": "bare_loop",
            "tokens_per_s": None,
            "tokens": 0,
            "seconds": 0,
            "steps": len(marks),
            "peak_mib": _peak_memory_mib(device),
            "setup": {"status": status},
        }
    rate, tokens, seconds = _rate(marks, warmup)
    return {
        "config": "bare_loop",
        "tokens_per_s": rate,
        "tokens": tokens,
        "seconds": seconds,
        "steps": len(marks),
        "peak_mib": _peak_memory_mib(device),
        "setup": {
            "layout": f"{rows}x{row_len} causal rows",
            "attention": "sdpa",
            "precision": "bf16" if bf16 else "fp32",
            "optimizer": "adamw_torch_fused",
        },
    }


# ---------------------------------------------------------------------------------------------
# driver


def run_config(
    name: str,
    folder: Path,
    data_file: Path,
    shape_name: str,
    steps: int,
    warmup: int,
    device: str,
    timeout_s: float | None = None,
) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        name,
        "--folder",
        str(folder),
        "--data",
        str(data_file),
        "--shape-name",
        shape_name,
        "--steps",
        str(steps),
        "--warmup",
        str(warmup),
        "--device",
        device,
    ]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"config": name, "tokens_per_s": None, "peak_mib": None, "setup": {"status": f"over {timeout_s} s"}}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {
            "config": name,
            "tokens_per_s": None,
            "peak_mib": None,
            "setup": {"status": "failed: " + " | ".join(tail)},
        }
    return json.loads(lines[-1][len("RESULT ") :])


def print_table(shape_name: str, device: str, results: list[dict]) -> None:
    base = next((r["tokens_per_s"] for r in results if r["config"] == "trl_defaults"), None)
    print(f"\n{shape_name} on {device}")
    print(f"| {'configuration':<16} | {'tokens/s':>9} | {'vs TRL':>6} | {'peak MiB':>8} | setup |")
    print(f"|{'-' * 18}|{'-' * 11}|{'-' * 8}|{'-' * 10}|-------|")
    for r in results:
        rate = r.get("tokens_per_s")
        ratio = f"{rate / base:.2f}x" if rate and base else "-"
        peak = f"{r['peak_mib']:.0f}" if r.get("peak_mib") else "-"
        setup = ", ".join(f"{k}={v}" for k, v in r.get("setup", {}).items() if k != "device")
        shown = "-" if rate is None else str(round(rate))
        print(f"| {r['config']:<16} | {shown:>9} | {ratio:>6} | {peak:>8} | {setup} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny model on CPU, a few minutes")
    parser.add_argument("--shapes", default="smollm2-135m,qwen2.5-0.5b", help="comma-separated: " + ", ".join(SHAPES))
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per configuration")
    parser.add_argument("--warmup", type=int, default=None, help="steps left out of the rate")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--config-timeout", type=float, default=None, help="seconds per configuration")
    # internal: one configuration in a subprocess
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--shape-name", help=argparse.SUPPRESS)
    parser.add_argument("--device", help=argparse.SUPPRESS)
    parser.add_argument("--build", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.build:
        build(args.shape_name, Path(args.folder))
        return 0
    if args.worker:
        examples = json.loads(Path(args.data).read_text())
        result = worker(
            args.worker, Path(args.folder), examples, SHAPES[args.shape_name], args.steps, args.warmup, args.device
        )
        print("RESULT " + json.dumps(result))
        return 0

    if args.quick:
        device, shapes = "cpu", ["tiny"]
        steps, warmup = args.steps or 40, args.warmup if args.warmup is not None else 5
    else:
        probe = subprocess.run(
            [sys.executable, "-c", "import torch; print(torch.cuda.is_available())"], capture_output=True, text=True
        )
        if probe.stdout.strip() != "True":
            print(
                "The full benchmark (SmolLM2-135M and Qwen2.5-0.5B shapes) needs a CUDA GPU; on CPU run it with "
                "--quick.",
                file=sys.stderr,
            )
            return 2
        device, shapes = "cuda", [s.strip() for s in args.shapes.split(",") if s.strip()]
        steps, warmup = args.steps or 30, args.warmup if args.warmup is not None else 8
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    bad = [c for c in configs if c not in ("trl_defaults", "bare_loop", "leaksweep") and not c.startswith("leaksweep:")]
    if bad:
        print(
            f"--configs: unknown {bad}; use trl_defaults, leaksweep, leaksweep:<attention>, bare_loop", file=sys.stderr
        )
        return 2
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        print(f"--shapes: unknown {unknown}; use {', '.join(SHAPES)}", file=sys.stderr)
        return 2
    if not 0 < warmup < steps:
        print(f"--warmup {warmup}: must be between 1 and --steps - 1 ({steps - 1})", file=sys.stderr)
        return 2

    last_ratio = None
    with tempfile.TemporaryDirectory(prefix="train-throughput-") as tmp:
        for shape_name in shapes:
            shape = SHAPES[shape_name]
            folder = Path(tmp) / shape_name
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, __file__, "--build", "--shape-name", shape_name, "--folder", str(folder)],
                env={**os.environ, "OMP_NUM_THREADS": "1"},
                check=True,
                capture_output=True,
            )
            # every example is used once at most: steps x batch examples
            examples = make_examples(
                steps * shape["batch_size"], shape["median_tokens"], shape["sigma"], shape["max_length"], seed=0
            )
            data_file = Path(tmp) / f"{shape_name}.json"
            data_file.write_text(json.dumps(examples))
            results = [
                run_config(name, folder, data_file, shape_name, steps, warmup, device, args.config_timeout)
                for name in configs
            ]
            print_table(shape_name, device, results)
            print(
                f"({steps} steps of {shape['batch_size']} examples, rate over the last {steps - warmup}; "
                f"{time.perf_counter() - started:.0f} s)"
            )
            rates = {r["config"]: r.get("tokens_per_s") for r in results}
            if rates.get("leaksweep") and rates.get("trl_defaults"):
                last_ratio = rates["leaksweep"] / rates["trl_defaults"]
                if rates.get("bare_loop"):
                    print(f"{shape_name}: leaksweep / bare loop: {rates['leaksweep'] / rates['bare_loop']:.2f}×")
    if last_ratio is None:
        print("leaksweep / TRL defaults: not measured (a configuration failed)")
        return 1
    print(f"leaksweep / TRL defaults: {last_ratio:.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
