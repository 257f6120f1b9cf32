"""Types of the public `Workflow` and `Batch` arguments, checked before anything else.

A wrong type is an `InvalidName` naming the argument, not a `TypeError` or
`AttributeError` from deep inside planning (`symbol=None` used to fail in `list(None)`,
`cleanup="no"` to mean yes).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from streamforge_nb.exceptions import InvalidName
from streamforge_nb.settings import Settings

__all__ = ["check_arguments", "check_count", "check_series_names"]


def _wrong(name: str, expected: str, value: Any) -> InvalidName:
    return InvalidName(f"{name} must be {expected}, not {type(value).__name__} {value!r}")


def check_count(name: str, value: Any) -> int:
    """Return `value` if it is a whole number >= 1, else raise `InvalidName` naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidName(f"{name} must be a whole number >= 1, not {value!r}")
    return value


def check_series_names(name: str, value: Any) -> None:
    """Refuse a symbol or interval argument that is neither a string nor a list of strings."""
    items = value if isinstance(value, list | tuple) else [value]
    if not all(isinstance(item, str) for item in items):
        raise _wrong(name, "a string or a list of strings", value)


def _optional(check: Callable[[str, Any], object]) -> Callable[[str, Any], None]:
    def optional(name: str, value: Any) -> None:
        if value is not None:
            check(name, value)

    return optional


def _text(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise _wrong(name, "a string", value)


def _texts(name: str, value: Any) -> None:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise _wrong(name, "a list of strings", value)


def _store(name: str, value: Any) -> None:
    if not isinstance(value, str | os.PathLike):
        raise _wrong(name, "a store URL or path", value)


def _per_target(name: str, value: Any) -> None:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise _wrong(name, "a mapping of target names", value)


def _flag(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise _wrong(name, "True or False", value)


def _when(name: str, value: Any) -> None:
    if not isinstance(value, datetime):
        raise _wrong(name, "a datetime", value)


def _settings(name: str, value: Any) -> None:
    if not isinstance(value, Settings):
        raise _wrong(name, "a Settings", value)


_CHECKS: dict[str, Callable[[str, Any], object]] = {
    "targets": _texts,
    "source": _text,
    "base_url": _optional(_text),
    "archives": _texts,
    "store": _optional(_store),
    "image": _text,
    "namespace": _text,
    "output_dir": _optional(_text),
    "settings": _optional(_settings),
    "short_id": _optional(_text),
    "max_candles": _optional(check_count),
    "shard_candles": _optional(check_count),
    "now": _optional(_when),
    "parameters": _optional(_per_target),
    "resources": _optional(_per_target),
    "timeouts": _optional(_per_target),
    "cleanup": _flag,
}


def check_arguments(**arguments: Any) -> None:
    """Raise `InvalidName` naming the first argument of a wrong type (or count below 1)."""
    for name, value in arguments.items():
        _CHECKS[name](name, value)
