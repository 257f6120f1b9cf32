"""`serve-api`: the queue-manager API (streamforge_nb.api) over HTTP until Ctrl-C."""

from __future__ import annotations

import click

from streamforge_nb.cli._output import store_option
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
@store_option("Queue-state store (default: ARANGO_URL, else embedded).")
@click.option(
    "--allow-archives",
    "allow_archives",
    multiple=True,
    metavar="DIR|URL",
    envvar="STREAMFORGE_API_ALLOW_ARCHIVES",
    show_envvar=True,
    help="A directory or URL prefix start requests may name archives in (repeatable; "
    "default: none, so only the exchange's own archives).",
)
@click.option(
    "--allow-base-url",
    "allow_base_urls",
    multiple=True,
    metavar="URL",
    envvar="STREAMFORGE_API_ALLOW_BASE_URL",
    show_envvar=True,
    help="An exchange base URL start requests may name (repeatable; default: none, so only "
    "Binance's).",
)
def serve_api(
    host: str,
    port: int,
    token: str | None,
    store: str | None,
    allow_archives: tuple[str, ...],
    allow_base_urls: tuple[str, ...],
) -> None:
    """Serve the queue-manager API: start, list, watch, stop, cancel and ping queues.

    Logs (one JSON object per line, an access line per request, never the token) go to
    stderr; /healthz and /metrics need no token.
    """
    import secrets

    from streamforge_nb.api.allow import AllowList
    from streamforge_nb.api.app import QueueManagerApp
    from streamforge_nb.api.server import ApiServer, is_loopback
    from streamforge_nb.exceptions import ConfigError
    from streamforge_nb.logs import configure_json_logging, remember_secrets
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
    try:
        allow = AllowList.build(allow_archives, allow_base_urls)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    printed = token is None
    token = token or secrets.token_urlsafe(24)
    remember_secrets(token)  # the JSON log redacts it wherever it might appear
    configure_json_logging()
    settings = Settings.from_env()
    app = QueueManagerApp(token, settings, store=store, allow=allow)
    server = ApiServer(app, host, port)
    click.echo(f"queue-manager API at {server.url} (OpenAPI: {server.url}/openapi.json)")
    if printed:
        click.echo(f"token: {token}  (send: Authorization: Bearer <token>)")
    click.echo(f"using {settings.describe()}; Ctrl-C stops")
    server.serve_forever()
