"""slurm/sweep.sh, `leaksweep launch`, the `slurm:` config section and `leaksweep status` on Slurm.

Fast tests check the script (syntax, required #SBATCH lines, loud failures), the generated sbatch
command (golden file, paths with spaces) and launch through a fake `sbatch`. The integration tests
run a real single-node Slurm (tests/support/slurm_cluster.py, fixture `slurm_cluster`): a 2-task array with
`--gres=gpu:1` completes a small study on the tiny model, with report and offline W&B runs.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from leaksweep.config import SlurmConfig
from leaksweep.errors import UserError
from leaksweep.layout import SweepDir
from leaksweep.schema import build
from leaksweep.sweepfile import load_sweep
from sweeps import simulated_sweep, tiny_sweep, write_sweep

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "slurm" / "sweep.sh"
GOLDEN = Path(__file__).parent / "golden"


def sim_sweep(name: str, out: Path, *, fractions: tuple = (0.1, 1.0), slurm: dict | None = None) -> dict:
    """The simulated runner: no training, for tests where Slurm submission is the point."""
    raw = simulated_sweep(
        name,
        out,
        wandb=None,
        subset_rules={"date_mention": {"metadata": {"category": "date"}}},
        simulation={
            "n_prompts": 50,
            "subsets": {"date_mention": {"n_units": 16, "effect": 0.5, "ed50": 0.05, "slope": 6}},
        },
        fractions={"date_mention": list(fractions)},
        objectives=[{"trait": "date_confusion"}],
    )
    return {**raw, "slurm": slurm} if slurm is not None else raw


# --- the script --------------------------------------------------------------------------------------


def test_script_parses_with_bash_n():
    done = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_script_has_the_required_sbatch_lines():
    lines = [line.strip() for line in SCRIPT.read_text().splitlines()]
    options = {line.split()[1].split("=")[0]: line.split()[1] for line in lines if line.startswith("#SBATCH ")}
    for required in (
        "--job-name",
        "--array",
        "--gres",
        "--cpus-per-task",
        "--mem",
        "--time",
        "--signal",
        "--requeue",
        "--open-mode",
        "--output",
    ):
        assert required in options, f"slurm/sweep.sh lacks `#SBATCH {required}`"
    assert re.fullmatch(r"--array=0-\d+%\d+", options["--array"])  # size and throttle
    assert re.fullmatch(r"--signal=B:USR1@\d+", options["--signal"])  # to the batch shell, which exec makes the worker
    assert options["--open-mode"] == "--open-mode=append"  # a requeued task appends to its log
    assert "/" not in options["--output"]  # the submit folder: exists, unlike a log folder nobody created
    assert "##SBATCH --partition=" in SCRIPT.read_text()  # the documented, switched-off partition line
    # the worker replaces the shell (so it receives USR1), from jobs/
    assert any(line.startswith('exec "$PYTHON" jobs/sweep_worker.py "$SWEEP_DIR"') for line in lines)


def run_script(*args: str, env: dict | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "LEAKSWEEP_"))}
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, cwd=cwd, env={**base, **(env or {})}, timeout=60
    )


def test_script_fails_loudly_without_a_sweep():
    done = run_script()
    assert done.returncode == 2
    assert "no sweep given" in done.stderr and "sbatch slurm/sweep.sh" in done.stderr


def test_script_fails_loudly_on_a_missing_sweep_or_python(tmp_path):
    done = run_script(str(tmp_path / "no such.yaml"))
    assert done.returncode == 2 and "no such.yaml' not found" in done.stderr
    done = run_script("sweeps/demo.yaml", env={"LEAKSWEEP_PYTHON": str(tmp_path / "nopython")})
    assert done.returncode == 2 and "no Python at" in done.stderr and "LEAKSWEEP_PYTHON" in done.stderr
    done = run_script("sweeps/demo.yaml", env={"LEAKSWEEP_ROOT": str(tmp_path)})
    assert done.returncode == 2 and "jobs/sweep_worker.py' not found" in done.stderr
    (tmp_path / "empty dir").mkdir()
    done = run_script(str(tmp_path / "empty dir"))
    assert done.returncode == 2 and "without sweep.json" in done.stderr


def test_script_stops_with_the_sweep_files_own_error(tmp_path):
    bad = tmp_path / "bad sweep.yaml"
    bad.write_text("name: bad\nsearch: {teacher: t}\nfoo: 1\n")
    done = run_script(str(bad))
    assert done.returncode == 2
    assert "foo: unknown key" in done.stderr  # leaksweep's message names the key ...
    assert "could not prepare" in done.stderr  # ... and the script says it stopped there


# --- the slurm: section and the sbatch command ---------------------------------------------------------


def test_slurm_section_rejects_unknown_keys_and_bad_values(tmp_path):
    sweep_file = write_sweep(tmp_path, sim_sweep("bad", tmp_path / "bad", slurm={"partiton": "gpu"}))
    with pytest.raises(UserError) as info:
        load_sweep(sweep_file)
    assert f"{sweep_file}: slurm.partiton: unknown key; valid keys are partition, gres" in "\n".join(
        info.value.problems
    )
    with pytest.raises(UserError) as info:
        build(SlurmConfig, {"array_size": 0, "time_min": 2, "signal_lead_s": 300, "extra_args": ["account=x"]}, "slurm")
    text = "\n".join(info.value.problems)
    assert "slurm: .array_size: 0 must be at least 1" in text or "array_size: 0 must be at least 1" in text
    assert "signal_lead_s: 300 s is not below time_min (2 min)" in text
    assert "extra_args[0]: 'account=x' is not an sbatch option" in text


def test_sbatch_command_matches_the_golden_file(tmp_path):
    from leaksweep.cluster.slurm import sbatch_argv

    out = tmp_path / "runs with space" / "gold"
    sweep_file = write_sweep(
        tmp_path,
        sim_sweep(
            "gold",
            out,
            slurm={
                "partition": "gpu",
                "gres": "gpu:2",
                "cpus_per_task": 8,
                "mem_gb": 64,
                "time_min": 240,
                "array_size": 16,
                "array_throttle": 4,
                "signal_lead_s": 300,
                "extra_args": ["--account=my proj", "--qos=high"],
            },
        ),
    )
    argv = sbatch_argv(load_sweep(sweep_file), out, Path("/repo/slurm/sweep.sh"))
    text = shlex.join(argv).replace(str(tmp_path), "TMP") + "\n"
    golden = GOLDEN / "sbatch_launch.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()
    # the shell reads it back as the same argv: the spaces are quoted, not split
    assert shlex.split(text)[-1] == "TMP/runs with space/gold"


FAKE_SBATCH = """#!/bin/bash
# a fake sbatch: records its argv and working folder as JSON, prints a job id like --parsable
python3 -c 'import json, os, sys; json.dump({"argv": sys.argv[1:], "cwd": os.getcwd()}, open(os.environ["FAKE_SBATCH_LOG"], "w"))' "$@"
echo 4242
"""


def test_launch_creates_the_log_folder_and_calls_sbatch_with_quoted_paths(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH)
    (bin_dir / "sbatch").chmod(0o755)
    out = tmp_path / "my runs" / "launched"
    sweep_file = write_sweep(tmp_path, sim_sweep("launched", out, slurm={"array_size": 2, "gres": "gpu:1"}))
    log = tmp_path / "sbatch.json"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_SBATCH_LOG": str(log)}
    done = subprocess.run(
        [sys.executable, "-m", "leaksweep.cli", "launch", str(sweep_file)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    call = json.loads(log.read_text())
    assert call["cwd"] == str(REPO)  # tasks run from the repository root
    assert call["argv"][-2:] == [str(SCRIPT), str(out)]  # one argument, spaces and all
    assert f"--output={out}/slurm/%x-%A_%a.out" in call["argv"] and (out / "slurm").is_dir()
    assert "--array=0-1" in call["argv"] and "--gres=gpu:1" in call["argv"]
    assert (out / "sweep.json").exists() and (out / "optuna.journal").exists()  # prepared before submitting
    jobs = json.loads((out / "slurm" / "jobs.json").read_text())
    assert [j["job_id"] for j in jobs] == ["4242"]
    assert "submitted Slurm job 4242" in done.stdout
    assert "scancel 4242" in done.stdout and f"leaksweep status {shlex.quote(str(out))}" in done.stdout


def test_launch_without_sbatch_says_where_to_run_it(tmp_path):
    out = tmp_path / "nosbatch"
    sweep_file = write_sweep(tmp_path, sim_sweep("nosbatch", out))
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}  # python, no sbatch
    done = subprocess.run(
        [sys.executable, "-m", "leaksweep.cli", "launch", str(sweep_file)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode == 2
    assert "sbatch: not found on PATH" in done.stderr


def test_a_sweep_resumes_with_another_slurm_section_but_not_with_other_training(tmp_path):
    from leaksweep.study.prepare import prepare

    out = tmp_path / "resumed"
    first = load_sweep(write_sweep(tmp_path, sim_sweep("resumed", out, slurm={"array_size": 2})))
    prepare(first)
    # more workers and time for the same sweep: the same folder and study go on
    prepare(load_sweep(write_sweep(tmp_path, sim_sweep("resumed", out, slurm={"array_size": 8, "time_min": 600}))))
    changed = write_sweep(tmp_path, sim_sweep("resumed", out, fractions=(0.2, 1.0)))
    SweepDir(out).trial(0).path.mkdir(parents=True)  # a finished trial: the folder is no longer replaceable
    SweepDir(out).trial(0).write_result({"trial": 0})
    with pytest.raises(UserError, match="holds a sweep with a different configuration"):
        prepare(load_sweep(changed))


def test_launch_refuses_experiment_modes(tmp_path):
    sweep_file = REPO / "sweeps" / "simulated-threshold.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "leaksweep.cli", "launch", str(sweep_file), "--dry-run"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode == 2
    assert "search.mode 'leak_threshold'" in done.stderr and "leaksweep sweep" in done.stderr


def test_jobcomp_lines_give_each_array_task_its_last_state(tmp_path):
    from leaksweep.cluster.slurm import _from_jobcomp

    log = tmp_path / "jobcomp.txt"
    line = (
        "JobId={id} UserId=root(0) GroupId=root(0) Name=leaksweep JobState={state} Partition=debug "
        "TimeLimit=10 StartTime=2026-11-27T03:19:37 EndTime=2026-11-27T03:19:40 NodeList=vm NodeCnt=1 ProcCnt=1 "
        "WorkDir=/repo ArrayJobId=7 ArrayTaskId={task} ExitCode=0:0\n"
    )
    log.write_text(
        line.format(id=8, state="REQUEUED", task=0)
        + line.format(id=9, state="COMPLETED", task=1)
        + line.format(id=8, state="COMPLETED", task=0)
        + line.format(id=20, state="COMPLETED", task=0).replace("ArrayJobId=7", "ArrayJobId=19")
    )
    tasks = sorted(_from_jobcomp("7", str(log)), key=lambda t: t["task"])
    assert [(t["task"], t["state"], t["node"]) for t in tasks] == [("0", "COMPLETED", "vm"), ("1", "COMPLETED", "vm")]


# --- a real Slurm cluster ------------------------------------------------------------------------------


def wandb_run_ids(folder: Path) -> list[str]:
    return sorted(p.stem.removeprefix("run-") for p in folder.rglob("offline-run-*/run-*.wandb"))


@pytest.mark.integration
def test_sbatch_array_of_two_gpu_tasks_completes_the_study(slurm_cluster, tmp_path):
    from leaksweep.study.status import status

    out = tmp_path / "slurm runs" / "arr"  # a space on purpose: the script quotes every path
    # three trials (all-clean, all-teacher, one mixture) of a few steps each
    sweep_file = write_sweep(
        tmp_path,
        tiny_sweep(
            "arr",
            out,
            world_seed=5,
            train={"max_steps": 4, "batch_size": 8, "max_length_tokens": 64, "logging_steps": 2},
            traits={"date_confusion": {"n_prompts": 6, "samples_per_prompt": 1, "max_new_tokens": 12}},
            wandb={"mode": "offline", "project": "slurm-test"},
        ),
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    started = time.monotonic()
    submitted = slurm_cluster.run(
        "sbatch",
        "--parsable",
        "--array=0-1",
        "--gres=gpu:1",
        "--cpus-per-task=1",
        "--mem=1G",
        "--time=10",
        f"--output={logs}/%x-%A_%a.out",
        str(SCRIPT),
        str(sweep_file),
        check=False,
    )
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.strip()
    slurm_cluster.wait_jobs_done(job, timeout_s=300)
    task_logs = {p.name: p.read_text() for p in logs.iterdir()}
    shown = "\n".join(f"--- {k}\n{v[-2500:]}" for k, v in task_logs.items())
    info = status(out)
    assert info["states"] == {"COMPLETE": 3}, shown
    assert sorted(p.parent.name for p in out.glob("trials/*/result.json")) == ["00000", "00001", "00002"], shown
    assert (out / "report.html").is_file(), shown
    assert len(wandb_run_ids(out)) == 3, shown
    # both tasks ran at once, each on its own fake GPU
    assert {re.search(r"GPUs '(\d)'", log).group(1) for log in task_logs.values()} == {"0", "1"}, shown
    # every trial records the array task that ran it (which task ran how many depends on timing)
    assert set(info["slurm_trials"]) <= {f"{job}_0", f"{job}_1"}, shown
    assert sorted(n for v in info["slurm_trials"].values() for n in v) == [0, 1, 2]
    print(f"2-task array, 3 trials: {time.monotonic() - started:.1f} s from sbatch to the last task's end")


@pytest.mark.integration
def test_launch_then_status_shows_the_array_tasks(slurm_cluster, tmp_path):
    out = tmp_path / "launched runs" / "sim"
    sweep_file = write_sweep(
        tmp_path,
        sim_sweep(
            "sim", out, slurm={"array_size": 2, "array_throttle": 2, "cpus_per_task": 1, "mem_gb": 1, "time_min": 10}
        ),
    )
    done = subprocess.run(
        [sys.executable, "-m", "leaksweep.cli", "launch", str(sweep_file)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    job = re.search(r"submitted Slurm job (\d+)", done.stdout).group(1)
    slurm_cluster.wait_jobs_done(job, timeout_s=180)
    logs = "\n".join(p.read_text()[-2000:] for p in (out / "slurm").glob("*.out"))
    shown = subprocess.run(
        [sys.executable, "-m", "leaksweep.cli", "status", str(out)], capture_output=True, text=True, timeout=120
    )
    assert shown.returncode == 0, shown.stderr
    print(shown.stdout)
    assert "complete 4" in shown.stdout, shown.stdout + logs  # 2 baselines + 2 grid points
    rows = [line.split() for line in shown.stdout.splitlines() if line.startswith(f"{job}_")]
    assert [(r[0], r[1]) for r in rows] == [(f"{job}_0", "COMPLETED"), (f"{job}_1", "COMPLETED")], shown.stdout
    as_json = json.loads(
        subprocess.run(
            [sys.executable, "-m", "leaksweep.cli", "status", str(out), "--json"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
    )
    assert {t["source"] for t in as_json["slurm"]} == {"scontrol"}
    # after MinJobAge Slurm forgets the job: then the job-completion log answers the same
    from leaksweep.cluster.slurm import _from_jobcomp

    later = sorted(_from_jobcomp(job, str(slurm_cluster.jobcomp)), key=lambda t: t["task"])
    assert [(t["task"], t["state"]) for t in later] == [("0", "COMPLETED"), ("1", "COMPLETED")]
    assert (out / "report.html").is_file(), logs


@pytest.mark.integration
def test_slurm_reads_every_sbatch_line_of_the_script(slurm_cluster, tmp_path):
    """A held job shows what Slurm made of the script's own lines (a command above them would end them)."""
    from leaksweep.cluster.slurm import _fields

    held = slurm_cluster.run(
        "sbatch",
        "--parsable",
        "--hold",
        "--mem=1G",
        "--cpus-per-task=1",
        f"--chdir={tmp_path}",
        str(SCRIPT),
        "x.yaml",
        check=False,
    )
    assert held.returncode == 0, held.stderr
    job = held.stdout.strip()
    try:
        f = _fields(slurm_cluster.run("scontrol", "-o", "show", "job", job).stdout)
    finally:
        slurm_cluster.run("scancel", job, check=False)
    assert (f["JobName"], f["ArrayTaskId"], f["Requeue"], f["TimeLimit"], f["TresPerNode"]) == (
        "leaksweep",
        "0-3%4",
        "1",
        "04:00:00",
        "gres:gpu:1",
    )
    # in the submit folder, which exists (%a is filled in when a task starts)
    assert f["StdOut"].startswith(f"{tmp_path}/slurm-leaksweep-{job}_") and f["StdOut"].endswith(".out")
