"""Unjudged verdicts are counted and left out, never scored as 0; verdicts are cached by judge identity."""

from __future__ import annotations

import pytest

from leaksweep.config import TraitConfig
from leaksweep.errors import UserError
from leaksweep.stats import wilson
from leaksweep.traits.cache import VerdictCache
from leaksweep.traits.evalset import EvalPrompt, Trait
from leaksweep.traits.judges import BuiltJudge, Verdict, unjudged
from leaksweep.traits.scoring import score

PROMPTS = tuple(EvalPrompt(f"e{i}", [{"role": "user", "content": f"q{i}"}], {}) for i in range(4))


def counting_judge(calls: list):
    def judge(response: str, meta: dict) -> Verdict:
        calls.append(response)
        if response.startswith("?"):
            return unjudged("unparseable judge output")
        return Verdict(1.0 if "yes" in response else 0.0, "rule")

    return judge


def trait(judge, max_unjudged_share=0.3, identity=None, kind="rate"):
    built = BuiltJudge(judge, "counting", kind, identity=identity or {})
    return Trait("t", kind, built, PROMPTS, TraitConfig(max_unjudged_share=max_unjudged_share), 0)


def test_unjudged_samples_are_counted_and_left_out_of_the_score():
    calls: list = []
    responses = [["yes", "?garbled"], ["no", "no"], ["yes", "yes"], ["?", "no"]]
    result, samples = score(trait(counting_judge(calls)), responses)
    assert result["n_unjudged"] == 2 and result["unjudged_reasons"] == {"unparseable judge output": 2}
    assert result["n_samples"] == 6  # judged samples only
    assert (result["score"], result["low"], result["high"]) == wilson(3, 6)  # not 3 of 8
    assert [s["value"] for s in samples if s["reason"] == "unparseable judge output"] == [None, None]
    assert len(result["prompt_values"]) == 4


def test_too_many_unjudged_samples_fail_the_trial_with_the_reason():
    responses = [["?", "?"], ["?", "no"], ["yes", "yes"], ["no", "no"]]
    with pytest.raises(UserError) as err:
        score(trait(counting_judge([]), max_unjudged_share=0.2), responses)
    message = str(err.value)
    assert "traits.t" in message and "3 of 8" in message and "max_unjudged_share" in message
    assert "unparseable judge output" in message


def test_all_unjudged_fails_even_with_a_generous_limit():
    with pytest.raises(UserError, match="4 of 4"):
        score(trait(counting_judge([]), max_unjudged_share=0.99), [["?"], ["?"], ["?"], ["?"]])


def test_a_cached_verdict_is_not_asked_again_and_survives_a_reload(tmp_path):
    calls: list = []
    responses = [["yes", "no"], ["no", "no"], ["yes", "yes"], ["no", "yes"]]
    path = tmp_path / "judgments.jsonl"
    cache = VerdictCache(path)
    first, _ = score(trait(counting_judge(calls)), responses, cache=cache)
    assert len(calls) == 6  # 8 samples, 6 distinct (prompt, response) pairs: each judged once
    cache.save()
    calls.clear()
    again, _ = score(trait(counting_judge(calls)), responses, cache=VerdictCache(path))
    assert calls == [] and again == first
    # another judge identity (e.g. a new rubric) is asked afresh
    changed, _ = score(
        trait(counting_judge(calls), identity={"rubric_sha256": "x"}), responses, cache=VerdictCache(path)
    )
    assert len(calls) > 0 and changed["judge_id"] != first["judge_id"]
