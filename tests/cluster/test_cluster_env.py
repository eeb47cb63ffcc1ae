"""JobEnvironment (leaksweep.cluster.env): the one reader of the Slurm / DDP environment."""

from __future__ import annotations

import pytest

from leaksweep.cluster.env import NUM_GPUS_VAR, JobEnvironment
from leaksweep.errors import UserError


def test_array_task_is_job_underscore_task():
    env = JobEnvironment.current(
        {
            "SLURM_JOB_ID": "1043",
            "SLURM_ARRAY_JOB_ID": "1040",
            "SLURM_ARRAY_TASK_ID": "3",
            "SLURM_RESTART_COUNT": "2",
            NUM_GPUS_VAR: "2",
        }
    )
    assert env.task == "1040_3"
    assert env.job_id == "1043"  # an array task's own id: the one `scontrol requeue` takes
    assert (env.restart_count, env.num_gpus) == (2, 2)


def test_plain_job_is_its_job_id():
    env = JobEnvironment.current({"SLURM_JOB_ID": "77"})
    assert env.task == "77" and env.job_id == "77"
    assert env.array_job_id is None and env.array_task_id is None
    assert env.restart_count == 0


def test_outside_slurm_everything_is_unset_and_rank_zero():
    env = JobEnvironment.current({})
    assert env.task is None and env.job_id is None
    assert (env.restart_count, env.num_gpus, env.rank, env.local_rank, env.world_size) == (0, None, 0, None, 1)
    assert env.is_rank0


def test_empty_values_count_as_unset():
    env = JobEnvironment.current({"SLURM_JOB_ID": "", "SLURM_RESTART_COUNT": " ", NUM_GPUS_VAR: ""})
    assert env.task is None and env.restart_count == 0 and env.num_gpus is None


def test_ddp_ranks():
    env = JobEnvironment.current({"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2"})
    assert (env.rank, env.local_rank, env.world_size, env.is_rank0) == (1, 1, 2, False)


@pytest.mark.parametrize("name", ["SLURM_RESTART_COUNT", NUM_GPUS_VAR, "RANK", "LOCAL_RANK", "WORLD_SIZE"])
def test_a_bad_number_is_a_user_error_naming_the_variable(name):
    with pytest.raises(UserError, match=rf"^{name}='two': expected a whole number"):
        JobEnvironment.current({name: "two"})


def test_reads_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "9")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "0")
    assert JobEnvironment.current().task == "9_0"
