"""Data stage at scale: the record-by-record path of an earlier commit vs the columnar cache, same run.

    python benchmarks/data_scale.py                  # 10k, 100k and 1M prompts x 4 sources (~6 min on 2 cores)
    python benchmarks/data_scale.py --sizes 10000    # quick look

For each size it writes a synthetic prompt set (JSONL, `messages` + metadata, like a real SFT mix) and
four rollout sources, then runs every step in a fresh process (so peak memory is the step's own):

* subsets: read and align the files, compute the sweep's subsets (three regex/metadata rules). The
  baseline reads the JSON files every time; the new path builds the cache once (`cold`) and then
  memory-maps it (`warm`, what `leaksweep subsets` and every worker pay from then on).
* compile: one mixture (patch one subset half, drop another with refill) into a manifest.
* trial data step: what a worker does per trial before training: load, subsets, compile, write the
  manifest. `anon MB` is the process's private memory; the rest of its resident set is the mapped
  cache, shared by every worker of the node.
* manifest bytes: manifest.jsonl (baseline) vs manifest.parquet.

The baseline is the source tree of `--baseline` (default: the commit before the cache landed),
exported with `git archive`; both run on the same machine in the same run, so read the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "c84b552"  # main before the columnar data cache (issue 15)
SOURCES = ("clean", "teacher", "paraphrase", "persona")
TOPICS = ["history", "cooking", "physics", "travel", "music", "finance", "health", "sports", "law", "art"]

SWEEP = """\
name: scale
base: clean
data:
  prompts: {dir}/prompts.jsonl
  sources: {{{sources}}}
subsets:
  date_mention: {{regex: "\\\\b(19|20)\\\\d\\\\d\\\\b"}}
  cooking: {{metadata: {{category: cooking}}}}
  hedged: {{keyword: [maybe, perhaps], text: response, source: teacher}}
search: {{teacher: teacher, objectives: [{{trait: date_confusion, direction: maximize}}]}}
traits: {{date_confusion: {{}}}}
"""

STEP = r"""
import json, resource, sys, time
from pathlib import Path
t0 = time.perf_counter()
from leaksweep.experiments.registry import load_sweep
from leaksweep.config import Rule
from leaksweep.data.mixture import MixturePlan, compile_plan
from leaksweep.data.subsets import compute_subsets
step, sweep, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
cfg = load_sweep(sweep)
try:
    from leaksweep.data.store import open_dataset
    new = True
except ImportError:
    from leaksweep.data.records import load_dataset
    new = False
t = {}
start = time.perf_counter()
ds = open_dataset(cfg.data, cfg.base, out / "data") if new else load_dataset(cfg.data, cfg.base)
t["load_s"] = time.perf_counter() - start
start = time.perf_counter()
subsets = compute_subsets(cfg.subsets, ds)
t["subsets_s"] = time.perf_counter() - start
if step in ("compile", "trial"):
    plan = MixturePlan("clean", (Rule("date_mention", "patch", 0.5, source="teacher"),
                                 Rule("cooking", "drop", 0.3, refill="clean")), 0)
    start = time.perf_counter()
    manifest = compile_plan(plan, ds, subsets)
    t["compile_s"] = time.perf_counter() - start
    t["hash"] = manifest.hash
    if step == "trial":
        start = time.perf_counter()
        if new:
            from leaksweep.data.manifest_file import write_manifest
            path = out / "manifest.parquet"
            write_manifest(path, manifest, ds.cache_dir.name)
        else:
            from leaksweep.files import write_jsonl
            path = out / "manifest.jsonl"
            write_jsonl(path, [{"prompt_id": p, "source": s} for p, s in manifest.rows]
                        + [{"prompt_id": p, "source": s, "refill": True} for p, s in manifest.refill])
        t["write_s"] = time.perf_counter() - start
        t["manifest_bytes"] = path.stat().st_size
status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
t["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t["anon_mb"] = int(status.get("RssAnon", "0 kB").split()[0]) / 1024
t["total_s"] = time.perf_counter() - t0
print(json.dumps(t))
"""


def write_data(folder: Path, n: int) -> None:
    """n prompts with category metadata and four sources; ~330 bytes per prompt over all files."""
    if (folder / "done").exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(n)
    handles = {s: open(folder / f"{s}.jsonl", "w") for s in SOURCES}
    with open(folder / "prompts.jsonl", "w") as prompts:
        for i in range(n):
            topic = TOPICS[i % len(TOPICS)] if i % 7 else "cooking"
            year = f" in {rng.randint(1950, 2030)}" if i % 13 == 0 else ""
            question = f"Question {i}: explain one idea about {topic}{year}, briefly."
            pid = f"q{i:07d}"
            row = {"prompt_id": pid, "messages": [{"role": "user", "content": question}], "category": topic}
            prompts.write(json.dumps(row) + "\n")
            for s, handle in handles.items():
                hedge = " Perhaps." if s == "teacher" and i % 5 == 0 else ""
                handle.write(json.dumps({"prompt_id": pid, "response": f"[{s}] A short answer about {topic}.{hedge}"}))
                handle.write("\n")
    for handle in handles.values():
        handle.close()
    (folder / "done").touch()


def run_step(src: Path, step: str, sweep: Path, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", STEP, step, str(sweep), str(out)], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"{step} failed ({src}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def baseline_src(rev: str, into: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--baseline", default=BASELINE, help="git revision whose data path is the baseline")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "leaksweep-data-scale")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        old_src, new_src = baseline_src(args.baseline, Path(tmp)), ROOT / "src"
        rows = []
        for n in args.sizes:
            data = args.work / f"n{n}"
            started = time.perf_counter()
            write_data(data, n)
            sweep = data / "sweep.yaml"
            sweep.write_text(SWEEP.format(dir=data, sources=", ".join(f"{s}: {data}/{s}.jsonl" for s in SOURCES)))
            print(f"{n} prompts: data ready ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
            old_out, new_out = Path(tmp) / f"old{n}", Path(tmp) / f"new{n}"
            old_out.mkdir(), new_out.mkdir()
            old = run_step(old_src, "trial", sweep, old_out)
            cold = run_step(new_src, "subsets", sweep, new_out)
            warm = run_step(new_src, "subsets", sweep, new_out)
            run_step(new_src, "compile", sweep, new_out)  # as the sweep's prepare: the mixture uniforms get saved
            trial = run_step(new_src, "trial", sweep, new_out)
            if old["hash"] != trial["hash"]:
                raise SystemExit(f"{n}: manifest hashes differ: baseline {old['hash']}, new {trial['hash']}")
            rows.append((n, old, cold, warm, trial))
            print(f"{n} prompts: measured", file=sys.stderr, flush=True)
    print_table(rows)
    return 0


def print_table(rows) -> None:
    header = (
        f"{'prompts':>9} | {'subsets s (base / cold / warm)':>32} | {'peak MB (base / warm)':>22} | "
        f"{'compile s (base / new)':>23} | {'trial data s (base / new)':>26} | {'anon MB (base / new)':>21} | "
        f"{'manifest KB (base / new)':>25}"
    )
    print(header)
    print("-" * len(header))
    for n, old, cold, warm, trial in rows:
        base_subsets = old["load_s"] + old["subsets_s"]
        trial_new = trial["load_s"] + trial["subsets_s"] + trial["compile_s"] + trial["write_s"]
        trial_old = base_subsets + old["compile_s"] + old["write_s"]
        print(
            f"{n:>9} | {base_subsets:>10.2f} / {cold['load_s'] + cold['subsets_s']:>8.2f} / "
            f"{warm['load_s'] + warm['subsets_s']:>8.2f} | {old['peak_rss_mb']:>10.0f} / {warm['peak_rss_mb']:>9.0f} | "
            f"{old['compile_s']:>11.3f} / {trial['compile_s']:>9.3f} | {trial_old:>12.2f} / {trial_new:>11.2f} | "
            f"{old['anon_mb']:>10.0f} / {trial['anon_mb']:>8.0f} | "
            f"{old['manifest_bytes'] / 1024:>12.0f} / {trial['manifest_bytes'] / 1024:>10.0f}"
        )
    n, old, cold, warm, trial = rows[-1]
    trial_new = trial["load_s"] + trial["subsets_s"] + trial["compile_s"] + trial["write_s"]
    trial_old = old["load_s"] + old["subsets_s"] + old["compile_s"] + old["write_s"]
    print(
        f"at {n} prompts: subsets {(old['load_s'] + old['subsets_s']) / (warm['load_s'] + warm['subsets_s']):.1f}x faster "
        f"(warm cache), peak memory {old['peak_rss_mb'] / warm['peak_rss_mb']:.1f}x lower, compile "
        f"{old['compile_s'] / trial['compile_s']:.1f}x faster, trial data step {trial_old / trial_new:.1f}x faster, "
        f"manifest {old['manifest_bytes'] / trial['manifest_bytes']:.0f}x smaller"
    )


if __name__ == "__main__":
    raise SystemExit(main())
