"""`leaksweep` command line. Bad input prints what is wrong and how to fix it, and exits with 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from leaksweep.errors import UserError


def _load(path: str):
    from leaksweep.config import load_sweep

    return load_sweep(path)


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
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Find which part of a fine-tuning dataset carries a teacher's trait into the student."""


@cli.command()
@click.argument("sweep_file", type=click.Path(dir_okay=False))
def subsets(sweep_file: str) -> None:
    """Print each subset's size, share, hash and rule, and the overlap matrix."""
    from leaksweep.data import load_dataset
    from leaksweep.subsets import compute_subsets, subsets_table
    from leaksweep.world import resolve_world

    cfg = _load(sweep_file)
    if cfg.data.world is not None:
        cfg = resolve_world(cfg, Path(cfg.output_dir))
    dataset = load_dataset(cfg.data, cfg.base)
    for note in dataset.notes:
        click.echo(f"note: {note}")
    click.echo(f"{len(dataset.prompts.ids)} prompts; sources: {', '.join(dataset.sources)}\n")
    click.echo(subsets_table(compute_subsets(cfg.subsets, dataset), len(dataset.prompts.ids)))


@cli.command()
@click.argument("sweep_file", type=click.Path(dir_okay=False))
@click.option("--patch", "patches", multiple=True, help="SUBSET=FRACTION patched with the sweep's teacher.")
@click.option("--drop", "drops", multiple=True, help="SUBSET=FRACTION dropped.")
@click.option("--base", default=None, help="Base source (default: the sweep's base).")
def mix(sweep_file: str, patches: tuple[str, ...], drops: tuple[str, ...], base: str | None) -> None:
    """Compile a mixture and show its counts per source and subset, without training."""
    from leaksweep.config import Rule
    from leaksweep.data import load_dataset
    from leaksweep.mixture import MixturePlan, compile_plan
    from leaksweep.subsets import compute_subsets
    from leaksweep.world import resolve_world

    cfg = _load(sweep_file)
    if cfg.data.world is not None:
        cfg = resolve_world(cfg, Path(cfg.output_dir))
    rules = list(cfg.rules)
    rules += [Rule(subset=k, action="patch", source=cfg.search.teacher, fraction=v) for k, v in _parse_assignments(patches, "--patch").items()]
    rules += [Rule(subset=k, action="drop", fraction=v) for k, v in _parse_assignments(drops, "--drop").items()]
    dataset = load_dataset(cfg.data, cfg.base)
    subset_map = compute_subsets(cfg.subsets, dataset)
    plan = MixturePlan(base or cfg.base, tuple(rules), cfg.search.mixture_seed)
    manifest = compile_plan(plan, dataset, subset_map)
    summary = manifest.summary(subset_map, cfg.search.teacher)
    click.echo(f"plan: {plan.label()}\nmanifest hash: {manifest.hash}\ntraining rows: {summary['n_rows']}")
    click.echo("rows per source: " + ", ".join(f"{k}={v}" for k, v in summary["counts"].items()))
    for name, counts in summary["subset_counts"].items():
        share = summary["teacher_share"][name]
        click.echo(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in counts.items()) + f"  (teacher share {share:.1%})")
    click.echo(f"teacher share overall: {summary['teacher_share']['all']:.2%}")


@cli.command()
@click.argument("sweep_file", type=click.Path(dir_okay=False))
@click.option("--workers", default=1, show_default=True, help="Local worker processes on one study.")
@click.option("--no-wandb", is_flag=True, help="Do not log to W&B.")
@click.option("--no-report", is_flag=True, help="Do not write the HTML report at the end.")
def sweep(sweep_file: str, workers: int, no_wandb: bool, no_report: bool) -> None:
    """Run a sweep: prepare the folder and study, run local workers, write the report."""
    from leaksweep import sweep as sweep_stage

    if workers < 1:
        raise UserError(f"--workers {workers}: use at least 1")
    cfg = _load(sweep_file)
    sweep_dir = sweep_stage.prepare(cfg)
    planned = sweep_stage.budget(cfg) or "adaptive number of"
    click.echo(f"sweep folder: {sweep_dir}  ({planned} trials, mode {cfg.search.mode}, {workers} worker(s))")
    if cfg.search.mode == "optuna":
        sweep_stage.run_local(sweep_dir, workers, wandb_enabled=not no_wandb)
    elif cfg.search.runner and workers == 1:
        # a pluggable runner is cheap: run the trials in this process rather than start workers
        from leaksweep.tracking import make_tracker

        tracker = make_tracker(cfg.tracking, enabled=not no_wandb)
        sweep_stage.run_experiment(sweep_dir, lambda: sweep_stage.run_worker(sweep_dir, tracker))
    else:
        sweep_stage.run_experiment(sweep_dir, lambda: sweep_stage.run_local(sweep_dir, workers, wandb_enabled=not no_wandb))
    _print_status(sweep_stage.status(sweep_dir))
    if not no_report:
        from leaksweep.report import write_report

        click.echo(f"report: {write_report(sweep_dir)}")


@cli.command()
@click.argument("sweep_dir", type=click.Path(file_okay=False))
@click.option("--no-wandb", is_flag=True, help="Do not log to W&B.")
@click.option("--max-trials", type=int, default=None, help="Stop after this many trials.")
def worker(sweep_dir: str, no_wandb: bool, max_trials: int | None) -> None:
    """Run one sweep worker (what `sweep --workers` and Slurm tasks start)."""
    from leaksweep import sweep as sweep_stage
    from leaksweep.tracking import make_tracker

    cfg = sweep_stage.load_sweep_dir(Path(sweep_dir))
    done = sweep_stage.run_worker(Path(sweep_dir), make_tracker(cfg.tracking, enabled=not no_wandb), max_trials)
    click.echo(f"worker finished {done} trial(s)")


@cli.command()
@click.argument("trial_dir", type=click.Path(file_okay=False))
@click.option("--no-wandb", is_flag=True, help="Do not log to W&B.")
def trial(trial_dir: str, no_wandb: bool) -> None:
    """Rerun one trial from its spec.json (results are overwritten)."""
    from leaksweep.config import TrackingConfig
    from leaksweep.files import read_json
    from leaksweep.schema import build
    from leaksweep.trial import SPEC, run_trial
    from leaksweep.tracking import make_tracker

    spec_path = Path(trial_dir) / SPEC
    if not spec_path.exists():
        raise UserError(f"{trial_dir}: no {SPEC}; give a trial folder such as runs/demo/trials/00003")
    tracking = build(TrackingConfig, read_json(spec_path)["sweep"]["tracking"], f"{spec_path}: sweep.tracking")
    result = run_trial(Path(trial_dir), make_tracker(tracking, enabled=not no_wandb))
    for name, s in result["traits"].items():
        click.echo(f"{name}: {s['score']:.3f} [{s['low']:.3f}, {s['high']:.3f}]")


@cli.command()
@click.argument("sweep_dir", type=click.Path(file_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Output file (default SWEEP_DIR/report.html).")
def report(sweep_dir: str, out: str | None) -> None:
    """Write the self-contained HTML report of a sweep folder."""
    from leaksweep.report import write_report

    click.echo(write_report(Path(sweep_dir), Path(out) if out else None))


def _print_status(info: dict) -> None:
    states = ", ".join(f"{k.lower()} {v}" for k, v in sorted(info["states"].items())) or "no trials yet"
    plan = f"budget {info['budget']}" if info.get("mode", "optuna") == "optuna" else f"mode {info['mode']}, rounds decided as it goes"
    click.echo(f"{info['sweep']}: {states} ({plan})")
    if info["best"]:
        b = info["best"]
        click.echo(f"best so far: trial {b['trial']} ({b['label']}): {b['trait']} = {b['value']:.3f}")
    if info["mean_trial_s"]:
        eta = f", about {info['eta_s'] / 60:.1f} min left" if info["eta_s"] else ""
        click.echo(f"mean trial time {info['mean_trial_s']:.1f} s{eta}")
    for f in info["failed"]:
        click.echo(f"failed trial {f['trial']}: {f['error']}")


@cli.command()
@click.argument("sweep_dir", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def status(sweep_dir: str, as_json: bool) -> None:
    """Trials by state, best so far, and a time estimate."""
    from leaksweep.sweep import status as sweep_status

    info = sweep_status(Path(sweep_dir))
    click.echo(json.dumps(info, indent=2)) if as_json else _print_status(info)


@cli.command()
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--seed", default=0, show_default=True)
@click.option("--n-prompts", default=2400, show_default=True)
def world(out_dir: str, seed: int, n_prompts: int) -> None:
    """Write the built-in miniature (prompts, clean and teacher sources, eval prompts) to OUT_DIR."""
    from leaksweep.world import generate_world

    click.echo(generate_world(Path(out_dir), seed, n_prompts))


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
