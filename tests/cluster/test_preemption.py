"""Preemption: the USR1 warning, checkpoint, preempted (not failed) trial, requeue, resume.

Fast tests: the signal handler, `scontrol requeue` (a fake scontrol on PATH records its arguments),
preempted.json bookkeeping. Integration tests: training stopped by the request resumes from its
checkpoint to the same weights as an uninterrupted run; a real `leaksweep worker` process signalled
mid-training checkpoints, marks the trial preempted, calls `scontrol requeue $SLURM_JOB_ID`, exits
75, and the next worker finishes the same trial in the same W&B run; and (with the `slurm_cluster`
fixture) the same through real Slurm: `scancel --signal=USR1 --batch`, requeue, resume.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from leaksweep.cluster import preemption
from leaksweep.files import read_json
from leaksweep.layout import TrialDir
from sweeps import preempt_mid_training, tiny_sweep, write_sweep

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _clear_request():
    preemption.requested.clear()
    yield
    preemption.requested.clear()


def fake_scontrol(bin_dir: Path, exit_code: int = 0) -> Path:
    """An `scontrol` that appends its arguments to calls.txt and exits with `exit_code`."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    calls = bin_dir / "calls.txt"
    script = bin_dir / "scontrol"
    script.write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\necho "fake scontrol error" >&2\nexit {exit_code}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return calls


# --- fast -----------------------------------------------------------------------------------------


def test_usr1_sets_the_request_and_nothing_else():
    previous = signal.getsignal(signal.SIGUSR1)
    try:
        preemption.install()
        assert not preemption.requested.is_set()
        os.kill(os.getpid(), signal.SIGUSR1)
        deadline = time.time() + 5
        while not preemption.requested.is_set() and time.time() < deadline:
            time.sleep(0.01)
        assert preemption.requested.is_set()
        # SIGTERM (what scancel sends) must keep its default: a cancelled job must not requeue
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_requeue_calls_scontrol_with_the_job_id(tmp_path, monkeypatch):
    calls = fake_scontrol(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    assert preemption.requeue() == "requeued Slurm job 4242"
    assert calls.read_text().split() == ["requeue", "4242"]


def test_requeue_outside_slurm_or_refused_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert "rerun `leaksweep worker" in preemption.requeue()
    calls = fake_scontrol(tmp_path / "bin", exit_code=1)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    message = preemption.requeue()
    assert "scontrol requeue 77` failed (fake scontrol error)" in message and "--requeue" in message
    assert calls.read_text().split() == ["requeue", "77"]


def test_preemption_record_keeps_history_run_id_and_older_checkpoint(tmp_path, monkeypatch):
    from leaksweep import trial as trial_stage

    monkeypatch.setenv("SLURM_JOB_ID", "9")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    checkpoint = tmp_path / "trainer" / "checkpoint-5"
    checkpoint.mkdir(parents=True)
    assert trial_stage.resume_checkpoint(tmp_path) is None
    first = trial_stage.record_preemption(tmp_path, preemption.Preempted(checkpoint, 5), "run-abc", None)
    assert first["checkpoint"] == "trainer/checkpoint-5" and first["step"] == 5 and first["run_id"] == "run-abc"
    assert trial_stage.resume_checkpoint(tmp_path) == checkpoint
    # preempted again before training restarted: the older checkpoint stays the resume point
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    second = trial_stage.record_preemption(tmp_path, preemption.Preempted(None, None), None, first)
    assert second["checkpoint"] == "trainer/checkpoint-5" and second["step"] == 5 and second["run_id"] == "run-abc"
    assert [e["slurm_restart_count"] for e in second["history"]] == [0, 1]
    assert read_json(tmp_path / TrialDir.PREEMPTED) == second


# --- training stopped and resumed ---------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["full", "lora"])
def test_training_resumes_from_the_checkpoint_to_the_same_weights(tmp_path, mode):
    import dataclasses

    import torch

    from leaksweep.model.loading import load_lm, set_cpu_threads
    from leaksweep.model.sft import train_sft
    from leaksweep.model.tiny import build_tiny_model
    from leaksweep.train_config import LoraConfig, TinyModelConfig, TrainConfig

    tiny = TinyModelConfig(
        vocab_size=300,
        hidden_size=32,
        num_layers=2,
        num_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        init_seed=0,
    )
    cfg = TrainConfig(learning_rate=3e-3, max_steps=8, batch_size=4, logging_steps=1, max_length_tokens=64)
    if mode == "lora":  # the adapter (not the base weights) is what the checkpoint must carry
        cfg = dataclasses.replace(cfg, lora=LoraConfig(r=4, alpha=8, dropout=0.0))
    words = "sun moon river cat tea city winter song bread ocean".split()
    data = [
        [
            {"role": "user", "content": " ".join(words[(i + j) % 10] for j in range(1 + i % 5))},
            {"role": "assistant", "content": " ".join(words[(3 * i + j) % 10] for j in range(2 + i % 7))},
        ]
        for i in range(32)
    ]
    set_cpu_threads(1)
    model_dir = build_tiny_model(tmp_path / "tiny", [m["content"] for chat in data for m in chat], tiny)

    whole, whole_outcome = train_sft(load_lm(str(model_dir), "cpu"), data, cfg, tmp_path / "whole", seed=0)

    def request_at_3(record, step):
        if step == 3:  # logged after step 3's on_step_end: the request is seen at the end of step 4
            preemption.requested.set()  # what the USR1 handler does

    with pytest.raises(preemption.Preempted) as stopped:
        train_sft(load_lm(str(model_dir), "cpu"), data, cfg, tmp_path / "split", seed=0, log_fn=request_at_3)
    assert stopped.value.step == 4 and stopped.value.checkpoint == tmp_path / "split" / "checkpoint-4"
    assert (stopped.value.checkpoint / "optimizer.pt").exists()
    preemption.requested.clear()
    steps = []
    resumed, outcome = train_sft(
        load_lm(str(model_dir), "cpu"),
        data,
        cfg,
        tmp_path / "split",
        seed=0,
        log_fn=lambda record, step: steps.append(step),
        resume_from=stopped.value.checkpoint,
    )
    assert outcome.steps == whole_outcome.steps == 8
    assert steps == [5, 6, 7, 8]  # only the steps after the checkpoint
    assert outcome.final_loss == pytest.approx(whole_outcome.final_loss, rel=1e-5)
    for (name, a), (_, b) in zip(whole.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), name
    assert not list((tmp_path / "split").glob("checkpoint-*"))  # finished: the resume point is deleted


# --- a real worker process ------------------------------------------------------------------------------

STEPS = 250  # long enough to signal mid-training (the first progress line comes at 10 %)


def preempt_sweep(root: Path, steps: int) -> tuple[Path, Path]:
    out = root / "sweep dir"  # a space on purpose
    sweep_file = write_sweep(
        root,
        tiny_sweep(
            "preempt",
            out,
            sampler="grid",
            baselines=False,
            train={"max_steps": steps, "batch_size": 8, "max_length_tokens": 96, "logging_steps": 10},
            traits={"date_confusion": {"n_prompts": 8, "max_new_tokens": 16}},
            wandb={"mode": "offline", "project": "preempt"},
        ),
    )
    return sweep_file, out


def wait_for(predicate, timeout_s: float, what: str, log: Path | None = None):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}\n{tail}")


def prepare(sweep_file: Path) -> None:
    """What `leaksweep launch` does before it submits: the sweep folder and its study."""
    from leaksweep.study.prepare import prepare
    from leaksweep.sweepfile import load_sweep

    prepare(load_sweep(sweep_file))


def study_trials(out: Path):
    import optuna

    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "optuna.journal")))
    return optuna.load_study(study_name="preempt", storage=storage).get_trials(deepcopy=False)


def offline_run_ids(trial: Path) -> list[str]:
    return [d.name.split("-", 3)[3] for d in sorted((trial / "wandb").glob("offline-run-*"))]


@pytest.mark.integration
def test_signalled_worker_checkpoints_requeues_and_the_next_worker_resumes(tmp_path):
    sweep_file, out = preempt_sweep(tmp_path, steps=STEPS)
    calls = fake_scontrol(tmp_path / "bin")
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "OMP_NUM_THREADS": "1",
        "LEAKSWEEP_PROGRESS": "plain",
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "SLURM_JOB_ID": "4242",
        "SLURM_RESTART_COUNT": "0",
    }
    env.pop("WANDB_API_KEY", None)
    cli = [sys.executable, "-m", "leaksweep.cli"]
    prepare(sweep_file)

    preempt_mid_training([*cli, "worker", str(out)], env, tmp_path / "worker-1.log", STEPS)
    trial = out / "trials" / "00000"
    record = read_json(trial / TrialDir.PREEMPTED)
    assert 0 < record["step"] < STEPS and (trial / record["checkpoint"]).is_dir()
    assert read_json(trial / "heartbeat.json")["state"] == "preempted"
    assert not (trial / "result.json").exists() and not (trial / "error.json").exists()
    assert [t.state.name for t in study_trials(out)] == ["RUNNING"]  # preempted, not failed
    from leaksweep.study.status import status

    assert [(p["trial"], p["step"], p["slurm_job"]) for p in status(out)["preempted"]] == [(0, record["step"], "4242")]
    assert calls.read_text().split() == ["requeue", "4242"]
    first_ids = offline_run_ids(trial)
    assert len(first_ids) == 1 and record["run_id"] == first_ids[0]

    env["SLURM_RESTART_COUNT"] = "1"  # what the requeued job sees
    resumed = subprocess.run(
        [*cli, "worker", str(out)], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    assert "resuming preempted trial 0" in resumed.stderr
    trials = study_trials(out)
    assert [(t.number, t.state.name) for t in trials] == [(0, "COMPLETE")]  # nothing counted twice
    result = read_json(trial / "result.json")
    assert result["wandb_run_id"] == record["run_id"] and result["train"]["steps"] == STEPS
    assert [e["step"] for e in result["preemptions"]] == [record["step"]]
    assert offline_run_ids(trial) == [record["run_id"]] * 2  # the same W&B run, continued
    curve = [json.loads(line)["step"] for line in (trial / "train_log.jsonl").read_text().splitlines()]
    assert curve == sorted(set(curve)) and curve[-1] == STEPS  # one curve, no step twice
    assert not list((trial / "trainer").glob("checkpoint-*"))


# --- real Slurm -------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_slurm_usr1_checkpoints_requeues_and_resumes_the_same_trial(slurm_cluster, tmp_path):
    """sbatch slurm/sweep.sh; `scancel --signal=USR1 --batch` mid-training; the task checkpoints, requeues
    itself and, restarted by Slurm, finishes the same trial in the same W&B run: one trial, counted once."""
    sweep_file, out = preempt_sweep(tmp_path, steps=STEPS)
    logs = tmp_path / "logs"
    logs.mkdir()
    submitted = slurm_cluster.run(
        "sbatch",
        "--parsable",
        "--array=0-0",
        "--gres=gpu:1",
        "--cpus-per-task=1",
        "--mem=1G",
        "--time=10",
        f"--output={logs}/%x-%A_%a.out",
        str(ROOT / "slurm" / "sweep.sh"),
        str(sweep_file),
        check=False,
    )
    assert submitted.returncode == 0, submitted.stderr
    task = f"{submitted.stdout.strip()}_0"

    def log() -> str:
        return "\n".join(p.read_text() for p in logs.glob("*.out"))

    wait_for(lambda: re.search(rf"train \d+/{STEPS} steps", log()), 240, "training to start", None)
    signalled = time.monotonic()
    slurm_cluster.run("scancel", "--signal=USR1", "--batch", task)
    trial = out / "trials" / "00000"
    wait_for(lambda: (trial / TrialDir.PREEMPTED).exists(), 60, "the checkpoint and preempted.json", None)
    checkpointed = time.monotonic()
    wait_for(lambda: "resuming preempted trial 0" in log(), 180, "the requeued task to resume the trial", None)
    resumed = time.monotonic()
    slurm_cluster.wait_jobs_done(task.split("_")[0], timeout_s=300)
    text = log()
    record = read_json(trial / TrialDir.PREEMPTED)
    assert 0 < record["step"] < STEPS, text[-3000:]
    # announced before scontrol runs (Slurm may end the job before scontrol returns); restart 1 proves it
    assert "requeueing Slurm job" in text and re.search(r"restart 1 ", text), text[-3000:]
    assert [(t.number, t.state.name) for t in study_trials(out)] == [(0, "COMPLETE")], text[-3000:]
    result = read_json(trial / "result.json")
    assert result["train"]["steps"] == STEPS and result["wandb_run_id"] == record["run_id"]
    assert [(e["step"], e["slurm_restart_count"], e["slurm_job"]) for e in result["preemptions"]] == [
        (record["step"], 0, record["history"][0]["slurm_job"])
    ]
    assert offline_run_ids(trial) == [record["run_id"]] * 2  # one W&B run, continued after the requeue
    assert (out / "report.html").is_file(), text[-3000:]
    print(
        f"USR1 -> checkpoint written: {checkpointed - signalled:.1f} s; "
        f"-> requeued task resumed the trial: {resumed - signalled:.1f} s (requeue to resume {resumed - checkpointed:.1f} s)"
    )
