"""Workflow commands: `candles` (launch), `dashboard` (Voila) and `quickstart` (the main job)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from streamforge_nb.cli._output import echo_json, json_option, kafka_options, store_option
from streamforge_nb.exceptions import StreamForgeError
from streamforge_nb.workers import COUNT, HOST, PORT_OR_ZERO

__all__ = ["candles", "dashboard", "quickstart"]


@click.command("candles")
@click.option("--symbol", required=True, envvar="SYMBOL", help="Exchange symbol, e.g. BTCUSDT.")
@click.option(
    "--interval", required=True, envvar="INTERVAL", help="Binance interval: 1s 1m 5m 1h 1d ..."
)
@click.option(
    "--time-range",
    required=True,
    envvar="TIME_RANGE",
    help="YYYY-MM-DD:YYYY-MM-DD (UTC, end exclusive), or YYYY-MM-DD:now (to the last closed "
    "candle). From 2017-07-14 on; at most STREAMFORGE_MAX_CANDLES_PER_QUEUE candles.",
)
@click.option(
    "--source", type=click.Choice(["api", "archive"]), default="api", help="Candles from."
)
@click.option("--base-url", default=None, help="Exchange URL (default: Binance's).")
@click.option("--archive", "archives", multiple=True, help="Archive zip URL or path (repeat).")
@store_option()
@click.option(
    "--launcher",
    type=click.Choice(["local", "kubernetes"]),
    default="local",
    help="Run the Jobs as local processes or in Kubernetes.",
)
@click.option("--namespace", default="stf", help="Kubernetes namespace of the Jobs.")
@click.option("--image", default=None, help="Job image (default: the single-user image).")
@click.option("--plan", "plan_only", is_flag=True, help="Print the plan as JSON; launch nothing.")
@click.option("--wait/--no-wait", default=True, help="Wait until every step has ended.")
@kafka_options
@json_option(
    "One JSON object when the queue ended (queue_id, launcher, producers: the API's "
    "ProducerStatus); with --no-wait, the API's StartResponse."
)
def candles(
    symbol: str,
    interval: str,
    time_range: str,
    source: str,
    base_url: str | None,
    archives: tuple[str, ...],
    store: str | None,
    launcher: str,
    namespace: str,
    image: str | None,
    plan_only: bool,
    wait: bool,
    as_json: bool,
) -> int:
    """Launch the candle workflow (loader -> sink) as notebook Jobs."""
    from streamforge_nb.workflow.plan import DEFAULT_IMAGE, Workflow

    workflow = Workflow.candles(
        symbol,
        interval,
        time_range,
        source=source,
        base_url=base_url,
        archives=archives,
        store=store,
        namespace=namespace,
        image=image or DEFAULT_IMAGE,
    )
    plan = workflow.plan()
    if plan_only:
        echo_json(
            {
                "names": plan.names(),
                "start": [s.start.model_dump() for s in plan.steps],
                "jobs": [s.job for s in plan.steps],
            }
        )
        return 0
    options = {"namespace": namespace} if launcher == "kubernetes" else {}
    with workflow.launch(launcher, **options) as queue:
        if as_json and not wait:
            echo_json(_started(plan, launcher))
            return 0
        click.echo(f"launched {plan.queue_id} ({launcher})", err=as_json)
        if not wait:
            return 0
        targets = [s.target for s in plan.steps]
        if as_json:
            final = queue.wait(targets=targets, progress=False)
        else:
            from functools import partial

            from streamforge_nb.control.queue import DEFAULT_WAIT_S
            from streamforge_nb.quickstart import wait_with_progress

            # A bar on a terminal; in a log, a line every few seconds instead of \r spam.
            say = partial(click.echo, err=True)
            final = wait_with_progress(queue, targets, DEFAULT_WAIT_S, say)
    if as_json:
        echo_json(_ended(plan.queue_id, launcher, final))
    else:
        click.echo(final[["status", "records_written", "message"]].to_string())
    dead = int(final["dead_letters"].sum())
    if dead:
        from streamforge_nb.control.telemetry import FINISHED_WITH_DEAD_LETTERS

        # Finished, but not whole: the store lacks what the sink refused.
        click.echo(
            f"{FINISHED_WITH_DEAD_LETTERS}: {dead} message(s) refused to the DLQ of "
            f"{queue.queue_id}-data; their reasons are in the sink's log and the DLQ's "
            "`error` headers",
            err=True,
        )
    return 0 if set(final["status"]) == {"finished"} and not dead else 1


def _started(plan: Any, launcher: str) -> Any:
    """The plan as the API answers a start (`StartResponse`)."""
    from streamforge_nb.api.models import StartResponse

    return StartResponse.from_plan(plan, launcher)


def _ended(queue_id: str, launcher: str, final: Any) -> dict[str, Any]:
    """The final status frame as the API's `ProducerStatus` list."""
    from streamforge_nb.api.models import ProducerStatus
    from streamforge_nb.cli._output import model_from_row

    producers = [
        model_from_row(ProducerStatus, row.to_dict(), producer=str(producer))
        for producer, row in final.iterrows()
    ]
    return {"queue_id": queue_id, "launcher": launcher, "producers": producers}


@click.command("dashboard")
@click.option("--port", type=PORT_OR_ZERO, default=8866, help="0 picks a free port.")
@click.option(
    "--notebooks",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Notebooks to serve (default: $STREAMFORGE_NOTEBOOKS, else the package's).",
)
@click.option("--host", type=HOST, default="127.0.0.1", help="Address to listen on.")
@click.option(
    "--token",
    default=None,
    envvar="STREAMFORGE_DASHBOARD_TOKEN",
    show_envvar=True,
    help="What every page URL must carry (default: a random one, printed in the URLs).",
)
@click.option(
    "--no-token",
    is_flag=True,
    help="Serve without a token: any local user can then launch and stop (127.0.0.1 only).",
)
def dashboard(
    port: int, notebooks: Path | None, host: str, token: str | None, no_token: bool
) -> None:
    """Serve the control and launch panels (Voila) until Ctrl-C."""
    import signal

    from streamforge_nb.settings import Settings, local_home
    from streamforge_nb.ui.dashboard import start_dashboard

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # SIGTERM stops the server as Ctrl-C does

    if no_token and token:
        raise click.UsageError("--token and --no-token exclude each other")
    if token is not None and not token.strip():
        raise click.BadParameter("the token is empty (use --no-token to serve without)")
    signal.signal(signal.SIGTERM, interrupt)
    settings = Settings.from_env()
    board = start_dashboard(
        notebooks,
        port=port,
        host=host,
        log_path=local_home() / "logs" / "dashboard.log",
        token="" if no_token else token,
    )
    with board:
        click.echo(f"dashboards of {board.notebooks} at {board.tree_url}")
        for name in board.pages():
            # Like Jupyter's, the URLs carry the token: open them as printed.
            query = {"queue_id": "QUEUE_ID"} if name == "control_panel" else {}
            click.echo(f"  {name}: {board.page_url(name, **query)}")
        click.echo(f"kernels use {settings.describe()} (settings from {settings.source})")
        if not board.token:
            click.echo("no token: any local user can open these pages", err=True)
        click.echo(f"log: {board.log_path}; Ctrl-C stops")
        try:
            code = board.wait()
        except KeyboardInterrupt:
            click.echo("stopping", err=True)
            return
    raise StreamForgeError(f"the dashboard server exited with code {code}; log {board.log_path}")


@click.command("quickstart")
@click.option("--pings", type=COUNT, default=3, help="Round trips to time.")
@click.option(
    "--binance",
    is_flag=True,
    help="Load from Binance's REST API (needs internet) instead of the shipped sample.",
)
@click.option("--symbol", default="BTCUSDT", help="With --binance.")
@click.option("--interval", default="1m", help="With --binance.")
@click.option("--time-range", default=None, help="With --binance (default: yesterday, UTC).")
def quickstart(
    pings: int, binance: bool, symbol: str, interval: str, time_range: str | None
) -> None:
    """The main job: local broker, a pinged worker, candles loaded, stored and charted."""
    from streamforge_nb.quickstart import run_quickstart

    run_quickstart(
        pings=pings,
        binance=binance,
        symbol=symbol,
        interval=interval,
        time_range=time_range,
        echo=click.echo,
    )
