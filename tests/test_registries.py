"""The judge and mode registries, extended from outside the package: a throwaway judge kind and a
throwaway experiment mode defined here are usable from a sweep config end to end."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from leaksweep.config import TraitConfig
from leaksweep.errors import UserError
from leaksweep.experiments import registry
from leaksweep.experiments.conditions import (
    Builder,
    Request,
    Run,
    Settings,
    builder_for,
    drive,
    missing,
    settings_for,
    sufficiency,
)
from leaksweep.experiments.registry import Mode, make_search, register_mode
from leaksweep.simulate import SimConfig, SimSubset, simulate
from leaksweep.sweepfile import sweep_from_dict as unchecked_sweep_from_dict
from leaksweep.traits import judges
from leaksweep.traits.evalset import build_traits
from leaksweep.traits.judges import BuiltJudge, JudgeSpec, Verdict, register_judge
from leaksweep.traits.scoring import score
from sweeps import unit_cfg

TRAIT = "trait"

# --- a throwaway judge kind: counts upper-case words -------------------------------------------------


def shout_factory(spec: JudgeSpec) -> BuiltJudge:
    min_caps = int(spec.params.get("min_caps", 1))
    trait_kind = spec.trait_kind or "rate"

    def judge(response: str, meta: dict) -> Verdict:
        caps = sum(w.isupper() and len(w) > 1 for w in response.split())
        value = float(caps >= min_caps) if trait_kind == "rate" else float(min(caps, 10))
        return Verdict(value, f"caps={caps}")

    return BuiltJudge(judge, f"shout@v1(min_caps={min_caps})", trait_kind)


def says_please(response: str, meta: dict) -> bool:
    """A user function judge (module kind): returns a bare bool."""
    return "please" in response.lower()


says_please.version = "2"


def upper_text(response: str, meta: dict) -> str:
    """A broken user judge: returns text, not a value."""
    return response.upper()


@pytest.fixture(params=["callable", "import path"])
def shout_judge(request):
    # a factory is a callable, or "pkg.mod:function" imported when a trait first uses the kind
    factory = shout_factory if request.param == "callable" else "test_registries:shout_factory"
    register_judge("shout", factory, shorthand="min_caps")
    try:
        yield
    finally:
        del judges.REGISTRY["shout"]


def eval_file(tmp_path: Path) -> str:
    path = tmp_path / "eval.jsonl"
    path.write_text("".join(json.dumps({"prompt_id": f"q{i}", "prompt": f"question {i}"}) + "\n" for i in range(3)))
    return str(path)


def sweep_with_traits(traits: dict, **search) -> dict:
    return {
        "name": "reg",
        "base": "clean",
        "output_dir": "/tmp/unused",
        "data": {"prompts": "p.jsonl", "sources": {"clean": "c.jsonl", "teacher": "t.jsonl"}},
        "subsets": {"S": {"ids": ["x"]}},
        "search": {"teacher": "teacher", **search},
        "traits": traits,
        "train": {"max_steps": 10},
    }


def test_a_registered_judge_is_usable_from_a_sweep_config(tmp_path, shout_judge):
    file = eval_file(tmp_path)
    raw = sweep_with_traits(
        {
            "loud": {"judge": {"shout": {"min_caps": 2}}, "prompts": file},
            "loudness": {"judge": {"shout": 1}, "kind": "scale", "prompts": file},  # shorthand: min_caps 1
        },
        objectives=[{"trait": "loud"}],
        fractions={"S": [0.0]},
    )
    cfg = registry.sweep_from_dict(raw, "sweep.yaml")
    traits = build_traits(cfg.traits, [])
    loud, loudness = traits["loud"], traits["loudness"]
    assert (loud.kind, loud.judge_name) == ("rate", "shout@v1(min_caps=2)")
    assert (loudness.kind, loudness.judge_name) == ("scale", "shout@v1(min_caps=1)")
    result, samples = score(loud, [["STOP THAT NOW", "quiet"], ["ONE loud"], ["NO NO"]])
    assert result["judge"] == "shout@v1(min_caps=2)" and result["n_samples"] == 4
    assert result["prompt_values"] == [0.5, 0.0, 1.0]
    assert [s["reason"] for s in samples] == ["caps=3", "caps=0", "caps=1", "caps=2"]
    result, _ = score(loudness, [["AA BB CC"], ["a"], ["XX"]], seed=1)
    assert result["interval"] == "prompt_bootstrap95" and result["prompt_values"] == [3.0, 0.0, 1.0]


@pytest.mark.parametrize("judge", ["test_registries:says_please", {"module": "test_registries:says_please"}])
def test_a_user_function_judge(tmp_path, judge):
    cfg = registry.sweep_from_dict(
        sweep_with_traits(
            {"polite": {"judge": judge, "prompts": eval_file(tmp_path)}},
            objectives=[{"trait": "polite"}],
            fractions={"S": [0.0]},
        ),
        "s",
    )
    trait = build_traits(cfg.traits, [])["polite"]
    assert trait.kind == "rate" and trait.judge_name == "module:test_registries:says_please@2"
    result, samples = score(trait, [["please"], ["no"], ["Please do"]])
    assert result["prompt_values"] == [1.0, 0.0, 1.0] and samples[0]["reason"] == "returned True"


def test_a_user_function_judge_must_give_a_valid_value(tmp_path):
    cfg = TraitConfig(judge="test_registries:upper_text", prompts=eval_file(tmp_path))
    trait = build_traits({"odd": cfg}, [])["odd"]
    with pytest.raises(UserError, match=r"traits\.odd\.judge \(test_registries:upper_text\): returned 'X'; return a"):
        score(trait, [["x"], ["y"], ["z"]])


def test_unknown_judge_kind_lists_the_known_kinds(tmp_path):
    with pytest.raises(UserError) as err:
        build_traits({"polite": TraitConfig(judge={"grader9000": {"model": "m"}}, prompts=eval_file(tmp_path))}, [])
    message = str(err.value)
    assert message.startswith("traits.polite.judge: {'grader9000': {'model': 'm'}} is not a known judge")
    assert "known kinds: rule, regex, module" in message
    # the same problem is found when the sweep file is loaded, together with the sweep's other problems
    raw = sweep_with_traits({"polite": {"judge": "nope", "prompts": "e.jsonl"}}, mode="leak_threshold", subsets=["S"])
    with pytest.raises(UserError) as err:
        registry.sweep_from_dict(raw, "sweep.yaml")
    text = "\n".join(err.value.problems)
    assert "sweep.yaml: traits.polite.judge: 'nope' is not a known judge; known kinds: rule, regex, module" in text
    assert "sweep.yaml: search.ladder: mode leak_threshold needs a ladder" in text


def test_unknown_module_judge_names_the_target(tmp_path):
    with pytest.raises(UserError, match=r"traits\.p\.judge: cannot import 'no_such_module:f'"):
        build_traits({"p": TraitConfig(judge="no_such_module:f", prompts=eval_file(tmp_path))}, [])


# --- a throwaway mode: is the all-teacher baseline above the all-clean one? -------------------------


@dataclass
class TeacherVsClean:
    builder: Builder
    settings: Settings
    mode: str = "teacher_vs_clean"

    def next_round(self, runs: list[Run]) -> list[Request]:
        b, seeds = self.builder, self.settings.seed_range
        return missing(runs, b.all_clean(), seeds) + missing(runs, b.all_teacher(), seeds)

    def conclude(self, runs: list[Run]) -> dict:
        b, s = self.builder, self.settings
        decision = sufficiency(runs, b.all_teacher(), b.all_clean(), s.trait, s).to_dict()
        return {"mode": self.mode, "trials_spent": len(runs), "teacher_vs_clean": decision}


def check_teacher_vs_clean(cfg) -> list[str]:
    return (
        [] if cfg.search.seeds >= 2 else [f".search.seeds: mode teacher_vs_clean needs 2 seeds; got {cfg.search.seeds}"]
    )


@pytest.fixture
def teacher_vs_clean():
    register_mode(
        Mode(
            "teacher_vs_clean",
            check_teacher_vs_clean,
            lambda cfg, sources: TeacherVsClean(builder_for(cfg), settings_for(cfg)),
            ("teacher_vs_clean",),
        )
    )
    try:
        yield
    finally:
        del registry.MODES["teacher_vs_clean"]


LEAKY = SimConfig(
    subsets={"S": SimSubset(n_units=64, effect=0.5, ed50=0.1, slope=6.0)},
    n_prompts=200,
    samples_per_prompt=4,
    seed_sd=0.05,
)


def test_a_registered_mode_validates_and_runs_end_to_end(teacher_vs_clean):
    with pytest.raises(UserError) as err:
        unit_cfg("t", TRAIT, mode="teacher_vs_clean", seeds=1, trait="nope")
    text = "\n".join(err.value.problems)  # the mode's problem comes with the sweep's other problems
    assert "test: search.seeds: mode teacher_vs_clean needs 2 seeds; got 1" in text
    assert "test: search.trait: 'nope' is not among the traits" in text
    cfg = unit_cfg("t", TRAIT, mode="teacher_vs_clean", seeds=3, min_effect=0.02)
    search = make_search(cfg, ["clean", "teacher"])
    search.settings = Settings(TRAIT, (TRAIT,), seeds=3, alpha=0.05, min_effect=0.02, margin=0.05, n_boot=300)
    counter = itertools.count()
    runs, out = drive(
        search, lambda reqs: [Run(c, s, next(counter), simulate(LEAKY, c.plan, c.kind, s, [TRAIT])) for c, s in reqs]
    )
    assert len(runs) == 6 and out["trials_spent"] == 6
    assert out["teacher_vs_clean"]["passed"] is True
    assert registry.MODES["teacher_vs_clean"].analyses == ("teacher_vs_clean",)


def test_unknown_mode_lists_the_known_modes():
    with pytest.raises(UserError) as err:
        unit_cfg("t", TRAIT, mode="bisect_everything")
    (problem,) = err.value.problems
    assert problem.startswith("test: search.mode: 'bisect_everything' is not a mode; known modes: optuna, ")
    for mode in ("teacher_eval", "full_swap", "drop", "fraction_sweep", "leak_threshold", "minimal_subset"):
        assert mode in problem
    # config alone (no registry check) takes any name; the registry still refuses to build a search for it
    raw = sweep_with_traits({TRAIT: {"judge": {"regex": "x"}, "prompts": "e.jsonl"}}, mode="bisect_everything")
    cfg = unchecked_sweep_from_dict(raw, "x")
    with pytest.raises(UserError, match="search.mode: 'bisect_everything' is not a mode; known modes: optuna, "):
        make_search(cfg, ["clean", "teacher"])


def test_cli_rejects_an_unknown_mode_with_exit_code_2(tmp_path):
    raw = sweep_with_traits({"date_confusion": {}}, mode="bisect_everything")
    raw["output_dir"] = str(tmp_path / "out")
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw))
    proc = subprocess.run(
        [sys.executable, "-m", "leaksweep.cli", "sweep", str(path), "--no-wandb", "--no-report"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "search.mode: 'bisect_everything' is not a mode; known modes: optuna, " in proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_storage_backend_is_one_opener_and_one_registry_entry(monkeypatch, tmp_path):
    import optuna

    from leaksweep.study import storage

    opened = []

    def open_memory(url, sweep_dir, search):
        opened.append((url, sweep_dir))
        return optuna.storages.InMemoryStorage()

    monkeypatch.setitem(storage.BACKENDS, "memory", open_memory)
    backend = storage.open_storage("memory://study", tmp_path)
    assert isinstance(backend, optuna.storages.InMemoryStorage)
    assert opened == [("memory://study", tmp_path)]
    assert storage.storage_scheme(None) == "journal"
    assert storage.storage_scheme("postgresql+psycopg2://u@h/db") == "postgresql"
    # a scheme no backend claims is handed to Optuna as an SQLAlchemy URL, as before the registry
    assert storage.open_storage("oracle://u@h/db", tmp_path) == "oracle://u@h/db"
