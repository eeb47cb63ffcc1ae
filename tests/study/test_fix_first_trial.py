"""A mistake found in the first trial must not lock the sweep folder (issue 13, failure 5).

What prepare can check (the runner imports, the teacher is one of the world's sources) fails before
anything is written; what only a trial finds (a model name with a typo, a hyperparameter the trainer
refuses) leaves a folder with no complete trial, and a folder with no complete trial takes the
corrected sweep file: the old study and trial folders go to superseded/STAMP/, and the new plan runs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hf_cache import fake_hub_cache

from leaksweep.errors import UserError
from leaksweep.experiments.registry import sweep_from_dict
from leaksweep.files import write_json
from leaksweep.layout import SweepDir
from leaksweep.study import storage
from leaksweep.study.prepare import load_sweep_dir, prepare
from sweeps import sr_sweep, write_sweep

SUPPORT = Path(__file__).resolve().parents[1] / "support"


def raw(out: Path, **search) -> dict:
    return sr_sweep(
        "fixme",
        out,
        wandb=None,
        **{
            "sampler": "grid",
            "fractions": {"S": [0.0, 1.0]},
            "objectives": [{"trait": "date_confusion"}],
            "seeds": 1,
            **search,
        },
    )


def cfg_of(raw_cfg: dict):
    return sweep_from_dict(raw_cfg, "fixme.yaml")


def study_states(sweep_dir: Path):
    cfg = load_sweep_dir(sweep_dir)
    study = storage.load_study(sweep_dir, cfg)
    return [(t.state, t.user_attrs.get("condition"), t.system_attrs.get("fixed_params")) for t in storage.trials(study)]


def failed_first_trial(sweep_dir: Path) -> None:
    """What a first trial that failed leaves: its folder with spec.json and error.json, no result.json."""
    trial = SweepDir(sweep_dir).trial(0)
    trial.path.mkdir(parents=True)
    write_json(trial.spec, {"sweep": {}})
    trial.write_error("train.model: cannot load 'HuggingFaceTB/NoSuchModel'", None)


def test_an_unimportable_runner_fails_at_prepare_before_anything_is_written(tmp_path):
    cfg = cfg_of(raw(tmp_path / "run"))
    bad = raw(tmp_path / "run")
    bad["search"]["runner"] = "leaksweep.simulatx:run"
    with pytest.raises(UserError, match=r"search.runner: cannot import 'leaksweep.simulatx:run'"):
        prepare(cfg_of(bad))
    assert not SweepDir(tmp_path / "run").exists()
    assert prepare(cfg) == tmp_path / "run"


def test_a_teacher_the_world_does_not_have_fails_at_prepare_before_anything_is_written(tmp_path):
    with pytest.raises(UserError, match=r"search.teacher: 'teachr' is not a (data )?source"):
        prepare(cfg_of(raw(tmp_path / "run", teacher="teachr")))
    assert not (tmp_path / "run").exists()


def test_a_folder_with_no_complete_trial_takes_the_corrected_sweep_file(tmp_path, capsys):
    out = tmp_path / "run"
    prepare(cfg_of(raw(out)))
    failed_first_trial(out)
    fixed = raw(out, fractions={"S": [0.0, 0.5, 1.0]})
    assert prepare(cfg_of(fixed)) == out
    said = capsys.readouterr().err
    assert "no trial of it completed" in said and "superseded" in said
    # the new plan, and only it: 2 baselines + 2 grid points (0.0 is the all-clean baseline)
    planned = study_states(out)
    assert [s for s, _, _ in planned] == ["WAITING"] * 4
    assert sorted((p or {}).get("frac.S", -1) for _, _, p in planned) == [-1, -1, 0.5, 1.0]
    assert load_sweep_dir(out).search.fractions == {"S": [0.0, 0.5, 1.0]}
    # the old study and trial folders are kept, aside
    (aside,) = (out / SweepDir.SUPERSEDED).iterdir()
    assert (aside / SweepDir.JOURNAL).is_file() and (aside / SweepDir.SWEEP).is_file()
    assert (aside / SweepDir.TRIALS / "00000" / "error.json").is_file()
    assert not SweepDir(out).trial(0).path.exists()
    # and the same corrected file resumes the folder as before
    assert prepare(cfg_of(fixed)) == out and len(study_states(out)) == 4


def test_a_saved_sweep_json_that_no_longer_loads_is_replaced_when_no_trial_completed(tmp_path):
    """An old leaksweep let `teacher: teachr` through into sweep.json; every command then failed on it."""
    out = tmp_path / "run"
    prepare(cfg_of(raw(out)))
    saved = json.loads(SweepDir(out).sweep_file.read_text())
    saved["search"]["teacher"] = "teachr"
    SweepDir(out).sweep_file.write_text(json.dumps(saved))
    with pytest.raises(UserError, match="teachr"):
        load_sweep_dir(out)
    prepare(cfg_of(raw(out)))
    assert load_sweep_dir(out).search.teacher == "teacher"
    assert len(study_states(out)) == 3


def test_a_folder_with_a_complete_trial_still_refuses_another_configuration(tmp_path):
    out = tmp_path / "run"
    prepare(cfg_of(raw(out)))
    failed_first_trial(out)
    SweepDir(out).trial(0).write_result({"trial": 0})
    with pytest.raises(UserError, match=r"different configuration.*1 trial\(s\) complete"):
        prepare(cfg_of(raw(out, fractions={"S": [0.0, 0.5]})))
    assert load_sweep_dir(out).search.fractions == {"S": [0.0, 1.0]}


def test_a_folder_whose_trial_is_running_refuses_another_configuration(tmp_path):
    out = tmp_path / "run"
    prepare(cfg_of(raw(out)))
    trial = SweepDir(out).trial(0)
    trial.path.mkdir(parents=True)
    write_json(trial.spec, {"sweep": {}})
    write_json(trial.heartbeat, {"pid": 1, "host": "h", "beat_at": time.time(), "interval_s": 10.0, "state": "running"})
    with pytest.raises(UserError, match=r"trial 00000 is running"):
        prepare(cfg_of(raw(out, fractions={"S": [0.0, 0.5]})))
    assert load_sweep_dir(out).search.fractions == {"S": [0.0, 1.0]}
    # once its worker has failed it (error.json), it is not running, and the fix is taken
    trial.write_error("boom", None)
    prepare(cfg_of(raw(out, fractions={"S": [0.0, 0.5]})))
    assert load_sweep_dir(out).search.fractions == {"S": [0.0, 0.5]}


def test_two_fixes_in_one_second_keep_both_superseded_sweeps(tmp_path):
    out = tmp_path / "run"
    for fractions in ([0.0, 1.0], [0.0, 0.5], [0.0, 0.25]):
        prepare(cfg_of(raw(out, fractions={"S": fractions})))
    assert len(list((out / SweepDir.SUPERSEDED).iterdir())) == 2


def test_a_study_in_a_database_is_deleted_and_created_afresh(tmp_path, capsys):
    out = tmp_path / "run"
    url = f"sqlite:///{tmp_path / 'study.db'}"
    prepare(cfg_of(raw(out, storage=url)))
    failed_first_trial(out)
    prepare(cfg_of(raw(out, storage=url, fractions={"S": [0.0, 0.5, 1.0]})))
    assert "(deleted)" in capsys.readouterr().err
    assert [s for s, _, _ in study_states(out)] == ["WAITING"] * 4


def test_the_corrected_sweep_file_runs_after_a_first_trial_that_failed(tmp_path, monkeypatch):
    """The user's path, end to end: `leaksweep sweep` stops on the first trial's error; the same command
    with the corrected file runs the sweep in the same folder (before: 'a different configuration')."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(SUPPORT), os.environ.get("PYTHONPATH", "")]))
    out = tmp_path / "run"
    bad = raw(out)
    bad["search"]["runner"] = "slow_runner:bad_model"
    sweep_file = write_sweep(tmp_path, bad)
    argv = [sys.executable, "-m", "leaksweep.cli", "sweep", str(sweep_file), "--no-wandb", "--no-report"]
    first = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert first.returncode == 2 and "NoSuchModel" in first.stderr
    write_sweep(tmp_path, raw(out))
    second = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert "no trial of it completed" in second.stderr
    assert "complete 3 (budget 3)" in second.stdout


def test_a_refused_configuration_leaves_the_folders_world_as_it_was(tmp_path):
    """The world was regenerated for the new seed before the refusal, under the finished trials' feet."""
    out = tmp_path / "run"
    prepare(cfg_of(raw(out)))
    failed_first_trial(out)
    SweepDir(out).trial(0).write_result({"trial": 0})
    world = out / "world" / "prompts.jsonl"
    before = world.read_bytes()
    other = raw(out)
    other["data"]["world"]["seed"] = 5
    with pytest.raises(UserError, match="different configuration"):
        prepare(cfg_of(other))
    assert world.read_bytes() == before


# --- the model named in train.model, checked by prepare (issue 13 item 5) -------------------------------


def test_a_model_folder_that_is_missing_or_has_no_config_json_fails_at_prepare(tmp_path):
    out = tmp_path / "run"
    for model, needle in ((tmp_path / "no-model", "does not exist"), (tmp_path, "is not a model folder")):
        bad = raw(out)
        bad["train"] = {"model": str(model)}
        with pytest.raises(UserError, match=re.escape(f"train.model: '{model}' {needle}")):
            prepare(cfg_of(bad))
        assert not out.exists()  # nothing written
    assert prepare(cfg_of(raw(out))) == out


def test_a_model_typo_leaves_a_folder_holding_a_sweep_as_it_was_and_the_fix_is_taken(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the hub is never asked
    out = tmp_path / "run"
    prepare(cfg_of(raw(out)))
    failed_first_trial(out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    typo = raw(out, fractions={"S": [0.0, 0.5, 1.0]})
    typo["train"] = {"model": "HuggingFaceTB/SmolLM2-135M-Instructt"}
    with pytest.raises(UserError, match=r"train.model: 'HuggingFaceTB/SmolLM2-135M-Instructt' is not in the local"):
        prepare(cfg_of(typo))
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # not superseded, nothing new
    assert prepare(cfg_of(raw(out, fractions={"S": [0.0, 0.5, 1.0]}))) == out  # the fix supersedes as before
    assert load_sweep_dir(out).search.fractions == {"S": [0.0, 0.5, 1.0]}


def test_an_unknown_hub_model_fails_the_sweep_command_offline_and_the_corrected_file_runs(tmp_path):
    """`leaksweep sweep` with a mistyped hub id and no network: exit 2 before the sweep folder exists,
    naming the key, the value and the fix; the corrected file (a hub id in the local cache) then runs."""
    fake_hub_cache(tmp_path / "hf", "some-org/cached-1b")
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(SUPPORT), env.get("PYTHONPATH", "")])
    out = tmp_path / "run"
    typo = raw(out)
    typo["train"] = {"model": "some-org/cahced-1b"}
    sweep_file = write_sweep(tmp_path, typo)
    argv = [sys.executable, "-m", "leaksweep.cli", "sweep", str(sweep_file), "--no-wandb", "--no-report"]
    first = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert first.returncode == 2, first.stderr
    assert "train.model: 'some-org/cahced-1b' is not in the local Hugging Face cache" in first.stderr
    assert "HF_HUB_OFFLINE is set" in first.stderr and "`smollm2`, `tiny`" in first.stderr
    assert "Traceback" not in first.stderr and not out.exists()
    fixed = raw(out)
    fixed["train"] = {"model": "some-org/cached-1b"}  # the simulated runner never loads it
    write_sweep(tmp_path, fixed)
    second = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert second.returncode == 0, second.stderr
    assert "complete 3 (budget 3)" in second.stdout
    assert load_sweep_dir(out).train.model == "some-org/cached-1b"


def test_a_tiny_sweep_prepares_without_importing_the_model_libraries(tmp_path):
    code = (
        "import sys\n"
        "from leaksweep.experiments.registry import sweep_from_dict\n"
        "from leaksweep.study.prepare import prepare\n"
        f"prepare(sweep_from_dict({raw(tmp_path / 'run')!r}, 'fixme.yaml'))\n"
        "print(sorted(m for m in ('huggingface_hub', 'transformers', 'torch') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
