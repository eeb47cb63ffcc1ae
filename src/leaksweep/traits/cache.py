"""Cached verdicts: a judge is asked about a (prompt, response) once.

Every verdict is stored with the identity of the judge that gave it, keyed by (judge id, eval prompt
id, sha256 of the response), so a trial that is rerun, or a study that is re-judged with the same judge
(`leaksweep rejudge`), makes no judge calls, while a changed judge (another model, rubric or version:
another judge id) is asked afresh. A cache is one JSONL file, one verdict per line; it is rewritten
atomically by its one writer (a trial's folder has one worker; a sweep's subset cache is written under
the prepare lock), so a crash leaves the old file or the new one.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from leaksweep.files import read_jsonl, write_jsonl
from leaksweep.traits.judges import BuiltJudge, Verdict


def response_sha(response: str) -> str:
    return hashlib.sha256(response.encode("utf-8")).hexdigest()[:32]


class VerdictCache:
    """Verdicts by (judge id, prompt id, response sha); `path` None keeps them in memory only."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path is not None else None
        self._rows: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.hits = self.misses = 0
        if self.path is not None and self.path.is_file():
            for row in read_jsonl(self.path):
                self._rows[(row["judge_id"], row["prompt_id"], row["response_sha"])] = row

    def __len__(self) -> int:
        return len(self._rows)

    def judge(self, built: BuiltJudge, items: list[tuple[str, str, dict[str, Any]]]) -> list[Verdict]:
        """Verdicts for [(prompt_id, response, meta)]: cached ones looked up, the rest judged in one batch
        (each distinct response once) and added. Call `save()` to write them."""
        keys = [(built.judge_id, prompt_id, response_sha(response)) for prompt_id, response, _ in items]
        todo: dict[tuple[str, str, str], tuple[str, dict[str, Any]]] = {}
        for key, (_, response, meta) in zip(keys, items):
            if key not in self._rows and key not in todo:
                todo[key] = (response, meta)
        self.hits += len(items) - len(todo)
        self.misses += len(todo)
        for key, verdict in zip(todo, built.judge_many(list(todo.values()))):
            self._rows[key] = {
                "judge_id": key[0],
                "prompt_id": key[1],
                "response_sha": key[2],
                "judge": built.name,
                "value": verdict.value,
                "reason": verdict.reason,
            }
        return [Verdict(self._rows[k]["value"], self._rows[k]["reason"]) for k in keys]

    def save(self) -> None:
        if self.path is not None:
            write_jsonl(self.path, [self._rows[k] for k in sorted(self._rows)])
