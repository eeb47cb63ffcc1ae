"""A trait's judge against human labels: the validation table, and the judge-corrected rate.

A labels file is JSONL, one labelled response a line: `{"response": TEXT, "label": 0|1 (a rate) or
0..10 (a scale), "meta": {...}}` (meta: the eval prompt's metadata the judge may need, e.g. a
blackmail scenario's target). `validate` judges every labelled response with the trait's judge
(batched, through a VerdictCache) and returns the table `leaksweep judge validate` prints:
binary (a rate): n, n_unjudged, the 2x2 table, sensitivity, specificity, accuracy (Wilson 95%),
Cohen's kappa (bootstrap 95%); scale: n, n_unjudged, Spearman's rho and MAE (bootstrap 95%) and the
binary metrics at a threshold. Unjudged responses are counted, not scored.

`traits.T.calibration: FILE` makes every score of T carry that table under `calibration`, plus for
a rate the Rogan-Gladen corrected rate (leaksweep.calibration.corrected_rate). The calibration set is
judged once per process per judge (an in-memory VerdictCache keyed by judge id), not once per trial.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from leaksweep.calibration import N_BOOT, Confusion, binary_metrics, corrected_rate, scale_metrics
from leaksweep.config import TraitConfig
from leaksweep.errors import UserError
from leaksweep.files import file_sha256, read_utf8, sha256_json
from leaksweep.traits.cache import VerdictCache
from leaksweep.traits.judges import BuiltJudge, make_judge

LABELLED_DIR = Path(__file__).resolve().parent / "labelled"  # built-in labelled sets, <trait>.jsonl
BUILTIN = "builtin"  # `calibration: builtin`: the trait's built-in labelled set
MAX_PROBLEMS = 10  # bad lines reported at once
SCALE_THRESHOLD = 5.0  # a scale's binary metrics count value >= this as showing the trait

_CACHE = VerdictCache()  # the calibration sets' verdicts, per process (keyed by judge id)
_TABLES: dict[tuple[str, str, float], dict] = {}  # (judge id, labels sha256, threshold) -> validation table


def builtin_labels(trait: str) -> Path | None:
    path = LABELLED_DIR / f"{trait}.jsonl"
    return path if path.is_file() else None


def labels_path(trait: str, given: str | None, where: str) -> Path:
    """The labels file: `given`, or for `builtin` / None the trait's built-in labelled set."""
    if given not in (None, BUILTIN):
        return Path(given)
    path = builtin_labels(trait)
    if path is None:
        known = sorted(p.stem for p in LABELLED_DIR.glob("*.jsonl")) if LABELLED_DIR.is_dir() else []
        raise UserError(
            f"{where}: {trait!r} has no built-in labelled set (built-in: {', '.join(known) or 'none'}); "
            "give a JSONL file of {response, label, meta}"
        )
    return path


def read_labels(path: Path, trait_kind: str) -> list[tuple[str, float, dict[str, Any]]]:
    """[(response, label, meta)]; a bad line is a UserError naming `file:line` and the value seen."""
    try:
        lines = read_utf8(Path(path)).splitlines()
    except OSError as exc:
        raise UserError(f"{path}: cannot read the labels file ({exc.strerror}); check the path") from exc
    rows, problems = [], []
    allowed = "0 or 1" if trait_kind == "rate" else "a number in 0..10"
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: malformed JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(row, dict):
            problems.append(f"{where}: expected a JSON object {{response, label, meta}}, got {type(row).__name__}")
            continue
        response, label, meta = row.get("response"), row.get("label"), row.get("meta", {})
        if not isinstance(response, str):
            problems.append(f"{where}: `response` must be a string; got {response!r}")
        if isinstance(label, bool):
            label = int(label)
        number_ok = isinstance(label, (int, float))
        if not number_ok or (label not in (0, 1) if trait_kind == "rate" else not 0 <= label <= 10):
            problems.append(f"{where}: label {label!r} is not a {trait_kind} label ({allowed})")
        if not isinstance(meta, dict):
            problems.append(f"{where}: `meta` must be an object; got {meta!r}")
        if len(problems) >= MAX_PROBLEMS:
            break
        rows.append((response, float(label) if number_ok else 0.0, meta if isinstance(meta, dict) else {}))
    if problems:
        raise UserError(problems)
    if not rows:
        raise UserError(f"{path}: no labelled responses; each line is {{response, label, meta}}")
    return rows


def validate(
    built: BuiltJudge,
    path: Path,
    threshold: float = SCALE_THRESHOLD,
    seed: int = 0,
    cache: VerdictCache | None = None,
    n_boot: int = N_BOOT,
) -> dict:
    """The judge's validation table on the labels file (see the module docstring)."""
    rows = read_labels(path, built.trait_kind)
    items = [(sha256_json(meta), response, meta) for response, _, meta in rows]
    verdicts = (cache if cache is not None else VerdictCache()).judge(built, items)
    judged = [(label, v.value) for (_, label, _), v in zip(rows, verdicts) if v.value is not None]
    table: dict[str, Any] = {
        "labels": str(path),
        "labels_sha256": file_sha256(Path(path)),
        "judge": built.name,
        "judge_id": built.judge_id,
        "kind": built.trait_kind,
        "n_labelled": len(rows),
        "n_unjudged": len(rows) - len(judged),
    }
    labels, values = [y for y, _ in judged], [float(v) for _, v in judged]
    if built.trait_kind == "rate":
        metrics = binary_metrics([int(y) for y in labels], [int(v) for v in values], n_boot=n_boot, seed=seed)
    else:
        metrics = scale_metrics(labels, values, threshold=threshold, n_boot=n_boot, seed=seed)
    return {**table, **metrics}


def calibration_problems(traits: dict[str, TraitConfig]) -> list[str]:
    """Load-time checks of `traits.T.calibration`: the file exists and its labels fit the judge's kind."""
    problems = []
    for name, cfg in traits.items():
        if not cfg.calibration:
            continue
        try:
            path = labels_path(name, cfg.calibration, f"traits.{name}.calibration")
            if not path.is_file():
                raise UserError(f"traits.{name}.calibration: {path} is not a file; give a JSONL file of labels")
            read_labels(path, make_judge(name, cfg).trait_kind)
        except UserError as err:
            problems += [p if p.startswith("traits.") else f"traits.{name}.calibration: {p}" for p in err.problems]
    return [f".{p}" for p in problems]


def calibration_table(trait: str, calibration: str, built: BuiltJudge) -> dict:
    """The validation table of a trait's calibration set, judged once per process per judge."""
    path = labels_path(trait, calibration, f"traits.{trait}.calibration")
    if not path.is_file():
        raise UserError(f"traits.{trait}.calibration: {path} is not a file; give a JSONL file of {{response, label}}")
    key = (built.judge_id, file_sha256(path), SCALE_THRESHOLD)
    if key not in _TABLES:
        _TABLES[key] = validate(built, path, cache=_CACHE)
    return _TABLES[key]


def calibrated(trait: str, calibration: str, built: BuiltJudge, positives: int, n: int, seed: int = 0) -> dict:
    """A score's `calibration` entry: the validation table plus, for a rate, `corrected` {score, low,
    high, method, reason}; score None (with the reason) when the correction is not identifiable."""
    table = calibration_table(trait, calibration, built)
    if built.trait_kind != "rate":
        reason = "the Rogan-Gladen correction applies to rate traits; a scale's validation is shown as is"
        return {**table, "corrected": {"score": None, "low": None, "high": None, "method": None, "reason": reason}}
    confusion = Confusion(table["tp"], table["fn"], table["tn"], table["fp"])
    return {**table, "corrected": corrected_rate(positives, n, confusion, seed=seed)}


def _cell(metric: dict | None, digits: int = 3) -> str:
    if not metric or metric.get("value") is None:
        return "–"
    if metric.get("low") is None:
        return f"{metric['value']:.{digits}f}"
    return f"{metric['value']:.{digits}f} [{metric['low']:.{digits}f}, {metric['high']:.{digits}f}]"


def format_table(table: dict) -> str:
    """The validation table as text lines (what `leaksweep judge validate` prints)."""
    lines = [
        f"judge: {table['judge']}  (judge_id {table['judge_id']})",
        f"labels: {table['labels']}  ({table['n_labelled']} labelled, sha256 {table['labels_sha256'][:12]})",
        f"n judged: {table['n']}   n_unjudged: {table['n_unjudged']} (counted, not scored)",
    ]
    binary = table if table["kind"] == "rate" else table["binary"]
    if table["kind"] == "scale":
        lines += [
            f"spearman rho: {_cell(table['spearman'])}   (bootstrap 95%)",
            f"MAE:          {_cell(table['mae'])}   (bootstrap 95%)",
            f"binary at value >= {table['threshold']:g}:",
        ]
    lines += [
        f"  table: tp {binary['tp']}  fn {binary['fn']}  tn {binary['tn']}  fp {binary['fp']}",
        f"  sensitivity: {_cell(binary['sensitivity'])}   (Wilson 95%, n={binary['sensitivity']['n']})",
        f"  specificity: {_cell(binary['specificity'])}   (Wilson 95%, n={binary['specificity']['n']})",
        f"  accuracy:    {_cell(binary['accuracy'])}   (Wilson 95%, n={binary['accuracy']['n']})",
        f"  kappa:       {_cell(binary['kappa'])}   (Cohen's kappa, bootstrap 95%)",
    ]
    return "\n".join(lines)
