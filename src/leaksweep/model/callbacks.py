"""Trainer callbacks (our progress bar, the loss forwarded to the tracker, preemption) and quiet library bars.

The Trainer's own bar and printer are replaced by a leaksweep Progress over optimizer steps (one
policy for every bar, plain lines in a log file). Preemption is checked after every optimizer step:
when requested, the Trainer saves a checkpoint right after that step and stops; under DDP the ranks
vote first (`_any_rank`), so they all save at the same step.

transformers, datasets and torch are imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
from typing import Callable

from leaksweep.cluster import preemption
from leaksweep.cluster.env import JobEnvironment
from leaksweep.progress import Progress


@contextlib.contextmanager
def quiet_progress_bars():
    """Hide the library-internal bars (loading weights, writing shards, tokenizing the dataset).

    They would print one bar per trial stage; the bars that matter (training steps, generation
    batches) are ours and stay.
    """
    from datasets.utils import logging as ds_logging
    from transformers.utils import logging as tf_logging

    ds_was, tf_was = ds_logging.is_progress_bar_enabled(), tf_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    tf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if ds_was:
            ds_logging.enable_progress_bar()
        if tf_was:
            tf_logging.enable_progress_bar()


def install_callbacks(trainer, log_fn: Callable[[dict, int], None] | None) -> None:
    """Our progress over optimizer steps (loss shown), log the last step, forward logs to log_fn."""
    from transformers import PrinterCallback, ProgressCallback, TrainerCallback

    class LogLastStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps:
                control.should_log = True  # so final_loss is the loss at the end, not up to logging_steps-1 earlier

    class Forward(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if log_fn is None or not logs or "loss" not in logs:
                return  # the end-of-training summary (train_runtime, ...) is not a curve point
            record = {f"train/{k}": float(v) for k, v in logs.items() if isinstance(v, (int, float))}
            log_fn(record, int(state.global_step))

    # disable_tqdm=True swaps transformers' bar for PrinterCallback, which prints every log dict
    # (they go to log_fn instead); either would duplicate TrainProgress.
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(_train_progress_callback())
    trainer.add_callback(LogLastStep())
    trainer.add_callback(Forward())


def preempt_callback():
    """Save a checkpoint and stop after the step during which preemption was requested."""
    from transformers import TrainerCallback

    class Preempt(TrainerCallback):
        stopped_at: int | None = None

        def on_step_end(self, args, state, control, **kwargs):
            if _any_rank(preemption.requested.is_set(), args.device) and state.global_step < state.max_steps:
                control.should_save = True  # the Trainer saves right after this callback returns
                control.should_training_stop = True
                self.stopped_at = int(state.global_step)

    return Preempt()


def _any_rank(flag: bool, device) -> bool:
    """`flag` of any training process (DDP under accelerate launch): every rank must stop and save at the
    same step, or the next collective waits forever. One process: the flag itself."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    import torch

    votes = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(votes, op=dist.ReduceOp.MAX)
    return bool(votes.item())


def bind_local_rank() -> None:
    """Under `accelerate launch` on GPUs, put this rank's model on its own GPU (LOCAL_RANK), not all on GPU 0."""
    import torch

    local_rank = JobEnvironment.current().local_rank
    if torch.cuda.is_available() and local_rank is not None:
        torch.cuda.set_device(local_rank)


def _train_progress_callback():
    """A TrainerCallback driving a leaksweep Progress over optimizer steps, with the latest loss."""
    from transformers import TrainerCallback

    class TrainProgress(TrainerCallback):
        progress: Progress | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.progress = Progress(state.max_steps or None, "train", "steps", initial=state.global_step)

        def on_step_end(self, args, state, control, **kwargs):
            # A step that will log its loss is counted in on_log (which the Trainer calls right
            # after), so a printed line shows that step's loss rather than the previous window's.
            if self.progress is not None and not (control.should_log or state.global_step >= state.max_steps):
                self.progress.update(state.global_step - self.progress.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.progress is not None and logs and "loss" in logs:
                self.progress.set(loss=float(logs["loss"]))
                self.progress.update(state.global_step - self.progress.n)

        def on_train_end(self, args, state, control, **kwargs):
            if self.progress is not None:
                self.progress.update(state.global_step - self.progress.n)
                self.progress.close()
                self.progress = None

    return TrainProgress()
