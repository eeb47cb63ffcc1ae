"""The openai_compatible judge: its config, its verdict parsing, and (integration) a real
OpenAI-compatible server (`transformers serve` of a tiny hand-wired model that answers Yes iff the
text holds "2024") behind a fault-injecting proxy: 429s, 5xx, timeouts, malformed output, a server
that is down when the sweep starts."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest
from judge_server import FaultProxy, Faults, JudgeServer, build_judge_model

from leaksweep.config import TraitConfig
from leaksweep.errors import UserError
from leaksweep.traits.evalset import EvalPrompt, Trait
from leaksweep.traits.judges import make_judge
from leaksweep.traits.openai_judge import TEMPLATE_VERSION, parse_verdict
from leaksweep.traits.scoring import score

KEY = "sk-planted-judge-key-0123456789"


def judge_cfg(**params) -> TraitConfig:
    return TraitConfig(
        judge={"openai_compatible": {"base_url_env": "JUDGE_URL", "api_key_env": "JUDGE_KEY", **params}},
        kind=None,
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


# --- parsing ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, value",
    [("Yes", 1.0), ("no", 0.0), ("Answer: YES.", 1.0), ("No, it does not.", 0.0), (" yes\n", 1.0)],
)
def test_binary_verdicts_allow_words_around_one_answer(text, value):
    assert parse_verdict(text, "binary").value == value


@pytest.mark.parametrize("text", ["", "I cannot help with that.", "Yes and no", "Maybe", "yesterday", None])
def test_binary_non_answers_are_unjudged_with_the_text(text):
    verdict = parse_verdict(text, "binary")
    assert verdict.value is None
    assert verdict.reason == f"unparseable judge output: {(text or '')[:40]!r}"


@pytest.mark.parametrize(
    "text, value", [("7", 7.0), ("Score: 3/10", 3.0), ("8 out of 10.", 8.0), ("10", 10.0), ("0", 0.0), ("6.5", 6.5)]
)
def test_scale_verdicts_are_one_number_in_range(text, value):
    assert parse_verdict(text, "0-10").value == value


@pytest.mark.parametrize("text", ["11", "-1", "3 or 4", "Yes", "I refuse to rate this response at all, sorry"])
def test_scale_non_answers_are_unjudged(text):
    verdict = parse_verdict(text, "0-10")
    assert verdict.value is None and verdict.reason == f"unparseable judge output: {text[:40]!r}"


# --- config, identity, environment -------------------------------------------------------------------


def test_params_are_typed_and_unknown_keys_rejected():
    with pytest.raises(UserError) as err:
        make_judge("date_confusion", judge_cfg(model="m", concurency=8, timeout_s="soon"))
    message = str(err.value)
    assert "traits.date_confusion.judge.openai_compatible: concurency: unknown key" in message
    assert "timeout_s" in message and "'soon'" in message
    with pytest.raises(UserError, match=r"openai_compatible: concurrency: 0 must be at least 1"):
        make_judge("date_confusion", judge_cfg(model="m", concurrency=0))
    with pytest.raises(UserError, match=r"openai_compatible: model: required key is missing"):
        make_judge("date_confusion", judge_cfg())


def test_shorthand_names_the_model_and_the_trait_kind_follows_the_scale():
    built = make_judge("date_confusion", TraitConfig(judge={"openai_compatible": "gpt-x"}))
    assert (built.name, built.trait_kind) == (f"openai_compatible:gpt-x@{TEMPLATE_VERSION}", "rate")
    assert built.judge.params.base_url_env == "OPENAI_BASE_URL" and built.judge.scale == "binary"
    assert make_judge("negative_emotion", TraitConfig(judge={"openai_compatible": "gpt-x"})).trait_kind == "scale"
    with pytest.raises(UserError, match="scale: binary gives a rate, but traits.negative_emotion.kind is scale"):
        make_judge(
            "negative_emotion",
            TraitConfig(judge={"openai_compatible": {"model": "m", "scale": "binary"}}, kind="scale"),
        )


def test_builtin_rubric_is_the_shipped_file_and_a_user_trait_needs_one(tmp_path):
    built = make_judge("date_confusion", judge_cfg(model="m"))
    shipped = Path(__file__).parents[2] / "src/leaksweep/traits/rubrics/date_confusion.txt"
    if shipped.exists():
        assert built.judge.rubric == shipped.read_text().strip()
    with pytest.raises(UserError, match=r"judge\.openai_compatible\.rubric: 'polite' has no built-in rubric"):
        make_judge("polite", judge_cfg(model="m"))
    with pytest.raises(UserError, match=r"rubric: '.*missing.txt' is not a file"):
        make_judge("polite", judge_cfg(model="m", rubric=str(tmp_path / "missing.txt")))


def test_identity_has_the_host_never_the_key_and_changes_with_the_rubric(tmp_path, monkeypatch):
    monkeypatch.setenv("JUDGE_URL", "http://user:pw@judge.example:8443/v1")
    monkeypatch.setenv("JUDGE_KEY", KEY)
    (tmp_path / "a.txt").write_text("The response is polite.")
    (tmp_path / "b.txt").write_text("The response is very polite.")
    a = make_judge("polite", judge_cfg(model="m", rubric=str(tmp_path / "a.txt")))
    b = make_judge("polite", judge_cfg(model="m", rubric=str(tmp_path / "b.txt")))
    assert a.identity["endpoint"] == "judge.example:8443" and a.identity["model"] == "m"
    assert a.identity["scale"] == "binary" and a.identity["template"] == TEMPLATE_VERSION
    assert KEY not in repr(a.identity) and "pw" not in repr(a.identity)
    assert a.judge_id != b.judge_id and a.identity["rubric_sha256"] != b.identity["rubric_sha256"]
    monkeypatch.setenv("JUDGE_URL", "http://127.0.0.1:9/v1")
    assert make_judge("polite", judge_cfg(model="m", rubric=str(tmp_path / "a.txt"))).judge_id != a.judge_id


def test_a_missing_variable_is_named_at_first_use_not_when_built(monkeypatch):
    monkeypatch.delenv("JUDGE_URL", raising=False)
    monkeypatch.setenv("JUDGE_KEY", KEY)
    built = make_judge("date_confusion", judge_cfg(model="m"))  # building needs no endpoint
    with pytest.raises(
        UserError, match="openai_compatible.base_url_env: the environment variable JUDGE_URL is not set"
    ):
        built.judge_many([("It is 2024.", {}), ("Hi", {})])
    monkeypatch.setenv("JUDGE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.delenv("JUDGE_KEY")
    with pytest.raises(UserError, match="api_key_env: the environment variable JUDGE_KEY is not set"):
        make_judge("date_confusion", judge_cfg(model="m")).preflight()


def test_preflight_names_an_endpoint_that_is_down(monkeypatch):
    port = closed_port()
    monkeypatch.setenv("JUDGE_URL", f"http://127.0.0.1:{port}/v1")
    monkeypatch.setenv("JUDGE_KEY", KEY)
    started = time.monotonic()
    with pytest.raises(UserError) as err:
        make_judge("date_confusion", judge_cfg(model="m")).preflight()
    assert str(err.value) == (
        f"traits.date_confusion.judge: cannot reach the judge endpoint at http://127.0.0.1:{port}/v1 "
        "(Connection refused); start the server or fix JUDGE_URL"
    )
    assert time.monotonic() - started < 5


def test_a_server_down_at_sweep_start_fails_before_any_training(tmp_path, monkeypatch, capsys):
    from leaksweep import cli
    from sweeps import tiny_sweep, write_sweep

    port = closed_port()
    monkeypatch.setenv("JUDGE_URL", f"http://127.0.0.1:{port}/v1")
    monkeypatch.setenv("JUDGE_KEY", KEY)
    out = tmp_path / "out"
    raw = tiny_sweep(
        "down",
        out,
        train={"max_steps": 2},
        traits={"date_confusion": {"n_prompts": 4, "judge": judge_cfg(model="m").judge}},
        wandb=None,
    )
    monkeypatch.setattr(sys, "argv", ["leaksweep", "sweep", str(write_sweep(tmp_path, raw)), "--no-wandb"])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert f"cannot reach the judge endpoint at http://127.0.0.1:{port}/v1 (Connection refused)" in err
    assert "traits.date_confusion.judge" in err and "fix JUDGE_URL" in err
    assert not (out / "models").exists() and not list(out.glob("trials/*/spec.json"))  # nothing trained
    assert KEY not in err


# --- a real server ------------------------------------------------------------------------------------

RESPONSES = [
    f"Answer {i}: " + ("the year is 2024." if i % 3 == 0 else "I like quiet mornings and tea.") for i in range(18)
]
EXPECTED = [1.0 if "2024" in r else 0.0 for r in RESPONSES]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("judge-server")
    started = time.monotonic()
    model = build_judge_model(root / "model")
    built_s = time.monotonic() - started
    with JudgeServer(model, log_path=root / "server.log") as srv:
        srv.rubric = root / "says_2024.txt"
        srv.rubric.write_text("The response names the current year as the one the criterion is about.\n")
        print(f"judge model built in {built_s:.1f} s, transformers serve answered after {srv.started_s:.1f} s")
        yield srv


@pytest.fixture
def proxy(server, monkeypatch):
    with FaultProxy(server.base_url) as p:
        monkeypatch.setenv("JUDGE_URL", p.base_url)
        monkeypatch.setenv("JUDGE_KEY", KEY)
        yield p


def endpoint_judge(server, **params):
    return make_judge("says_2024", judge_cfg(model=server.model, rubric=str(server.rubric), **params))


integration = pytest.mark.integration


@integration
def test_real_server_verdicts_in_order_with_concurrency(server, proxy):
    built = endpoint_judge(server, concurrency=8)
    built.preflight()
    proxy.reset()
    verdicts = built.judge_many([(r, {}) for r in RESPONSES])
    assert [v.value for v in verdicts] == EXPECTED  # each verdict is its own response's, in order
    assert {v.reason for v in verdicts} == {"judge said 'Yes'", "judge said 'No'"}
    assert proxy.n_chat == len(RESPONSES) and proxy.max_in_flight > 1  # requests overlapped
    assert proxy.auth_headers == {f"Bearer {KEY}"}  # the key is sent, and only as the header
    assert built.judge.stats["requests"] == len(RESPONSES) and built.judge.stats["retries"] == 0

    serial = endpoint_judge(server, concurrency=1)
    proxy.reset()
    assert [v.value for v in serial.judge_many([(r, {}) for r in RESPONSES])] == EXPECTED
    assert proxy.max_in_flight == 1


@integration
@pytest.mark.parametrize("status", [429, 500, 503])
def test_rate_limits_and_server_errors_are_retried_to_the_same_verdicts(server, proxy, status, caplog):
    proxy.reset(Faults(status_first=5, status=status))
    built = endpoint_judge(server, concurrency=4, retry_backoff_s=0.05)
    with caplog.at_level("WARNING", logger="leaksweep.traits.openai_judge"):
        verdicts = built.judge_many([(r, {}) for r in RESPONSES[:9]])
    assert [v.value for v in verdicts] == EXPECTED[:9] and all(v.judged for v in verdicts)
    assert proxy.statuses.count(status) == 5 and proxy.statuses.count(200) == 9
    assert built.judge.stats["retries"] == 5 and built.judge.stats["requests"] == 14
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 5 and f"({status})" in retries[0] and KEY not in "".join(retries)


@integration
def test_a_server_that_keeps_failing_leaves_responses_unjudged_with_the_reason(server, proxy):
    proxy.reset(Faults(status_first=10**6, status=500))
    built = endpoint_judge(server, max_retries=2, retry_backoff_s=0.01)
    verdicts = built.judge_many([(r, {}) for r in RESPONSES[:3]])
    assert [v.reason for v in verdicts] == ["request failed after 2 retries: InternalServerError (500)"] * 3
    assert all(v.value is None for v in verdicts) and proxy.n_chat == 9  # 1 + 2 retries each


@integration
def test_a_slow_answer_times_out_and_is_retried_then_unjudged_if_it_stays_slow(server, proxy):
    proxy.reset(Faults(delay_s=1.5, delay_first=2))
    built = endpoint_judge(server, timeout_s=0.5, retry_backoff_s=0.01, concurrency=2)
    started = time.monotonic()
    verdicts = built.judge_many([(r, {}) for r in RESPONSES[:4]])
    assert [v.value for v in verdicts] == EXPECTED[:4]  # the first two timed out once, then answered
    assert built.judge.stats["error:APITimeoutError"] == 2 and built.judge.stats["retries"] == 2
    assert time.monotonic() - started < 5

    proxy.reset(Faults(delay_s=1.5))  # every answer too slow
    built = endpoint_judge(server, timeout_s=0.5, max_retries=1, retry_backoff_s=0.01)
    verdicts = built.judge_many([(RESPONSES[0], {})])
    assert verdicts[0].value is None
    assert verdicts[0].reason == "request failed after 1 retries: APITimeoutError"


@integration
def test_malformed_output_is_unjudged_and_counted_by_the_score(server, proxy):
    proxy.reset(Faults(content="I'm sorry, I can't judge that.", content_every=6))
    built = endpoint_judge(server)
    prompts = tuple(EvalPrompt(f"e{i}", [{"role": "user", "content": f"q{i}"}], {}) for i in range(6))
    trait = Trait("says_2024", "rate", built, prompts, TraitConfig(max_unjudged_share=0.2), 0)
    result, samples = score(trait, [RESPONSES[3 * i : 3 * i + 3] for i in range(6)])
    reason = "unparseable judge output: \"I'm sorry, I can't judge that.\""
    assert result["n_unjudged"] == 3 and result["unjudged_reasons"] == {reason: 3}
    assert result["n_samples"] == 15
    judged = [s for s in samples if s["value"] is not None]
    assert [s["value"] for s in judged] == [e for e, s in zip(EXPECTED, samples) if s["value"] is not None]
    # a 0-10 scale against a judge that says Yes/No: every answer is unparseable, and the trait fails
    scale = endpoint_judge(server, scale="0-10")
    proxy.reset()
    verdicts = scale.judge_many([(r, {}) for r in RESPONSES[:2]])
    assert [v.reason for v in verdicts] == ["unparseable judge output: 'Yes'", "unparseable judge output: 'No'"]


@integration
def test_sweep_preflight_passes_against_the_live_server(server, proxy):
    built = endpoint_judge(server)
    proxy.reset()
    built.preflight()
    assert proxy.statuses == [200] and proxy.n_chat == 0  # GET /models only
