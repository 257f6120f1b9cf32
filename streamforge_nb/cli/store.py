"""`store` commands: set the ArangoDB candle store up for the library."""

from __future__ import annotations

import click

__all__ = ["store"]


@click.group("store")
def store() -> None:
    """The ArangoDB candle store."""


@store.command("init")
@click.option("--url", default=None, help="ArangoDB URL; ARANGO_URL when not given.")
@click.option(
    "--read-only",
    is_flag=True,
    help="Grant ARANGO_USER read-only rights (notebooks that only load) instead of rw.",
)
@click.option(
    "--update-password",
    is_flag=True,
    help="Set an existing ARANGO_USER's password to ARANGO_PASSWORD.",
)
def init(url: str | None, read_only: bool, update_password: bool) -> None:
    """Create the database, user, collections and indexes the library needs (idempotent).

    Runs as the server's admin, ARANGO_ROOT_USER (default root) with ARANGO_ROOT_PASSWORD;
    the user made is ARANGO_USER with ARANGO_PASSWORD (never printed), in ARANGO_DB.
    """
    import os

    from streamforge_nb.settings import Settings
    from streamforge_nb.store.arango_init import init_store, root_credentials

    root_user, root_password = root_credentials(os.environ)
    report = init_store(
        Settings.from_env(),
        root_user=root_user,
        root_password=root_password,
        url=url,
        access="ro" if read_only else "rw",
        update_password=update_password,
    )
    for line in report.lines():
        click.echo(line)
