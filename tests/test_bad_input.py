"""Bad input at the command line: exit 2, a message naming the file, key or value and the fix, nothing written.

One table of sweep-file mistakes (numbers, names, paths, encodings, storage URLs), each run through
`leaksweep prepare` in this process (leaksweep.cli.main), then the command-line options and trial folders.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest

from tests.support.sweeps import sr_sweep, write_sweep


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """`leaksweep ARGS` in this process: (exit code, stderr + stdout)."""
    from leaksweep import cli

    monkeypatch.setattr(sys, "argv", ["leaksweep", *args])
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.err + captured.out


def _set(raw: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        raw = raw.setdefault(key, {})
    raw[last] = value


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ---------------------------------------------------------------------------------------------
# the sweep file: (id, changes to sr_sweep as {dotted key: value}, words the message must hold)

INF = float("inf")
NAN = float("nan")

SWEEP_CASES = [
    ("heartbeat-nan", {"search.heartbeat_s": NAN}, ["search.heartbeat_s", "nan", "finite"]),
    ("heartbeat-inf", {"search.heartbeat_s": INF}, ["search.heartbeat_s", "inf"]),
    ("stale-inf", {"search.stale_after_s": INF}, ["search.stale_after_s", "inf"]),
    ("margin-nan", {"search.margin": NAN}, ["search.margin", "nan"]),
    ("min-effect-nan", {"search.min_effect": NAN}, ["search.min_effect", "nan"]),
    ("min-effect-negative", {"search.min_effect": -0.1}, ["search.min_effect", "-0.1"]),
    ("alpha-inf", {"search.alpha": -INF}, ["search.alpha", "inf"]),
    ("ladder-nan", {"search.ladder": [0.1, NAN]}, ["search.ladder[1]", "nan"]),
    ("learning-rate-inf", {"train.learning_rate": INF}, ["train.learning_rate", "inf"]),
    (
        "fraction-nan",
        {"search.mode": "optuna", "search.fractions": {"S": [0.5, NAN]}},
        ["search.fractions.S[1]", "nan"],
    ),
    ("fraction-string-nan", {"search.mode": "optuna", "search.fractions": {"S": ["nan"]}}, ["nan"]),
    (
        "n-trials-negative",
        {"search.mode": "optuna", "search.sampler": "random", "search.n_trials": -3},
        ["search.n_trials", "-3"],
    ),
    (
        "n-trials-zero",
        {"search.mode": "optuna", "search.sampler": "random", "search.n_trials": 0},
        ["search.n_trials", "0"],
    ),
    ("max-depth-negative", {"search.max_depth": -1}, ["search.max_depth", "-1"]),
    ("confirm-seeds-negative", {"search.confirm_seeds": -2}, ["search.confirm_seeds", "-2"]),
    ("mixture-seed-negative", {"search.mixture_seed": -1}, ["search.mixture_seed", "-1"]),
    ("world-seed-negative", {"data.world.seed": -5}, ["data.world.seed", "-5"]),
    ("max-steps-negative", {"train.max_steps": -10}, ["train.max_steps", "-10"]),
    ("teacher-is-base", {"search.teacher": "clean"}, ["search.teacher", "clean", "base"]),
    (
        "subset-matches-none",
        {"subsets": {"S": {"metadata": {"category": "nope"}}}},
        ["subsets.S", "'nope'", "matches none"],
    ),
    (
        "subsets-overlap",
        {"subsets": {"R": {"metadata": {"category": "date"}}}, "search.partition": True},
        ["partition", "S & R"],
    ),
    ("world-unknown-teacher", {"search.teacher": "techer"}, ["search.teacher", "'techer'", "teacher"]),
    ("world-unknown-base", {"base": "clen"}, ["base", "'clen'", "clean"]),
    ("output-dir-unwritable", {"output_dir": "/proc/leaksweep-test/x"}, ["output_dir", "/proc/leaksweep-test/x"]),
    ("subset-slash", {"subsets": {"a/b": {"metadata": {"category": "date"}}}}, ["subsets", "a/b", "file name"]),
    ("subset-dotdot", {"subsets": {"..": {"metadata": {"category": "date"}}}}, ["subsets", "'..'"]),
    ("subset-space", {"subsets": {"date prompts": {"metadata": {"category": "date"}}}}, ["date prompts"]),
    ("trait-slash", {"traits": {"date/confusion": {}}}, ["traits", "date/confusion"]),
    ("storage-unparsable", {"search.storage": "foo://"}, ["search.storage", "foo://"]),
    ("storage-no-scheme", {"search.storage": "runs/study.db"}, ["search.storage", "runs/study.db"]),
    ("storage-unreachable", {"search.storage": "postgresql://nohost/x"}, ["search.storage", "nohost"]),
    (
        "storage-host-unknown",
        {"search.storage": "postgresql+psycopg2://u@nohost.invalid/x"},
        ["search.storage", "cannot connect", "nohost.invalid"],
    ),
    (
        "storage-server-down",
        {"search.storage": "postgresql+psycopg2://u@127.0.0.1:1/x"},
        ["search.storage", "cannot connect"],
    ),
    ("storage-password-hidden", {"search.storage": "postgresql+psycopg2://u:hunter2@127.0.0.1:1/x"}, ["u:***@"]),
    (
        "storage-sqlite-no-folder",
        {"search.storage": "sqlite:////nonexistent/dir/x.db"},
        ["search.storage", "/nonexistent/dir"],
    ),
    (
        "storage-port-out-of-range",
        {"search.storage": "postgresql+psycopg2://u@127.0.0.1:99999/x"},
        ["search.storage", "99999"],
    ),
    (
        "storage-driver-missing",
        {"search.storage": "mysql+pymysql://u@127.0.0.1/x"},
        ["search.storage", "driver", "pymysql"],
    ),
    ("storage-blank", {"search.storage": " "}, ["search.storage", "not a storage URL"]),
    ("storage-sqlite-memory", {"search.storage": "sqlite://"}, ["search.storage", "in-memory", "sqlite:///PATH"]),
    (
        "storage-journal-no-folder",
        {"search.storage": "journal:/nonexistent/dir/j.log"},
        ["search.storage", "/nonexistent/dir"],
    ),
    ("storage-journal-empty", {"search.storage": "journal:"}, ["search.storage", "names no file"]),
]


def _stage(tmp_path: Path, changes: dict) -> tuple[Path, Path]:
    out = tmp_path / "runs" / "bad"
    raw = sr_sweep("bad", out, wandb=None, mode="subset_scan", subsets=["S", "R"])
    for key, value in changes.items():
        if key == "subsets":
            raw["subsets"] = {**raw["subsets"], **value}
        elif key == "traits":
            raw["traits"] = value
        else:
            _set(raw, key, value)
    if "search.mode" in changes:  # optuna mode: objectives instead of the subset scan's keys
        raw["search"].pop("subsets")
        raw["search"]["objectives"] = [{"trait": "date_confusion"}]
    return write_sweep(tmp_path, raw), out


@pytest.mark.parametrize("changes,words", [c[1:] for c in SWEEP_CASES], ids=[c[0] for c in SWEEP_CASES])
def test_bad_sweep_file_exits_2_naming_it_and_writes_nothing(tmp_path, monkeypatch, capsys, changes, words):
    path, out = _stage(tmp_path, changes)
    code, err = run_cli(monkeypatch, capsys, "prepare", str(path))
    assert code == 2, err
    assert "Traceback" not in err
    for word in words:
        assert word in err, f"{word!r} not in: {err}"
    assert not out.exists(), _files(out)


def test_nan_in_the_yaml_text_names_the_key(tmp_path, monkeypatch, capsys):
    path, out = _stage(tmp_path, {})
    text = path.read_text()
    path.write_text(text.replace("search:\n", "search:\n  heartbeat_s: .nan\n", 1))
    code, err = run_cli(monkeypatch, capsys, "prepare", str(path))
    assert code == 2 and "search.heartbeat_s" in err and "nan" in err, err
    assert not out.exists()


@pytest.mark.parametrize(
    "text,line,key",
    [
        ("name: a\nname: b\n", 2, "name"),
        ("name: a\nsearch:\n  teacher: teacher\n  seeds: 2\n  seeds: 3\n", 5, "seeds"),
    ],
    ids=["top-level", "nested"],
)
def test_duplicate_yaml_keys_name_file_and_line(tmp_path, monkeypatch, capsys, text, line, key):
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    code, err = run_cli(monkeypatch, capsys, "prepare", str(path))
    assert code == 2, err
    assert f"{path}:{line}" in err and f"duplicate key {key!r}" in err, err


def test_non_utf8_sweep_file_names_file_and_offset(tmp_path, monkeypatch, capsys):
    path = tmp_path / "latin.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    code, err = run_cli(monkeypatch, capsys, "prepare", str(path))
    assert code == 2 and str(path) in err and "UTF-8" in err and "byte offset 9" in err, err


# ---------------------------------------------------------------------------------------------
# data files and output folders


def _files_sweep(tmp_path: Path, prompts: Path, source: Path | None = None, **top) -> tuple[Path, Path]:
    out = tmp_path / "runs" / "files"
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps({"prompt_id": f"p{i}", "response": "r"}) + "\n" for i in range(3)))
    teacher = tmp_path / "teacher-good.jsonl"
    teacher.write_text(good.read_text())
    raw = {
        "name": "files",
        "data": {"prompts": str(prompts), "sources": {"clean": str(good), "teacher": str(source or teacher)}},
        "subsets": {"S": {"regex": "x"}},
        "base": "clean",
        "search": {"teacher": "teacher", "fractions": {"S": [1.0]}, "objectives": [{"trait": "date_confusion"}]},
        "traits": {"date_confusion": {}},
        "output_dir": str(out),
        **top,
    }
    return write_sweep(tmp_path, raw), out


def _prompts(tmp_path: Path, name: str = "prompts.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps({"prompt_id": f"p{i}", "prompt": f"q{i} x"}) + "\n" for i in range(3)))
    return path


def test_non_utf8_data_file_names_file_line_and_byte(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "teacher.jsonl"
    bad.write_bytes(b'{"prompt_id": "p0", "response": "ok"}\n{"prompt_id": "p1", "response": "caf\xe9"}\n')
    path, out = _files_sweep(tmp_path, _prompts(tmp_path), bad)
    code, err = run_cli(monkeypatch, capsys, "prepare", str(path))
    assert code == 2, err
    assert f"{bad}:2" in err and "UTF-8" in err and "byte offset 74" in err, err
    assert not out.exists()


ENCODING_CASES = [
    ("utf16", "\ufeff{}\n".encode("utf-16"), ["UTF-16", "iconv -f utf-16"]),
    ("gzip", None, ["gzip", "gunzip"]),
    ("latin1-first-line", b'{"prompt_id": "p0", "response": "\xe9"}\n', [":1:", "byte offset 33"]),
]


@pytest.mark.parametrize("content,words", [c[1:] for c in ENCODING_CASES], ids=[c[0] for c in ENCODING_CASES])
@pytest.mark.parametrize("role", ["prompts", "source", "ids_file"])
def test_data_file_encodings(tmp_path, monkeypatch, capsys, content, words, role):
    import gzip

    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(content if content is not None else gzip.compress(b'{"prompt_id": "p0"}\n'))
    prompts = _prompts(tmp_path)
    top = {}
    if role == "ids_file":
        top = {"subsets": {"S": {"ids_file": str(bad)}}}
    path, out = _files_sweep(tmp_path, bad if role == "prompts" else prompts, bad if role == "source" else None, **top)
    code, err = run_cli(monkeypatch, capsys, "prepare", str(path))
    assert code == 2 and str(bad) in err, err
    for word in words:
        assert word in err, f"{word!r} not in: {err}"
    assert not out.exists()


@pytest.mark.parametrize("text", ["", "# only a comment\n"], ids=["empty", "comment"])
def test_empty_sweep_file(tmp_path, monkeypatch, capsys, text):
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    code, err = run_cli(monkeypatch, capsys, "prepare", str(path))
    assert code == 2 and f"{path}: the sweep file is empty" in err, err


def test_missing_sweep_file(tmp_path, monkeypatch, capsys):
    code, err = run_cli(monkeypatch, capsys, "prepare", str(tmp_path / "nope.yaml"))
    assert code == 2 and "nope.yaml" in err and "Traceback" not in err, err


def test_parquet_named_jsonl_says_rename(tmp_path, monkeypatch, capsys):
    pytest.importorskip("pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    bad = tmp_path / "teacher.jsonl"
    pq.write_table(pa.Table.from_pylist([{"prompt_id": "p0", "response": "r"}]), bad)
    path, out = _files_sweep(tmp_path, _prompts(tmp_path), bad)
    code, err = run_cli(monkeypatch, capsys, "prepare", str(path))
    assert code == 2 and str(bad) in err and "Parquet" in err and ".parquet" in err, err
    assert not out.exists()


def test_broken_hf_dataset_folder(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "teacher_ds"
    bad.mkdir()
    (bad / "dataset_info.json").write_text("{}")
    (bad / "state.json").write_text('{"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}')
    path, out = _files_sweep(tmp_path, _prompts(tmp_path), bad)
    code, err = run_cli(monkeypatch, capsys, "prepare", str(path))
    assert code == 2 and str(bad) in err and "save_to_disk" in err, err
    assert "Traceback" not in err
    assert not out.exists()


def test_teacher_and_base_the_same_file(tmp_path, monkeypatch, capsys):
    path, out = _files_sweep(tmp_path, _prompts(tmp_path), tmp_path / "good.jsonl")  # both sources are good.jsonl
    code, err = run_cli(monkeypatch, capsys, "prepare", str(path))
    assert code == 2 and "data.sources" in err and "same file" in err and "good.jsonl" in err, err
    assert not out.exists()


def test_output_dir_is_a_file(tmp_path, monkeypatch, capsys):
    a_file = tmp_path / "taken"
    a_file.write_text("mine\n")
    path, _ = _files_sweep(tmp_path, _prompts(tmp_path), output_dir=str(a_file))
    code, err = run_cli(monkeypatch, capsys, "prepare", str(path))
    assert code == 2 and "output_dir" in err and str(a_file) in err and "a file" in err, err
    assert a_file.read_text() == "mine\n"


def test_output_dir_below_a_file(tmp_path, monkeypatch, capsys):
    a_file = tmp_path / "taken"
    a_file.write_text("mine\n")
    path, _ = _files_sweep(tmp_path, _prompts(tmp_path), output_dir=str(a_file / "sweep"))
    code, err = run_cli(monkeypatch, capsys, "prepare", str(path))
    assert code == 2 and "output_dir" in err and str(a_file) in err, err
    assert a_file.read_text() == "mine\n"


# ---------------------------------------------------------------------------------------------
# command-line options and trial folders


def test_world_n_prompts_zero(tmp_path, monkeypatch, capsys):
    out = tmp_path / "w"
    code, err = run_cli(monkeypatch, capsys, "world", str(out), "--n-prompts", "0")
    assert code == 2 and "--n-prompts 0" in err and "200" in err, err
    assert not out.exists()


def test_world_out_dir_is_a_file(tmp_path, monkeypatch, capsys):
    out = tmp_path / "w"
    out.write_text("mine\n")
    code, err = run_cli(monkeypatch, capsys, "world", str(out), "--n-prompts", "200")
    assert code == 2 and str(out) in err, err
    assert out.read_text() == "mine\n"


@pytest.mark.parametrize(
    "spec", [{"trial": 3}, {"sweep": {"name": "x"}}, [1, 2]], ids=["no-sweep", "no-tracking", "list"]
)
def test_trial_spec_without_sweep(tmp_path, monkeypatch, capsys, spec):
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    before = _files(tmp_path)
    code, err = run_cli(monkeypatch, capsys, "trial", str(tmp_path), "--no-wandb")
    assert code == 2 and "spec.json" in err and "sweep" in err, err
    assert "Traceback" not in err
    assert _files(tmp_path) == before


def test_trial_spec_not_utf8(tmp_path, monkeypatch, capsys):
    (tmp_path / "spec.json").write_bytes(b'{"sweep": "\xff"}')
    code, err = run_cli(monkeypatch, capsys, "trial", str(tmp_path), "--no-wandb")
    assert code == 2 and f"{tmp_path / 'spec.json'}:1" in err and "not UTF-8" in err, err


@pytest.mark.parametrize("option,value", [("--max-trials", "0"), ("--max-trials", "-2")])
def test_worker_counts(tmp_path, monkeypatch, capsys, option, value):
    code, err = run_cli(monkeypatch, capsys, "worker", str(tmp_path), option, value, "--no-wandb")
    assert code == 2 and f"{option} {value}" in err, err
    assert _files(tmp_path) == []


def _simulated(tmp_path: Path, monkeypatch, capsys) -> Path:
    path = write_sweep(
        tmp_path, sr_sweep("ok", tmp_path / "runs" / "ok", wandb=None, mode="subset_scan", subsets=["S"])
    )
    return path


@pytest.mark.parametrize("value", ["S=nan", "S=inf", "S=1.5", "S=-0.1"])
def test_mix_fraction_out_of_range(tmp_path, monkeypatch, capsys, value):
    path = _simulated(tmp_path, monkeypatch, capsys)
    code, err = run_cli(monkeypatch, capsys, "mix", str(path), "--patch", value)
    assert code == 2 and f"--patch {value!r}" in err and "[0, 1]" in err, err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_judge_validate_threshold_not_finite(tmp_path, monkeypatch, capsys, value):
    path = _simulated(tmp_path, monkeypatch, capsys)
    args = ["judge", "validate", str(path), "--trait", "date_confusion", "--threshold", value]
    code, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2 and f"--threshold {value}" in err, err


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_rollouts_temperature_not_finite(tmp_path, monkeypatch, capsys, value):
    prompts, out = _prompts(tmp_path), tmp_path / "out.jsonl"
    args = ["rollouts", "generate", "--model", "tiny", "--prompts", str(prompts), "--out", str(out)]
    code, err = run_cli(monkeypatch, capsys, *args, "--temperature", value)
    assert code == 2 and "--temperature" in err and value in err, err
    assert not out.exists() and not (tmp_path / "out.jsonl.meta.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prompts.jsonl"]


@pytest.mark.parametrize("command", ["status", "reclaim", "worker"])
def test_sweep_json_not_utf8(tmp_path, monkeypatch, capsys, command):
    (tmp_path / "sweep.json").write_bytes(b'{"name": "caf\xe9"}')
    args = [command, str(tmp_path)] + (["--no-wandb"] if command == "worker" else [])
    code, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2 and f"{tmp_path / 'sweep.json'}:1" in err and "byte offset 13" in err, err
    assert _files(tmp_path) == ["sweep.json"]


def test_report_out_below_a_file(tmp_path, monkeypatch, capsys):
    path = write_sweep(tmp_path, sr_sweep("r", tmp_path / "runs" / "r", wandb=None, mode="subset_scan", subsets=["S"]))
    code, err = run_cli(monkeypatch, capsys, "sweep", str(path), "--no-wandb", "--no-report")
    assert code == 0, err
    (tmp_path / "afile").write_text("mine\n")
    code, err = run_cli(
        monkeypatch,
        capsys,
        "report",
        str(tmp_path / "runs" / "r"),
        "--out",
        str(tmp_path / "afile" / "r.html"),
        "--no-wandb",
    )
    assert code == 2 and f"{tmp_path / 'afile'} is a file" in err, err
    assert (tmp_path / "afile").read_text() == "mine\n"


def test_world_out_dir_below_a_file(tmp_path, monkeypatch, capsys):
    (tmp_path / "afile").write_text("mine\n")
    code, err = run_cli(monkeypatch, capsys, "world", str(tmp_path / "afile" / "w"), "--n-prompts", "200")
    assert code == 2 and f"{tmp_path / 'afile'} is a file" in err, err


def test_rollouts_persona_file_not_utf8(tmp_path, monkeypatch, capsys):
    persona = tmp_path / "persona.txt"
    persona.write_bytes(b"You are caf\xe9.\n")
    out = tmp_path / "out.jsonl"
    args = ["rollouts", "generate", "--model", "tiny", "--prompts", str(_prompts(tmp_path)), "--out", str(out)]
    code, err = run_cli(monkeypatch, capsys, *args, "--persona-file", str(persona))
    assert code == 2 and f"{persona}:1" in err and "byte offset 11" in err, err
    assert not out.exists()


def test_world_negative_seed(tmp_path, monkeypatch, capsys):
    code, err = run_cli(monkeypatch, capsys, "world", str(tmp_path / "w"), "--seed", "-1")
    assert code == 2 and "--seed -1" in err, err
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("port", ["99999", "-1", "65536"])
def test_dashboard_port_out_of_range(tmp_path, monkeypatch, capsys, port):
    code, err = run_cli(monkeypatch, capsys, "dashboard", str(tmp_path), "--port", port)
    assert code == 2 and f"--port {port}" in err and "0 to 65535" in err, err
    assert _files(tmp_path) == []


def test_dashboard_port_in_use(tmp_path, monkeypatch, capsys):
    pytest.importorskip("optuna_dashboard")
    path = write_sweep(
        tmp_path, sr_sweep("busy", tmp_path / "runs" / "busy", wandb=None, mode="subset_scan", subsets=["S"])
    )
    code, err = run_cli(monkeypatch, capsys, "prepare", str(path))
    assert code == 0, err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        code, err = run_cli(monkeypatch, capsys, "dashboard", str(tmp_path / "runs" / "busy"), "--port", port)
    assert code == 2 and f"--port {port}" in err and "--port 0" in err, err
    code, err = run_cli(
        monkeypatch, capsys, "dashboard", str(tmp_path / "runs" / "busy"), "--host", "no.such.host.invalid"
    )
    assert code == 2 and "--host no.such.host.invalid" in err and "Traceback" not in err, err
