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

import click

from streamforge_nb import workers
from streamforge_nb.cli._output import EXIT_CODES_HELP
from streamforge_nb.cli.api import serve_api
from streamforge_nb.cli.broker import check, local, topics_ensure
from streamforge_nb.cli.doctor import doctor
from streamforge_nb.cli.generate import manifests, schemas
from streamforge_nb.cli.hub import local_hub as _local_hub  # noqa: F401 (registers `local hub`)
from streamforge_nb.cli.ops import dlq, lag, messages
from streamforge_nb.cli.queue import cancel, cleanup, events, notebooks, ping, queues, stop
from streamforge_nb.cli.store import store
from streamforge_nb.cli.workflow import candles, dashboard, quickstart
from streamforge_nb.program import (
    CONTEXT_SETTINGS,
    CliState,
    ExitCode,
    exit_code,
    run_command,
)

__all__ = ["CONTEXT_SETTINGS", "CliState", "ExitCode", "cli", "exit_code", "main", "run_command"]

# Options without a platform variable of their own read STREAMFORGE_<COMMAND>_<OPTION>
# (`queues --json`: STREAMFORGE_QUEUES_AS_JSON); `--help` shows each one's name.
ENV_PREFIX = "STREAMFORGE"


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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code."""
    return run_command(cli, argv, "streamforge-nb", env_prefix=ENV_PREFIX)
