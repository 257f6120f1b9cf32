"""Queue commands: `ping`, `stop`, `cancel` and `events` (the platform's debug_producer),
`queues`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from streamforge_nb.cli._output import F, echo_json, json_option, say
from streamforge_nb.workers import COUNT, NON_NEGATIVE_SECONDS, QUEUE_ID, SECONDS

__all__ = ["cancel", "cleanup", "events", "notebooks", "ping", "queues", "stop"]


def _queue(queue_id: str) -> Any:
    from streamforge_nb.control.queue import Queue
    from streamforge_nb.settings import Settings

    return Queue(queue_id, Settings.from_env())


def _queue_id_option(what: str) -> Callable[[F], F]:
    return click.option(
        "--queue-id",
        type=QUEUE_ID,
        metavar="TEXT",
        required=True,
        envvar="QUEUE_ID",
        show_envvar=True,
        help=f"The queue {what}.",
    )


def _target_option(what: str) -> Callable[[F], F]:
    return click.option("--target", default=None, help=f"Only workers of this kind {what}.")


@click.command("ping")
@_queue_id_option("to ping")
@_target_option("answer")
@click.option("--count", type=COUNT, default=1, help="Pings to send, one after the other.")
@click.option("--timeout", type=SECONDS, default=5.0, help="Seconds to wait for each pong.")
@click.option("--expect-pong", is_flag=True, help="Exit 1 unless every ping got a pong.")
@json_option()
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
    refused = False
    with _queue(queue_id) as queue:
        for seq in range(1, count + 1):
            try:
                replies = queue.ping(target, timeout=timeout)
            except QueueTimeout as exc:
                missed += 1
                sent = getattr(exc, "sent", None)
                where = (
                    {"sent": True, "partition": sent.partition, "offset": sent.offset}
                    if sent is not None
                    else {"sent": False}
                )
                refused = refused or sent is None
                say(
                    as_json,
                    {"seq": seq, "queue_id": queue_id, "error": str(exc), **where},
                    str(exc),
                )
                continue
            for reply in replies:
                rtts.append(reply.round_trip_s)
                rtt_ms = reply.round_trip_s * 1000
                say(
                    as_json,
                    {"seq": seq, "producer": reply.producer, "rtt_ms": round(rtt_ms, 3)},
                    f"pong from {reply.producer}: seq={seq} rtt={rtt_ms:.2f} ms",
                )
    if rtts:
        stats = rtt_summary(rtts)
        say(
            as_json,
            {
                "summary": {k: round(v, 3) for k, v in stats.items()},
                "pings": count,
                "pongs": len(rtts),
            },
            f"{len(rtts)} pongs for {count} pings: min {stats['min']:.2f} ms, "
            f"p50 {stats['p50']:.2f} ms, p99 {stats['p99']:.2f} ms",
        )
    # A ping the broker did not take is a failure whether or not pongs were expected.
    return 1 if refused or (expect_pong and missed) else 0


@click.command("stop")
@_queue_id_option("to stop")
@_target_option("stop")
@click.option("--timeout", type=SECONDS, default=30.0, help="Seconds to wait for `interrupted`.")
@json_option("One JSON object.")
def stop(queue_id: str, target: str | None, timeout: float, as_json: bool) -> None:
    """Stop a queue's workers; exit 0 once they answered `interrupted`."""
    with _queue(queue_id) as queue:
        acked = queue.stop(target, timeout=timeout)
    say(as_json, {"queue_id": queue_id, "interrupted": acked}, f"interrupted: {', '.join(acked)}")


@click.command("cancel")
@_queue_id_option("to cancel")
@_target_option("to cancel")
@click.option(
    "--grace", type=NON_NEGATIVE_SECONDS, default=30.0,
    help="Seconds to wait for `interrupted` before deleting the Jobs.",
)  # fmt: skip
@click.option(
    "--kill-grace", type=NON_NEGATIVE_SECONDS, default=10.0,
    help="Seconds a deleted Job's process gets between SIGTERM and SIGKILL.",
)  # fmt: skip
@click.option(
    "--store", default=None,
    help="Store URL holding the queue state (default: ARANGO_URL, else embedded).",
)  # fmt: skip
@json_option("One JSON object per producer.")
def cancel(
    queue_id: str, target: str | None, grace: float, kill_grace: float, store: str | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Stop a queue for sure: stop, wait GRACE for `interrupted`, then delete its Jobs."""
    from streamforge_nb.control.queue import Queue
    from streamforge_nb.settings import Settings

    with Queue(queue_id, Settings.from_env(), store=store) as queue:
        frame = queue.cancel(grace=grace, kill_grace=kill_grace, target=target)
    for producer, row in frame.iterrows():
        record = {
            "queue_id": queue_id, "producer": producer, "status": row["status"],
            "cancel": row["cancel"], "message": row["message"],
        }  # fmt: skip
        text = f"{producer}: {row['cancel']} ({row['status']}) {row['message'] or ''}"
        say(as_json, record, text.rstrip())


_STORE = click.option(
    "--store", default=None,
    help="Store URL holding the queue state (default: ARANGO_URL, else embedded).",
)  # fmt: skip


@click.command("cleanup")
@_queue_id_option("to clean up")
@_STORE
@click.option("--force", is_flag=True, help="Delete even what the sink has not committed.")
@json_option("One JSON object.")
def cleanup(queue_id: str, store: str | None, force: bool, as_json: bool) -> None:
    """Delete a finished queue's data topic (and its DLQ when empty)."""
    from streamforge_nb.control.queue import Queue
    from streamforge_nb.settings import Settings

    with Queue(queue_id, Settings.from_env(), store=store) as queue:
        result = queue.cleanup(force=force)
    text = "; ".join(f"{topic}: {what}" for topic, what in result.items())
    say(as_json, {"queue_id": queue_id, "topics": result}, text)


@click.command("notebooks")
@_queue_id_option("whose executed notebooks to list")
@_STORE
@json_option("One JSON object per target.")
def notebooks(queue_id: str, store: str | None, as_json: bool) -> None:
    """Say where each target's executed notebook (the run's record) is."""
    from streamforge_nb.control.queue import Queue
    from streamforge_nb.settings import Settings

    with Queue(queue_id, Settings.from_env(), store=store) as queue:
        table = queue.notebooks()
    for target, row in table.iterrows():
        saved = {True: "saved", False: "not there", None: "a URL"}[row["saved"]]
        record = {"target": target, "location": row["location"], "saved": row["saved"]}
        say(as_json, record, f"{target}: {row['location']} ({saved})")


@click.command("events")
@_queue_id_option("to read")
@click.option("--follow", "-f", is_flag=True, help="Keep waiting for new events.")
@click.option("--timeout", type=SECONDS, default=None, help="Stop following after S seconds.")
@click.option("--since", default=None, help="From: 2h (ago; ms s m h d w), @<Unix ms> or ISO.")
@json_option()
def events(
    queue_id: str, follow: bool, timeout: float | None, since: str | None, as_json: bool
) -> None:
    """Print a queue's telemetry from the start (or --since)."""
    from streamforge_nb.control.messages import parse_time
    from streamforge_nb.control.queue import Queue
    from streamforge_nb.control.telemetry import event_line
    from streamforge_nb.settings import Settings

    start = None if since is None else parse_time(since) / 1000
    # `since` is where the history is read from, by the broker's offsets-for-times lookup.
    with Queue(queue_id, Settings.from_env(), since=start) as queue:
        for event in queue.events(follow=follow, timeout=timeout):
            # Control characters in an event's text are escaped, never sent to the terminal.
            click.echo(event_line(event, as_json=as_json))


@click.command("queues")
@click.option("--store", default=None, help="Store URL (default: ARANGO_URL, else embedded).")
@json_option()
def queues(store: str | None, as_json: bool) -> None:
    """List launched queues (the platform's queue_state), refreshed from telemetry."""
    from streamforge_nb.control.queue import Queue

    table = Queue.list(store)
    if as_json:
        for queue_id, row in table.iterrows():
            echo_json({"queue_id": queue_id, **row.to_dict()})
    elif table.empty:
        click.echo("no queues launched yet")
    else:
        click.echo(table[["symbol", "type", "status", "records_written", "created_at"]].to_string())
