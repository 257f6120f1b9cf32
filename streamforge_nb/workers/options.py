"""Worker option types and `Option`: one definition read from a flag, the environment or a
notebook parameter alike.

Each type checks its range wherever the value comes from (nan and inf are no seconds, a
queue id follows `check_queue_handle_id`). The CLI's own commands use the same types.
Re-exported by `streamforge_nb.workers`; click only, like it: the CLI's `--help` imports it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import click

from streamforge_nb.exceptions import InvalidName

__all__ = [
    "COUNT",
    "HOST",
    "NON_NEGATIVE_SECONDS",
    "PORT",
    "PORT_OR_ZERO",
    "QUEUE_ID",
    "SECONDS",
    "Option",
]


class _FiniteSeconds(click.FloatRange):
    """Seconds: a finite float in the range (nan and inf are refused)."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number of seconds", param, ctx)
        return rv


class _QueueIdType(click.ParamType[str]):
    """A queue id: it names the topic `<queue id>-data` and labels Kubernetes Jobs.

    The rule is `check_queue_handle_id`'s, so Python and the command line accept the same ids.
    """

    name = "queue id"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from streamforge_nb.platform.names import check_queue_handle_id

        try:
            return check_queue_handle_id(value)
        except InvalidName as exc:
            self.fail(str(exc), param, ctx)


class _HostType(click.ParamType[str]):
    """An IP address or a DNS host name (RFC 1123), e.g. 127.0.0.1, ::1, localhost."""

    name = "host"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        import ipaddress
        import re

        text = str(value).strip()
        try:
            return str(ipaddress.ip_address(text.strip("[]")))
        except ValueError:
            pass
        labels = text.rstrip(".").split(".")
        label = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
        numeric = all(part.isdigit() for part in labels)
        if numeric or len(text) > 253 or not all(label.fullmatch(part) for part in labels):
            hint = " (IPv4 parts are 0..255)" if numeric else ""
            self.fail(f"{value!r} is not an IP address or host name{hint}", param, ctx)
        return text


PORT = click.IntRange(1, 65535)
"""A TCP port, 1..65535."""
PORT_OR_ZERO = click.IntRange(0, 65535)
"""A TCP port, 0..65535 (0: a free port, or off, as the option says)."""
COUNT = click.IntRange(min=1)
"""A count or size, at least 1."""
SECONDS = _FiniteSeconds(min=0, min_open=True)
"""A duration in seconds: finite and > 0."""
NON_NEGATIVE_SECONDS = _FiniteSeconds(min=0)
"""A duration in seconds: finite and >= 0."""
QUEUE_ID = _QueueIdType()
"""A queue id: 1..63 characters usable in a topic name and a Kubernetes label value."""
HOST = _HostType()
"""An IP address or host name to listen on or connect to."""


@dataclass(frozen=True)
class Option:
    """One worker option: its parameter name, CLI flag, type, default and environment variable.

    `type` is a click type; it converts (and, once it is a range type, checks) a value the
    same way whether it came from a flag, the environment or a notebook parameter.
    """

    name: str
    help: str
    type: click.ParamType[Any] = click.STRING
    default: Any = None
    envvar: str | None = None
    required: bool = False
    multiple: bool = False
    is_flag: bool = False
    # The CLI spelling when it is not `--<name with dashes>`, e.g. "--archive" or a
    # "--on/--off" pair for a flag whose default is True.
    flag: str | None = None
    metavar: str | None = None

    @property
    def flag_text(self) -> str:
        return (self.flag or f"--{self.name.replace('_', '-')}").split("/")[0]

    def click_option(self) -> click.Option:
        """Return the click option for this definition."""
        return _WorkerOption(
            [self.flag or f"--{self.name.replace('_', '-')}", self.name],
            type=None if self.is_flag else self.type,
            default=self.default,
            envvar=self.envvar,
            show_envvar=self.envvar is not None,
            multiple=self.multiple,
            is_flag=self.is_flag or None,
            metavar=self.metavar,
            help=self.help,
            shows_required=self.required,
        )


class _WorkerOption(click.Option):
    """A click option whose help says `required` while the check stays ours.

    Ours, because a value may also come from a notebook parameter or be derived (the
    loader's interval from TYPE), and the message is the same on every path.
    """

    def __init__(self, *args: Any, shows_required: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shows_required = shows_required

    def get_help_extra(self, ctx: click.Context) -> Any:
        extra = super().get_help_extra(ctx)
        if self.shows_required:
            extra["required"] = "required"
        return extra
