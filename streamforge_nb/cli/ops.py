"""Operating commands: `dlq` (read and redrive dead letters), `lag`, `messages`."""

from __future__ import annotations

from typing import Any

import click

from streamforge_nb.cli._output import (
    echo_json,
    json_option,
    json_value,
    kafka_options,
    say,
    store_option,
)
from streamforge_nb.workers import COUNT, QUEUE_ID, SECONDS

__all__ = ["dlq", "lag", "messages"]


def _queue(queue_id: str, store: str | None = None) -> Any:
    from streamforge_nb.control.queue import Queue
    from streamforge_nb.settings import Settings

    return Queue(queue_id, Settings.from_env(), store=store)


def _record(row: dict[str, Any]) -> dict[str, Any]:
    """A frame row as JSON values: missing ones null, times ISO 8601 UTC."""
    record: dict[str, Any] = json_value(row)
    return record


class _DlqGroup(click.Group):
    """`dlq QUEUE_ID` lists (the `show` subcommand); `dlq redrive QUEUE_ID` redrives."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["show", *args]
        return super().parse_args(ctx, args)


@click.group("dlq", cls=_DlqGroup)
def dlq() -> None:
    """Read a queue's dead letters (`dlq QUEUE_ID`) or redrive them (`dlq redrive QUEUE_ID`)."""


@dlq.command("show")
@click.argument("queue_id", type=QUEUE_ID, metavar="QUEUE_ID")
@click.option("--limit", type=COUNT, default=100_000, help="Read at most N dead letters.")
@kafka_options
@json_option("One JSON object per dead letter.")
def show(queue_id: str, limit: int, as_json: bool) -> None:
    """List the messages the sink refused to the queue's DLQ, with counts by reason class."""
    with _queue(queue_id) as queue:
        frame = queue.dead_letters(limit=limit)
    if as_json:
        for row in frame.to_dict("records"):
            echo_json(_record(row))
        return
    if frame.empty:
        click.echo(f"no dead letters in the DLQ of {queue_id}")
        return
    counts = frame["reason_class"].value_counts()
    click.echo(f"{len(frame)} dead letters: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    columns = ["dlq_partition", "dlq_offset", "reason_class", "key", "open_time", "size", "reason"]
    shown = frame[columns].assign(reason=frame["reason"].str.slice(0, 80))
    click.echo(shown.to_string(index=False))


@dlq.command("redrive")
@click.argument("queue_id", type=QUEUE_ID, metavar="QUEUE_ID")
@click.option("--where", default=None, help="A pandas query on the dead letters (default: all).")
@click.option(
    "--dry-run/--apply", default=True,
    help="Only show what would be redriven, or republish what passes the sink's checks.",
)  # fmt: skip
@click.option("--time-range", default=None, help="The sink's TIME_RANGE (default: the queue id's).")
@store_option("Store URL whose gaps to show before (default: the queue's, if recorded).")
@kafka_options
@json_option("One JSON object per dead letter, then one per backfill window, then a summary.")
def redrive(
    queue_id: str, where: str | None, dry_run: bool, time_range: str | None, store: str | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Republish dead letters that pass the sink's checks to the data topic."""
    with _queue(queue_id, store) as queue:
        result = queue.redrive(where, dry_run=dry_run, store=store, time_range=time_range)
    for row in result.plan.to_dict("records"):
        record = _record(row)
        text = f"{row['dlq_partition']}:{row['dlq_offset']} {row['key']}: {row['action']}"
        say(as_json, {"dead_letter": record}, f"{text} {row['why']}".rstrip())
    for row in result.backfill.to_dict("records"):
        say(as_json, {"backfill": _record(row)}, f"backfill {row['time_range']}")
    summary = {"queue_id": queue_id, "dry_run": dry_run, "sent": result.sent}
    say(as_json, {"summary": {**summary, "text": result.summary()}}, result.summary())


@click.command("lag")
@click.argument("queue_id", type=QUEUE_ID, metavar="QUEUE_ID")
@click.option("--follow", "-f", is_flag=True, help="Judge again every --every seconds.")
@click.option("--every", type=SECONDS, default=5.0, help="Seconds between judgements.")
@click.option("--timeout", type=SECONDS, default=None, help="Stop following after S seconds.")
@click.option(
    "--since", default=None,
    help="Samples from: 2h (ago; ms s m h d w), @<Unix ms> or ISO (default: the queue's start).",
)  # fmt: skip
@click.option(
    "--points", type=click.IntRange(min=2), default=200,
    help="Time buckets a long window is read in (the newest samples come in full).",
)  # fmt: skip
@kafka_options
@json_option("One JSON object per sink group (its judgement and latest lag per partition).")
def lag(
    queue_id: str, follow: bool, every: float, timeout: float | None, since: str | None,
    points: int, as_json: bool,
) -> None:  # fmt: skip
    """Judge each sink group of a queue (ok, lagging, stalled, rewinding) and show its lag."""
    import time

    from streamforge_nb.control.lag import judge_lag
    from streamforge_nb.control.lag_read import window_time

    window_time(since)  # a bad time is refused before anything is read
    deadline = None if timeout is None else time.monotonic() + timeout
    with _queue(queue_id) as queue:
        while True:
            frame = queue.lag(live=True, since=since, points=points)
            judged = judge_lag(frame)
            if judged.empty:
                say(as_json, {"queue_id": queue_id, "groups": []}, "no lag samples or commits yet")
            for group, row in judged.iterrows():
                latest = frame[frame["group"] == group].groupby("partition").tail(1)
                parts = [_record(r) for r in latest.drop(columns="group").to_dict("records")]
                record = {"queue_id": queue_id, "group": group, **_record(row.to_dict())}
                text = (
                    f"{group}: {row['status']} ({row['why']}); {row['messages_behind']} "
                    f"messages, {row['seconds_behind']:.1f} s behind"
                )
                say(as_json, {**record, "partitions": parts}, text)
            if not follow or (deadline is not None and time.monotonic() + every > deadline):
                return
            time.sleep(every)


@click.command("messages")
@click.argument("topic")
@click.option("--since", default=None, help="From: 2h (ago; ms s m h d w), @<Unix ms> or ISO.")
@click.option("--until", default=None, help="Until (exclusive), same forms; default: the end now.")
@click.option("--key", default=None, help="Only messages with this key.")
@click.option("--partition", type=click.IntRange(min=0), default=None, help="Only this partition.")
@click.option("--limit", type=COUNT, default=None, help="At most N messages.")
@click.option("-J", "envelope", is_flag=True, help="kcat's JSON envelope, one per line.")
@kafka_options
def messages(
    topic: str, since: str | None, until: str | None, key: str | None, partition: int | None,
    limit: int | None, envelope: bool,
) -> None:  # fmt: skip
    """Print a topic's messages from a time (found by the broker's time index, not a scan)."""
    from streamforge_nb.control.messages import browse, parse_time
    from streamforge_nb.control.telemetry import printable
    from streamforge_nb.settings import Settings

    start = None if since is None else parse_time(since)
    stop = None if until is None else parse_time(until)
    found = browse(
        Settings.from_env(), topic, since=start, until=stop, key=key, partition=partition,
        limit=limit,
    )  # fmt: skip
    for record in found:
        if envelope:
            echo_json(record)
        else:  # kcat's default: the payload, its control characters escaped
            click.echo(printable(record["payload"] or "", 1_000_000))
