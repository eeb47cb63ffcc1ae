"""Redaction: what W&B must never keep, and the `a/b/c` flattening of nested values.

Config, summaries, tables and artifact metadata pass through `redact()` before any tracker sees
them: W&B keeps them forever and shares them with everyone who can see the project.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

REDACTED = "<redacted>"

# Secret-looking env values shorter than this are not hunted for in strings: short values ("1",
# "true", a port) would match ordinary text and redact it for nothing.
MIN_SECRET_LENGTH = 8

# Words that make a key secret when they end its name: `hf_token`, `client_secret`, `db_passwd`.
_SECRET_LAST_WORDS = {"token", "secret", "secrets", "password", "passwd", "passphrase", "apikey", "credentials"}
# Fragments that make a name secret wherever they occur: `db_password_file`, `wandb_apikey_v2`.
_SECRET_FRAGMENTS = ("password", "passwd", "apikey", "api_key")


def looks_secret(name: str) -> bool:
    """Whether a config key or environment variable name looks like it holds a secret.

    The name is lower-cased and split into words (on `_`, `-`, `.`, spaces and camelCase humps).
    It is secret when
    - its last word is token, secret(s), password, passwd, passphrase, apikey or credentials
      (`hf_token`, `OPENAI_SECRET`, `accessToken`), or
    - it has at least two words and the last is `key` (`api_key`, `JUDGE_API_KEY`, `sort_key`), or
    - it contains password, passwd, apikey or api_key anywhere (`db_password_file`).
    So `key_column`, a bare `key`, `max_new_tokens` and `token_budget` are not secret: the rule
    looks at what the name ends with, and a few false positives (`sort_key`) are the price of
    never missing a `*_key`.
    """
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()
    words = [w for w in re.split(r"[_\-.\s]+", snake) if w]
    if not words:
        return False
    joined = "_".join(words)
    if any(fragment in joined for fragment in _SECRET_FRAGMENTS):
        return True
    if words[-1] in _SECRET_LAST_WORDS:
        return True
    return len(words) >= 2 and words[-1] == "key"


def secret_env_values() -> list[str]:
    """Values of environment variables whose names look secret, longest first.

    Longest first so that a secret containing another secret is replaced whole.
    """
    values = {v for k, v in os.environ.items() if looks_secret(k) and len(v) >= MIN_SECRET_LENGTH}
    return sorted(values, key=len, reverse=True)


def redact(config: dict) -> dict:
    """A deep copy of `config` with secrets replaced by "<redacted>".

    - The value of every key that `looks_secret` is replaced, unless it is None or a bool (an
      unset option or a `use_auth_token: true` flag reveals nothing).
    - Every occurrence, inside any string value, of the value of a secret-looking environment
      variable (WANDB_API_KEY, HF_TOKEN, ...; 8 characters or longer) is replaced, so a key that
      leaked into a URL or a command line is caught too.
    Lists, tuples and nested dicts are walked; other values are copied as they are.
    """
    return _redact(config, secret_env_values())


def _redact(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if isinstance(key, str) and looks_secret(key) and item is not None and not isinstance(item, bool):
                out[key] = REDACTED
            else:
                out[key] = _redact(item, secrets)
        return out
    if isinstance(value, list):
        return [_redact(item, secrets) for item in value]
    if isinstance(value, tuple):
        return tuple(_redact(item, secrets) for item in value)
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        return value
    return copy.deepcopy(value)


def flatten(values: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Nested dicts as `a/b/c` keys: the W&B UI groups metrics into panels by these prefixes."""
    for key, value in values.items():
        full = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            yield from flatten(value, full)
        else:
            yield full, value
