"""`serve-api`: the queue-manager API (streamforge_nb.api) over HTTP until Ctrl-C."""

from __future__ import annotations

import click

from streamforge_nb.workers import HOST, PORT_OR_ZERO

__all__ = ["serve_api"]


@click.command("serve-api")
@click.option("--host", type=HOST, default="127.0.0.1", help="Address to listen on.")
@click.option("--port", type=PORT_OR_ZERO, default=8080, help="0 picks a free port.")
@click.option(
    "--token",
    default=None,
    envvar="STREAMFORGE_API_TOKEN",
    show_envvar=True,
    help="The bearer token every request needs (default on 127.0.0.1: a random one, printed).",
)
@click.option(
    "--store", default=None, help="Queue-state store (default: ARANGO_URL, else embedded)."
)
def serve_api(host: str, port: int, token: str | None, store: str | None) -> None:
    """Serve the queue-manager API: start, list, watch, stop, cancel and ping queues."""
    import secrets

    from streamforge_nb.api.app import QueueManagerApp
    from streamforge_nb.api.server import ApiServer, is_loopback
    from streamforge_nb.settings import Settings

    if token is not None and not token.strip():
        raise click.BadParameter("the token is empty", param_hint="--token")
    if token is None and not is_loopback(host):
        # A printed token is only as private as the terminal; off the loopback, the one who
        # exposes the API chooses it (and keeps it out of shell history: the env variable).
        raise click.UsageError(
            f"refusing to serve on {host} without --token or STREAMFORGE_API_TOKEN: any "
            "machine that reaches it could launch and stop workflows"
        )
    printed = token is None
    token = token or secrets.token_urlsafe(24)
    settings = Settings.from_env()
    server = ApiServer(QueueManagerApp(token, settings, store=store), host, port)
    click.echo(f"queue-manager API at {server.url} (OpenAPI: {server.url}/openapi.json)")
    if printed:
        click.echo(f"token: {token}  (send: Authorization: Bearer <token>)")
    click.echo(f"using {settings.describe()}; Ctrl-C stops")
    server.serve_forever()
