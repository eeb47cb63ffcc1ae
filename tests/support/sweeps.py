"""Sweep configs for tests, built in one place, and a worker preempted mid-training.

Several test files run the same small sweeps (the tiny model on the demo world's date questions, or
the simulated runner) and differ only in a few fields. These builders hold the common part, so that
each call site names just the fields its test is about.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import yaml

from leaksweep.cluster import preemption
from leaksweep.config import SweepConfig
from leaksweep.experiments.registry import sweep_from_dict

DATE_MENTION_REGEX = r"\bwhat year\b|\byears ago\b|\bthis year\b|\bfor today\b"


def write_sweep(folder: Path, raw: dict) -> Path:
    """Write `raw` as the sweep file folder/NAME.yaml and return its path."""
    path = folder / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def tiny_sweep(
    name: str,
    out_dir: Path,
    *,
    train: dict,
    traits: dict,
    wandb: dict | None,
    world_seed: int = 3,
    n_prompts: int = 200,
    **search,
) -> dict:
    """The real tiny model on the demo world: one grid point, every date_mention prompt from the teacher,
    objective date_confusion. `search`: more search keys (sampler, baselines, ...)."""
    return {
        "name": name,
        "data": {"world": {"seed": world_seed, "n_prompts": n_prompts}},
        "subsets": {"date_mention": {"regex": DATE_MENTION_REGEX}},
        "base": "clean",
        "search": {
            "teacher": "teacher",
            "fractions": {"date_mention": [1.0]},
            "objectives": [{"trait": "date_confusion"}],
            **search,
        },
        "train": train,
        "traits": traits,
        "tracking": {"wandb": wandb},
        "output_dir": str(out_dir),
    }


def simulated_sweep(
    name: str,
    out_dir: Path,
    *,
    subset_rules: dict,
    simulation: dict,
    wandb: dict | None,
    train: dict | None = None,
    **search,
) -> dict:
    """A sweep on the simulated runner (leaksweep.simulate:run, no training) over the demo world (seed 0,
    200 prompts), trait date_confusion. `search`: the search keys besides teacher, runner and simulation."""
    raw = {
        "name": name,
        "data": {"world": {"seed": 0, "n_prompts": 200}},
        "subsets": subset_rules,
        "base": "clean",
        "search": {"teacher": "teacher", **search, "runner": "leaksweep.simulate:run", "simulation": simulation},
        "traits": {"date_confusion": {}},
        "tracking": {"wandb": wandb},
        "output_dir": str(out_dir),
    }
    if train is not None:
        raw["train"] = train
    return raw


def sr_sweep(
    name: str,
    out_dir: Path,
    *,
    wandb: dict | None,
    train: dict | None = None,
    more_subsets: dict | None = None,
    **search,
) -> dict:
    """simulated_sweep with subsets S (the date prompts, which leak the trait) and R (roleplay, which does
    not), 2 seeds a condition and min_effect 0.02 unless `search` says otherwise."""
    rules = {
        "S": {"metadata": {"category": "date"}},
        "R": {"metadata": {"category": "roleplay"}},
        **(more_subsets or {}),
    }
    simulation = {
        "n_prompts": 200,
        "samples_per_prompt": 4,
        "seed_sd": 0.05,
        "subsets": {"S": {"n_units": 64, "effect": 0.5, "ed50": 0.05, "slope": 6}, "R": {"n_units": 32, "effect": 0.0}},
    }
    return simulated_sweep(
        name,
        out_dir,
        subset_rules=rules,
        simulation=simulation,
        wandb=wandb,
        train=train,
        **{"seeds": 2, "min_effect": 0.02, **search},
    )


def unit_cfg(name: str, trait: str, /, **search) -> SweepConfig:
    """A validated config that is never run (its data files need not exist): subsets S and R, one
    regex-judged trait, for tests that drive the searches directly. `search`: the search keys."""
    return sweep_from_dict(
        {
            "name": name,
            "base": "clean",
            "output_dir": "/tmp/unused",
            "data": {"prompts": "p.jsonl", "sources": {"clean": "c.jsonl", "teacher": "t.jsonl"}},
            "subsets": {"S": {"ids": ["x"]}, "R": {"ids": ["y"]}},
            "search": {"teacher": "teacher", **search},
            "traits": {trait: {"judge": {"regex": "x"}, "prompts": "e.jsonl"}},
            "train": {"max_steps": 10},
        },
        "test",
    )


def preempt_mid_training(cmd: list[str], env: dict, log: Path, steps: int, timeout_s: float = 240) -> None:
    """Start the worker `cmd` (output to `log`), send it USR1 once it logs training progress towards
    `steps`, and check that it exits for requeue."""
    with open(log, "w") as handle:
        worker = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.time() + timeout_s
        while not re.search(rf"train \d+/{steps} steps", log.read_text()):
            if time.time() > deadline:
                raise AssertionError(f"timed out after {timeout_s} s waiting for training\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        worker.send_signal(signal.SIGUSR1)
        assert worker.wait(timeout=120) == preemption.REQUEUE_EXIT, log.read_text()[-3000:]
    finally:
        if worker.poll() is None:
            worker.kill()
