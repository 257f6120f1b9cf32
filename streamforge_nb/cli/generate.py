"""Generated files: the Strimzi manifests and the JSON Schemas of the platform's messages.

Each writer takes an explicit DIR, or `-` for stdout: a default folder would be written
wherever the command happens to run, and the package's own folder is part of an installed
package, not a place for output.
"""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["manifests", "schemas"]

STDOUT = "-"


def _output_dir(directory: str) -> Path | None:
    """Return the folder to write into (None: stdout); refuse the installed package."""
    if directory == STDOUT:
        return None
    import streamforge_nb

    target = Path(directory).resolve()
    package = Path(streamforge_nb.__file__).resolve().parent
    # A source checkout (pyproject.toml next to the package) regenerates its committed files;
    # an installed package is never written to.
    installed = not (package.parent / "pyproject.toml").is_file()
    if installed and target.is_relative_to(package):
        raise click.BadParameter(
            f"{directory} is inside the installed package ({package}); write elsewhere",
            param_hint="DIR",
        )
    return Path(directory)


@click.command("manifests")
@click.argument("directory", metavar="DIR")
@click.option(
    "--cluster",
    default="k3",
    help="Strimzi Kafka cluster (strimzi.io/cluster label).",
)
@click.option("--namespace", default="kafka", help="Namespace of the Kafka cluster.")
@click.option(
    "--api-version",
    type=click.Choice(["v1", "v1beta2"]),
    default="v1",
    help="kafka.strimzi.io version: v1 for Strimzi 0.49+, v1beta2 for older operators.",
)
def manifests(directory: str, cluster: str, namespace: str, api_version: str) -> None:
    """Write the Strimzi KafkaTopic/KafkaUser manifests into DIR (`-`: one YAML stream)."""
    from streamforge_nb.platform.topics import render_manifest, strimzi_manifests

    folder = _output_dir(directory)
    rendered = strimzi_manifests(cluster=cluster, namespace=namespace, api_version=api_version)
    if folder is None:
        click.echo("---\n".join(render_manifest(r) for r in rendered.values()), nl=False)
        return
    folder.mkdir(parents=True, exist_ok=True)
    for name, resources in rendered.items():
        (folder / name).write_text(render_manifest(resources))
        click.echo(folder / name)


@click.command("schemas")
@click.argument("directory", metavar="DIR")
def schemas(directory: str) -> None:
    """Write the JSON Schema of every platform message into DIR (`-`: one JSON object).

    On stdout, one object maps each message's name to its schema.
    """
    from streamforge_nb.platform.schemas import json_schemas, write_schemas

    folder = _output_dir(directory)
    if folder is None:
        import json

        click.echo(json.dumps(json_schemas(), sort_keys=True))
        return
    for path in write_schemas(folder):
        click.echo(path)
