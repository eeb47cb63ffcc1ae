"""The model-name preflight (model/loading.py `check_model`, issue 13 item 5): a folder must hold a
config.json, a hub id must be in the local Hugging Face cache or on the hub; with HF_HUB_OFFLINE the hub
is never asked. No test here reaches the network: the hub is off (HF_HUB_OFFLINE=1), and sockets fail."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from hf_cache import fake_hub_cache

from leaksweep.errors import UserError
from leaksweep.model.loading import check_model

TYPO = "HuggingFaceTB/SmolLM2-135M-Instructt"


@pytest.fixture
def no_network(monkeypatch):
    """The hub is off, and any connection attempt fails the test."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise AssertionError(f"the model check tried to reach the network: {args}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_a_folder_must_exist_and_hold_a_config_json(tmp_path, no_network):
    with pytest.raises(UserError, match=r"train.model: '.*no-such-folder' does not exist"):
        check_model(str(tmp_path / "no-such-folder"))
    (tmp_path / "weights").mkdir()
    with pytest.raises(UserError) as exc:
        check_model(str(tmp_path / "weights"), key="--model", built_in=("smollm2",))
    message = str(exc.value)
    assert message.startswith(f"--model: '{tmp_path / 'weights'}' is not a model folder (no config.json")
    assert "`smollm2`" in message and "`tiny`" not in message
    (tmp_path / "weights" / "config.json").write_text("{}")
    check_model(str(tmp_path / "weights"))


def test_a_hub_id_not_in_the_cache_is_refused_offline_without_asking_the_hub(no_network):
    with pytest.raises(UserError) as exc:
        check_model(TYPO)
    message = str(exc.value)
    assert message.startswith(f"train.model: {TYPO!r} is not in the local Hugging Face cache")
    assert "HF_HUB_OFFLINE is set" in message
    assert "a local model folder" in message and "`smollm2`, `tiny`" in message and "hub id" in message


def test_a_name_that_is_no_hub_id_is_named(no_network):
    with pytest.raises(UserError, match=r"train.model: 'my model!' is neither an existing folder nor a valid hub id"):
        check_model("my model!")


def test_a_cached_hub_id_is_accepted_offline(tmp_path):
    """In a fresh process: huggingface_hub reads HF_HOME when it is imported."""
    fake_hub_cache(tmp_path / "hf", "some-org/cached-1b")
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    code = (
        "from leaksweep.model.loading import check_model\n"
        "check_model('some-org/cached-1b')\n"
        "try:\n"
        "    check_model('some-org/other-1b')\n"
        "except Exception as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"'some-org/other-1b' is not in the local Hugging Face cache ({tmp_path / 'hf' / 'hub'})" in done.stdout
