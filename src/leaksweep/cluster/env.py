"""The one reader of the job environment: Slurm's variables, the GPU count, the DDP rank.

Every other module asks `JobEnvironment.current()` instead of reading `os.environ`, so the names
Slurm (and `accelerate launch`, and slurm/sweep.sh) set are spelled in exactly one place, the way
submitit's JobEnvironment does it. Outside Slurm every Slurm field is None and the rank is 0.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from leaksweep.errors import UserError

NUM_GPUS_VAR = "LEAKSWEEP_NUM_GPUS"  # exported by slurm/sweep.sh: the allocation's GPU count


@dataclass(frozen=True)
class JobEnvironment:
    job_id: str | None  # SLURM_JOB_ID: an array task has its own, which `scontrol requeue` accepts
    array_job_id: str | None  # SLURM_ARRAY_JOB_ID
    array_task_id: str | None  # SLURM_ARRAY_TASK_ID
    restart_count: int  # SLURM_RESTART_COUNT: how often Slurm requeued this job
    num_gpus: int | None  # LEAKSWEEP_NUM_GPUS, None when unset
    rank: int  # RANK of a DDP process (0 outside `accelerate launch`)
    local_rank: int | None  # LOCAL_RANK of a DDP process, None outside `accelerate launch`
    world_size: int  # WORLD_SIZE of a DDP launch (1 outside it)

    @staticmethod
    def current(environ: Mapping[str, str] | None = None) -> "JobEnvironment":
        env = os.environ if environ is None else environ
        return JobEnvironment(
            job_id=env.get("SLURM_JOB_ID") or None,
            array_job_id=env.get("SLURM_ARRAY_JOB_ID") or None,
            array_task_id=env.get("SLURM_ARRAY_TASK_ID") or None,
            restart_count=_whole(env, "SLURM_RESTART_COUNT", 0),
            num_gpus=_whole(env, NUM_GPUS_VAR, None),
            rank=_whole(env, "RANK", 0),
            local_rank=_whole(env, "LOCAL_RANK", None),
            world_size=_whole(env, "WORLD_SIZE", 1),
        )

    @property
    def task(self) -> str | None:
        """This process's Slurm task as JOB_TASK (array) or JOB; None outside Slurm."""
        if self.array_job_id and self.array_task_id:
            return f"{self.array_job_id}_{self.array_task_id}"
        return self.job_id

    @property
    def is_rank0(self) -> bool:
        return self.rank == 0


def _whole(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise UserError(f"{name}={raw!r}: expected a whole number; unset it or fix it") from None
