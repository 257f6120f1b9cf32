"""ask_again: a start-up step rides out "not now" for a bounded time and never a refusal."""

from __future__ import annotations

import logging
import time

import pytest

from streamforge_nb.exceptions import BrokerUnavailable, NotAuthorized
from streamforge_nb.retry import ask_again

log = logging.getLogger("test_retry")


def flaky(failures: int, error: Exception) -> tuple[list[float], object]:
    calls: list[float] = []

    def call() -> str:
        calls.append(time.monotonic())
        if len(calls) <= failures:
            raise error
        return "done"

    return calls, call


def test_a_passing_error_is_asked_again_after_a_growing_pause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls, call = flaky(2, BrokerUnavailable("the broker at k:9092 did not answer"))
    with caplog.at_level(logging.WARNING, logger="test_retry"):
        result = ask_again(call, passing=(BrokerUnavailable,), seconds=5, pause=0.1,
                           what="the started event", log=log)  # fmt: skip
    assert result == "done"
    assert len(calls) == 3
    said = [r.getMessage() for r in caplog.records]
    assert said == [
        "the started event did not go through, trying again in 0.1 s: "
        "the broker at k:9092 did not answer",
        "the started event did not go through, trying again in 0.2 s: "
        "the broker at k:9092 did not answer",
    ]


def test_a_refusal_is_raised_at_once_even_when_it_is_also_passing() -> None:
    refusal = NotAuthorized("user 'viewer' may not write to topic t")
    calls, call = flaky(5, refusal)
    with pytest.raises(NotAuthorized):
        ask_again(call, passing=(Exception,), refusing=(NotAuthorized,), seconds=5, pause=0.01,
                  what="x", log=log)  # fmt: skip
    assert len(calls) == 1


def test_the_last_error_is_raised_once_the_time_is_spent() -> None:
    calls, call = flaky(1000, BrokerUnavailable("no answer"))
    with pytest.raises(BrokerUnavailable, match="no answer"):
        ask_again(call, passing=(BrokerUnavailable,), seconds=0.3, pause=0.05, max_pause=0.1,
                  what="x", log=log)  # fmt: skip
    # Pauses 0.05, 0.1, 0.1 fit in 0.3 s and the next would not: at most four calls, never
    # a pause that ends past the time given.
    assert 2 <= len(calls) <= 4


def test_an_error_that_is_neither_passing_nor_refusing_is_not_asked_again() -> None:
    calls, call = flaky(5, ValueError("bug"))
    with pytest.raises(ValueError):
        ask_again(call, passing=(BrokerUnavailable,), seconds=5, pause=0.01, what="x", log=log)
    assert len(calls) == 1
