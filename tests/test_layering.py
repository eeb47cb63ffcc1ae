"""The package's structure as the README states it: imports point upstream only, each heavy library
is imported in one room, and nothing refers to notes outside the repository."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "leaksweep"
# upstream first: a room may import only rooms before it (the README's data-flow order)
ORDER = [
    "errors", "files", "schema", "train_config", "config", "sweepfile", "layout", "progress", "provenance", "binomial", "stats", "decisions", "dose", "calibration",
    "cluster", "tracking", "data", "traits", "model", "experiments", "simulate", "trial", "study", "report", "cli_tools", "cli",
]  # fmt: skip
# heavy libraries and the only modules (path prefixes under src/leaksweep) allowed to import them
HEAVY = {
    "optuna": ("study/storage.py",),
    "wandb": ("tracking/wandb_tracker.py",),
    "wandb_workspaces": ("tracking/reports.py",),
    "trl": ("model/",),
    "transformers": ("model/",),
    "peft": ("model/",),
    "torch": ("model/",),
    "vllm": ("model/",),
    "openai": ("traits/openai_judge.py",),
}


def _modules() -> list[tuple[str, Path]]:
    return [(str(p.relative_to(PACKAGE)), p) for p in sorted(PACKAGE.rglob("*.py"))]


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "leaksweep":
                names += [f"leaksweep.{a.name}" for a in node.names]
            else:
                names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names]
    return names


def _room(rel: str) -> str:
    return rel.split("/")[0].removesuffix(".py")


@pytest.mark.parametrize("rel,path", _modules(), ids=[m for m, _ in _modules()])
def test_imports_point_upstream(rel, path):
    room = _room(rel)
    if room == "__init__":
        return
    assert room in ORDER, f"{rel}: a new room; add it to ORDER here and to the README's layout"
    downstream = [
        name
        for name in _imports(path)
        if name.startswith("leaksweep.")
        and (other := name.split(".")[1]) != room
        and ORDER.index(other) > ORDER.index(room)
    ]
    assert not downstream, f"{rel} imports downstream: {downstream}"


def test_each_heavy_library_is_imported_in_one_room():
    wrong = [
        (rel, name)
        for rel, path in _modules()
        for name in _imports(path)
        if (top := name.split(".")[0]) in HEAVY and not rel.startswith(HEAVY[top])
    ]
    assert not wrong


def test_the_project_refers_to_no_notes_outside_it():
    places = [ROOT / "README.md", ROOT / "Makefile", ROOT / "pyproject.toml"]
    for folder in ("src", "tests", "slurm", "jobs", "benchmarks", "sweeps"):
        places += [p for p in (ROOT / folder).rglob("*") if p.is_file() and p.suffix in {".py", ".md", ".sh", ".yaml"}]
    outside = ("shared" + "/", "STACK" + ".md", "DESIGN" + ".md")  # split so this file does not match itself
    found = [str(p.relative_to(ROOT)) for p in places if any(word in p.read_text() for word in outside)]
    assert not found
