"""Run a click command as a program: the exit-code table every program of the package shares.

The CLI (`streamforge-nb ...`) and each worker (`python -m streamforge_nb.workers.<name>`) run
their commands through `run_command`, so our errors print one line and exit with the code of
`ExitCode` whichever way a command starts. It lives below both: workers must not import the CLI.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import click

from streamforge_nb.exceptions import (
    BrokerError,
    BrokerUnavailable,
    ConfigError,
    QueueTimeout,
    StreamForgeError,
)

__all__ = [
    "CONTEXT_SETTINGS",
    "EXIT_CODES_HELP",
    "CliState",
    "ExitCode",
    "exit_code",
    "run_command",
]


class ExitCode(IntEnum):
    """The exit codes of every command (`--help` and the README show the same table)."""

    OK = 0
    FAILED = 1
    USAGE = 2
    NOT_RUNNING = 3
    TIMEOUT = 4


EXIT_CODES_HELP = (
    "\b\nExit codes:\n"
    "  0  ok\n"
    "  1  failed (the command ran and the answer is no, or a refusal)\n"
    "  2  usage or bad input (an option, a queue id, an interval, a time)\n"
    "  3  not running or unreachable (the broker, the local cluster)\n"
    "  4  timeout (no pong, no acknowledgement of stop in time)\n"
    "  130  interrupted (Ctrl-C)"
)

# One style for every command, `python -m streamforge_nb.workers.<name>` included.
CONTEXT_SETTINGS: dict[str, Any] = {
    "help_option_names": ["-h", "--help"],
    "show_default": True,
    "max_content_width": 100,
}


@dataclass
class CliState:
    """What the group's options tell the commands and `run_command` (the context's `obj`)."""

    debug: bool = False


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
