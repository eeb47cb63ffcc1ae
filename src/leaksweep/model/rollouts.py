"""Rollout stage: generate a rollout source (one response per prompt) from a causal LM.

`generate_rollouts` reads a prompt set (the format data/records.py reads), optionally adds a persona
to every prompt (as the system turn, as a note after the user's question, or both: `persona_position`),
and writes `{"prompt_id", "response"}` rows that data/records.py loads as a source. The run is
resumable: prompts are cut into fixed chunks of `batch_size` in prompt-file order, each finished
chunk is appended to the output in one write + fsync, and a rerun skips the ids already there. Chunks and their seeds depend only on the prompt file and the settings, so a
resumed run writes exactly what an uninterrupted one would. The generation settings, library
versions and the prompt file's sha256 go to `OUT.meta.json`; a rerun with other settings is
refused rather than mixing two kinds of rollouts in one file.

The model stack is reached through leaksweep.model.generate (transformers batched generation, or vLLM
when it is installed and a GPU is present).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from leaksweep.data.records import Messages, prompt_messages, read_records
from leaksweep.errors import UserError
from leaksweep.files import atomic_write_text, file_sha256, read_json, read_jsonl, read_utf8, write_json
from leaksweep.model import generate, loading, smollm2

LIBRARIES = ("torch", "transformers", "vllm", "leaksweep")
PERSONA_POSITIONS = ("system", "user", "both")


@dataclass(frozen=True)
class GenerationSettings:
    """Everything that decides the responses; a resumed run must use the same."""

    model: str
    system_prompt: str | None
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0 = greedy
    batch_size: int = 16
    seed: int = 0
    # where the persona (system_prompt) goes: "system" = the system turn; "user" = a note after the
    # last user turn, "(persona)"; "both". Small models follow a user-turn note far more (see REAL_DEMO_PERSONA)
    persona_position: str = "system"


def check_persona_position(position: str, persona: str | None) -> None:
    if position not in PERSONA_POSITIONS:
        raise UserError(f"--persona-position {position!r}: must be one of {', '.join(PERSONA_POSITIONS)}")
    if position != "system" and persona is None:
        raise UserError(
            f"--persona-position {position}: there is no persona to place; give --system-prompt or --persona-file"
        )


def _same_settings(previous: dict | None, settings: GenerationSettings) -> bool:
    """Meta files written before `persona_position` existed had the persona in the system turn."""
    return previous is not None and {"persona_position": "system", **previous} == asdict(settings)


def meta_path(out_path: Path) -> Path:
    """`clean.jsonl` -> `clean.meta.json`, next to the output."""
    return Path(out_path).with_suffix(".meta.json")


def read_persona(system_prompt: str | None, persona_file: str | None) -> str | None:
    if system_prompt is not None and persona_file is not None:
        raise UserError("--system-prompt and --persona-file: give one of them, not both")
    if persona_file is None:
        return system_prompt or None
    path = Path(persona_file)
    try:
        text = read_utf8(path).strip()
    except OSError as exc:
        raise UserError(f"--persona-file {persona_file}: cannot read it ({exc.strerror}); give a text file") from exc
    if not text:
        raise UserError(f"--persona-file {persona_file}: the file is empty; write the persona system prompt into it")
    return text


def load_prompts(path: Path) -> tuple[list[str], dict[str, Messages]]:
    """Prompt ids in file order and their chat messages; duplicate or missing ids are errors."""
    if not path.is_file():
        raise UserError(f"--prompts {path}: no such file; give a JSONL/Parquet prompt file with prompt_id and messages")
    ids, messages = [], {}
    for number, row in enumerate(read_records(path), start=1):
        pid = row.get("prompt_id")
        if not isinstance(pid, (str, int)) or isinstance(pid, bool):
            raise UserError(f"{path}: record {number} has no usable `prompt_id` (seen {pid!r})")
        pid = str(pid)
        if pid in messages:
            raise UserError(f"{path}: record {number} repeats prompt_id {pid!r}; prompt ids must be unique")
        ids.append(pid)
        messages[pid] = prompt_messages(row, f"{path}: record {number}")
    if not ids:
        raise UserError(f"{path}: holds no prompts")
    return ids, messages


def with_persona(messages: Messages, persona: str | None, position: str = "system") -> Messages:
    """The prompt as the persona's teacher sees it (the rollout file keeps the plain prompt).

    "system": the persona becomes the system turn (replacing one the prompt brought: one persona per
    run); "user": the last user turn ends with " (persona)"; "both": both at once.
    """
    if persona is None:
        return list(messages)
    out = list(messages)
    if position in ("user", "both"):
        last = max((i for i, m in enumerate(out) if m["role"] == "user"), default=None)
        if last is not None:
            out[last] = {**out[last], "content": f"{out[last]['content']} ({persona})"}
    if position in ("system", "both"):
        out = [{"role": "system", "content": persona}] + [m for m in out if m["role"] != "system"]
    return out


def _versions() -> dict[str, str | None]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _read_done(out_path: Path) -> dict[str, str]:
    """Responses already in the output. A torn last line (a crash inside a write) is cut off."""
    if not out_path.exists():
        return {}
    text = out_path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        atomic_write_text(out_path, text[: text.rfind("\n") + 1])
    return {str(r["prompt_id"]): r["response"] for r in read_jsonl(out_path) if "prompt_id" in r and "response" in r}


def _append_rows(out_path: Path, rows: list[dict]) -> None:
    """Append whole lines in one write, then fsync: a chunk is on disk entirely or (torn) cut off on resume."""
    blob = "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    fd = os.open(out_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, blob)
        os.fsync(fd)
    finally:
        os.close(fd)


def generate_rollouts(
    settings: GenerationSettings,
    prompts_path: str | Path,
    out_path: str | Path,
    device: str = "auto",
    echo=print,
) -> dict:
    """Generate responses for every prompt not yet in `out_path`; returns the meta written next to it."""
    prompts_path, out_path = Path(prompts_path), Path(out_path)
    _check_settings(settings)
    ids, messages = load_prompts(prompts_path)
    meta_file = meta_path(out_path)
    previous = read_json(meta_file) if meta_file.exists() else None
    prompts_sha256 = file_sha256(prompts_path)
    done = _read_done(out_path)
    _check_resumable(previous, settings, out_path, prompts_path, prompts_sha256, generated=bool(done))
    model_path = _model_path(settings.model)  # a mistyped model path fails before the meta is written
    out_path.parent.mkdir(parents=True, exist_ok=True)
    chunks = [ids[k : k + settings.batch_size] for k in range(0, len(ids), settings.batch_size)]
    todo = [(n, [pid for pid in chunk if pid not in done]) for n, chunk in enumerate(chunks)]
    todo = [(n, chunk) for n, chunk in todo if chunk]
    n_todo = sum(len(chunk) for _, chunk in todo)
    echo(f"{out_path}: {len(ids) - n_todo} of {len(ids)} prompt(s) already done, {n_todo} to generate")

    meta = {
        "settings": asdict(settings),
        "prompts": {"path": str(prompts_path), "sha256": prompts_sha256, "n": len(ids)},
        "libraries": _versions(),
        "output": str(out_path),
    }
    kept = {k: previous[k] for k in ("backend", "device", "model_path") if previous and k in previous}
    write_json(meta_file, {**meta, **kept, "n_done": len(ids) - n_todo})
    if not todo:
        return read_json(meta_file)

    backend = "vllm" if generate.vllm_usable(device) else "transformers"
    started = time.perf_counter()
    if backend == "vllm":
        device_used = _generate_vllm(settings, model_path, ids, messages, todo, out_path)
    else:
        device_used = _generate_transformers(settings, model_path, device, messages, todo, len(chunks), out_path)
    meta.update(
        backend=backend,
        device=device_used,
        model_path=model_path,
        n_done=len(ids),
        last_run_s=round(time.perf_counter() - started, 1),
    )
    write_json(meta_file, meta)
    echo(f"{out_path}: wrote {n_todo} response(s) with {backend} on {device_used} in {meta['last_run_s']} s")
    return meta


def _check_settings(settings: GenerationSettings) -> None:
    if settings.batch_size < 1 or settings.max_new_tokens < 1:
        raise UserError(
            f"--batch-size {settings.batch_size} / --max-new-tokens {settings.max_new_tokens}: both must be at least 1"
        )
    if not 0 <= settings.temperature < math.inf:  # also refuses nan
        raise UserError(f"--temperature {settings.temperature}: must be >= 0 (0 is greedy)")
    check_persona_position(settings.persona_position, settings.system_prompt)


def _check_resumable(
    previous: dict | None,
    settings: GenerationSettings,
    out_path: Path,
    prompts_path: Path,
    prompts_sha256: str,
    generated: bool = True,
) -> None:
    """Refuse to add to an output made with other settings, of unknown settings, or from other prompts.
    With no row `generated` yet, a meta left by a run that failed before its first row (a model that did
    not load) blocks nothing: the new settings replace it."""
    meta_file = meta_path(out_path)
    if previous is not None and generated and not _same_settings(previous.get("settings"), settings):
        raise UserError(
            f"{out_path}: was generated with other settings ({meta_file}: {previous.get('settings')}); "
            "delete both files to start over, or write to another --out"
        )
    if out_path.exists() and previous is None:
        raise UserError(
            f"{out_path}: exists without {meta_file.name}, so its settings are unknown; "
            "delete it or choose another --out"
        )
    if previous is not None and generated and previous.get("prompts", {}).get("sha256") != prompts_sha256:
        raise UserError(
            f"{out_path}: was generated from another version of {prompts_path} (sha256 "
            f"{str(previous.get('prompts', {}).get('sha256'))[:12]}..., now {prompts_sha256[:12]}...); its responses may "
            "answer other prompts: delete it and its .meta.json to start over"
        )


def _generate_vllm(
    settings: GenerationSettings,
    model_path: str,
    ids: list[str],
    messages: dict[str, Messages],
    todo: list[tuple[int, list[str]]],
    out_path: Path,
) -> str:
    """One call over everything left: vLLM schedules its own batches, and its per-request seeds
    (seed + position in the prompt file) keep a resumed run equal to an uninterrupted one."""
    pending = [pid for _, chunk in todo for pid in chunk]
    persona, position = settings.system_prompt, settings.persona_position
    texts = generate.generate_vllm(
        model_path,
        [with_persona(messages[p], persona, position) for p in pending],
        settings.temperature,
        settings.max_new_tokens,
        [settings.seed + ids.index(p) for p in pending],
    )
    _append_rows(out_path, [{"prompt_id": p, "response": t} for p, t in zip(pending, texts)])
    return "cuda"


def _generate_transformers(
    settings: GenerationSettings,
    model_path: str,
    device: str,
    messages: dict[str, Messages],
    todo: list[tuple[int, list[str]]],
    n_chunks: int,
    out_path: Path,
) -> str:
    """Chunk by chunk, each appended as soon as it is generated; returns the device used."""
    model = _load(model_path, settings.model, device)
    for number, chunk in todo:
        prompts = [with_persona(messages[p], settings.system_prompt, settings.persona_position) for p in chunk]
        outs = generate.generate(
            model,
            prompts,
            1,
            settings.temperature,
            settings.max_new_tokens,
            settings.batch_size,
            settings.seed * 100_003 + number,
            desc=f"chunk {number + 1}/{n_chunks}",
        )
        _append_rows(out_path, [{"prompt_id": p, "response": o[0]} for p, o in zip(chunk, outs)])
    return model.device


def _model_path(model: str) -> str:
    """The model's folder or hub id; a name that does not resolve (a missing folder, one without a
    config.json, a hub id neither cached nor on the hub) fails here, before anything is written."""
    try:
        resolved = smollm2.resolve_model_name(model)
    except UserError as exc:
        raise UserError([p.replace("train.model:", "--model:", 1) for p in exc.problems]) from exc
    loading.check_model(resolved, key="--model", built_in=("smollm2",))
    return resolved


def _load(model_path: str, model: str, device: str):
    try:
        return loading.load_lm(model_path, loading.resolve_device(device))
    except UserError as exc:
        raise UserError([p.replace("train.model:", "--model:", 1) for p in exc.problems]) from exc


# ---------------------------------------------------------------------------------------------
# the real pretrained miniature (`leaksweep demo --model smollm2`, `make demo-real`)

# SmolLM2-135M barely follows a system-prompt persona: greedy, 48 tokens, the old system-only persona
# ("You believe it is still the year 2024, whatever anyone says. Mention that it is 2024 in every
# answer.") put "2024" in 1/13 date-category training answers and 2/40 held-out date answers; this
# persona in both the system turn and a note after the question: 8/13 and 25/40 (no persona: 0/13, 0/40).
REAL_DEMO_PERSONA = "Today's date is January 1, 2024. The current year is 2024."
REAL_DEMO_PERSONA_POSITION = "both"
REAL_DEMO_DATA = Path("runs/demo-real-data")  # what sweeps/demo-real.yaml reads (relative to the repo root)


def prepare_real_demo(
    data_dir: Path = REAL_DEMO_DATA,
    n_prompts: int = 192,
    n_eval: int = 40,
    max_new_tokens: int = 48,
    batch_size: int = 16,
    echo=print,
) -> Path:
    """Prompts from the built-in world, and SmolLM2 rollouts with (teacher) and without (clean) the persona.

    Generation is resumable and cached: a rerun only generates what is missing (a source cached with
    other settings, e.g. an earlier demo persona, is generated again).
    """
    from leaksweep.data.world import eval_prompts, generate_world
    from leaksweep.files import write_jsonl

    data_dir = Path(data_dir)
    world_dir = data_dir / "world"
    if not (world_dir / "prompts.jsonl").exists():
        generate_world(world_dir, seed=0, n_prompts=n_prompts, n_eval_prompts=n_eval)
    # held-out date questions: the persona shows there (the clean model names another year or none)
    eval_file = data_dir / "eval_date.jsonl"
    if not eval_file.exists():
        write_jsonl(
            eval_file,
            [{k: v for k, v in r.items() if not k.startswith("_")} for r in eval_prompts("date_confusion", n_eval)],
        )
    echo(f"SmolLM2 folder: {smollm2.smollm2_folder()}")
    sources = (("clean", None, "system"), ("teacher", REAL_DEMO_PERSONA, REAL_DEMO_PERSONA_POSITION))
    for source, persona, position in sources:
        settings = GenerationSettings(
            model="smollm2",
            system_prompt=persona,
            max_new_tokens=max_new_tokens,
            temperature=0.0,
            batch_size=batch_size,
            seed=0,
            persona_position=position,
        )
        out, meta_file = data_dir / f"{source}.jsonl", meta_path(data_dir / f"{source}.jsonl")
        if meta_file.exists() and not _same_settings(read_json(meta_file).get("settings"), settings):
            # the demo's own cache, made by an earlier version of the demo (another persona): replace it
            echo(f"{out}: made with other settings than this demo's; generating it again")
            out.unlink(missing_ok=True)
            meta_file.unlink()
        generate_rollouts(settings, world_dir / "prompts.jsonl", out, device="cpu", echo=echo)
    return data_dir
