"""Ask again while the broker says "not now": one loop for every start-up or last-word step.

    result = ask_again(lambda: Sink(...), passing=(BrokerError,), refusing=(NotAuthorized,),
                       seconds=60, what="the sink's start", log=log)

A refusal (authentication, an ACL) is raised at once; a passing error is logged and asked
again after a pause that doubles up to `max_pause`, until `seconds` are spent, when the last
error is raised. Standard library only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["ask_again"]

T = TypeVar("T")


def ask_again(
    call: Callable[[], T],
    *,
    passing: tuple[type[BaseException], ...],
    seconds: float,
    what: str,
    log: logging.Logger,
    refusing: tuple[type[BaseException], ...] = (),
    pause: float = 1.0,
    max_pause: float = 10.0,
) -> T:
    """Return `call()`, asking again on `passing` errors for up to `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return call()
        except refusing:
            raise
        except passing as exc:
            # Give up before a pause that would end past the deadline: the wait is bounded
            # by `seconds`, never by `seconds` plus one more pause.
            if time.monotonic() + pause > deadline:
                raise
            log.warning("%s did not go through, trying again in %.1f s: %s", what, pause, exc)
            time.sleep(pause)
            pause = min(pause * 2, max_pause)
