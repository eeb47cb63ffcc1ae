"""Multi-process training: one trial fine-tuned by N DDP ranks, `accelerate launch` running `leaksweep train-step`.

The worker (`train_processes`) writes what to train into the trial's trainer/ folder, launches the
ranks and waits; every rank (`train_step`) trains, rank 0 alone writes the curve, the model and the
outcome; the worker then loads rank 0's model for evaluation. The hand-over files are named in
layout.TrialDir (TRAIN_INPUT, TRAIN_OUTPUT, TRAIN_CURVE, PREEMPT_FLAG, FINAL_MODEL).

Preemption: the worker's USR1 handler only sets preemption.requested; while waiting, the worker
turns it into the PREEMPT file the ranks poll (a signal to the launcher would kill it: accelerate
does not handle USR1). The ranks agree on a step, save one checkpoint and exit; rank 0 records it.

The model stack is imported only by the ranks (through model.sft and model.loading, lazily).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from leaksweep.cluster import preemption
from leaksweep.cluster.env import JobEnvironment
from leaksweep.files import read_json, read_jsonl, write_json, write_jsonl
from leaksweep.layout import TrialDir
from leaksweep.model.callbacks import bind_local_rank
from leaksweep.model.loading import LM, TrainOutcome, load_lm, save_lm, set_cpu_threads
from leaksweep.model.sft import train_sft
from leaksweep.model.token_cache import TokenRows
from leaksweep.progress import ENV as PROGRESS_ENV
from leaksweep.schema import build, to_dict
from leaksweep.train_config import TrainConfig

LogFn = Callable[[dict, int], None]
POLL_S = 0.2  # how often the worker and the ranks look for a preemption request


def num_processes(train: TrainConfig) -> int:
    """Training processes for one trial: `train.num_processes`, or for `auto` the allocation's GPU count
    (LEAKSWEEP_NUM_GPUS, exported by slurm/sweep.sh) when above 1, else 1."""
    if train.num_processes != "auto":
        return int(train.num_processes)
    gpus = JobEnvironment.current().num_gpus or 0
    return gpus if gpus > 1 else 1


def launch_command(n: int, trial_dir: Path) -> list[str]:
    """`accelerate launch` of the train step on `n` processes of this node.

    Always `--multi_gpu` (torch.distributed.run spawns the `n` ranks): accelerate's `--cpu` means one
    process, whatever `--num_processes` says. Without GPUs the ranks train on the CPU (the Trainer's
    `use_cpu`) with gloo DDP, which is how the tests run it.
    """
    accelerate = shutil.which("accelerate") or str(Path(sys.executable).with_name("accelerate"))
    return [
        accelerate,
        "launch",
        "--multi_gpu",
        "--num_processes",
        str(n),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "0",
        "--module",
        "leaksweep.cli",
        "train-step",
        str(trial_dir),
    ]


# ---------------------------------------------------------------------------------------------
# the worker's side


def train_processes(
    trial_dir: Path,
    n: int,
    train: TrainConfig,
    seed: int,
    examples: list | TokenRows,
    model_path: str,
    device: str,
    checkpoint: Path | None,
    log: LogFn,
) -> tuple[LM, TrainOutcome]:
    """Train on `n` DDP processes in a subprocess, then load rank 0's model here for evaluation.

    `examples`: chat examples, written into the job file, or TokenRows, of which the job file names the
    cache folder and the rows (every rank maps the cached sources and selects the same rows).

    Raises preemption.Preempted when the ranks stopped for a checkpoint (see the module doc).
    """
    out = TrialDir(trial_dir).trainer
    _write_job(out, train, seed, examples, model_path, device, checkpoint)
    env = {**os.environ, "OMP_NUM_THREADS": str(train.torch_threads)}
    if preemption.requested.is_set():
        raise preemption.Preempted(checkpoint, None)
    proc = subprocess.Popen(launch_command(n, trial_dir), env=env, start_new_session=True)
    _wait_forwarding_preemption(proc, out)
    for done in (TrialDir.PREEMPT_FLAG, TrialDir.TRAIN_INPUT):  # a resume writes its own input
        (out / done).unlink(missing_ok=True)
    result = _collect(out, log)
    if not ("preempted" in result or (proc.returncode == 0 and "outcome" in result)):
        raise RuntimeError(
            f"training on {n} processes failed (`accelerate launch` exit code {proc.returncode}; "
            "see the rank errors above)"
        )
    if "preempted" in result:
        done = result["preempted"]
        raise preemption.Preempted(Path(done["checkpoint"]) if done["checkpoint"] else checkpoint, done["step"])
    trained = load_lm(str(out / TrialDir.FINAL_MODEL), device, train.attention)
    shutil.rmtree(out / TrialDir.FINAL_MODEL, ignore_errors=True)  # loaded; `train.save_model` writes trial_dir/model
    outcome = TrainOutcome(**result["outcome"])
    if outcome.num_processes != n:
        raise RuntimeError(f"asked `accelerate launch` for {n} training processes, but {outcome.num_processes} trained")
    return trained, outcome


def _write_job(
    out: Path,
    train: TrainConfig,
    seed: int,
    examples: list | TokenRows,
    model_path: str,
    device: str,
    checkpoint: Path | None,
) -> None:
    """TRAIN_INPUT: everything a rank trains from (the trial's train config and seed included)."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in (TrialDir.TRAIN_OUTPUT, TrialDir.TRAIN_CURVE, TrialDir.PREEMPT_FLAG):
        (out / stale).unlink(missing_ok=True)
    write_json(
        out / TrialDir.TRAIN_INPUT,
        {
            **({"tokens": examples.to_json()} if isinstance(examples, TokenRows) else {"examples": examples}),
            "model": model_path,
            "device": device,
            "resume_from": str(checkpoint) if checkpoint else None,
            "train": to_dict(train),
            "seed": seed,
        },
    )


def _wait_forwarding_preemption(proc: subprocess.Popen, out: Path) -> None:
    """Wait for the launcher; a preemption request becomes the PREEMPT file the ranks poll."""
    try:
        while proc.poll() is None:
            if preemption.requested.is_set() and not (out / TrialDir.PREEMPT_FLAG).exists():
                (out / TrialDir.PREEMPT_FLAG).touch()
            time.sleep(POLL_S)
    except BaseException:
        os.killpg(proc.pid, 15)  # the worker is going down: take the ranks with it
        proc.wait()
        raise


def _collect(out: Path, log: LogFn) -> dict:
    """Replay rank 0's curve through `log`; return rank 0's output ({} when it wrote none)."""
    curve = read_jsonl(out / TrialDir.TRAIN_CURVE) if (out / TrialDir.TRAIN_CURVE).exists() else []
    for record in curve:
        step = record.pop("step")
        log(record, step)
    # rank 0 writes the output last; accelerate turns a rank's REQUEUE_EXIT into its own exit code 1
    return read_json(out / TrialDir.TRAIN_OUTPUT) if (out / TrialDir.TRAIN_OUTPUT).exists() else {}


# ---------------------------------------------------------------------------------------------
# one rank


def train_step(trial_dir: Path) -> int:
    """One rank of a multi-process fine-tune (run by `accelerate launch`, see train_processes).

    Every rank trains (DDP averages the gradients; each rank sees its share of every batch, so the
    effective batch is num_processes × batch_size); rank 0 alone writes the curve, the model and the
    outcome. Returns the exit code: 0, or preemption.REQUEUE_EXIT after a checkpoint.
    """
    out = TrialDir(trial_dir).trainer
    job = read_json(out / TrialDir.TRAIN_INPUT)
    train = build(TrainConfig, job["train"], f"{out / TrialDir.TRAIN_INPUT}: train")
    rank0 = JobEnvironment.current().is_rank0
    if not rank0:
        os.environ[PROGRESS_ENV] = "off"  # one progress line per step in the task log, rank 0's

    curve: list[dict] = []
    training = threading.Event()

    def log(record: dict, step: int) -> None:
        curve.append({"step": step, **record})
        training.set()

    threading.Thread(target=_watch_preempt_flag, args=(out, training), daemon=True).start()
    set_cpu_threads(train.torch_threads)
    bind_local_rank()
    base = load_lm(job["model"], job["device"], train.attention)
    resume_from = Path(job["resume_from"]) if job["resume_from"] else None
    try:
        examples = TokenRows.from_json(job["tokens"]) if "tokens" in job else job["examples"]
        trained, outcome = train_sft(base, examples, train, out, int(job["seed"]), log, resume_from=resume_from)
    except preemption.Preempted as exc:
        if rank0:
            write_jsonl(out / TrialDir.TRAIN_CURVE, curve)
            write_json(
                out / TrialDir.TRAIN_OUTPUT,
                {"preempted": {"checkpoint": str(exc.checkpoint) if exc.checkpoint else None, "step": exc.step}},
            )
        return preemption.REQUEUE_EXIT
    if rank0:
        write_jsonl(out / TrialDir.TRAIN_CURVE, curve)
        save_lm(trained, out / TrialDir.FINAL_MODEL)
        # the processes that really trained (torch.distributed.run's WORLD_SIZE), not the number asked for
        write_json(
            out / TrialDir.TRAIN_OUTPUT,
            {"outcome": {**dataclasses.asdict(outcome), "num_processes": JobEnvironment.current().world_size}},
        )
    return 0


def _watch_preempt_flag(out: Path, training: threading.Event) -> None:
    """The worker's preemption request, as a file (see train_processes), turned into preemption.requested.

    Only once training runs: train_sft's check before training is per rank, and one rank returning
    early would leave the others waiting in DDP. After each step the ranks vote (callbacks._any_rank).
    """
    training.wait()
    while not preemption.requested.is_set():
        if (out / TrialDir.PREEMPT_FLAG).exists():
            preemption.requested.set()
        time.sleep(POLL_S)
