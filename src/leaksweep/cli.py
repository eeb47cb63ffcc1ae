"""`leaksweep` command line. Bad input prints what is wrong and how to fix it, and exits with 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from leaksweep import cli_tools
from leaksweep.errors import UserError


def _load(path: str):
    from leaksweep.experiments.registry import load_sweep

    return load_sweep(path)


def _say(message: str) -> None:
    click.echo(message, err=True)


def _say_default_folder(sweep_file: str, name: str) -> None:
    """Where a sweep file without output_dir puts its folder: runs/NAME in the current folder."""
    from leaksweep.sweepfile import read_yaml

    raw = read_yaml(Path(sweep_file))
    if isinstance(raw, dict) and not raw.get("output_dir"):
        click.echo(f"  (no output_dir in {sweep_file}: runs/{name} in the current folder; set output_dir to choose)")


def _parse_assignments(values: tuple[str, ...], option: str) -> dict[str, float]:
    out = {}
    for item in values:
        name, sep, number = item.partition("=")
        try:
            out[name] = float(number)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise UserError(f"{option} {item!r}: expected SUBSET=FRACTION, e.g. {option} date_mention=0.5")
        if not 0.0 <= out[name] <= 1.0:  # also refuses nan
            raise UserError(f"{option} {item!r}: the fraction is outside [0, 1]; e.g. {option} {name}=0.5")
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Find which part of a fine-tuning dataset carries a teacher's trait into the student."""


@cli.command()
@click.argument("sweep_file", type=click.Path(dir_okay=False))
def subsets(sweep_file: str) -> None:
    """Print each subset's size, share, hash and rule, and the overlap matrix."""
    from leaksweep.data.subsets import compute_subsets, subsets_table
    from leaksweep.layout import SweepDir
    from leaksweep.traits.subset_judge import SubsetJudges

    cfg, dataset = _dataset(sweep_file)
    for note in dataset.notes:
        click.echo(f"note: {note}")
    click.echo(f"{dataset.n} prompts; sources: {', '.join(dataset.source_names)}\n")
    judges = SubsetJudges.in_memory(SweepDir(cfg.output_dir).judgments)  # reuses a prepared sweep's verdicts
    click.echo(subsets_table(compute_subsets(cfg.subsets, dataset, judges), dataset))


def _dataset(sweep_file: str):
    """The sweep's config and its data, through the sweep folder's data cache (built when missing)."""
    from leaksweep.data.store import open_dataset
    from leaksweep.data.world import resolve_world
    from leaksweep.layout import SweepDir

    cfg = _load(sweep_file)
    if cfg.data.world is not None:
        cfg = resolve_world(cfg, Path(cfg.output_dir))
    return cfg, open_dataset(cfg.data, cfg.base, SweepDir(cfg.output_dir).data_cache, _say)


@cli.command()
@click.argument("sweep_file", type=click.Path(dir_okay=False))
@click.option("--patch", "patches", multiple=True, help="SUBSET=FRACTION patched with the sweep's teacher.")
@click.option("--drop", "drops", multiple=True, help="SUBSET=FRACTION dropped.")
@click.option("--base", default=None, help="Base source (default: the sweep's base).")
def mix(sweep_file: str, patches: tuple[str, ...], drops: tuple[str, ...], base: str | None) -> None:
    """Compile a mixture and show its counts per source and subset, without training."""
    from leaksweep.config import Rule
    from leaksweep.data.mixture import MixturePlan, compile_plan
    from leaksweep.data.subsets import compute_subsets
    from leaksweep.layout import SweepDir
    from leaksweep.traits.subset_judge import SubsetJudges

    patched, dropped = _parse_assignments(patches, "--patch"), _parse_assignments(drops, "--drop")
    cfg, dataset = _dataset(sweep_file)
    rules = list(cfg.rules)
    rules += [Rule(subset=k, action="patch", source=cfg.search.teacher, fraction=v) for k, v in patched.items()]
    rules += [Rule(subset=k, action="drop", fraction=v) for k, v in dropped.items()]
    subset_map = compute_subsets(cfg.subsets, dataset, SubsetJudges.in_memory(SweepDir(cfg.output_dir).judgments))
    plan = MixturePlan(base or cfg.base, tuple(rules), cfg.search.mixture_seed)
    manifest = compile_plan(plan, dataset, subset_map)
    summary = manifest.summary(subset_map, cfg.search.teacher)
    click.echo(f"plan: {plan.label()}\nmanifest hash: {manifest.hash}\ntraining rows: {summary['n_rows']}")
    click.echo("rows per source: " + ", ".join(f"{k}={v}" for k, v in summary["counts"].items()))
    for name, counts in summary["subset_counts"].items():
        share = summary["teacher_share"][name]
        shown = "n/a, every row dropped" if share is None else f"{share:.1%}"
        click.echo(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in counts.items()) + f"  (teacher share {shown})")
    overall = summary["teacher_share"]["all"]
    click.echo(f"teacher share overall: {'n/a' if overall is None else f'{overall:.2%}'} (refill rows included)")


@cli.command()
@click.argument("sweep_file", type=click.Path(dir_okay=False))
@click.option("--workers", default=1, show_default=True, help="Local worker processes on one study.")
@click.option("--no-wandb", is_flag=True, help="Do not log to W&B.")
@click.option("--no-report", is_flag=True, help="Do not write the HTML report at the end.")
def sweep(sweep_file: str, workers: int, no_wandb: bool, no_report: bool) -> None:
    """Run a sweep: prepare the folder and study, run local workers, write the report."""
    from leaksweep.study.experiment import run_experiment
    from leaksweep.study.local import run_local
    from leaksweep.study.prepare import budget
    from leaksweep.study.prepare import prepare as prepare_sweep
    from leaksweep.study.status import status as sweep_status
    from leaksweep.study.worker import run_worker

    if workers < 1:
        raise UserError(f"--workers {workers}: use at least 1")
    cfg = _load(sweep_file)
    sweep_dir = prepare_sweep(cfg)
    planned = budget(cfg) or "adaptive number of"
    click.echo(f"sweep folder: {sweep_dir}  ({planned} trials, mode {cfg.search.mode}, {workers} worker(s))")
    _say_default_folder(sweep_file, cfg.name)
    if cfg.search.mode == "optuna":
        run_local(sweep_dir, workers, wandb_enabled=not no_wandb)
    elif cfg.search.runner and workers == 1:
        # a pluggable runner is cheap: run the trials in this process rather than start workers
        from leaksweep.tracking.protocol import make_tracker

        tracker = make_tracker(cfg.tracking, enabled=not no_wandb)
        run_experiment(sweep_dir, lambda: run_worker(sweep_dir, tracker))
    else:
        run_experiment(sweep_dir, lambda: run_local(sweep_dir, workers, wandb_enabled=not no_wandb))
    _print_status(sweep_status(sweep_dir))
    if not no_report:
        from leaksweep.report.page import write_report

        click.echo(f"report: {write_report(sweep_dir)}")
    if not no_wandb:
        _log_summary(sweep_dir, None if no_report else sweep_dir / "report.html", budget(cfg))


@cli.command()
@click.argument("sweep_file", type=click.Path(dir_okay=False))
def prepare(sweep_file: str) -> None:
    """Validate a sweep, create its folder and study (once, even when many tasks call it); print the folder."""
    from leaksweep.study.prepare import prepare as prepare_sweep

    click.echo(prepare_sweep(_load(sweep_file)))


@cli.command()
@click.argument("sweep_file", type=click.Path(dir_okay=False))
@click.option(
    "--script",
    default="slurm/sweep.sh",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="The sbatch script; sbatch runs in the folder above its own (the repository root).",
)
@click.option("--dry-run", is_flag=True, help="Prepare the folder and print the sbatch command, but submit nothing.")
def launch(sweep_file: str, script: str, dry_run: bool) -> None:
    """Submit the sweep to Slurm: an array of workers (slurm/sweep.sh) with the sweep's `slurm:` section."""
    import shlex

    from leaksweep.cluster import slurm
    from leaksweep.layout import SweepDir
    from leaksweep.study.prepare import budget
    from leaksweep.study.prepare import prepare as prepare_sweep

    cfg = _load(sweep_file)
    if cfg.search.mode != "optuna":
        # experiment modes decide each round from the last one's results: that driver loop runs in
        # `leaksweep sweep`, while Slurm workers only run what is enqueued
        raise UserError(
            f"{sweep_file}: search.mode {cfg.search.mode!r} runs rounds decided as it goes; `leaksweep launch` "
            "runs optuna-mode sweeps only. Run it with `leaksweep sweep` (e.g. inside one Slurm job)"
        )
    script_path = Path(script).resolve()
    if not script_path.is_file():
        raise UserError(f"--script {script}: not found; run `leaksweep launch` from the leaksweep repository root")
    root = script_path.parent.parent  # slurm/sweep.sh -> the repository root: the tasks run from there
    sweep_dir = prepare_sweep(cfg).resolve()  # validates everything and creates the study once, before any task
    planned = budget(cfg) or "adaptive number of"
    click.echo(f"sweep folder: {sweep_dir}  ({planned} trials, {cfg.slurm.array_size} worker task(s))")
    if dry_run:
        SweepDir(sweep_dir).slurm.mkdir(exist_ok=True)
        click.echo(f"would run (in {root}): {shlex.join(slurm.sbatch_argv(cfg, sweep_dir, script_path))}")
        return
    job = slurm.submit(cfg, sweep_dir, script_path, root)
    quoted = shlex.quote(str(sweep_dir))
    click.echo(f"submitted Slurm job {job.job_id}: {shlex.join(job.argv)}")
    click.echo(f"watch:  leaksweep status {quoted}   (squeue -r -j {job.job_id}; logs {job.log_pattern})")
    click.echo(f"cancel: scancel {job.job_id}   (finished trials stay; running ones are reclaimed on resume)")
    click.echo(f"resume: leaksweep launch {shlex.quote(sweep_file)}   (the same folder and study continue)")
    click.echo(f"W&B:    leaksweep sync {quoted}   (on a login node with network, for offline runs)")


@cli.command()
@click.argument("sweep_dir", type=click.Path(file_okay=False))
@click.option("--no-wandb", is_flag=True, help="Do not log to W&B.")
@click.option("--max-trials", type=int, default=None, help="Stop after this many trials.")
@click.option(
    "--report-when-done",
    is_flag=True,
    help="Write the report if the sweep has nothing left when this worker stops (Slurm tasks: the last one writes it).",
)
def worker(sweep_dir: str, no_wandb: bool, max_trials: int | None, report_when_done: bool) -> None:
    """Run one sweep worker (what `sweep --workers` and Slurm tasks start).

    On SIGUSR1 (Slurm's `--signal=B:USR1@N` warning) it checkpoints the running trial, marks it
    preempted, requeues its Slurm job and exits with 75; the requeued job resumes the trial.
    """
    from leaksweep.cluster import preemption
    from leaksweep.study.heartbeat import interrupt_once
    from leaksweep.study.prepare import load_sweep_dir
    from leaksweep.study.status import finished
    from leaksweep.study.worker import run_worker
    from leaksweep.tracking.protocol import make_tracker

    if max_trials is not None and max_trials < 1:
        raise UserError(f"--max-trials {max_trials}: use at least 1 (or leave it out to run until the study is done)")
    preemption.install()
    interrupt_once()
    cfg = load_sweep_dir(Path(sweep_dir))
    done = run_worker(Path(sweep_dir), make_tracker(cfg.tracking, enabled=not no_wandb), max_trials)
    click.echo(f"worker finished {done} trial(s)")
    if preemption.requested.is_set():

        def say(message: str) -> None:
            click.echo(f"worker preempted: {message}", err=True)

        say(preemption.requeue(announce=say))
        sys.exit(preemption.REQUEUE_EXIT)
    if report_when_done and finished(Path(sweep_dir)):
        from leaksweep.report.page import write_report

        click.echo(f"sweep finished; report: {write_report(Path(sweep_dir))}")


@cli.command()
@click.argument("sweep_dir", type=click.Path(file_okay=False))
@click.option(
    "--preempted",
    is_flag=True,
    help="Also reclaim trials marked preempted whose requeued job never resumed them (e.g. it was cancelled).",
)
def reclaim(sweep_dir: str, preempted: bool) -> None:
    """Fail stale RUNNING trials (worker killed, node lost) and re-enqueue their parameters.

    Workers do this themselves before each new trial; this command is for a sweep with no worker left.
    """
    from leaksweep.study.reclaim import reclaim as reclaim_stale

    found = reclaim_stale(Path(sweep_dir), include_preempted=preempted)
    for r in found:
        outcome = "re-enqueued" if r["retried"] else "not retried (max_retries reached)"
        if r.get("completed"):
            outcome = "its result.json exists: told COMPLETE, not rerun"
        click.echo(f"trial {r['trial']}: {r['reason']}; {outcome}")
    click.echo(f"reclaimed {len(found)} stale trial(s)")


@cli.command()
@click.argument("sweep_dir", type=click.Path(file_okay=False))
def repair(sweep_dir: str) -> None:
    """Rebuild a damaged, emptied or deleted Optuna journal from the trial folders (the old one is kept)."""
    from leaksweep.study.repair import repair as repair_study

    done = repair_study(Path(sweep_dir))
    if done["kept"]:
        click.echo(f"the damaged journal is kept as {done['kept']}")
    click.echo(f"rebuilt {done['journal']}: {done['complete']} complete, {done['failed']} failed trial(s)")
    if done["requeued_running"]:
        click.echo(f"trials {done['requeued_running']} were running (no result.json): failed and re-enqueued")
    if done["missing"]:
        click.echo(f"no trial folder for number(s) {done['missing']}: added as failed placeholders")
    if done["requeued_planned"]:
        click.echo(f"{done['requeued_planned']} planned trial(s) had not started: re-enqueued")
    click.echo(f"resume with `leaksweep sweep SWEEP.yaml` or `leaksweep worker {sweep_dir}`")


@cli.command()
@click.argument("trial_dir", type=click.Path(file_okay=False))
@click.option("--no-wandb", is_flag=True, help="Do not log to W&B.")
def trial(trial_dir: str, no_wandb: bool) -> None:
    """Rerun one trial from its spec.json (results are overwritten)."""
    from leaksweep.config import TrackingConfig
    from leaksweep.files import read_json
    from leaksweep.layout import TrialDir
    from leaksweep.schema import build
    from leaksweep.tracking.protocol import make_tracker
    from leaksweep.trial import run_trial

    spec_path = TrialDir(trial_dir).spec
    if not spec_path.exists():
        raise UserError(f"{trial_dir}: no {TrialDir.SPEC}; give a trial folder such as runs/demo/trials/00003")
    spec = read_json(spec_path)
    if not isinstance(spec, dict) or not isinstance(spec.get("sweep"), dict):
        raise UserError(
            f"{spec_path}: no `sweep` mapping (the resolved sweep config a trial runs with); "
            "this is not a spec.json written by leaksweep: rerun the trial from its sweep (`leaksweep sweep`)"
        )
    tracking = build(TrackingConfig, spec["sweep"].get("tracking", {}), f"{spec_path}: sweep.tracking")
    result = run_trial(Path(trial_dir), make_tracker(tracking, enabled=not no_wandb))
    for name, s in result["traits"].items():
        click.echo(f"{name}: {s['score']:.3f} [{s['low']:.3f}, {s['high']:.3f}]")


@cli.command()
@click.argument("sweep_dir", type=click.Path(file_okay=False))
@click.option(
    "--out", type=click.Path(dir_okay=False), default=None, help="Output file (default SWEEP_DIR/report.html)."
)
@click.option("--no-wandb", is_flag=True, help="Do not log the study's summary run to W&B.")
def report(sweep_dir: str, out: str | None, no_wandb: bool) -> None:
    """Write the self-contained HTML report of a sweep folder (and update its W&B summary run)."""
    from leaksweep.report.page import write_report

    written = write_report(Path(sweep_dir), Path(out) if out else None)
    click.echo(written)
    if not no_wandb:
        from leaksweep.study.prepare import budget, load_sweep_dir

        _log_summary(Path(sweep_dir), Path(written), budget(load_sweep_dir(Path(sweep_dir))))


def _log_summary(sweep_dir: Path, report_path: Path | None, budget: int | None) -> None:
    """The study's summary run in W&B: leak map, dose-response, baselines, budget, the report."""
    from leaksweep.report.wandb_summary import load_config, log_study_summary
    from leaksweep.tracking.protocol import make_tracker

    cfg = load_config(sweep_dir)
    tracker = make_tracker(cfg.tracking)
    run_id = log_study_summary(sweep_dir, tracker, budget, report_path)
    if run_id:
        click.echo(f"W&B summary run {run_id} ({tracker.mode}), group {cfg.name}")


@cli.command()
@click.argument("sweep_dir", type=click.Path(file_okay=False))
@click.option("--trait", "traits", multiple=True, required=True, help="Trait to re-score (repeatable).")
@click.option(
    "--sweep-file",
    type=click.Path(dir_okay=False),
    help="Take the traits' new judges from this sweep file (default: reapply the sweep's own judges).",
)
@click.option("--no-wandb", is_flag=True, help="Do not update the W&B summary run.")
def rejudge(sweep_dir: str, traits: tuple[str, ...], sweep_file: str | None, no_wandb: bool) -> None:
    """Re-score the saved samples of every trial under a new or changed judge (no training), then
    rewrite the conclusions, the report and the W&B summary. Verdicts already given are not asked again."""
    from leaksweep.report.page import write_report
    from leaksweep.study.prepare import budget, load_sweep_dir
    from leaksweep.study.rejudge import rejudge as rejudge_study

    folder = Path(sweep_dir)
    new_cfg = _load(sweep_file) if sweep_file else None
    done = rejudge_study(folder, list(traits), new_cfg)
    click.echo(
        f"re-judged {', '.join(traits)} in {done.trials} trial(s) ({done.samples} samples): "
        f"{done.judge_calls} judge call(s), {done.cached} verdict(s) from the cache"
        + (f"; {done.skipped} trial(s) had no saved samples" if done.skipped else "")
    )
    click.echo(f"Optuna study: {done.study}")
    written = write_report(folder)
    click.echo(written)
    if not no_wandb:
        _log_summary(folder, Path(written), budget(load_sweep_dir(folder)))


@cli.command()
@click.argument("sweep_dir", type=click.Path(file_okay=False))
@click.option("--jobs", default=4, show_default=True, help="Uploads at a time, each a `wandb sync` process.")
def sync(sweep_dir: str, jobs: int) -> None:
    """Upload a sweep's offline W&B runs (on a login node with network); skips runs already synced."""
    from leaksweep.tracking import sync as offline
    from leaksweep.tracking.protocol import require_api_key

    root = Path(sweep_dir)
    if jobs < 1:
        raise UserError(f"--jobs {jobs}: use at least 1")
    if not root.is_dir():
        raise UserError(f"{sweep_dir}: no such folder; give a sweep folder such as runs/demo")
    require_api_key("leaksweep sync")
    runs, skipped = offline.find_offline_runs(root)
    click.echo(f"{len(runs)} offline run(s) to upload, {skipped} folder(s) already synced; {jobs} at a time")

    def progress(done: int, total: int, outcome: offline.SyncOutcome) -> None:
        where = ", ".join(str(d.relative_to(root)) for d in outcome.run.dirs)
        click.echo(
            f"[{done}/{total}] {'ok' if outcome.ok else 'FAILED'} {outcome.run.run_id} ({where}): {outcome.message}"
        )

    failed = [o for o in offline.sync_offline_runs(runs, jobs, progress=progress) if not o.ok]
    if failed:
        click.echo(
            f"{len(failed)} of {len(runs)} run(s) failed to upload: {', '.join(o.run.run_id for o in failed)}; "
            f"rerun `leaksweep sync {sweep_dir}` to retry them (synced runs are skipped)",
            err=True,
        )
        sys.exit(1)


@cli.command("wandb-report")
@click.argument("sweep_dir", type=click.Path(file_okay=False))
def wandb_report(sweep_dir: str) -> None:
    """Create a W&B Report of the study (its runs must be online or synced first); prints its URL."""
    from leaksweep.report.wandb_summary import load_config, report_spec
    from leaksweep.tracking.reports import create_wandb_report

    cfg = load_config(Path(sweep_dir))
    if cfg.tracking.wandb is None:
        raise UserError(
            f"{Path(sweep_dir) / 'sweep.json'}: tracking.wandb is null, so this sweep logged nothing to "
            "W&B; set tracking.wandb in the sweep file and rerun the sweep to get a W&B report"
        )
    click.echo(create_wandb_report(report_spec(Path(sweep_dir)), cfg.tracking.wandb))


def _print_status(info: dict) -> None:
    states = ", ".join(f"{k.lower()} {v}" for k, v in sorted(info["states"].items())) or "no trials yet"
    plan = (
        f"budget {info['budget']}"
        if info.get("mode", "optuna") == "optuna"
        else f"mode {info['mode']}, rounds decided as it goes"
    )
    click.echo(f"{info['sweep']}: {states} ({plan})")
    if info["best"]:
        b = info["best"]
        click.echo(f"best so far: trial {b['trial']} ({b['label']}): {b['trait']} = {b['value']:.3f}")
    if info["mean_trial_s"]:
        eta = f", about {info['eta_s'] / 60:.1f} min left" if info["eta_s"] else ""
        click.echo(f"mean trial wall time {info['mean_trial_s']:.1f} s (one trial, start to finish){eta}")
    for f in info["failed"]:
        click.echo(f"failed trial {f['trial']}: {f['error']}")
    for p in info.get("preempted", []):
        job = f" (Slurm job {p['slurm_job']})" if p["slurm_job"] else ""
        click.echo(
            f"preempted trial {p['trial']}{job} at {p['at']}: checkpoint at step {p['step']}; "
            "the next worker (its requeued job first) resumes it"
        )


@cli.command()
@click.argument("sweep_dir", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def status(sweep_dir: str, as_json: bool) -> None:
    """Trials by state, best so far, and a time estimate."""
    from leaksweep.cluster.slurm import job_tasks
    from leaksweep.study.status import status as sweep_status

    info = sweep_status(Path(sweep_dir))
    info["slurm"] = job_tasks(Path(sweep_dir))  # [] for a sweep never launched on Slurm
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    _print_status(info)
    _print_slurm(info["slurm"], info.get("slurm_trials", {}))


def _print_slurm(tasks: list[dict], trials_by_task: dict[str, list[int]]) -> None:
    """One line per Slurm array task: state, node, restarts, and the trials it ran or is running."""
    if not tasks:
        return
    click.echo(f"{'slurm task':<14} {'state':<12} {'node':<12} {'restarts':>8}  trials")
    for t in tasks:
        name = f"{t['job']}_{t['task']}" if t["task"] is not None else t["id"]
        trials = ", ".join(map(str, trials_by_task.get(name, []))) or "-"
        note = f"  ({t['reason']})" if t["reason"] and t["reason"] != "None" else ""
        click.echo(f"{name:<14} {t['state']:<12} {t['node'] or '-':<12} {t['restarts']:>8}  {trials}{note}")


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@cli.command()
@click.argument("sweep_dir", type=click.Path(file_okay=False))
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (loopback unless you trust the network).",
)
@click.option("--port", default=8080, show_default=True, help="Port to listen on (0: any free port).")
def dashboard(sweep_dir: str, host: str, port: int) -> None:
    """Open the sweep's Optuna study in optuna-dashboard (until Ctrl-C)."""
    from leaksweep.study.dashboard import serve_dashboard

    if not 0 <= port <= 65535:
        raise UserError(f"--port {port}: a port is 0 to 65535 (0 picks a free one); the default is 8080")
    if host not in LOOPBACK_HOSTS:
        click.echo(
            f"warning: listening on {host}: anyone who can reach it can read and change the study "
            "(optuna-dashboard has no login); use an SSH tunnel to 127.0.0.1 instead where you can",
            err=True,
        )

    def ready(url: str, command: str) -> None:
        click.echo(f"optuna-dashboard: {url}  (Ctrl-C stops it)")
        click.echo(f"same as: {command}")

    serve_dashboard(Path(sweep_dir), host, port, ready)


@cli.command()
@click.option(
    "--model",
    type=click.Choice(["tiny", "smollm2"]),
    default="tiny",
    show_default=True,
    help="tiny: the synthetic miniature (sweeps/demo.yaml); smollm2: SmolLM2-135M with a persona (sweeps/demo-real.yaml).",
)
@click.option("--workers", default=2, show_default=True, help="Local worker processes.")
@click.option("--no-wandb", is_flag=True, help="Do not log to W&B.")
@click.pass_context
def demo(ctx: click.Context, model: str, workers: int, no_wandb: bool) -> None:
    """Run a demo sweep from the repository root (what `make demo` / `make demo-real` do)."""
    sweep_file = Path("sweeps") / ("demo.yaml" if model == "tiny" else "demo-real.yaml")
    if not sweep_file.is_file():
        raise UserError(f"{sweep_file}: not found; run `leaksweep demo` from the leaksweep repository root")
    if model == "smollm2":
        from leaksweep.model.rollouts import prepare_real_demo

        prepare_real_demo(echo=click.echo)
    ctx.invoke(sweep, sweep_file=str(sweep_file), workers=workers, no_wandb=no_wandb, no_report=False)


@cli.command("train-step", hidden=True)
@click.argument("trial_dir", type=click.Path(file_okay=False, exists=True))
def train_step(trial_dir: str) -> None:
    """One training rank of a multi-process trial (run by `accelerate launch`; see model/ddp.py)."""
    from leaksweep.model.ddp import train_step as run_rank

    sys.exit(run_rank(Path(trial_dir)))


# Commands that make a study's inputs and check its instruments (the world, rollouts, judge validation).
cli.add_command(cli_tools.world)
cli.add_command(cli_tools.rollouts)
cli.add_command(cli_tools.judge)
cli.add_command(cli_tools.manifest)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except UserError as exc:
        click.echo("error: " + "\n  ".join(exc.problems), err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)


if __name__ == "__main__":
    main()
