"""Workers: processes that run a queue's step and talk to the platform through `Worker`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol, TypeVar

from streamforge_nb.exceptions import StreamForgeError
from streamforge_nb.logs import configure_json_logging

__all__ = ["run_main"]


class _Options(Protocol):
    @property
    def debug(self) -> bool: ...


OptionsT = TypeVar("OptionsT", bound=_Options)


def run_main(name: str, options: OptionsT, run: Callable[[OptionsT], int]) -> int:
    """Run a worker from its command line: JSON logs, and one clear line for our errors."""
    configure_json_logging(options.debug)
    try:
        return run(options)
    except StreamForgeError as exc:
        logging.getLogger(f"streamforge_nb.{name}").error("%s could not run: %s", name, exc)
        return 1
