"""The `streamforge-nb` command line.

Every command reads `Settings.from_env()`, so after `streamforge-nb local up` nothing needs a
flag. Our errors print one line, `streamforge-nb: error: ...`, and exit with the code of the
table in `--help` (`ExitCode`); `--debug` turns on debug logs and shows the traceback instead.
Every option can also come from an environment variable, shown in each command's `--help`.

Commands import what they use when they run: `streamforge-nb --help` loads click and this
package only (no Kafka, pandas, pydantic or cryptography).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import click

from streamforge_nb import workers
from streamforge_nb.cli._output import EXIT_CODES_HELP, ExitCode
from streamforge_nb.cli.api import serve_api
from streamforge_nb.cli.broker import check, local, topics_ensure
from streamforge_nb.cli.doctor import doctor
from streamforge_nb.cli.generate import manifests, schemas
from streamforge_nb.cli.hub import local_hub as _local_hub  # noqa: F401 (registers `local hub`)
from streamforge_nb.cli.ops import dlq, lag, messages
from streamforge_nb.cli.queue import cancel, cleanup, events, notebooks, ping, queues, stop
from streamforge_nb.cli.store import store
from streamforge_nb.cli.workflow import candles, dashboard, quickstart
from streamforge_nb.exceptions import (
    BrokerError,
    BrokerUnavailable,
    ConfigError,
    QueueTimeout,
    StreamForgeError,
)

__all__ = ["CONTEXT_SETTINGS", "CliState", "ExitCode", "cli", "exit_code", "main", "run_command"]

# One style for every command, `python -m streamforge_nb.workers.<name>` included.
CONTEXT_SETTINGS: dict[str, Any] = {
    "help_option_names": ["-h", "--help"],
    "show_default": True,
    "max_content_width": 100,
}
# Options without a platform variable of their own read STREAMFORGE_<COMMAND>_<OPTION>
# (`queues --json`: STREAMFORGE_QUEUES_AS_JSON); `--help` shows each one's name.
ENV_PREFIX = "STREAMFORGE"


@dataclass
class CliState:
    """What the group's options tell the commands and `run_command` (the context's `obj`)."""

    debug: bool = False


@click.group(
    epilog=EXIT_CODES_HELP + "\n\n\b\nShell completion (bash; zsh and fish likewise):\n"
    '  eval "$(_STREAMFORGE_NB_COMPLETE=bash_source streamforge-nb)"'
)
@click.option(
    "--debug",
    is_flag=True,
    envvar="STREAMFORGE_DEBUG",
    show_envvar=True,
    help="Debug logs on stderr, and tracebacks instead of one-line errors.",
)
@click.version_option(package_name="streamforge-nb")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Control and analyse StreamForge workflows from a shell."""
    if not isinstance(ctx.obj, CliState):
        ctx.obj = CliState()
    ctx.obj.debug = debug
    if debug:
        import logging

        from streamforge_nb.logs import SecretFilter

        logging.basicConfig(
            level=logging.DEBUG,
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        # Every line the handler writes, the library's own too, goes through the redaction.
        for handler in logging.getLogger().handlers:
            handler.addFilter(SecretFilter())


for _command in (
    local, check, topics_ensure, manifests, schemas, ping, stop, cancel, cleanup, notebooks,
    events, candles, queues, dashboard, quickstart, serve_api, store, dlq, lag, messages, doctor,
):  # fmt: skip
    cli.add_command(_command)
for _name in workers.WORKERS:
    cli.add_command(workers.command(_name))


def _show_envvars(command: click.Command) -> None:
    """Show every option's environment variable in `--help` (its own or the automatic one)."""
    for param in command.params:
        if isinstance(param, click.Option) and param.name not in ("help", "version"):
            param.show_envvar = not param.hidden
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _show_envvars(sub)


_show_envvars(cli)


def exit_code(exc: StreamForgeError) -> int:
    """Return the exit code (`ExitCode`) of one of our errors."""
    if isinstance(exc, QueueTimeout):
        return ExitCode.TIMEOUT
    if isinstance(exc, BrokerUnavailable):
        return ExitCode.NOT_RUNNING
    # Bad input the command was given: a name, an interval, a time, a setting.
    if isinstance(exc, ValueError | ConfigError):
        return ExitCode.USAGE
    return ExitCode.FAILED


def run_command(
    command: click.Command,
    argv: Sequence[str] | None,
    prog_name: str,
    env_prefix: str | None = None,
) -> int:
    """Run a click command as a program; return its exit code (errors handled as above)."""
    args = list(sys.argv[1:] if argv is None else argv)
    state = CliState()
    try:
        result = command.main(
            args=args,
            prog_name=prog_name,
            standalone_mode=False,
            obj=state,
            auto_envvar_prefix=env_prefix,
            **CONTEXT_SETTINGS,
        )
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except StreamForgeError as exc:
        if state.debug:
            raise
        # A broker refusal says which (NotAuthorized, AuthenticationFailed, ...): the class
        # is what tells a viewer's ACL from a wrong password.
        kind = f"{type(exc).__name__}: " if isinstance(exc, BrokerError) else ""
        click.echo(f"{prog_name}: error: {kind}{exc}", err=True)
        return exit_code(exc)
    return result if isinstance(result, int) else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code."""
    return run_command(cli, argv, "streamforge-nb", env_prefix=ENV_PREFIX)
