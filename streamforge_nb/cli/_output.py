"""What every command shares: JSON output and the `--home` option of the local broker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

__all__ = ["echo_json", "home_option", "json_option", "say"]

F = TypeVar("F", bound=Callable[..., Any])


def echo_json(obj: Any) -> None:
    """Print one JSON object on one line."""
    import json

    click.echo(json.dumps(obj, default=str, sort_keys=True))


def say(as_json: bool, obj: dict[str, Any], text: str) -> None:
    """Print `obj` as JSON with `--json`, else `text`."""
    if as_json:
        echo_json(obj)
    else:
        click.echo(text)


def json_option(help: str = "One JSON object per line.") -> Callable[[F], F]:
    """The `--json` flag, spelled the same on every command."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def home_option(func: F) -> F:
    """The local broker's directory; `STREAMFORGE_HOME` when not given."""
    return click.option(
        "--home",
        type=click.Path(path_type=Path),
        default=None,
        envvar="STREAMFORGE_HOME",
        show_envvar=True,
        help="Broker directory (default: ~/.streamforge-nb).",
    )(func)
