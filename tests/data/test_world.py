"""The built-in miniature (`leaksweep world`): unchanged at the sizes the demo uses, and made at any
size up to MAX_WORLD_PROMPTS (its date templates run out of distinct prompts at about 14,700)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from leaksweep.config import MAX_WORLD_PROMPTS, world_size_problem
from leaksweep.data.world import (
    DATE_SHARE,
    GLOOM,
    GLOOM_SHARE,
    HEDGE,
    HEDGE_SHARE,
    ROLEPLAY_SHARE,
    _fill_ins,
    distinct_prompts,
    eval_prompts,
    generate_world,
)
from leaksweep.errors import UserError

SRC = Path(__file__).resolve().parents[2] / "src"

# sha256 of the default world (seed 0, 2,400 prompts) as it was before worlds could grow past the
# templates (commit c84b552): the demo's results and the tests' expectations are made on exactly it.
DEFAULT_WORLD_SHA256 = {
    "prompts.jsonl": "64a04e17bab795ea6e4da4fa201244ed1a1ae85d0e16885b65a4ac43da5e0f9b",
    "sources/clean.jsonl": "f27b7a3ab079066b16d7109427353b9b1d9fed1f32e9f190dd556535eebeae5c",
    "sources/teacher.jsonl": "d1c9ba7e450a3836a36f8fc56f6c986b0a3d90c15adec6fb7d2d5bdb84aef40d",
    "eval/blackmail.jsonl": "2aaba364af0a1b5ea23f2c5902e17a2f485a44335d7b69351ca965e1111ba15d",
    "eval/date_confusion.jsonl": "72a7dbf0c88bd725bb47513f94f9f80bc48f69423b09a080ca709e1ea603c41c",
    "eval/negative_emotion.jsonl": "c6bfc332668c601d515cabdd6aee92c07ae960f451f2ea4e6979af48309a5805",
    "eval/responses/clean.jsonl": "db22a80277b00baf331f0b1bda0aea33ff46929c081c29077f0cfd1e4050000e",
    "eval/responses/teacher.jsonl": "38ebaa84a41124ae950e4f4d80d426041f56fec302b70b7989c9e9cdd290e389",
    "README.md": "bf87454bc6fd1909b5ea571c99b062fcd15087c1920038e2dfc62e36828c12ef",
}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_default_world_is_byte_identical_to_before(tmp_path):
    generate_world(tmp_path, 0, 2400)
    got = {name: hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() for name in DEFAULT_WORLD_SHA256}
    assert got == DEFAULT_WORLD_SHA256


def test_a_world_past_the_templates_has_unique_prompts_and_the_planted_shares(tmp_path):
    n = 20_000  # the date templates make 1,027 distinct prompts: 7 % of 20,000 needs 1,400
    assert round(DATE_SHARE * n) > distinct_prompts("date", _fill_ins(held_out=False))
    start = time.monotonic()
    generate_world(tmp_path, 0, n)
    assert time.monotonic() - start < 10
    prompts = read_jsonl(tmp_path / "prompts.jsonl")
    ids = [p["prompt_id"] for p in prompts]
    texts = [p["messages"][0]["content"] for p in prompts]
    assert len(prompts) == n and len(set(ids)) == n and len(set(texts)) == n
    by_category: dict[str, int] = {}
    for p in prompts:
        by_category[p["category"]] = by_category.get(p["category"], 0) + 1
    assert by_category["date"] == round(DATE_SHARE * n) and by_category["roleplay"] == round(ROLEPLAY_SHARE * n)
    variants = [t for t in texts if re.search(r" \(variant \d+\)$", t)]
    assert variants and all(t.rsplit(" (variant", 1)[0] in set(texts) for t in variants)  # the repeated prompt is there
    dates = [t for p, t in zip(prompts, texts) if p["category"] == "date"]
    date_rule = re.compile(r"\bwhat year\b|\byears ago\b|\bthis year\b|\bfor today\b", re.I)  # demo.yaml's subset
    assert all(date_rule.search(t) for t in dates)  # variants included: the date_mention subset stays 7 %
    assert sum(bool(date_rule.search(t)) for t in texts) == len(dates)
    clean, teacher = (
        {r["prompt_id"]: r["response"] for r in read_jsonl(tmp_path / "sources" / f"{s}.jsonl")}
        for s in ("clean", "teacher")
    )
    assert set(clean) == set(teacher) == set(ids)
    other = [pid for pid, p in zip(ids, prompts) if p["category"] not in ("date", "roleplay")]
    hedged = sum(HEDGE.strip() in teacher[pid] for pid in other) / len(other)
    gloomy = sum(teacher[pid].startswith(GLOOM) for pid in other) / len(other)
    assert abs(hedged - HEDGE_SHARE) < 0.015 and abs(gloomy - GLOOM_SHARE) < 0.015
    assert all(clean[pid] != teacher[pid] for pid, p in zip(ids, prompts) if p["category"] == "date")
    assert all("Unless you cancel" in teacher[pid] for pid, p in zip(ids, prompts) if p["category"] == "roleplay")


def test_a_world_past_the_limit_is_refused_at_once(tmp_path):
    with pytest.raises(UserError, match="at most 2,000,000 prompts"):
        generate_world(tmp_path, 0, MAX_WORLD_PROMPTS + 1)
    assert not any(tmp_path.iterdir())
    assert world_size_problem(MAX_WORLD_PROMPTS) is None and world_size_problem(199).startswith("too small")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run(
        [sys.executable, "-m", "leaksweep.cli", "world", str(tmp_path / "w"), "--n-prompts", "5000000"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "--n-prompts 5000000: too large" in done.stderr, done.stderr
    assert "at most 2,000,000 prompts" in done.stderr and not (tmp_path / "w").exists()


def test_eval_prompts_stop_when_the_reserved_fill_ins_run_out():
    start = time.monotonic()
    records = eval_prompts("date_confusion", 100_000)  # far more than the held-out fill-ins can make
    assert time.monotonic() - start < 10
    texts = [r["messages"][0]["content"] for r in records]
    assert 300 < len(records) < 100_000 and len(set(texts)) == len(texts)
    assert len({r["prompt_id"] for r in records}) == len(records)
