"""Small registries: a lower layer names what it needs, an upper layer says what provides it.

    LAUNCHERS.register("local", factory)      # papermill's `register(name, impl)` style
    LAUNCHERS.get("local")(**options)

A registry lets code find an implementation by name without importing it, so a lower layer
(the store's base, a Queue, a Batch) never imports its implementations or the UI. The
package's own implementations are registered by `streamforge_nb.plugins` when the package is
imported; anyone may register more.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from streamforge_nb.exceptions import ConfigError

__all__ = ["BATCHES", "PANELS", "UPDATERS", "Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Implementations by name; `what` names them in the error for an unknown one."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._items: dict[str, T] = {}

    def register(self, name: str, impl: T) -> None:
        """Make `impl` the implementation called `name` (replacing any before it)."""
        self._items[name] = impl

    def get(self, name: str) -> T:
        """Return the implementation called `name`, else raise `ConfigError` naming the known."""
        impl = self._items.get(name)
        if impl is None:
            known = ", ".join(sorted(self._items))
            raise ConfigError(f"unknown {self.what} {name!r}; known: {known}")
        return impl

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._items)


PANELS: Registry[Callable[..., Any]] = Registry("panel")
"""Widgets by what they show: "queue" (a Queue's panel), "batch" (a Batch's); each factory
takes the object and the panel's options and returns the panel. The UI layer provides them."""

UPDATERS: Registry[Callable[..., Any]] = Registry("updater")
"""What `CandleStore.update` hands its work to: "candles" launches one candle Workflow per
series that needs loading. The workflow layer provides it."""

BATCHES: Registry[Callable[..., Any]] = Registry("batch")
"""What `Workflow.candles` hands lists of symbols or intervals to: "candles" is
`Batch.candles` (a Batch is made of Workflows, so the Workflow module cannot import it)."""
