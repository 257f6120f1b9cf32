"""`store` commands: what the candle store holds (coverage, quality), and setting the
ArangoDB store up for the library."""

from __future__ import annotations

from typing import Any

import click

from streamforge_nb.cli._output import echo_json, json_option, store_option
from streamforge_nb.platform.neighbours import JUMP_SIGMAS, STALE_CANDLES

__all__ = ["store"]


@click.group("store")
def store() -> None:
    """The candle store: its coverage and quality, and the ArangoDB store's set-up."""


def _series_options(func: Any) -> Any:
    """SYMBOLS (names or patterns), `-i/--interval` (repeatable), `--from`, `--to`, the store."""
    options = [
        click.argument("symbols", nargs=-1, required=True),
        click.option("-i", "--interval", "intervals", multiple=True, required=True,
                     help="Binance interval (1m, 1h, 1d ...); repeat for several."),
        click.option("--from", "start", default=None, help="Start (ISO time or date)."),
        click.option("--to", "end", default=None, help="End, exclusive (ISO time or date)."),
        store_option(),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


def _open(url: str | None) -> Any:
    from streamforge_nb.settings import Settings
    from streamforge_nb.store.candles import CandleStore

    return CandleStore.open(url, Settings.from_env())


@store.command("coverage")
@_series_options
@click.option("--by", type=click.Choice(["day", "month", "year"]), default="month",
              show_default=True, help="Period of each row.")  # fmt: skip
@json_option("One JSON object per series and period.")
@click.pass_context
def coverage(
    ctx: click.Context, symbols: tuple[str, ...], intervals: tuple[str, ...], start: str | None,
    end: str | None, store: str | None, by: str, as_json: bool,
) -> None:  # fmt: skip
    """Count expected, stored, missing and exchange-empty candles per series and period (from
    the files' statistics). SYMBOLS are names or patterns ("*USDT"). Exits 1 when a candle
    is missing, so a script can backfill."""
    with _open(store) as candles:
        frame = candles.coverage(list(symbols), list(intervals), by=by, start=start, end=end)
    if as_json:
        for row in frame.to_dict("records"):
            echo_json(row)
    elif frame.empty:
        click.echo("no candles stored in that range")
    else:
        shown = frame.assign(period=frame["period"].dt.strftime(_PERIOD[by]))
        click.echo(shown.to_string(index=False))
        missing = int(frame["missing"].sum())
        click.echo(
            f"{len(frame)} rows, {missing:,} candles missing of {int(frame['expected'].sum()):,}"
        )
    if frame["missing"].any():
        ctx.exit(1)


_PERIOD = {"day": "%Y-%m-%d", "month": "%Y-%m", "year": "%Y"}


@store.command("quality")
@_series_options
@click.option("--jump-sigmas", type=click.FloatRange(min=0, min_open=True),
              default=JUMP_SIGMAS, show_default=True,
              help="A close this many robust sigmas from the one before is a jump.")  # fmt: skip
@click.option("--stale-candles", type=click.IntRange(min=2), default=STALE_CANDLES,
              show_default=True, help="A close the same this many candles is stale.")  # fmt: skip
@click.option("--summary", is_flag=True, help="One row per series (counts per kind) instead.")
@json_option("One JSON object per finding (with --summary: per series).")
def quality(
    symbols: tuple[str, ...], intervals: tuple[str, ...], start: str | None, end: str | None,
    store: str | None, jump_sigmas: float, stale_candles: int, summary: bool, as_json: bool,
) -> None:  # fmt: skip
    """List what looks wrong in the stored candles, one line per finding: a candle's own
    anomalies, price jumps against its neighbours, stale closes. The data is not changed."""
    with _open(store) as candles:
        found, per_series = candles.quality_summary(
            list(symbols), list(intervals), start, end, jump_sigmas=jump_sigmas,
            stale_candles=stale_candles,
        )  # fmt: skip
    frame = per_series if summary else found
    if as_json:
        for row in frame.to_dict("records"):
            echo_json(row)
        return
    if not frame.empty:
        click.echo(frame.to_string(index=False))
    click.echo(f"{len(found)} findings in {len(per_series)} series")


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
