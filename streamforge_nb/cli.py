"""The `streamforge-nb` command line.

Every command reads `Settings.from_env()`, so after `streamforge-nb local up` nothing needs a
flag. Errors print one line naming the problem and exit non-zero; `--debug` shows tracebacks.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from .exceptions import StreamForgeError
from .settings import Settings, local_home

__all__ = ["cli", "main"]


def _echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, default=str, sort_keys=True))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.version_option(package_name="streamforge-nb")
def cli(debug: bool) -> None:
    """Control and analyse StreamForge workflows from a shell."""


# -- local broker ---------------------------------------------------------------------------
@cli.group()
def local() -> None:
    """Run a real Kafka broker (KRaft) on this machine."""


def _home_option(func: Any) -> Any:
    return click.option(
        "--home",
        type=click.Path(path_type=Path),
        default=None,
        help="Broker directory (default $STREAMFORGE_HOME or ~/.streamforge-nb).",
    )(func)


def _broker(home: Path | None) -> Any:
    from .broker import LocalBroker

    return LocalBroker(home or local_home())


@local.command("up")
@_home_option
@click.option(
    "--port",
    type=int,
    default=None,
    help="PLAINTEXT port; SASL_SSL and controller use the next two. 0 = free ports.",
)
@click.option("--timeout", type=float, default=90.0, show_default=True)
def local_up(home: Path | None, port: int | None, timeout: float) -> None:
    """Start the local broker (idempotent) and write its env file."""
    broker = _broker(home)
    status = broker.up(port=port, timeout=timeout, progress=lambda m: click.echo(m, err=True))
    click.echo(f"KAFKA_BOOTSTRAP_SERVERS={status.plaintext}")
    click.echo(f"# SASL_SSL (SCRAM-SHA-512) {status.sasl_ssl}: see {broker.sasl_env_file}")
    click.echo(f"# environment written to {status.env_file}")


@local.command("down")
@_home_option
def local_down(home: Path | None) -> None:
    """Stop the local broker (data stays until you delete the home directory)."""
    broker = _broker(home)
    click.echo("stopped" if broker.down() else f"not running ({broker.home})")


@local.command("status")
@_home_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def local_status(home: Path | None, as_json: bool) -> int:
    """Report the local broker; exit 0 when it runs, 3 when it does not."""
    status = _broker(home).status()
    if as_json:
        _echo_json(status.__dict__)
    else:
        click.echo("\n".join(status.lines()))
    return 0 if status.running else 3


@local.command("fetch")
def local_fetch() -> None:
    """Resolve Kafka's jars from Maven Central into the cache."""
    from .maven import KAFKA_VERSION, fetch_jars

    click.echo(f"Kafka {KAFKA_VERSION} jars in {fetch_jars(quiet=False)}")


# -- contract and manifests -----------------------------------------------------------------
@cli.command("check")
def check() -> None:
    """Connect to Kafka with the current settings and list the visible topics."""
    from .clients import check_connection

    settings = Settings.from_env()
    topics = check_connection(settings)
    click.echo(f"ok: {settings.describe()}, settings from {settings.source}")
    click.echo("topics: " + (", ".join(topics) or "(none visible)"))


@cli.command("topics")
def topics_ensure() -> None:
    """Create the service topics (queue-control, queue-events) if missing."""
    from .clients import make_admin
    from .topics import ensure_topics

    settings = Settings.from_env()
    admin = make_admin(settings)
    try:
        created = ensure_topics(admin)
    finally:
        admin.close()
    click.echo("created: " + ", ".join(created) if created else "all service topics exist")


@cli.command("manifests")
@click.argument("directory", type=click.Path(path_type=Path), default=Path("manifests"))
def manifests(directory: Path) -> None:
    """Write the Strimzi KafkaTopic/KafkaUser manifests rendered from the topic definitions."""
    from .topics import render_manifest, strimzi_manifests

    directory.mkdir(parents=True, exist_ok=True)
    for name, resources in strimzi_manifests().items():
        (directory / name).write_text(render_manifest(resources))
        click.echo(directory / name)


@cli.command("schemas")
@click.argument("directory", type=click.Path(path_type=Path), default=Path("schemas"))
def schemas(directory: Path) -> None:
    """Write the JSON Schema of every platform message."""
    from .contract import write_schemas

    for path in write_schemas(directory):
        click.echo(path)


# -- the main job ---------------------------------------------------------------------------
@cli.command("quickstart")
@click.option("--count", type=int, default=5, show_default=True, help="Round trips to time.")
def quickstart(count: int) -> None:
    """Start the local broker and prove a round trip through queue-control."""
    from .quickstart import run_quickstart

    run_quickstart(count=count, echo=click.echo)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        result = cli.main(args=args, prog_name="streamforge-nb", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except StreamForgeError as exc:
        if debug:
            raise
        click.echo(f"streamforge-nb: error: {exc}", err=True)
        return 1
    except KeyboardInterrupt:
        return 130
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
