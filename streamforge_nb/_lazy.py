"""Lazy re-exports for package faces: a name is imported from its module on first use.

The package's `__init__` modules list what they offer in one table; importing a package
then costs nothing until a name is touched, so `streamforge-nb --help` does not load Kafka,
pandas or pydantic, and no subpackage import can form a cycle at import time.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping

__all__ = ["attach"]


def attach(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """Return `__getattr__` and `__dir__` for `package` serving `exports` (name -> module)."""

    def __getattr__(name: str) -> object:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        # Cache it, so the next access is a plain attribute lookup.
        importlib.import_module(package).__dict__[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*importlib.import_module(package).__dict__, *exports})

    return __getattr__, __dir__
