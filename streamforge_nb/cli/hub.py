"""`streamforge-nb local hub up|down|status`: a real JupyterHub on the local cluster."""

from __future__ import annotations

from pathlib import Path

import click

from streamforge_nb.cli._output import echo_status, json_option
from streamforge_nb.cli.broker import local

__all__ = ["local_hub"]


@local.group("hub")
def local_hub() -> None:
    """JupyterHub with KubeSpawner on `local cluster` (pip install 'streamforge-nb[hub]')."""


@local_hub.command("up")
@click.option(
    "--values",
    "values_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    envvar="STREAMFORGE_HUB_VALUES",
    show_envvar=True,
    help="zero-to-jupyterhub values (manifests/jupyterhub-values.yaml).",
)
@click.option(
    "--image",
    default=None,
    envvar="STREAMFORGE_HUB_IMAGE",
    show_envvar=True,
    help="Single-user image on the node (default: the values' singleuser.image).",
)
@click.option(
    "--host-path",
    "host_paths",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Mounted at the same path in user Pods and their Jobs (an embedded store). Repeatable.",
)
def local_hub_up(values_path: Path, image: str | None, host_paths: tuple[Path, ...]) -> None:
    """Start the hub (idempotent); print its login URL and where the password is (not it)."""
    from streamforge_nb.local.cluster.service import cluster_status
    from streamforge_nb.local.hub import hub_up, read_values

    read_values(values_path)  # a key the local hub does not know: exit 2 before anything
    cluster = cluster_status()
    if not cluster.get("running"):
        raise click.UsageError("no local cluster runs: `streamforge-nb local cluster up` first")
    state = hub_up(
        Path(cluster["kubeconfig"]), values_path=values_path, image=image, host_paths=host_paths
    )
    click.echo(f"login: {state['login']}")
    click.echo(f"password: in {state['password_file']}")


@local_hub.command("down")
def local_hub_down() -> None:
    """Stop the hub and its proxy (user Pods stay, as after a hub restart)."""
    from streamforge_nb.local.hub import hub_down

    click.echo("stopped" if hub_down() else "not running")


@local_hub.command("status")
@json_option("One JSON object.")
def local_hub_status(as_json: bool) -> int:
    """Exit 0 when the hub runs, 3 when it does not."""
    from streamforge_nb.local.hub import hub_status

    return echo_status(hub_status(), as_json)
