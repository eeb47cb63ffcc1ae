"""Typed dataclass configs from plain dicts (parsed YAML/JSON), with every problem collected.

`build(cls, data, where)` turns a dict into the dataclass `cls`, recursing into nested dataclasses,
`list[...]`, `dict[str, ...]`, `X | None` and `Literal[...]`. Unknown keys are rejected with the
list of valid keys; a missing required key, a wrong type or a bad literal is reported with its
dotted path and the value seen. All problems are gathered and raised together as one `UserError`,
so a user fixes a config in one pass. Dataclasses may define `check(self) -> list[str]` for
cross-field rules; its messages get the same path prefix.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from leaksweep.errors import UserError

_MISSING = object()


def build(cls: type, data: Any, where: str) -> Any:
    """Build `cls` from `data`; raise UserError listing every problem, prefixed with `where`."""
    problems: list[str] = []
    value = _convert(cls, data, "", problems)
    if problems:
        raise UserError([f"{where}: {p}" for p in problems])
    return value


def to_dict(obj: Any) -> Any:
    """Inverse of `build` for JSON: dataclasses become dicts, recursively; None fields are kept."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def unsafe_names(label: str, names: Any) -> list[str]:
    """Problems for names that are not safe as file names on every file system (sweeps, subsets,
    traits and sources become folder and file names): letters, digits, '-', '_', '.', not first '.' or '-'."""
    return [
        f"{label}: {name!r} must be letters, digits, '-', '_' or '.' (not starting with '.' or '-'): "
        "it becomes a file name"
        for name in names
        if not (name and name[0] not in ".-" and all(c.isascii() and (c.isalnum() or c in "-_.") for c in name))
    ]


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _convert(tp: Any, value: Any, path: str, problems: list[str]) -> Any:
    if tp is Any:
        return value
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return _convert_union(tp, value, path, problems)
    if origin is Literal:
        return _convert_literal(tp, value, path, problems)
    if dataclasses.is_dataclass(tp):
        return _convert_dataclass(tp, value, path, problems)
    if origin is list:
        return _convert_list(tp, value, path, problems)
    if origin is dict:
        return _convert_dict(tp, value, path, problems)
    if tp in _SCALARS:
        return _SCALARS[tp](value, path or "(top level)", problems)
    raise TypeError(f"schema: unsupported annotation {tp!r} at {path or '(top level)'}")  # a bug in our dataclasses


def _convert_union(tp: Any, value: Any, path: str, problems: list[str]) -> Any:
    options = get_args(tp)
    if value is None and type(None) in options:
        return None
    non_none = [o for o in options if o is not type(None)]
    if len(non_none) == 1:
        return _convert(non_none[0], value, path, problems)
    # A union of several shapes (e.g. `list[float] | FloatRange`): take the first that fits.
    tried = []
    for option in non_none:
        trial: list[str] = []
        converted = _convert(option, value, path, trial)
        if not trial:
            return converted
        tried.append((option, trial))
    same_shape = [trial for option, trial in tried if _shape(option) is type(value)]
    if len(same_shape) == 1:  # e.g. a list of fractions with one bad entry: say which entry
        problems.extend(same_shape[0])
        return None
    problems.append(f"{path or '(top level)'}: value {_show(value)} fits none of {_type_name(tp)}")
    return None


def _shape(tp: Any) -> type | None:
    """The plain Python type a YAML value of annotation `tp` has (list, dict), or None."""
    if get_origin(tp) is list:
        return list
    if get_origin(tp) is dict or dataclasses.is_dataclass(tp):
        return dict
    return None


def _convert_literal(tp: Any, value: Any, path: str, problems: list[str]) -> Any:
    allowed = get_args(tp)
    if value not in allowed:
        problems.append(
            f"{path or '(top level)'}: {_show(value)} is not allowed; use one of {', '.join(map(repr, allowed))}"
        )
    return value


def _convert_list(tp: Any, value: Any, path: str, problems: list[str]) -> list:
    (item_tp,) = get_args(tp)
    if not isinstance(value, list):
        problems.append(f"{path or '(top level)'}: expected a list, got {_show(value)}")
        return []
    return [_convert(item_tp, v, f"{path}[{i}]", problems) for i, v in enumerate(value)]


def _convert_dict(tp: Any, value: Any, path: str, problems: list[str]) -> dict:
    _, item_tp = get_args(tp)
    label = path or "(top level)"
    if not isinstance(value, dict):
        problems.append(f"{label}: expected a mapping, got {_show(value)}")
        return {}
    out = {}
    for k, v in value.items():
        if not isinstance(k, str):
            problems.append(f"{label}: key {_show(k)} must be a string")
            continue
        out[k] = _convert(item_tp, v, f"{path}.{k}" if path else k, problems)
    return out


def _to_float(value: Any, label: str, problems: list[str]) -> Any:
    # YAML reads `1e-3` (no dot) as a string; accept it, and ints, as floats.
    if isinstance(value, bool):
        problems.append(f"{label}: expected a number, got {_show(value)}")
        return value
    number = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            pass
    if not isinstance(number, (int, float)):
        problems.append(f"{label}: expected a number, got {_show(value)}")
        return value
    if not math.isfinite(number):  # YAML reads .nan and .inf; no setting means either
        problems.append(f"{label}: {_show(value)} is not a finite number; give a number such as 10 or 0.5")
        return value
    return float(number)


def _to_int(value: Any, label: str, problems: list[str]) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(f"{label}: expected an integer, got {_show(value)}")
    return value


def _to_bool(value: Any, label: str, problems: list[str]) -> Any:
    if not isinstance(value, bool):
        problems.append(f"{label}: expected true or false, got {_show(value)}")
    return value


def _to_str(value: Any, label: str, problems: list[str]) -> Any:
    if not isinstance(value, str):
        problems.append(f"{label}: expected a string, got {_show(value)}")
    return value


_SCALARS = {float: _to_float, int: _to_int, bool: _to_bool, str: _to_str}


def _convert_dataclass(cls: type, value: Any, path: str, problems: list[str]) -> Any:
    label = path or "(top level)"
    if not isinstance(value, dict):
        problems.append(f"{label}: expected a mapping with keys {_field_list(cls)}, got {_show(value)}")
        return None
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in value if k not in fields]
    for key in unknown:
        hint = " (YAML reads on/off/yes/no as true/false: quote the key)" if isinstance(key, bool) else ""
        problems.append(f"{_join(path, str(key))}: unknown key{hint}; valid keys are {_field_list(cls)}")
    kwargs = {}
    before = len(problems)
    for name, field in fields.items():
        if name in value:
            kwargs[name] = _convert(hints[name], value[name], _join(path, name), problems)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            problems.append(f"{_join(path, name)}: required key is missing")
    if len(problems) > before or unknown:
        return None
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if check is not None:
        for message in check():
            if message.startswith("."):  # a path below this object: ".key: problem"
                problems.append(f"{path}{message}" if path else message[1:])
            else:
                problems.append(f"{label}: {message}")
    return obj


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _field_list(cls: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls) if f.init)


def _type_name(tp: Any) -> str:
    if dataclasses.is_dataclass(tp):
        return f"a mapping with keys {_field_list(tp)}"
    return typing._type_repr(tp) if hasattr(typing, "_type_repr") else str(tp)
