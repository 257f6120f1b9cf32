"""What every command shares: exit codes, JSON output, and the options several commands take
(`--home`, `--store-url`, `-b/--bootstrap-servers`, `-X key=value`)."""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from streamforge_nb.program import EXIT_CODES_HELP, ExitCode

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = [
    "EXIT_CODES_HELP",
    "ExitCode",
    "echo_json",
    "home_option",
    "json_option",
    "json_value",
    "kafka_options",
    "model_from_row",
    "say",
    "store_option",
]

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound="BaseModel")


def json_value(value: Any) -> Any:
    """Return `value` as strict JSON values: NaN and NaT null, times ISO 8601 UTC."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_value(v) for v in value]
    if isinstance(value, dt.datetime):  # pandas' Timestamp is one
        if value != value:  # NaT
            return None
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return aware.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if hasattr(value, "model_dump"):  # a pydantic model: the API's shape
        return json_value(value.model_dump(mode="json"))
    if hasattr(value, "item"):  # numpy scalars, pandas' NA
        try:
            return json_value(value.item())
        except (ValueError, TypeError):
            return None
    if value != value:  # pandas.NA, NaT of other kinds
        return None
    return str(value)


def model_from_row(model: type[M], row: Mapping[str, Any], **values: Any) -> M:
    """Build an API model from a frame's row: its fields only, NaN left to the default.

    Times go in as Unix seconds, which the model's time fields take whatever their type.
    """
    kept: dict[str, Any] = {}
    for name in model.model_fields:
        value = row.get(name)
        if isinstance(value, dt.datetime):
            value = None if value != value else value.timestamp()  # NaT: missing
        value = json_value(value)
        if value is not None:
            kept[name] = value
    return model.model_validate({**kept, **values})


def echo_json(obj: Any) -> None:
    """Print one JSON value on one line: strict JSON (a NaN is null, never `NaN`)."""
    import json

    click.echo(json.dumps(json_value(obj), sort_keys=True, allow_nan=False))


def echo_status(status: dict[str, Any], as_json: bool) -> int:
    """Print a background server's status (one JSON object, or `key: value` lines); return
    the exit code: 0 when it runs, 3 (not running) otherwise."""
    if as_json:
        echo_json(status)
    else:
        for key, value in status.items():
            click.echo(f"{key}: {value}")
    return 0 if status.get("running") else int(ExitCode.NOT_RUNNING)


def say(as_json: bool, obj: Any, text: str) -> None:
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


class _AliasedOption(click.Option):
    """An option whose older spellings still work but are not shown in `--help`."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        shown, self.opts = self.opts, self.opts[:1]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = shown


def store_option(help: str = "Store URL (default: ARANGO_URL, else embedded).") -> Callable[[F], F]:
    """`--store-url`, as the sink spells it (`--store`, the old spelling, still works)."""
    return click.option(
        "--store-url",
        "--store",
        "store",
        cls=_AliasedOption,
        default=None,
        envvar="STREAMFORGE_STORE_URL",
        show_envvar=True,
        help=help,
    )


# kcat's (librdkafka's) and kafka-python's names of the settings a command may take with -X,
# and the environment variable each one sets (the platform's names, read by Settings).
_KAFKA_KEYS: dict[str, str] = {
    "bootstrap.servers": "KAFKA_BOOTSTRAP_SERVERS",
    "bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
    "security.protocol": "KAFKA_SECURITY_PROTOCOL",
    "security_protocol": "KAFKA_SECURITY_PROTOCOL",
    "sasl.mechanism": "KAFKA_SASL_MECHANISM",
    "sasl.mechanisms": "KAFKA_SASL_MECHANISM",
    "sasl_mechanism": "KAFKA_SASL_MECHANISM",
    "sasl.username": "KAFKA_USER",
    "sasl_plain_username": "KAFKA_USER",
    "ssl.ca.location": "KAFKA_CA_PATH",
    "ssl_cafile": "KAFKA_CA_PATH",
}
_SECRET_KEYS = ("sasl.password", "sasl_plain_password", "ssl.key.password", "ssl_password")


def _apply_bootstrap(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        if not value.strip():
            raise click.BadParameter("empty", ctx, param)
        # The environment, not a Settings object: Settings.from_env() reads it in every
        # command, and Jobs a command launches locally inherit the same broker.
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = value.strip()


def _apply_settings(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> None:
    for item in values:
        key, sep, value = item.partition("=")
        key = key.strip()
        if key in _SECRET_KEYS:
            # A command line is visible to every local user (ps, /proc) and kept in history.
            raise click.BadParameter(
                f"{key} is a secret: give it as KAFKA_PASSWORD in the environment, "
                "never on the command line",
                ctx,
                param,
            )
        if not sep or key not in _KAFKA_KEYS or not value.strip():
            raise click.BadParameter(
                f"{item!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(_KAFKA_KEYS))}",
                ctx,
                param,
            )
        os.environ[_KAFKA_KEYS[key]] = value.strip()


def kafka_options(func: F) -> F:
    """`-b/--bootstrap-servers` and `-X key=value` (kcat's), for commands that talk to Kafka."""
    func = click.option(
        "-X",
        "kafka_settings",
        multiple=True,
        metavar="KEY=VALUE",
        expose_value=False,
        callback=_apply_settings,
        envvar="STREAMFORGE_KAFKA_SETTINGS",
        show_envvar=True,
        help="A Kafka setting, kcat's or kafka-python's name (repeat): bootstrap.servers, "
        "security.protocol, sasl.mechanism, sasl.username, ssl.ca.location. Passwords only "
        "from KAFKA_PASSWORD.",
    )(func)
    return click.option(
        "-b",
        "--bootstrap-servers",
        metavar="HOST:PORT[,...]",
        default=None,
        expose_value=False,
        callback=_apply_bootstrap,
        envvar="KAFKA_BOOTSTRAP_SERVERS",
        show_envvar=True,
        help="Kafka brokers (default: the local broker's env file).",
    )(func)
