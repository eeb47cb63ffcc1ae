"""Sweep-file loading (sweepfile.load_sweep) and the CLI's handling of bad input (exit code 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from leaksweep.config import FloatRange, SweepConfig
from leaksweep.errors import UserError
from leaksweep.sweepfile import load_sweep, sweep_from_dict

DEMO = Path(__file__).resolve().parents[1] / "sweeps" / "demo.yaml"


def minimal(**overrides) -> dict:
    raw = {
        "name": "t",
        "data": {"prompts": "prompts.jsonl", "sources": {"clean": "clean.jsonl", "teacher": "teacher.jsonl"}},
        "subsets": {"dates": {"regex": "year"}},
        "base": "clean",
        "search": {
            "teacher": "teacher",
            "fractions": {"dates": [0.0, 1.0]},
            "objectives": [{"trait": "date_confusion"}],
        },
        "traits": {"date_confusion": {"n_prompts": 5}},
    }
    raw.update(overrides)
    return raw


def problems_of(raw) -> list[str]:
    with pytest.raises(UserError) as err:
        sweep_from_dict(raw, "sweep.yaml")
    return err.value.problems


def test_demo_sweep_loads():
    cfg = load_sweep(DEMO)
    assert isinstance(cfg, SweepConfig)
    assert cfg.name == "demo" and cfg.base == "clean" and cfg.search.teacher == "teacher"
    assert cfg.data.world is not None and cfg.data.world.n_prompts == 2400
    assert cfg.subsets["roleplay"].metadata == {"category": "roleplay"}
    assert cfg.search.fractions["date_mention"] == [0.0, 0.25, 0.5, 1.0]
    assert set(cfg.traits) == {"date_confusion", "blackmail", "negative_emotion"}
    assert cfg.train.model == "tiny" and cfg.train.epochs == 2.0 and isinstance(cfg.train.epochs, float)
    assert cfg.output_dir == str(Path.cwd() / "runs" / "demo")


def test_the_default_sweep_folder_is_runs_name_in_the_current_folder(tmp_path, monkeypatch):
    """Issue 13, failure 10: it was <the sweep file's folder>/../runs/NAME, outside the user's folder
    when the sweep file is not in sweeps/; an explicit relative output_dir stays relative to the file."""
    work, elsewhere = tmp_path / "work", tmp_path / "configs" / "mine"
    work.mkdir()
    elsewhere.mkdir(parents=True)
    sweep_file = elsewhere / "s.yaml"
    sweep_file.write_text(yaml.safe_dump(minimal()))
    monkeypatch.chdir(work)
    assert load_sweep(sweep_file).output_dir == str(work / "runs" / minimal()["name"])
    sweep_file.write_text(yaml.safe_dump({**minimal(), "output_dir": "out"}))
    assert load_sweep(sweep_file).output_dir == str(elsewhere / "out")


def test_minimal_config_round_trips_through_to_dict():
    cfg = sweep_from_dict(minimal(), "x")
    assert sweep_from_dict(cfg.to_dict(), "again") == cfg


def test_unknown_key_lists_the_valid_keys():
    problems = problems_of(minimal(trian={"model": "tiny"}))
    assert len(problems) == 1
    assert "trian: unknown key" in problems[0]
    for key in ("name", "data", "base", "search", "subsets", "rules", "train", "traits", "tracking", "output_dir"):
        assert key in problems[0]


def test_nested_unknown_key_has_its_path():
    raw = minimal()
    raw["search"]["fraction"] = {"dates": [0.5]}
    (problem,) = problems_of(raw)
    assert problem.startswith("sweep.yaml: search.fraction: unknown key; valid keys are teacher, ")
    assert "fractions" in problem.split("valid keys are")[1]


def test_yaml_on_key_gets_a_quoting_hint():
    raw = yaml.safe_load("subsets:\n  dates: {regex: year, on: response, source: teacher}\n")
    problems = problems_of(minimal(subsets=raw["subsets"]))
    assert any("subsets.dates.True: unknown key" in p and "quote the key" in p for p in problems)


def test_several_problems_reported_together():
    raw = minimal(colour="blue")
    raw["train"] = {"learning_rate": "fast", "batch_size": 1.5}
    raw["search"]["fractions"] = {"dates": [0.5, 1.5]}
    raw["traits"] = {"date_confusion": {"samples_per_prompt": "two"}}
    with pytest.raises(UserError) as err:
        sweep_from_dict(raw, "sweep.yaml")
    problems = err.value.problems
    assert len(problems) >= 2
    text = "\n".join(problems)
    for needle in ("colour: unknown key", "train.learning_rate", "train.batch_size", "1.5", "samples_per_prompt"):
        assert needle in text
    assert str(err.value) == text


def test_missing_required_keys():
    problems = problems_of({"name": "x"})
    assert {
        "sweep.yaml: data: required key is missing",
        "sweep.yaml: base: required key is missing",
        "sweep.yaml: search: required key is missing",
    } <= set(problems)


@pytest.mark.parametrize("values", [[0.5, 1.5], [-0.1], [float("nan")]])
def test_search_fractions_outside_unit_interval(values):
    raw = minimal()
    raw["search"]["fractions"] = {"dates": values}
    problems = problems_of(raw)
    outside = any("search.fractions.dates: fraction(s)" in p and "outside [0, 1]" in p for p in problems)
    not_finite = any("search.fractions.dates[0]: nan is not a finite number" in p for p in problems)
    assert outside or not_finite, problems


def test_drop_range_outside_unit_interval():
    raw = minimal()
    raw["search"].update(sampler="random", n_trials=4, drop={"dates": {"low": 0.0, "high": 2.0}})
    assert any("search.drop.dates" in p and "[2.0]" in p for p in problems_of(raw))


@pytest.mark.parametrize("fraction", [1.5, -0.5])
def test_rule_fraction_outside_unit_interval(fraction):
    problems = problems_of(
        minimal(rules=[{"subset": "dates", "action": "patch", "source": "teacher", "fraction": fraction}])
    )
    assert any(f"rules[0].fraction: {fraction} is outside [0, 1]" in p for p in problems)


def test_rule_checks():
    rules = [
        {"subset": "nope", "action": "drop", "fraction": 0.5},
        {"subset": "dates", "action": "patch", "fraction": 0.5},
        {"subset": "dates", "action": "swap", "fraction": 0.5},
    ]
    text = "\n".join(problems_of(minimal(rules=rules)))
    assert "rules[1].source: a patch rule needs `source:`" in text
    assert "rules[2].action: 'swap' is not allowed" in text


def test_rule_on_unknown_subset():
    text = "\n".join(problems_of(minimal(rules=[{"subset": "nope", "action": "drop", "fraction": 0.5}])))
    assert "rules[0].subset: unknown subset 'nope'" in text


def test_grid_sampler_rejects_a_range():
    raw = minimal()
    raw["search"]["fractions"] = {"dates": {"low": 0.0, "high": 1.0}}
    assert any("grid sampler needs a list" in p for p in problems_of(raw))
    raw["search"].update(sampler="tpe", n_trials=10)
    cfg = sweep_from_dict(raw, "x")
    assert cfg.search.fractions["dates"] == FloatRange(0.0, 1.0)


def test_non_grid_sampler_needs_n_trials():
    raw = minimal()
    raw["search"]["sampler"] = "random"
    assert any("n_trials" in p for p in problems_of(raw))


def test_objective_naming_an_unknown_trait():
    raw = minimal()
    raw["search"]["objectives"] = [{"trait": "blackmial"}]
    (problem,) = problems_of(raw)
    assert "search.objectives[0].trait: 'blackmial' is not among the traits ['date_confusion']" in problem


def test_unknown_sources_and_subsets_in_search():
    raw = minimal(base="orig")
    raw["search"]["teacher"] = "frontier"
    raw["search"]["fractions"] = {"roleplay": [0.5]}
    text = "\n".join(problems_of(raw))
    assert "base: 'orig' is not a data source" in text
    assert "search.teacher: 'frontier' is not a data source" in text
    assert "search.fractions.roleplay: unknown subset" in text


def test_subset_rule_needs_exactly_one_kind():
    text = "\n".join(problems_of(minimal(subsets={"a": {"regex": "x", "keyword": ["y"]}, "b": {}})))
    assert "subsets.a: give exactly one of" in text and "subsets.b: give exactly one of" in text


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: t\ndata:\n  prompts: [a, b\nbase: clean\n")
    with pytest.raises(UserError) as err:
        load_sweep(path)
    message = str(err.value)
    assert f"{path}:4:" in message and "malformed YAML" in message


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(UserError, match="cannot read"):
        load_sweep(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(UserError, match="expected a mapping at the top level"):
        load_sweep(tmp_path / "list.yaml")


def test_relative_paths_become_absolute_relative_to_the_file(tmp_path, monkeypatch):
    folder = tmp_path / "exp"
    (folder / "models" / "mine").mkdir(parents=True)
    raw = minimal(output_dir="out/here", train={"model": "./models/mine"})
    raw["subsets"]["listed"] = {"ids_file": "lists/ids.txt"}
    raw["traits"]["custom"] = {"prompts": "eval/custom.jsonl", "judge": {"regex": "x"}}
    (folder / "s.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)  # somewhere else than the YAML's folder
    cfg = load_sweep("exp/s.yaml")
    assert cfg.data.prompts == str(folder / "prompts.jsonl")
    assert cfg.data.sources == {"clean": str(folder / "clean.jsonl"), "teacher": str(folder / "teacher.jsonl")}
    assert cfg.subsets["listed"].ids_file == str(folder / "lists" / "ids.txt")
    assert cfg.traits["custom"].prompts == str(folder / "eval" / "custom.jsonl")
    assert cfg.traits["date_confusion"].prompts is None
    assert cfg.train.model == str(folder / "models" / "mine")
    assert cfg.output_dir == str(folder / "out" / "here")


def test_hub_model_names_and_absolute_paths_are_kept(tmp_path):
    raw = minimal(train={"model": "some-org/some-1b"}, output_dir=str(tmp_path / "abs"))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    cfg = load_sweep(tmp_path / "s.yaml")
    assert cfg.train.model == "some-org/some-1b"
    assert cfg.output_dir == str(tmp_path / "abs")
    assert cfg.data.prompts == str(tmp_path / "prompts.jsonl")


# --- CLI: bad input exits with 2, says what is wrong, writes nothing ------------------------------


PROMPTS = [
    {"prompt_id": f"p{i}", "prompt": f"What year is it? ({i})" if i < 3 else f"Hello number {i}"} for i in range(8)
]


def write_project(folder: Path, *, teacher_ids=None, text: str | None = None, **overrides) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    teacher_ids = [r["prompt_id"] for r in PROMPTS] if teacher_ids is None else teacher_ids
    for name, ids in (("prompts", None), ("clean", [r["prompt_id"] for r in PROMPTS]), ("teacher", teacher_ids)):
        rows = PROMPTS if ids is None else [{"prompt_id": i, "response": f"{name} says hi"} for i in ids]
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = folder / "sweep.yaml"
    path.write_text(text if text is not None else yaml.safe_dump(minimal(output_dir="out", **overrides)))
    return path


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "leaksweep.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def assert_user_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ")
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr


@pytest.mark.parametrize(
    "case, needles",
    [
        ("malformed_yaml", ["sweep.yaml:3:", "malformed YAML"]),
        ("unknown_key", ["trian: unknown key", "valid keys are"]),
        ("fraction", ["search.fractions.dates", "1.5", "outside [0, 1]"]),
        ("matches_nothing", ["subsets.dates", "matches none of the 8 prompts"]),
        ("missing_prompts", ["teacher lacks 2", "missing_ids"]),
        ("missing_model", ["train.model", "no/such/model", "does not exist"]),
    ],
)
def test_cli_sweep_rejects_bad_input(tmp_path, case, needles):
    if case == "malformed_yaml":
        path = write_project(tmp_path, text="name: t\ndata: {prompts: [a\nbase: clean\n")
    elif case == "unknown_key":
        path = write_project(tmp_path, trian={"model": "tiny"})
    elif case == "fraction":
        raw = minimal(output_dir="out")
        raw["search"]["fractions"] = {"dates": [0.5, 1.5]}
        path = write_project(tmp_path, text=yaml.safe_dump(raw))
    elif case == "matches_nothing":
        path = write_project(tmp_path, subsets={"dates": {"regex": r"\bfortnight\b"}})
    elif case == "missing_prompts":
        path = write_project(tmp_path, teacher_ids=[f"p{i}" for i in range(6)])
    else:
        path = write_project(tmp_path, train={"model": "./no/such/model"})
    proc = run_cli("sweep", str(path), "--no-wandb", "--no-report", cwd=tmp_path)
    assert_user_error(proc, *needles)
    if case == "missing_model":
        assert str(tmp_path / "no" / "such" / "model") in proc.stderr
    assert not (tmp_path / "out").exists()  # nothing written: no sweep folder, no sweep.json
    assert not list(tmp_path.rglob("sweep.json"))


def test_cli_subsets_prints_the_table(tmp_path):
    path = write_project(tmp_path)
    proc = run_cli("subsets", str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "8 prompts; sources: clean, teacher" in proc.stdout
    assert "37.50%" in proc.stdout  # 3 of 8 prompts mention a year


def test_cli_mix_rejects_a_bad_assignment(tmp_path):
    path = write_project(tmp_path)
    assert_user_error(run_cli("mix", str(path), "--patch", "dates=1.5", cwd=tmp_path), "outside [0, 1]")
    proc = run_cli("mix", str(path), "--patch", "dates=1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "dates: teacher=3" in proc.stdout


def test_a_judge_rubric_file_is_resolved_against_the_sweep_file(tmp_path):
    from leaksweep.sweepfile import load_sweep as load

    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / "s.yaml").write_text(
        "name: r\ndata: {world: {seed: 0, n_prompts: 200}}\nbase: clean\n"
        "search: {teacher: teacher, objectives: [{trait: date_confusion}]}\n"
        "traits:\n  date_confusion: {judge: {autorater: {model: smollm2, rubric: rubrics/date.txt}}}\n"
        "  blackmail: {judge: {autorater: {model: smollm2, rubric: builtin}}}\n"
    )
    cfg = load(folder / "s.yaml")
    assert cfg.traits["date_confusion"].judge["autorater"]["rubric"] == str(folder / "rubrics" / "date.txt")
    assert cfg.traits["blackmail"].judge["autorater"]["rubric"] == "builtin"
