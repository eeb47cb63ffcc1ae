"""Multi-GPU trials: one trial trained by N DDP processes through `accelerate launch`.

Fast tests: N from `train.num_processes` / LEAKSWEEP_NUM_GPUS, and slurm/sweep.sh deriving
LEAKSWEEP_NUM_GPUS from the allocation (CUDA_VISIBLE_DEVICES). Integration test: a real tiny-model
trial trained by 2 processes with `accelerate launch --cpu` (gloo DDP, no GPU needed) completes,
records num_processes 2 and a finite, falling loss curve.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from leaksweep.errors import UserError
from leaksweep.files import read_json
from leaksweep.model.ddp import launch_command, num_processes
from leaksweep.train_config import TrainConfig
from sweeps import preempt_mid_training, tiny_sweep, write_sweep

ROOT = Path(__file__).resolve().parents[2]


def gpu_count_from_script(cuda_visible_devices: str | None) -> str:
    """Run sweep.sh's GPU-counting function (`count_gpus`) in bash, as a task with this allocation sees it."""
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    if cuda_visible_devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = cuda_visible_devices
    script = f"eval \"$(sed -n '/^count_gpus()/,/^}}/p' {json.dumps(str(ROOT / 'slurm' / 'sweep.sh'))})\"; count_gpus"
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_sweep_script_counts_the_allocated_gpus():
    assert gpu_count_from_script("0,1") == "2"
    assert gpu_count_from_script("3") == "1"
    assert gpu_count_from_script("0,1,2,3") == "4"
    assert gpu_count_from_script("") == "0"
    assert gpu_count_from_script(None) == "0"


def test_processes_follow_the_allocation_unless_set(monkeypatch):
    monkeypatch.setenv("LEAKSWEEP_NUM_GPUS", "2")
    assert num_processes(TrainConfig()) == 2
    assert num_processes(TrainConfig(num_processes=1)) == 1  # an explicit setting wins
    monkeypatch.setenv("LEAKSWEEP_NUM_GPUS", "1")
    assert num_processes(TrainConfig()) == 1
    monkeypatch.setenv("LEAKSWEEP_NUM_GPUS", "0")
    assert num_processes(TrainConfig()) == 1
    monkeypatch.delenv("LEAKSWEEP_NUM_GPUS")
    assert num_processes(TrainConfig()) == 1
    assert num_processes(TrainConfig(num_processes=3)) == 3
    monkeypatch.setenv("LEAKSWEEP_NUM_GPUS", "two")
    with pytest.raises(UserError, match="LEAKSWEEP_NUM_GPUS"):
        num_processes(TrainConfig())


def test_num_processes_is_checked():
    from leaksweep.schema import build

    with pytest.raises(UserError):
        build(TrainConfig, {"num_processes": "many"}, "train")
    assert any("num_processes" in p for p in TrainConfig(num_processes=0).check())


def test_launch_command_starts_n_ranks_of_the_train_step(tmp_path):
    cmd = launch_command(2, tmp_path)
    assert cmd[1:5] == ["launch", "--multi_gpu", "--num_processes", "2"]
    assert "--cpu" not in cmd  # accelerate's --cpu would start one process
    assert cmd[-4:] == ["--module", "leaksweep.cli", "train-step", str(tmp_path)]


STEPS = 100  # ~8 s of 2-rank training here: long enough to signal mid-training


@pytest.mark.integration
def test_two_ddp_processes_train_checkpoint_on_usr1_and_resume(tmp_path):
    """A worker whose trial trains on 2 gloo DDP ranks gets USR1 mid-training: the ranks agree on a step and
    checkpoint, the trial is preempted; the next worker resumes it on 2 ranks to the end and evaluates."""
    from leaksweep.layout import TrialDir
    from leaksweep.study.prepare import prepare
    from leaksweep.sweepfile import load_sweep

    out = tmp_path / "ddp sweep"  # a space on purpose: the trial folder goes through accelerate's argv
    sweep_file = write_sweep(
        tmp_path,
        tiny_sweep(
            "ddp",
            out,
            sampler="grid",
            baselines=False,
            train={
                "max_steps": STEPS,
                "batch_size": 4,
                "max_length_tokens": 96,
                "logging_steps": 10,
                "num_processes": 2,
            },
            traits={"date_confusion": {"n_prompts": 4, "max_new_tokens": 8}},
            wandb={"mode": "disabled"},
        ),
    )  # W&B resume is test_preemption's; this one is about the ranks
    prepare(load_sweep(sweep_file))
    env = {**os.environ, "HOME": str(tmp_path), "OMP_NUM_THREADS": "1", "LEAKSWEEP_PROGRESS": "plain"}
    for name in ("LEAKSWEEP_NUM_GPUS", "SLURM_JOB_ID", "WANDB_API_KEY"):
        env.pop(name, None)
    cli = [sys.executable, "-m", "leaksweep.cli", "worker", str(out)]
    log = tmp_path / "worker-1.log"
    preempt_mid_training(cli, env, log, STEPS)  # USR1 is forwarded to the ranks through trainer/PREEMPT
    trial = out / "trials" / "00000"
    record = read_json(trial / TrialDir.PREEMPTED)
    assert 0 < record["step"] < STEPS and (trial / record["checkpoint"]).is_dir(), log.read_text()[-3000:]
    assert not (trial / "result.json").exists() and not (trial / "error.json").exists()

    resumed = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-4000:]
    result = read_json(trial / "result.json")
    assert result["train"]["num_processes"] == 2 and result["train"]["steps"] == STEPS  # WORLD_SIZE of the ranks
    assert [e["step"] for e in result["preemptions"]] == [record["step"]]
    curve = [json.loads(line) for line in (trial / "train_log.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in curve]
    assert steps == sorted(set(steps)) and steps[0] == 1 and steps[-1] == STEPS  # rank 0's curve only, once
    losses = [r["train/loss"] for r in curve]
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < 0.8 * losses[0], losses
    assert result["traits"]["date_confusion"]["score"] is not None  # evaluated in the worker, from rank 0's model
    leftovers = {"final", "train_input.json", "PREEMPT"} & {p.name for p in (trial / "trainer").iterdir()}
    assert not leftovers and not list((trial / "trainer").glob("checkpoint-*"))
    # the ranks trained on rows selected from the sweep's token cache, named in the job file
    assert sorted(p.name for p in (out / "tokens").glob("*/*.arrow")) == ["clean.arrow", "teacher.arrow"]
