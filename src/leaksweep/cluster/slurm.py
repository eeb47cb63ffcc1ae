"""Slurm: submit slurm/sweep.sh as an array of sweep workers, and read back the job's task states.

`submit()` turns the sweep's `slurm:` section into sbatch options (which override the script's own
`#SBATCH` lines), creates the log folder first (a missing `--output` folder makes every task fail with
no log), calls `sbatch --parsable` and records the job in `SWEEP_DIR/slurm/jobs.json` (layout.SweepDir).
`job_tasks()` reports every array task of the recorded jobs: from `scontrol show job` while Slurm
still holds the job (pending, running, and for MinJobAge after the end), then from the accounting
database (`sacct`) where there is one, else from the job-completion log (`JobCompType=jobcomp/filetxt`).
"""

from __future__ import annotations

import datetime as dt
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from leaksweep.config import SweepConfig
from leaksweep.errors import UserError
from leaksweep.files import read_json, write_json
from leaksweep.layout import SweepDir

COMMAND_TIMEOUT_S = 60


@dataclass(frozen=True)
class Submission:
    job_id: str
    argv: list[str]
    log_pattern: str


def sbatch_argv(cfg: SweepConfig, sweep_dir: Path, script: Path) -> list[str]:
    """The sbatch command for the sweep: the `slurm:` section as options, then the script and folder."""
    s = cfg.slurm
    logs = SweepDir(Path(sweep_dir).resolve()).slurm
    throttle = f"%{s.array_throttle}" if s.array_throttle else ""
    argv = [
        "sbatch",
        "--parsable",
        f"--job-name=leaksweep-{cfg.name}",
        f"--array=0-{s.array_size - 1}{throttle}",
        f"--output={logs}/%x-%A_%a.out",
        f"--signal=B:USR1@{s.signal_lead_s}",
    ]
    if s.partition:
        argv.append(f"--partition={s.partition}")
    if s.gres:
        argv.append(f"--gres={s.gres}")
    if s.cpus_per_task:
        argv.append(f"--cpus-per-task={s.cpus_per_task}")
    if s.mem_gb:
        argv.append(f"--mem={s.mem_gb}G")
    if s.time_min:
        argv.append(f"--time={s.time_min}")  # sbatch reads a bare number as minutes
    return argv + list(s.extra_args) + [str(script), str(Path(sweep_dir).resolve())]


def submit(cfg: SweepConfig, sweep_dir: Path, script: Path, root: Path) -> Submission:
    """Create the log folder, run sbatch from the repository root `root`, record and return the job."""
    script = Path(script)
    if not script.is_file():
        raise UserError(
            f"{script}: sbatch script not found; run `leaksweep launch` from the leaksweep repository root "
            "or give --script"
        )
    if shutil.which("sbatch") is None:
        raise UserError(
            "sbatch: not found on PATH; run `leaksweep launch` on a Slurm login node (or load the Slurm module first)"
        )
    folder = SweepDir(sweep_dir)
    logs = folder.slurm
    logs.mkdir(parents=True, exist_ok=True)
    argv = sbatch_argv(cfg, sweep_dir, script.resolve())
    done = subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    if done.returncode != 0:
        said = done.stderr.strip() or done.stdout.strip()
        raise UserError(
            f"sbatch refused the job (exit {done.returncode}): {said}\ncommand: {shlex.join(argv)}\n"
            "fix the `slurm:` section of the sweep file (or the script's #SBATCH lines)"
        )
    job_id = done.stdout.strip().split(";")[0]  # --parsable: "JOBID" or "JOBID;CLUSTER"
    if not job_id.isdigit():
        raise UserError(f"sbatch printed {done.stdout.strip()!r}, not a job id; command: {shlex.join(argv)}")
    jobs = recorded_jobs(sweep_dir)
    submitted = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    jobs.append({"job_id": job_id, "argv": argv, "submitted": submitted})
    write_json(folder.jobs_file, jobs)
    return Submission(job_id, argv, str(logs.resolve() / f"leaksweep-{cfg.name}-{job_id}_*.out"))


def recorded_jobs(sweep_dir: Path) -> list[dict]:
    path = SweepDir(sweep_dir).jobs_file
    return read_json(path) if path.exists() else []


# --- reading task states back ----------------------------------------------------------------------


def _run(argv: list[str]) -> str | None:
    """stdout of a Slurm client command, or None when it is missing or fails (the caller falls back)."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _fields(line: str) -> dict[str, str]:
    """`Key=Value Key=Value` as printed by `scontrol -o` and the jobcomp file (values have no spaces,
    except the few scontrol keys that end a line, which we do not read)."""
    return dict(m.groups() for m in re.finditer(r"(\w+)=(\S*)", line))


def _task(fields: dict[str, str], job_id: str, source: str) -> dict:
    task = fields.get("ArrayTaskId")
    return {
        "job": job_id,
        "task": task if task not in (None, "", "N/A") else None,
        "id": fields.get("JobId"),
        "state": fields.get("JobState", "UNKNOWN"),
        "node": fields.get("NodeList") or fields.get("BatchHost"),
        "restarts": int(fields.get("Restarts", 0) or 0),
        "reason": fields.get("Reason"),
        "source": source,
    }


def _from_scontrol(job_id: str) -> list[dict]:
    out = _run(["scontrol", "-o", "show", "job", job_id])
    return [_task(_fields(line), job_id, "scontrol") for line in (out or "").splitlines() if line.strip()]


def _accounting_config() -> dict[str, str]:
    out = _run(["scontrol", "show", "config"]) or ""
    return {k.strip(): v.strip() for k, _, v in (line.partition("=") for line in out.splitlines()) if _}


def _from_sacct(job_id: str) -> list[dict]:
    out = _run(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "JobID,State,NodeList"])
    tasks = []
    for line in (out or "").splitlines():
        jid, state, node = (line.split("|") + ["", "", ""])[:3]
        task = jid.partition("_")[2]
        tasks.append(
            {
                "job": job_id,
                "task": task or None,
                "id": jid,
                "state": state.split()[0] if state else "UNKNOWN",
                "node": node,
                "restarts": 0,
                "reason": None,
                "source": "sacct",
            }
        )
    return tasks


def _from_jobcomp(job_id: str, path: str) -> list[dict]:
    """The jobcomp/filetxt log: one line per finished job (each array task and each requeued run is a line)."""
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return []
    latest: dict[str, dict] = {}
    for line in lines:
        f = _fields(line)
        if f.get("JobId") == job_id or f.get("ArrayJobId") == job_id:
            task = _task(f, job_id, "jobcomp")
            latest[task["id"]] = task  # a requeued task appears once per run: keep its last one
    return list(latest.values())


def job_tasks(sweep_dir: Path) -> list[dict]:
    """Every array task of the sweep's recorded Slurm jobs, newest job last: job, task, state, node, restarts."""
    jobs = recorded_jobs(sweep_dir)
    if not jobs:
        return []
    config = None
    tasks: list[dict] = []
    for job in jobs:
        found = _from_scontrol(job["job_id"])
        if not found:
            config = config if config is not None else _accounting_config()
            if config.get("AccountingStorageType", "accounting_storage/none") != "accounting_storage/none":
                found = _from_sacct(job["job_id"])
            if not found and config.get("JobCompType") == "jobcomp/filetxt" and config.get("JobCompLoc"):
                found = _from_jobcomp(job["job_id"], config["JobCompLoc"])
        if not found:
            found = [
                {
                    "job": job["job_id"],
                    "task": None,
                    "id": job["job_id"],
                    "state": "UNKNOWN",
                    "node": None,
                    "restarts": 0,
                    "source": None,
                    "reason": "Slurm no longer knows this job (no accounting database or job-completion log)",
                }
            ]
        # pending tasks of a throttled array come as one range ("2-3%2"): sort it by its first task
        tasks += sorted(found, key=lambda t: int(re.match(r"\d*", t["task"] or "").group() or -1))
    return tasks
