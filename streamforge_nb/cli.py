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

from streamforge_nb.exceptions import StreamForgeError
from streamforge_nb.settings import Settings, local_home

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
    from streamforge_nb.local.broker import LocalBroker

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
    from streamforge_nb.local.maven import KAFKA_VERSION, fetch_jars

    click.echo(f"Kafka {KAFKA_VERSION} jars in {fetch_jars(quiet=False)}")


# -- contract and manifests -----------------------------------------------------------------
@cli.command("check")
def check() -> None:
    """Connect to Kafka with the current settings and list the visible topics."""
    from streamforge_nb.kafka.clients import check_connection

    settings = Settings.from_env()
    topics = check_connection(settings)
    click.echo(f"ok: {settings.describe()}, settings from {settings.source}")
    click.echo("topics: " + (", ".join(topics) or "(none visible)"))


@cli.command("topics")
def topics_ensure() -> None:
    """Create the service topics (queue-control, queue-events) if missing."""
    from streamforge_nb.kafka.clients import make_admin
    from streamforge_nb.platform.topics import ensure_topics

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
    from streamforge_nb.platform.topics import render_manifest, strimzi_manifests

    directory.mkdir(parents=True, exist_ok=True)
    for name, resources in strimzi_manifests().items():
        (directory / name).write_text(render_manifest(resources))
        click.echo(directory / name)


@cli.command("schemas")
@click.argument("directory", type=click.Path(path_type=Path), default=Path("schemas"))
def schemas(directory: Path) -> None:
    """Write the JSON Schema of every platform message."""
    from streamforge_nb.platform.schemas import write_schemas

    for path in write_schemas(directory):
        click.echo(path)


# -- queue control --------------------------------------------------------------------------
def _queue(queue_id: str) -> Any:
    from streamforge_nb.control.queue import Queue

    return Queue(queue_id, Settings.from_env())


@cli.command("ping")
@click.option("--queue-id", required=True, help="The queue to ping.")
@click.option("--target", default=None, help="Only workers of this kind answer.")
@click.option("--count", type=int, default=1, show_default=True)
@click.option("--timeout", type=float, default=5.0, show_default=True, help="Seconds per ping.")
@click.option("--expect-pong", is_flag=True, help="Exit 1 unless every ping got a pong.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def ping(
    queue_id: str,
    target: str | None,
    count: int,
    timeout: float,
    expect_pong: bool,
    as_json: bool,
) -> int:
    """Ping a queue's workers and print each pong's round-trip time."""
    from streamforge_nb.control.telemetry import rtt_summary
    from streamforge_nb.exceptions import QueueTimeout

    rtts: list[float] = []
    missed = 0
    with _queue(queue_id) as queue:
        for seq in range(1, count + 1):
            try:
                replies = queue.ping(target, timeout=timeout)
            except QueueTimeout as exc:
                missed += 1
                _say(as_json, {"seq": seq, "queue_id": queue_id, "error": str(exc)}, str(exc))
                continue
            for reply in replies:
                rtts.append(reply.round_trip_s)
                line = (
                    f"pong from {reply.producer}: seq={seq} rtt={reply.round_trip_s * 1000:.2f} ms"
                )
                _say(
                    as_json,
                    {
                        "seq": seq,
                        "producer": reply.producer,
                        "rtt_ms": round(reply.round_trip_s * 1000, 3),
                    },
                    line,
                )
    if rtts:
        stats = rtt_summary(rtts)
        text = (
            f"{len(rtts)} pongs for {count} pings: min {stats['min']:.2f} ms, "
            f"p50 {stats['p50']:.2f} ms, p99 {stats['p99']:.2f} ms"
        )
        _say(
            as_json,
            {
                "summary": {k: round(v, 3) for k, v in stats.items()},
                "pings": count,
                "pongs": len(rtts),
            },
            text,
        )
    return 1 if expect_pong and missed else 0


@cli.command("stop")
@click.option("--queue-id", required=True)
@click.option("--target", default=None, help="Only workers of this kind stop.")
@click.option("--timeout", type=float, default=30.0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def stop(queue_id: str, target: str | None, timeout: float, as_json: bool) -> None:
    """Stop a queue's workers; exit 0 once they answered `interrupted`."""
    with _queue(queue_id) as queue:
        acked = queue.stop(target, timeout=timeout)
    _say(as_json, {"queue_id": queue_id, "interrupted": acked}, f"interrupted: {', '.join(acked)}")


@cli.command("events")
@click.option("--queue-id", required=True)
@click.option("--follow", "-f", is_flag=True, help="Keep waiting for new events.")
@click.option("--timeout", type=float, default=None, help="Stop following after S seconds.")
@click.option("--json", "as_json", is_flag=True)
def events(queue_id: str, follow: bool, timeout: float | None, as_json: bool) -> None:
    """Print a queue's telemetry from the start."""
    import datetime as dt

    from streamforge_nb.platform.contract import encode

    with _queue(queue_id) as queue:
        for event in queue.events(follow=follow, timeout=timeout):
            if as_json:
                click.echo(encode(event).decode())
                continue
            when = dt.datetime.fromtimestamp(event.timestamp, dt.UTC).strftime("%H:%M:%S.%f")[:-3]
            click.echo(
                f"{when} {event.producer:<28} {event.status:<11} "
                f"{event.records_written:>10,} {event.message or ''}".rstrip()
            )


# -- workflows ------------------------------------------------------------------------------
@cli.command("candles")
@click.option("--symbol", required=True)
@click.option("--interval", required=True, help="Binance interval: 1s 1m 5m 1h 1d ...")
@click.option("--time-range", required=True, help="YYYY-MM-DD:YYYY-MM-DD (UTC, end exclusive)")
@click.option("--source", type=click.Choice(["api", "archive"]), default="api", show_default=True)
@click.option("--base-url", default=None, help="Exchange URL (default: Binance's).")
@click.option("--archive", "archives", multiple=True, help="Archive zip URL or path (repeat).")
@click.option("--store", default=None, help="Store URL (default: ARANGO_URL, else embedded).")
@click.option(
    "--launcher", type=click.Choice(["local", "kubernetes"]), default="local", show_default=True
)
@click.option("--namespace", default="stf", show_default=True)
@click.option("--image", default=None, help="Job image (default: the single-user image).")
@click.option("--plan", "plan_only", is_flag=True, help="Print the plan as JSON; launch nothing.")
@click.option("--wait/--no-wait", default=True, show_default=True)
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
        _echo_json(
            {
                "names": plan.names(),
                "start": [s.start.model_dump() for s in plan.steps],
                "jobs": [s.job for s in plan.steps],
            }
        )
        return 0
    options = {"namespace": namespace} if launcher == "kubernetes" else {}
    with workflow.launch(launcher, **options) as queue:
        click.echo(f"launched {plan.queue_id} ({launcher})")
        if not wait:
            return 0
        final = queue.wait(targets=[s.target for s in plan.steps])
    click.echo(final[["status", "records_written", "message"]].to_string())
    return 0 if set(final["status"]) == {"finished"} else 1


@cli.command("queues")
@click.option("--store", default=None, help="Store URL (default: ARANGO_URL, else embedded).")
@click.option("--json", "as_json", is_flag=True)
def queues(store: str | None, as_json: bool) -> None:
    """List launched queues (the platform's queue_state), refreshed from telemetry."""
    from streamforge_nb.control.queue import Queue

    table = Queue.list(store)
    if as_json:
        for queue_id, row in table.iterrows():
            _echo_json({"queue_id": queue_id, **row.to_dict()})
    elif table.empty:
        click.echo("no queues launched yet")
    else:
        click.echo(table[["symbol", "type", "status", "records_written", "created_at"]].to_string())


@cli.command("dashboard")
@click.option("--port", type=int, default=8866, show_default=True, help="0 picks a free port.")
@click.option(
    "--notebooks",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Notebooks to serve (default: $STREAMFORGE_NOTEBOOKS, else the repo's notebooks/).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
def dashboard(port: int, notebooks: Path | None, host: str) -> None:
    """Serve the control and launch panels (Voila) until Ctrl-C."""
    import signal

    from streamforge_nb.ui.dashboard import start_dashboard

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # SIGTERM stops the server as Ctrl-C does

    signal.signal(signal.SIGTERM, interrupt)
    settings = Settings.from_env()
    board = start_dashboard(
        notebooks, port=port, host=host, log_path=local_home() / "logs" / "dashboard.log"
    )
    with board:
        click.echo(f"dashboards of {board.notebooks} at {board.tree_url}")
        for name, url in board.pages().items():
            query = "?queue_id=QUEUE_ID" if name == "control_panel" else ""
            click.echo(f"  {name}: {url}{query}")
        click.echo(f"kernels use {settings.describe()} (settings from {settings.source})")
        click.echo(f"log: {board.log_path}; Ctrl-C stops")
        try:
            code = board.wait()
        except KeyboardInterrupt:
            click.echo("stopping", err=True)
            return
    raise StreamForgeError(f"the dashboard server exited with code {code}; log {board.log_path}")


# Workers parse their own options (argparse, shared with `python -m`), so the CLI hands over.
_PASSTHROUGH = {"ignore_unknown_options": True, "help_option_names": []}


@cli.command("dummy", context_settings=_PASSTHROUGH)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def dummy(args: tuple[str, ...]) -> int:
    """Run the dummy test service (`streamforge-nb dummy --help` for its options)."""
    from streamforge_nb.workers.dummy import main as worker_main

    return worker_main(list(args))


@cli.command("loader", context_settings=_PASSTHROUGH)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def loader(args: tuple[str, ...]) -> int:
    """Load candles from the exchange into a data topic (`loader --help`)."""
    from streamforge_nb.workers.loader import main as worker_main

    return worker_main(list(args))


@cli.command("sink", context_settings=_PASSTHROUGH)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def sink(args: tuple[str, ...]) -> int:
    """Store a data topic's candles in the CandleStore (`sink --help`)."""
    from streamforge_nb.workers.sink import main as worker_main

    return worker_main(list(args))


def _say(as_json: bool, obj: dict[str, Any], text: str) -> None:
    if as_json:
        _echo_json(obj)
    else:
        click.echo(text)


# -- the main job ---------------------------------------------------------------------------
@cli.command("quickstart")
@click.option("--pings", type=int, default=3, show_default=True, help="Round trips to time.")
@click.option(
    "--binance",
    is_flag=True,
    help="Load from Binance's REST API (needs internet) instead of the shipped sample.",
)
@click.option("--symbol", default="BTCUSDT", show_default=True, help="With --binance.")
@click.option("--interval", default="1m", show_default=True, help="With --binance.")
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
