"""The commands that make a study's inputs and check its instruments: `leaksweep world` (the built-in
miniature as files), `leaksweep rollouts generate` (a teacher's or the clean model's responses) and
`leaksweep judge validate` (a judge against labelled responses); and `leaksweep manifest`, which
reads a trial's compact manifest back with its prompt ids. cli.py adds them to `leaksweep`.
"""

from __future__ import annotations

import math
from pathlib import Path

import click

from leaksweep.errors import UserError


def _load(path: str):
    from leaksweep.experiments.registry import load_sweep

    return load_sweep(path)


@click.command()
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--seed", default=0, show_default=True)
@click.option("--n-prompts", default=2400, show_default=True)
def world(out_dir: str, seed: int, n_prompts: int) -> None:
    """Write the built-in miniature (prompts, clean and teacher sources, eval prompts) to OUT_DIR."""
    from leaksweep.config import world_size_problem
    from leaksweep.data.world import generate_world

    size = world_size_problem(n_prompts)  # as WorldConfig.check
    if size:
        raise UserError(f"--n-prompts {n_prompts}: {size}")
    if seed < 0:
        raise UserError(f"--seed {seed}: use a seed >= 0")
    click.echo(generate_world(Path(out_dir), seed, n_prompts))


@click.command()
@click.argument("trial_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--jsonl", "jsonl_out", default=None, type=click.Path(dir_okay=False), help="Write every row as JSONL.")
def manifest(trial_dir: str, jsonl_out: str | None) -> None:
    """Show a trial's manifest (rows per source; --jsonl writes {prompt_id, source[, refill]} per row)."""
    from collections import Counter

    from leaksweep.data.manifest_file import manifest_meta, read_manifest
    from leaksweep.files import write_jsonl
    from leaksweep.layout import TrialDir

    path = TrialDir(Path(trial_dir)).manifest
    if not path.is_file():
        raise UserError(f"{trial_dir}: no {path.name}; the trial has not compiled its mixture (or is a runner's)")
    rows = read_manifest(path)
    meta = manifest_meta(path)
    counts = Counter(("refill:" if r.get("refill") else "") + r["source"] for r in rows)
    click.echo(f"manifest hash {meta['hash']}, data {meta['fingerprint']}, {len(rows)} rows")
    click.echo("rows per source: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    if jsonl_out:
        write_jsonl(Path(jsonl_out), rows)
        click.echo(f"wrote {jsonl_out}")


@click.group()
def rollouts() -> None:
    """Make rollout sources (one response per prompt) from a causal LM."""


@rollouts.command("generate")
@click.option(
    "--model", required=True, help="HF model folder or hub name, or `smollm2` (the built-in SmolLM2-135M-Instruct)."
)
@click.option(
    "--prompts",
    "prompts_path",
    required=True,
    type=click.Path(dir_okay=True),
    help="Prompt file (JSONL/Parquet, as data.prompts).",
)
@click.option(
    "--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Output JSONL; rerunning resumes it."
)
@click.option("--system-prompt", default=None, help="Persona system prompt put before every prompt.")
@click.option(
    "--persona-file", default=None, type=click.Path(dir_okay=False), help="Read the persona system prompt from a file."
)
@click.option(
    "--persona-position",
    default="system",
    show_default=True,
    help="Where the persona goes: system (the system turn), user (a note after the question), or both.",
)
@click.option("--batch-size", default=16, show_default=True)
@click.option("--max-new-tokens", default=64, show_default=True)
@click.option("--temperature", default=0.0, show_default=True, help="0 is greedy decoding.")
@click.option("--seed", default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
def rollouts_generate(
    model,
    prompts_path,
    out_path,
    system_prompt,
    persona_file,
    persona_position,
    batch_size,
    max_new_tokens,
    temperature,
    seed,
    device,
) -> None:
    """Generate a rollout source for a prompt set (resumable; settings in OUT's .meta.json)."""
    from leaksweep.model.rollouts import GenerationSettings, check_persona_position, generate_rollouts, read_persona

    persona = read_persona(system_prompt, persona_file)
    check_persona_position(persona_position, persona)
    settings = GenerationSettings(
        model=model,
        system_prompt=persona,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        batch_size=batch_size,
        seed=seed,
        persona_position=persona_position,
    )
    generate_rollouts(settings, Path(prompts_path), Path(out_path), device=device, echo=click.echo)


@click.group()
def judge() -> None:
    """Check a trait's judge against human labels."""


@judge.command("validate")
@click.argument("sweep_file", type=click.Path(dir_okay=False))
@click.option("--trait", "trait_name", required=True, help="The trait whose judge (traits.T.judge) is validated.")
@click.option(
    "--labels",
    "labels_file",
    default=None,
    help="JSONL of {response, label (0/1 or 0..10), meta}; default: the built-in set of a built-in trait.",
)
@click.option("--out", "out_path", default=None, help="Also write the validation table to this JSON file.")
@click.option("--threshold", default=5.0, show_default=True, help="A scale's value counted as showing the trait.")
def judge_validate(
    sweep_file: str, trait_name: str, labels_file: str | None, out_path: str | None, threshold: float
) -> None:
    """Judge labelled responses with a trait's judge: sensitivity, specificity, kappa (or Spearman, MAE)."""
    from leaksweep.files import write_json
    from leaksweep.traits.judges import make_judge
    from leaksweep.traits.validation import format_table, labels_path, validate

    if not math.isfinite(threshold):
        raise UserError(f"--threshold {threshold}: give a finite number (the scale value counted as the trait)")
    cfg = _load(sweep_file)
    if trait_name not in cfg.traits:
        raise UserError(f"--trait {trait_name!r}: not among the sweep's traits {sorted(cfg.traits)}")
    built = make_judge(trait_name, cfg.traits[trait_name])
    path = labels_path(trait_name, labels_file, "--labels")
    if built.preflight is not None:
        built.preflight()  # an endpoint that is down: one clear error, not one unjudged row per label
    table = validate(built, path, threshold=threshold)
    click.echo(format_table(table))
    if out_path:
        write_json(Path(out_path), table)
        click.echo(f"wrote {out_path}")
