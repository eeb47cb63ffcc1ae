"""Judge throughput: judgments per second of each judge kind on the same responses.

    python benchmarks/judge_throughput.py [--n 96] [--latency-ms 0 100]

The openai_compatible rows start a real OpenAI-compatible server on 127.0.0.1 (`transformers serve`
of the tiny hand-wired judge model in tests/support/judge_server.py; needs the test extras: fastapi,
uvicorn), optionally behind a proxy that holds each request `--latency-ms` (a remote endpoint's
round trip), and time the same responses with concurrency 1 and 8. Every row checks that the
verdicts are the expected ones (none unjudged), so a fast wrong judge does not count.
Prints a table and a one-line summary.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))  # judge_server: the server and proxy of the tests

HEADER = "| judge | setting | concurrency | responses | seconds | judgments/s | vs concurrency 1 |"


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


def format_row(row: dict) -> str:
    return (
        f"| {row['judge']} | {row['setting']} | {row['concurrency']} | {row['responses']} | "
        f"{row['seconds']:.2f} | {row['rate']:.1f} | {row['speedup']:.2f}x |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=96, help="responses judged per row")
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0.0, 100.0], help="added per request")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rows = endpoint_rows(args.n, (1, 8), args.latency_ms)
    print(HEADER)
    print("|" + "---|" * HEADER.count(" | ") + "---|")
    for row in rows:
        print(format_row(row))
    best = {r["setting"]: r["speedup"] for r in rows if r["concurrency"] == 8}
    print("openai_compatible concurrency 8 vs 1: " + ", ".join(f"{s} {x:.2f}x" for s, x in best.items()))


if __name__ == "__main__":
    main()
