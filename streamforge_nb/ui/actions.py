"""What every panel shares: button actions run one at a time off the kernel's thread.

A click starts its action in a short-lived thread, so the kernel stays responsive while a
Ping waits for its pong or a Stop for `interrupted`; a second click while one runs is dropped
(the buttons say busy). An exception in the action is shown, never raised: a thread has no
one to raise to. `close()` of a panel sets `_closed` under `_lock`, after which no widget
update starts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["PanelActions"]


class PanelActions:
    """The action thread of a panel; subclasses say how to show busy and failure."""

    def _init_actions(self, name: str) -> None:
        self._name = name
        # Several threads update widgets (follower, refresh, action); the lock keeps each
        # update whole and lets close() know no update starts after it.
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._action: threading.Thread | None = None

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no action (Ping, Stop, a chart's read) is in flight; False on timeout."""
        return self._idle.wait(timeout)

    def _start(self, name: str, action: Callable[[], None]) -> None:
        # Buttons are disabled while an action runs; this also drops a click that raced it.
        if self._closed.is_set() or not self._idle.is_set():
            return
        self._idle.clear()
        self._set_busy(True, f"{name}…")
        self._action = threading.Thread(
            target=self._run, args=(name, action), name=f"panel-{self._name}-{name}", daemon=True
        )
        self._action.start()

    def _run(self, name: str, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception as exc:  # raised in a thread it would only reach the kernel's stderr
            self._failed(name, exc)
        finally:
            self._set_busy(False)
            self._idle.set()

    def _set_busy(self, busy: bool, message: str | None = None) -> None:
        """Show that an action runs (or no longer does), with `message` if given."""
        raise NotImplementedError

    def _failed(self, name: str, exc: Exception) -> None:
        """Show why action `name` failed."""
        raise NotImplementedError
