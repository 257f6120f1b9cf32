"""Queue commands: `ping`, `stop`, `cancel` and `events` (the platform's debug_producer),
`queues`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from streamforge_nb.cli._output import (
    ExitCode,
    F,
    echo_json,
    json_option,
    kafka_options,
    say,
    store_option,
)
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
@click.option("--expect-pong", is_flag=True, help="Exit 4 (timeout) unless every ping got a pong.")
@kafka_options
@json_option(
    "One JSON object per ping, nothing else: seq, queue_id, pongs (the API's PongItem: "
    "producer, round_trip_ms, pong), error (null when answered), sent, partition, offset."
)
def ping(
    queue_id: str,
    target: str | None,
    count: int,
    timeout: float,
    expect_pong: bool,
    as_json: bool,
) -> int:
    """Ping a queue's workers and print each pong's round-trip time."""
    from streamforge_nb.api.models import PongItem
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
                    else {"sent": False, "partition": None, "offset": None}
                )
                refused = refused or sent is None
                ping_record = {"seq": seq, "queue_id": queue_id, "pongs": [], **where}
                say(as_json, {**ping_record, "error": str(exc)}, str(exc))
                continue
            pongs = []
            for reply in replies:
                rtts.append(reply.round_trip_s)
                rtt_ms = reply.round_trip_s * 1000
                pongs.append(
                    PongItem(producer=reply.producer, round_trip_ms=rtt_ms, pong=reply.pong)
                )
                if not as_json:
                    click.echo(f"pong from {reply.producer}: seq={seq} rtt={rtt_ms:.2f} ms")
            if as_json:  # the same keys as an unanswered ping's (its place is not known here)
                answered = {"sent": True, "partition": None, "offset": None, "error": None}
                echo_json({"seq": seq, "queue_id": queue_id, "pongs": pongs, **answered})
    if rtts and not as_json:
        stats = rtt_summary(rtts)
        click.echo(
            f"{len(rtts)} pongs for {count} pings: min {stats['min']:.2f} ms, "
            f"p50 {stats['p50']:.2f} ms, p99 {stats['p99']:.2f} ms"
        )
    # A ping the broker did not take is a failure whether or not pongs were expected.
    if refused:
        return ExitCode.FAILED
    return ExitCode.TIMEOUT if expect_pong and missed else ExitCode.OK


@click.command("stop")
@_queue_id_option("to stop")
@_target_option("stop")
@click.option("--timeout", type=SECONDS, default=30.0, help="Seconds to wait for `interrupted`.")
@kafka_options
@json_option(
    "One JSON object, the API's StopResponse (queue_id, acknowledged), with error: null, "
    "or the reason when nobody acknowledged in time (exit 4)."
)
def stop(queue_id: str, target: str | None, timeout: float, as_json: bool) -> None:
    """Stop a queue's workers; exit 0 once they answered `interrupted`, 4 on a timeout."""
    from streamforge_nb.api.models import StopResponse
    from streamforge_nb.exceptions import QueueTimeout

    with _queue(queue_id) as queue:
        try:
            acked = queue.stop(target, timeout=timeout)
        except QueueTimeout as exc:
            if as_json:  # a script reads the answer on stdout; the error line goes to stderr
                echo_json({**StopResponse(queue_id=queue_id, acknowledged=[]).model_dump(),
                           "error": str(exc)})  # fmt: skip
            raise
    response = StopResponse(queue_id=queue_id, acknowledged=acked)
    say(as_json, {**response.model_dump(), "error": None}, f"interrupted: {', '.join(acked)}")


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
@store_option("Store URL holding the queue state (default: ARANGO_URL, else embedded).")
@kafka_options
@json_option("One JSON object, the API's CancelResponse: queue_id, producers.")
def cancel(
    queue_id: str, target: str | None, grace: float, kill_grace: float, store: str | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Stop a queue for sure: stop, wait GRACE for `interrupted`, then delete its Jobs."""
    from streamforge_nb.api.models import CancelResponse, ProducerCancel
    from streamforge_nb.cli._output import json_value
    from streamforge_nb.control.queue import Queue
    from streamforge_nb.settings import Settings

    with Queue(queue_id, Settings.from_env(), store=store) as queue:
        frame = queue.cancel(grace=grace, kill_grace=kill_grace, target=target)
    producers = [
        ProducerCancel(producer=str(producer), **json_value(
            {"status": row["status"], "cancel": row["cancel"], "message": row["message"]}
        ))
        for producer, row in frame.iterrows()
    ]  # fmt: skip
    if as_json:
        echo_json(CancelResponse(queue_id=queue_id, producers=producers))
        return
    for p in producers:
        click.echo(f"{p.producer}: {p.cancel} ({p.status}) {p.message or ''}".rstrip())


_STORE = store_option("Store URL holding the queue state (default: ARANGO_URL, else embedded).")


@click.command("cleanup")
@_queue_id_option("to clean up")
@_STORE
@click.option("--force", is_flag=True, help="Delete even what the sink has not committed.")
@kafka_options
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
@kafka_options
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
@kafka_options
@json_option("One JSON object per event, as sent (the contract's event).")
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
@store_option()
@kafka_options
@json_option("One JSON object per queue, oldest first: the API's QueueSummary.")
def queues(store: str | None, as_json: bool) -> None:
    """List launched queues (the platform's queue_state), refreshed from telemetry."""
    from streamforge_nb.control.queue import Queue

    table = Queue.list(store)
    if as_json:
        for queue_id, row in table.iterrows():
            echo_json(_summary(str(queue_id), row.to_dict()))
    elif table.empty:
        click.echo("no queues launched yet")
    else:
        click.echo(table[["symbol", "type", "status", "records_written", "created_at"]].to_string())


def _summary(queue_id: str, row: dict[str, Any]) -> Any:
    """A row of `Queue.list()` as the API's `QueueSummary` (one model serialises both)."""
    from streamforge_nb.api.models import QueueSummary
    from streamforge_nb.cli._output import model_from_row

    status = row.get("status")
    return model_from_row(
        QueueSummary,
        row,
        queue_id=queue_id,
        status=status if isinstance(status, str) else "launched",
    )
