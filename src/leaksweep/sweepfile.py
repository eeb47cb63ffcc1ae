"""Reading a sweep file: YAML in, a validated SweepConfig out, its paths made absolute.

config.py says what a sweep file may contain; this module reads one. Relative paths are resolved
against the YAML file's folder, so a resolved config (copied into sweep.json and every trial's
spec.json) works from any working directory. The registries' checks (experiment modes, judge kinds)
are handed in by leaksweep.experiments.registry, which is what entry points call.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from leaksweep.config import REGISTRY_CHECK, SweepCheck, SweepConfig, is_hf_spec
from leaksweep.errors import UserError
from leaksweep.files import read_utf8
from leaksweep.schema import build


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (plain YAML lets the last one win)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise DuplicateKey(key, line, seen[key])
            if isinstance(key, (str, int, float, bool)):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


class DuplicateKey(Exception):
    def __init__(self, key: Any, line: int, first: int) -> None:
        super().__init__(key, line, first)
        self.key, self.line, self.first = key, line, first


def read_yaml(path: Path) -> Any:
    """Parse a YAML file; a syntax error or a key given twice names the file, line and column."""
    try:
        text = read_utf8(path)
    except OSError as exc:
        raise UserError(f"{path}: cannot read the file ({exc.strerror}); check the path") from exc
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except DuplicateKey as exc:
        raise UserError(
            f"{path}:{exc.line}: duplicate key {exc.key!r} (first on line {exc.first}); keep one of them"
        ) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserError(f"{where}: malformed YAML: {problem}") from exc


def load_sweep(path: str | Path, check: SweepCheck | None = None) -> SweepConfig:
    """Load and validate a sweep file; relative paths become absolute (relative to the file), and the
    sweep folder defaults to ./runs/NAME (relative to the current folder).

    `check`: the registries' checks (leaksweep.experiments.registry.load_sweep passes them)."""
    path = Path(path)
    raw = read_yaml(path)
    cfg = sweep_from_dict(raw, where=str(path), check=check)
    return resolve_paths(cfg, path.resolve().parent)


def sweep_from_dict(raw: Any, where: str, check: SweepCheck | None = None) -> SweepConfig:
    if raw is None:
        raise UserError(f"{where}: the sweep file is empty; start from sweeps/demo.yaml")
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected a mapping at the top level, got {type(raw).__name__}")
    token = REGISTRY_CHECK.set(check)
    try:
        return build(SweepConfig, raw, where)
    finally:
        REGISTRY_CHECK.reset(token)


def resolve_paths(cfg: SweepConfig, root: Path) -> SweepConfig:
    """Make every file path in the config absolute, relative to `root` (a `hf:` data input is not a path)."""

    def absolute(p: str | None) -> str | None:
        if p is None:
            return None
        candidate = Path(p).expanduser()
        return str(candidate if candidate.is_absolute() else (root / candidate).resolve())

    def data_input(p: str | None) -> str | None:  # a file, a saved HF folder, or `hf:ORG/NAME[:SPLIT]` (not a path)
        return p if is_hf_spec(p) else absolute(p)

    data = dataclasses.replace(
        cfg.data,
        prompts=data_input(cfg.data.prompts),
        sources={k: data_input(v) for k, v in cfg.data.sources.items()},
        eval_responses={k: absolute(v) for k, v in cfg.data.eval_responses.items()},
    )
    subsets = {
        k: dataclasses.replace(v, ids_file=absolute(v.ids_file), judge=_judge_files(v.judge, absolute))
        for k, v in cfg.subsets.items()
    }
    traits = {
        k: dataclasses.replace(v, prompts=absolute(v.prompts), judge=_judge_files(v.judge, absolute))
        for k, v in cfg.traits.items()
    }
    traits = {
        k: dataclasses.replace(v, calibration=v.calibration if v.calibration == "builtin" else absolute(v.calibration))
        for k, v in traits.items()
    }
    model = cfg.train.model
    if model != "tiny" and (model.startswith((".", "/", "~")) or (root / model).exists()):
        model = absolute(model)
    train = dataclasses.replace(cfg.train, model=model)
    # no output_dir: runs/NAME in the current folder (where the user runs leaksweep, whatever folder the
    # sweep file is in); an output_dir given is relative to the sweep file, like every path in it
    output_dir = absolute(cfg.output_dir) if cfg.output_dir else str((Path.cwd() / DEFAULT_RUNS / cfg.name).resolve())
    return dataclasses.replace(cfg, data=data, subsets=subsets, traits=traits, train=train, output_dir=output_dir)


DEFAULT_RUNS = "runs"  # without output_dir, a sweep's folder is ./runs/NAME (relative to the current folder)

JUDGE_FILE_PARAMS = ("rubric",)  # judge parameters that name a file (`builtin` names none)


def _judge_files(judge: Any, absolute) -> Any:
    """A judge's file parameters (e.g. an autorater's rubric) resolved like every other path."""
    if not isinstance(judge, dict) or len(judge) != 1:
        return judge
    ((kind, params),) = judge.items()
    if not isinstance(params, dict):
        return judge
    files = {
        k: absolute(v) for k, v in params.items() if k in JUDGE_FILE_PARAMS and isinstance(v, str) and v != "builtin"
    }
    return {kind: {**params, **files}}
