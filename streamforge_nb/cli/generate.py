"""Generated files: the Strimzi manifests and the JSON Schemas of the platform's messages."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["manifests", "schemas"]


@click.command("manifests")
@click.argument("directory", type=click.Path(path_type=Path), default=Path("manifests"))
@click.option("--cluster", default="k3", help="Strimzi Kafka cluster (strimzi.io/cluster label).")
@click.option("--namespace", default="kafka", help="Namespace of the Kafka cluster.")
@click.option(
    "--api-version",
    type=click.Choice(["v1", "v1beta2"]),
    default="v1",
    help="kafka.strimzi.io version: v1 for Strimzi 0.49+, v1beta2 for older operators.",
)
def manifests(directory: Path, cluster: str, namespace: str, api_version: str) -> None:
    """Write the Strimzi KafkaTopic/KafkaUser manifests into DIRECTORY."""
    from streamforge_nb.platform.topics import render_manifest, strimzi_manifests

    directory.mkdir(parents=True, exist_ok=True)
    rendered = strimzi_manifests(cluster=cluster, namespace=namespace, api_version=api_version)
    for name, resources in rendered.items():
        (directory / name).write_text(render_manifest(resources))
        click.echo(directory / name)


@click.command("schemas")
@click.argument("directory", type=click.Path(path_type=Path), required=False)
def schemas(directory: Path | None) -> None:
    """Write the JSON Schema of every platform message into DIRECTORY.

    DIRECTORY defaults to the package's own schemas folder (streamforge_nb/schemas).
    """
    from streamforge_nb.platform.schemas import schemas_dir, write_schemas

    for path in write_schemas(directory or schemas_dir()):
        click.echo(path)
