"""The sink's place in its consumer group: one librdkafka consumer, its commits, the end.

A sink reads the data topic as a static member of `<queue_id>-sink` (or the group it is
given) and commits only what the store has. Everything a broker that stalls, restarts or
rebalances can do to that is handled here, so the sink itself only reads, stores and asks
whether the end is committed:

- a fatal consumer (a static member fenced by its own rejoin after a stall) is replaced by a
  new one in the same group, at most `MAX_RENEWALS` times in `RENEWAL_WINDOW_S`;
- commits never wait (librdkafka's synchronous commit has no timeout); their answers come
  back during reads, a refusal (an ACL) is raised, a commit lost to a rebalance is made again
  once the end is known;
- the consumer is dropped, never closed (see `make_bulk_consumer`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from streamforge_nb.exceptions import is_passing_kafka_error, map_confluent_error
from streamforge_nb.kafka.clients import make_bulk_consumer
from streamforge_nb.settings import Settings

__all__ = ["GroupReader"]

log = logging.getLogger("streamforge_nb.sink")

MAX_RENEWALS = 3
RENEWAL_WINDOW_S = 600.0
_MOVED = (
    KafkaError._NO_OFFSET,
    KafkaError._ASSIGNMENT_LOST,
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
)
"""Commit errors that mean a rebalance took the batch's partitions away."""
_REFUSED = (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED)


class GroupReader:
    """Read `topic` as static member `instance_id` of `group_id`; commit what is stored."""

    def __init__(self, settings: Settings, topic: str, *, group_id: str, instance_id: str):
        self.settings = settings
        self.topic = topic
        self.group_id = group_id
        self._config = {
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            # librdkafka prefetches up to this much per partition: it bounds the sink's memory
            # whatever the topic's size.
            "queued.max.messages.kbytes": 32 * 1024,
            "fetch.wait.max.ms": 100,
            # 8 MiB a fetch, not librdkafka's 1 MiB: an eighth of the round trips to the
            # broker. On two busy cores the fetches, not the GIL, kept the stages waiting
            # (/proc schedstat: the read stage asleep in consume() 3.7 us a candle, the check
            # stage's excess wall mostly waiting for a core, 0.2-0.5 us for the GIL); the
            # loop went 0.39-0.50x -> 0.42-0.63x kcat in paired runs of 0.3M and 1M candles.
            # The prefetch stays bounded by queued.max.messages.kbytes above.
            "max.partition.fetch.bytes": 8 * 1024 * 1024,
            # Once its queue holds queued.min.messages (100,000), librdkafka stops fetching
            # for this long before looking again: by default a second, and the sink drains
            # the queue in well under one (the wall of the whole sink: 125k candles/s with
            # it, 220-230k without, same CPU).
            "fetch.queue.backoff.ms": 10,
            # Static membership: a sink restarted after a crash takes its partitions back at
            # once instead of waiting out the dead member's session.
            "group.instance.id": instance_id,
            "session.timeout.ms": 10_000,
            "on_commit": self._committed,
        }
        self._renewals: list[float] = []
        self._commit_refusal: KafkaError | None = None
        self._stored_upto: dict[int, int] = {}  # partition: next offset after what is stored
        self.consumer: Any = make_bulk_consumer(settings, topic, **self._config)

    def read(self, count: int, timeout: float) -> list[Message]:
        """Return up to `count` messages (errors handled here, never returned)."""
        read: list[Message] = self.consumer.consume(count, timeout=timeout)
        if not any(map(Message.error, read)):  # the usual batch: no Python step per message
            return read
        messages = []
        for message in read:
            error = message.error()
            if error is None:
                messages.append(message)
            elif error.code() in _REFUSED:
                raise self._refused(error, f"reading {self.topic}")
            elif _fatal(error):
                self._renew(error)
            else:
                log.warning("consumer: %s", error.str())  # transient: librdkafka retries
        return messages

    def stored(self, positions: list[tuple[int, int]]) -> None:
        """Commit, without waiting, past the (partition, offset)s the store now has.

        Those offsets, not the consumer's position: the sink reads the next batch while it
        stores this one."""
        for partition, offset in positions:
            self._stored_upto[partition] = max(self._stored_upto.get(partition, 0), offset + 1)
        self._raise_refusal()
        try:
            # Only partitions still owned: one a rebalance gave away is its new owner's.
            owned = {tp.partition for tp in self.consumer.assignment()}
            upto = self._stored_upto
            offsets = [TopicPartition(self.topic, p, upto[p]) for p, _ in positions if p in owned]
            if offsets:
                self.consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() in _MOVED or is_passing_kafka_error(exc):
                log.info("offsets not committed now (made again later): %s", exc)
            elif _fatal(error):
                self._renew(error)  # it reads the batch again from the commits
            else:
                raise self._refused(error, "committing offsets") from None

    def end_offsets(self) -> dict[int, int] | None:
        """Every partition's end, or None when the broker did not answer in time (asked
        again on the next round; a refusal such as a missing ACL raises)."""
        try:
            metadata = self.consumer.list_topics(self.topic, timeout=10).topics[self.topic]
            if metadata.error is not None:
                raise KafkaException(metadata.error)
            if not metadata.partitions:  # no answer yet: an empty end would mean "all read"
                return None
            return {
                p: self.consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)[1]
                for p in metadata.partitions
            }
        except KafkaException as exc:
            if is_passing_kafka_error(exc):
                log.warning("the end of %s is not known yet: %s", self.topic, exc)
                return None
            raise self._refused(exc.args[0], f"reading the end of {self.topic}") from None

    def reached(self, end: dict[int, int]) -> bool:
        """Tell whether the group committed every partition's `end`."""
        if all(offset == 0 for offset in end.values()):
            return True
        self._raise_refusal()  # the last batch's commit is refused: never wait on it
        asked = [TopicPartition(self.topic, p) for p in end]
        try:
            answer = self.consumer.committed(asked, timeout=10)
        except KafkaException as exc:  # e.g. the group is still rebalancing: ask again later
            log.info("committed offsets not available yet: %s", exc)
            return False
        committed = {tp.partition: tp.offset for tp in answer}
        if all(committed.get(p, -1) >= offset for p, offset in end.items()):
            return True
        self._commit_lost(committed)
        return False

    def lag(self, last_ms: dict[int, int], now: float) -> list[dict[str, Any]]:
        """Return the lag of each owned partition with something stored (contract
        `PartitionLag`): the end as librdkafka last fetched it (no request to the broker),
        and seconds behind from `last_ms`, the timestamp of the last message stored from it."""
        samples = []
        try:
            owned = self.consumer.assignment()
        except KafkaException:  # a consumer being renewed: no sample this round
            return []
        for tp in sorted(owned, key=lambda tp: tp.partition):
            committed = self._stored_upto.get(tp.partition)
            try:
                _, end = self.consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            if committed is None or end is None or end < 0:
                continue  # nothing stored from it yet, or its end not fetched yet
            behind = max(0, end - committed)
            stamp = last_ms.get(tp.partition)
            # Clamped: a producer's odd timestamp must never make the report invalid.
            seconds = None if stamp is None else min(max(0.0, now - stamp / 1000), 1e9)
            sample = {"partition": tp.partition, "committed": committed, "end": end}
            samples.append(
                {**sample, "messages": behind, "seconds": 0.0 if not behind else seconds}
            )
        return samples

    def drop(self) -> None:
        """Let go of the consumer: dropped, not closed (see `make_bulk_consumer`). Every
        batch the sink finished is committed; what it read past that is read again."""
        self.consumer = None

    def _renew(self, error: KafkaError) -> None:
        """Replace a consumer that hit a fatal error with a new one in the same group.

        A static member whose session timed out (a broker or this process stalled past
        `session.timeout.ms`) is fenced by its own rejoin, and librdkafka makes that fatal:
        the old consumer reads nothing more. The new one starts from the group's commits;
        what was stored but not committed is read again, and upserts by `_key` make that
        harmless. More than `MAX_RENEWALS` in `RENEWAL_WINDOW_S` is no passing trouble.
        """
        now = time.monotonic()
        self._renewals = [t for t in self._renewals if now - t < RENEWAL_WINDOW_S] + [now]
        if len(self._renewals) > MAX_RENEWALS:
            raise self._refused(error, f"reading {self.topic}")
        log.warning("consumer: %s; rejoining the group with a new consumer", error.str())
        self.drop()
        self.consumer = make_bulk_consumer(self.settings, self.topic, **self._config)

    def _committed(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """librdkafka's answer to a commit (called during `consume`)."""
        if error is None:
            return
        if error.code() in _MOVED or is_passing_kafka_error(KafkaException(error)):
            log.info("a commit did not land (made again later): %s", error.str())
        elif not _fatal(error):
            self._commit_refusal = error  # e.g. an ACL: raised by the next commit

    def _raise_refusal(self) -> None:
        """Raise a commit the broker refused (not a passing trouble), as soon as it is known."""
        if self._commit_refusal is not None:
            raise self._refused(self._commit_refusal, "committing offsets")

    def _commit_lost(self, committed: dict[int, int]) -> None:
        """Commit again what this sink stored past the group's commits, for the partitions
        it owns: a commit lost to a rebalance (a stalled broker, a session timeout) is not
        always followed by a re-read, and without it the end is never reached."""
        try:
            owned = {tp.partition for tp in self.consumer.assignment()}
            behind = [
                TopicPartition(self.topic, p, upto)
                for p, upto in self._stored_upto.items()
                if p in owned and upto > committed.get(p, -1)
            ]
            if behind:
                log.info("committing again: %s", {tp.partition: tp.offset for tp in behind})
                self.consumer.commit(offsets=behind, asynchronous=True)
        except KafkaException as exc:  # asked again on the next round
            log.info("committing again failed: %s", exc)

    def _refused(self, error: KafkaError, what: str) -> Exception:
        return map_confluent_error(KafkaException(error), what=what, settings=self.settings)


def _fatal(error: KafkaError) -> bool:
    # librdkafka reports a fenced static member as code _FATAL without the fatal flag.
    return bool(error.fatal()) or error.code() == KafkaError._FATAL
