"""Unit tests for leaksweep.progress: a bar on a terminal, plain periodic lines in a log."""

from __future__ import annotations

import io

import pytest

from leaksweep.errors import UserError
from leaksweep.progress import Progress, choose_mode


class FakeStream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture(autouse=True)
def no_override(monkeypatch):
    monkeypatch.delenv("LEAKSWEEP_PROGRESS", raising=False)


def test_a_log_gets_a_plain_line_at_every_tenth_with_values_and_rate():
    stream, clock = FakeStream(tty=False), FakeClock()
    with Progress(300, "train", "steps", stream=stream, clock=clock) as progress:
        for step in range(300):
            clock.now_s += 0.1  # 10 steps/s
            progress.update(1)
            progress.set(loss=2.0 - step / 300)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10, lines
    assert "\r" not in stream.getvalue()
    # the loss shown is the last one set before the update that printed (steps 29 and 119)
    assert lines[0] == f"train 30/300 steps loss {2.0 - 28 / 300:.4g} (10.0 steps/s)"
    assert lines[3] == f"train 120/300 steps loss {2.0 - 118 / 300:.4g} (10.0 steps/s)"
    assert lines[-1].startswith("train 300/300 steps loss ")


def test_a_log_gets_a_line_after_every_s_even_between_tenths_and_one_at_close():
    stream, clock = FakeStream(tty=False), FakeClock()
    progress = Progress(1000, "eval date_confusion", "batches", stream=stream, clock=clock, every_s=30)
    progress.update(5)
    assert stream.getvalue() == ""
    clock.now_s += 31
    progress.update(1)
    assert stream.getvalue() == "eval date_confusion 6/1000 batches (5.2 s per finished batch)\n"
    clock.now_s += 1
    progress.update(2)
    progress.close()
    progress.update(5)  # closed: silent
    assert stream.getvalue().splitlines()[-1] == "eval date_confusion 8/1000 batches (4.0 s per finished batch)"
    assert len(stream.getvalue().splitlines()) == 2


def test_unknown_total_and_resumed_count():
    stream, clock = FakeStream(tty=False), FakeClock()
    with Progress(None, "sweep s", "trials", initial=4, stream=stream, clock=clock, every_s=10) as progress:
        clock.now_s += 10
        progress.update(2)
    # the rate counts only work done here, not the 4 trials finished before a resume
    assert stream.getvalue() == "sweep s 6 trials (5.0 s per finished trial)\n"


def test_a_terminal_gets_a_live_bar_not_lines():
    stream = FakeStream(tty=True)
    with Progress(50, "train", "steps", stream=stream, leave=True) as progress:
        for _ in range(50):
            progress.update(1)
        progress.set(loss=0.5)
        progress.update(0)
    out = stream.getvalue()
    assert progress.mode == "off"
    assert "\r" in out and "train: 100%" in out and "50/50" in out and "loss=0.5" in out
    assert out.count("\n") <= 1  # redrawn in place, not one line per step


def test_environment_override(monkeypatch):
    monkeypatch.setenv("LEAKSWEEP_PROGRESS", "off")
    stream = FakeStream(tty=False)
    with Progress(3, "x", "steps", stream=stream) as progress:
        progress.update(3)
    assert stream.getvalue() == ""
    monkeypatch.setenv("LEAKSWEEP_PROGRESS", "plain")
    assert choose_mode(FakeStream(tty=True)) == "plain"
    monkeypatch.setenv("LEAKSWEEP_PROGRESS", "fancy")
    with pytest.raises(UserError, match="LEAKSWEEP_PROGRESS='fancy'"):
        choose_mode(FakeStream(tty=True))
    monkeypatch.delenv("LEAKSWEEP_PROGRESS")
    assert choose_mode(FakeStream(tty=True)) == "bar"
    assert choose_mode(FakeStream(tty=False)) == "plain"


@pytest.mark.integration
def test_training_and_generation_print_plain_lines_into_a_log(tmp_path, capsys):
    """Real TRL training and generation on a tiny model: our lines, no transformers bar or log dicts."""
    from leaksweep.model.generate import generate
    from leaksweep.model.loading import load_lm, set_cpu_threads
    from leaksweep.model.sft import train_sft
    from leaksweep.model.tiny import build_tiny_model
    from leaksweep.train_config import TinyModelConfig, TrainConfig

    set_cpu_threads(1)
    prompts = [f"Tell me about item {i}?" for i in range(64)]
    tiny = build_tiny_model(
        tmp_path / "tiny",
        prompts + ["Blue."] * 8,
        TinyModelConfig(
            vocab_size=300, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_position_embeddings=64
        ),
    )
    examples = [[{"role": "user", "content": p}, {"role": "assistant", "content": "Blue."}] for p in prompts]
    cfg = TrainConfig(learning_rate=1e-2, max_steps=20, batch_size=8, logging_steps=5)
    trained, outcome = train_sft(load_lm(str(tiny), "cpu"), examples, cfg, tmp_path / "trainer", seed=0)
    generate(trained, [e[:1] for e in examples[:12]], 1, 0.0, 4, 4, 0, desc="eval x")
    err = capsys.readouterr().err
    train_lines = [line for line in err.splitlines() if line.startswith("train ")]
    losses = {int(h["step"]): h["loss"] for h in outcome.log_history}
    # a line every 2 steps (a tenth of 20); on a logging step it shows that step's loss
    assert [line.split()[1] for line in train_lines] == [f"{s}/20" for s in range(2, 21, 2)], err
    assert f"train 10/20 steps loss {losses[10]:.4g} (" in err
    assert train_lines[-1].startswith(f"train 20/20 steps loss {losses[20]:.4g} (")
    assert [line.split()[2] for line in err.splitlines() if line.startswith("eval x ")] == ["1/3", "2/3", "3/3"]
    assert "\r" not in err and "{'loss'" not in err and "it/s]" not in err


def test_the_sweep_line_says_its_rate_is_per_finished_trial_across_its_workers():
    """Issue 13, failure 10: "(11.5 s each)" was elapsed time over finished trials, while the summary's
    "mean trial time" (one trial's wall time) was twice that with 2 workers."""
    stream, clock = FakeStream(tty=False), FakeClock()
    with Progress(None, "sweep s", "trials", stream=stream, clock=clock, every_s=10, note="2 workers") as progress:
        clock.now_s += 23
        progress.update(2)
    assert stream.getvalue() == "sweep s 2 trials (11.5 s per finished trial, 2 workers)\n"


def test_the_summary_names_one_trials_wall_time(capsys):
    from leaksweep import cli

    info = {"sweep": "s", "states": {"COMPLETE": 2}, "budget": 4, "mode": "optuna", "best": None}
    cli._print_status({**info, "mean_trial_s": 23.0, "eta_s": 23.0, "failed": []})
    assert "mean trial wall time 23.0 s (one trial, start to finish), about 0.4 min left" in capsys.readouterr().out
