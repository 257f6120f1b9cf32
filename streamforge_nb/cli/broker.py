"""Broker commands: the local broker (`local up|down|status|fetch`), `check` and `topics`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from streamforge_nb.cli._output import (
    echo_json,
    echo_status,
    home_option,
    json_option,
    kafka_options,
)
from streamforge_nb.exceptions import StreamForgeError
from streamforge_nb.workers import SECONDS

__all__ = ["check", "local", "topics_ensure"]


def _broker(home: Path | None) -> Any:
    from streamforge_nb.local.broker import LocalBroker
    from streamforge_nb.settings import local_home

    return LocalBroker(home or local_home())


@click.group()
def local() -> None:
    """Run a real Kafka broker (KRaft) on this machine."""


@local.command("up")
@home_option
@click.option(
    "--port",
    type=click.IntRange(0, 65533),
    default=None,
    help="PLAINTEXT port; SASL_SSL and controller use the next two. 0 = free ports. "
    "Data is kept either way.",
)
@click.option(
    "--reset",
    is_flag=True,
    help="Delete the broker's data (topics, messages, SCRAM users, ACLs) and format anew.",
)
@click.option("--timeout", type=SECONDS, default=90.0, help="Seconds to wait for the broker.")
@json_option("One JSON object: the broker's status, as `local status --json`.")
def local_up(
    home: Path | None, port: int | None, reset: bool, timeout: float, as_json: bool
) -> None:
    """Start the local broker (idempotent), keeping its data, and write its env file."""
    broker = _broker(home)
    status = broker.up(
        port=port, reset=reset, timeout=timeout, progress=lambda m: click.echo(m, err=True)
    )
    if as_json:
        echo_json(status.__dict__)
        return
    click.echo(f"KAFKA_BOOTSTRAP_SERVERS={status.plaintext}")
    click.echo(f"# SASL_SSL (SCRAM-SHA-512) {status.sasl_ssl}: see {broker.sasl_env_file}")
    click.echo(f"# environment written to {status.env_file}")


@local.command("down")
@home_option
def local_down(home: Path | None) -> None:
    """Stop the local broker (data stays until you delete the home directory)."""
    broker = _broker(home)
    click.echo("stopped" if broker.down() else f"not running ({broker.home})")


@local.command("status")
@home_option
@json_option("One JSON object.")
def local_status(home: Path | None, as_json: bool) -> int:
    """Report the local broker; exit 0 when it runs, 3 when it does not."""
    status = _broker(home).status()
    if as_json:
        echo_json(status.__dict__)
    else:
        click.echo("\n".join(status.lines()))
    return 0 if status.running else 3


@local.command("fetch")
def local_fetch() -> None:
    """Resolve Kafka's jars from Maven Central into the cache."""
    from streamforge_nb.local.maven import KAFKA_VERSION, fetch_jars

    click.echo(f"Kafka {KAFKA_VERSION} jars in {fetch_jars(quiet=False)}")


@click.command("check")
@kafka_options
@json_option("One JSON object: the connection (no secrets) and the visible topics.")
def check(as_json: bool) -> None:
    """Connect to Kafka with the current settings and list the visible topics."""
    from streamforge_nb.kafka.clients import check_connection
    from streamforge_nb.settings import Settings

    settings = Settings.from_env()
    described: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.security_protocol,
        "sasl_mechanism": (
            settings.kafka_sasl_mechanism if settings.security_protocol.startswith("SASL") else None
        ),
        "user": settings.kafka_user,
        "ca_path": settings.kafka_ca_path,
        "settings_source": settings.source,
    }
    try:
        topics = check_connection(settings)
    except StreamForgeError as exc:
        if as_json:
            echo_json({"ok": False, **described, "error": str(exc)})
        raise
    if as_json:
        echo_json({"ok": True, **described, "topics": topics})
        return
    click.echo(f"ok: {settings.describe()}, settings from {settings.source}")
    click.echo("topics: " + (", ".join(topics) or "(none visible)"))


@click.command("topics")
@kafka_options
@json_option("One JSON object: created (the topics this run created).")
def topics_ensure(as_json: bool) -> None:
    """Create the service topics (queue-control, queue-events) if missing."""
    from streamforge_nb.kafka.clients import make_admin
    from streamforge_nb.platform.topics import ensure_topics
    from streamforge_nb.settings import Settings

    admin = make_admin(Settings.from_env())
    try:
        created = ensure_topics(admin)
    finally:
        admin.close()
    if as_json:
        echo_json({"created": list(created)})
    else:
        click.echo("created: " + ", ".join(created) if created else "all service topics exist")


@local.group("cluster")
def local_cluster() -> None:
    """Run a real single-node Kubernetes here (root; binaries from scripts/build-kube --node)."""


@local_cluster.command("up")
def local_cluster_up() -> None:
    """Start the cluster in the background (idempotent); print its kubeconfig."""
    from streamforge_nb.local.cluster.service import cluster_up

    path = cluster_up()
    click.echo(f"KUBECONFIG={path}")
    click.echo(f"# export KUBECONFIG={path}  (kubectl, helm, Workflow.launch('kubernetes'))")


@local_cluster.command("down")
def local_cluster_down() -> None:
    """Stop the cluster; nothing is left behind."""
    from streamforge_nb.local.cluster.service import cluster_down

    click.echo("stopped" if cluster_down() else "not running")


@local_cluster.command("status")
@json_option("One JSON object.")
def local_cluster_status(as_json: bool) -> int:
    """Exit 0 when the cluster runs, 3 when it does not."""
    from streamforge_nb.local.cluster.service import cluster_status

    return echo_status(cluster_status(), as_json)
