"""What a queue leaves behind: its executed notebooks (the run's record) and its data topic.

    queue.notebooks()            # where each target's executed notebook is, and whether saved
    queue.notebook("arango-candles")   # open one (nbformat), from a path or any papermill URL
    queue.cleanup()              # delete the data topic once the sink committed its end

The notebooks' places come from the queue's state record (`outputs`), so this works in any
kernel, long after the Jobs and their Pods are gone. A data topic is deleted only when the
queue's sink group has committed every partition's end: nothing the store has not taken is
lost. The DLQ is kept when it holds anything (the rejected messages are evidence) and
deleted with the data topic when empty.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamforge_nb.exceptions import StreamForgeError, kafka_errors
from streamforge_nb.platform.names import data_topic, dlq_topic
from streamforge_nb.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

    from streamforge_nb.control.queue import Queue

__all__ = [
    "cleanup",
    "delete_data_topics",
    "notebooks",
    "open_notebook",
    "queue_record",
    "sink_lag",
]

log = logging.getLogger(__name__)


def queue_record(queue: Queue) -> dict[str, Any]:
    """Return the queue's state record, or raise naming the store that lacks it."""
    from streamforge_nb.store.candles import CandleStore

    where = queue.store or queue.settings.arango_url
    with CandleStore.open(where, settings=queue.settings) as store:
        record = store.queue_state(queue.queue_id)
        if record is not None:
            return record
        raise StreamForgeError(
            f"queue {queue.queue_id} has no state record in {store.url}; pass store= "
            "(where it was launched)"
        )


def notebooks(queue: Queue) -> pd.DataFrame:
    """Return, per target, where its executed notebook is and whether it is there yet."""
    import pandas as pd

    outputs: Mapping[str, str] = queue_record(queue).get("outputs") or {}
    rows = [
        {"target": target, "location": location, "saved": _saved(location)}
        for target, location in sorted(outputs.items())
    ]
    return pd.DataFrame(rows, columns=["target", "location", "saved"]).set_index("target")


def _saved(location: str) -> bool | None:
    """True/False for a path; None for a URL, which only opening it can tell."""
    return None if "://" in location else Path(location).is_file()


def open_notebook(queue: Queue, target: str) -> Any:
    """Return target's executed notebook (an nbformat NotebookNode)."""
    outputs: Mapping[str, str] = queue_record(queue).get("outputs") or {}
    if target not in outputs:
        raise StreamForgeError(
            f"queue {queue.queue_id} has no target {target!r}; it has {sorted(outputs)}"
        )
    location = outputs[target]
    from papermill.iorw import load_notebook_node

    try:
        return load_notebook_node(location)
    except FileNotFoundError:
        raise StreamForgeError(
            f"the notebook of {target} is not at {location} (yet): the Job has not saved it, "
            "or it was written inside a Pod with no runs volume (STREAMFORGE_RUNS_VOLUME)"
        ) from None
    except ImportError as exc:  # e.g. s3:// without boto3
        raise StreamForgeError(
            f"cannot open {location}: {exc} (pip install 'streamforge-nb[s3]' for s3://)"
        ) from None


def cleanup(queue: Queue, *, force: bool = False) -> dict[str, str]:
    """Delete the queue's data topic once its sink committed the end; say what happened.

    Refuses (naming each partition's lag) while the sink group is behind, unless `force`.
    """
    record = queue_record(queue)
    topic = str(record.get("data_topic") or data_topic(queue.queue_id))
    group = f"{queue.queue_id}-sink"
    if not force:
        behind = sink_lag(queue.settings, topic, group)
        if behind:
            lag = ", ".join(f"partition {p}: {c} of {e}" for p, (c, e) in sorted(behind.items()))
            raise StreamForgeError(
                f"the sink of {queue.queue_id} has not committed the end of {topic} ({lag}); "
                "wait for it to finish, or cleanup(force=True) to drop what it has not stored"
            )
    return delete_data_topics(queue.settings, topic)


def sink_lag(settings: Settings, topic: str, group: str) -> dict[int, tuple[int, int]]:
    """Partitions of `topic` whose committed offset in `group` is short of the end:
    {partition: (committed, end)}; {} when the group has everything or the topic is gone."""
    from kafka import TopicPartition

    from streamforge_nb.kafka.clients import make_consumer

    # A consumer in the group that never subscribes: it reads the group's commits from the
    # coordinator without joining, so the sinks are not rebalanced.
    consumer = make_consumer(settings, group_id=group, enable_auto_commit=False)
    try:
        with kafka_errors(f"reading {topic} and group {group}", settings.kafka_bootstrap_servers):
            numbers = consumer.partitions_for_topic(topic) or set()
            ends = consumer.end_offsets([TopicPartition(topic, p) for p in numbers])
            done = {tp.partition: consumer.committed(tp) for tp in ends}
    finally:
        consumer.close()
    return {
        tp.partition: (done[tp.partition] or 0, end)
        for tp, end in ends.items()
        if end > 0 and (done[tp.partition] or 0) < end
    }


def delete_data_topics(settings: Settings, topic: str) -> dict[str, str]:
    """Delete `topic` and its DLQ when empty; return {topic: "deleted" | "kept: ..." | ...}."""
    from kafka import TopicPartition

    from streamforge_nb.kafka.clients import make_admin, make_consumer

    dlq = dlq_topic(topic)
    consumer = make_consumer(settings, enable_auto_commit=False)
    try:
        with kafka_errors(f"looking at {dlq}", settings.kafka_bootstrap_servers):
            existing = consumer.topics()
            numbers = (consumer.partitions_for_topic(dlq) or set()) if dlq in existing else set()
            ends = consumer.end_offsets([TopicPartition(dlq, p) for p in numbers])
    finally:
        consumer.close()
    rejected = sum(ends.values())
    result = {topic: "deleted" if topic in existing else "absent"}
    doomed = [topic] if topic in existing else []
    if dlq in existing:
        if rejected:
            result[dlq] = f"kept: {rejected} rejected message(s) to look at"
        else:
            result[dlq], doomed = "deleted", [*doomed, dlq]
    if doomed:
        admin = make_admin(settings)
        try:
            with kafka_errors(f"deleting {', '.join(doomed)}", settings.kafka_bootstrap_servers):
                admin.delete_topics(doomed)
        finally:
            admin.close()
    log.info("cleanup of %s: %s", topic, result)
    return result
