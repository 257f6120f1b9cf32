"""Operating costs: `Queue.dead_letters()` over a big DLQ and `Queue.lag()` over many samples.

Starts a local broker in a temporary directory (or uses `--bootstrap`, PLAINTEXT) and measures:

- `dead_letters()` of a DLQ holding `--dead` messages (default 100k) as the sink writes them
  (reason and source headers, Kafka Connect's too, a ~400-byte value), with the process's
  peak RSS before and after, and `dead_letters(limit=1000)`;
- `lag(points=None)` (every sample) of one queue whose queue-events hold `--samples` sink
  progress reports with a lag sample (default 20k, about 11 hours of a sink reporting every
  2 s), and `lag_status()`;
- a real week for `--week-queues` queues (default 100) reporting every `--week-step` seconds
  (default 2: 302,400 reports per queue, 30,240,000 in all) on a queue-events topic of its
  own with 12 partitions, produced by librdkafka with each report's time as the message
  timestamp (the broker's time index is real), in 16 KiB lz4 batches: `Batch.lag()`'s read
  of all the queues (`control.lag_read.read_queues_lag`, 200 points) and one queue's
  `Queue.lag()`, three runs each (min / median / max, CPU), with one queue's full read
  (`points=None`: every message of its partition from the queue's start, the work the old
  `Queue.lag()` did for each queue of a batch) as the anchor;
- `judge_lag` over a synthetic week of samples for 100 queues (one a minute per queue:
  1,008,000 rows), the judgement alone, without reading Kafka;
- `streamforge-nb messages TOPIC --since @<ms> --limit 1` on a topic of `--topic-size`
  messages (default 1M, the issue asks 10M; the start is at 90% of it): process start to the
  first message, with kcat `-o s@<ms> -c 1` as the anchor, and a python -c "import
  streamforge_nb.cli" start for the interpreter's share.

Anchors measured in the same run: a bare librdkafka consumer reading the same DLQ to its end
(no rows made), and a kafka-python read of the queue's events into models (`Queue.events()`),
which `lag()` folded before it read the samples in bulk (`control.lag.read_lag`).

    python bench/operate.py [--dead 100000] [--samples 20000] [--topic-size 1000000]
                            [--week-queues 100] [--week-step 2 (0: no week)]
                            [--bootstrap HOST:PORT | --home DIR] [--week-cache FILE]

`--home DIR` keeps the local broker's folder, and `--week-cache FILE` names the week filled
there (topic, queue ids): a later run with both reads that week again instead of filling one.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from streamforge_nb.settings import Settings


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(what: str, call: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    result = call()
    print(f"{what:<58} {time.perf_counter() - start:8.3f} s   peak RSS {_rss_mib():7.0f} MiB")
    return result


@contextmanager
def _broker(bootstrap: str | None, home: Path | None = None) -> Iterator[Settings]:
    if bootstrap:
        yield Settings(kafka_bootstrap_servers=bootstrap)
        return
    from streamforge_nb.testing import local_broker

    with local_broker(home or Path(tempfile.mkdtemp(prefix="bench-operate-"))) as broker:
        yield broker.settings()


def _producer(settings: Settings) -> Any:
    from confluent_kafka import Producer

    return Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 500_000,
        }
    )


def fill_dlq(settings: Settings, topic: str, count: int) -> None:
    """`count` dead letters with the headers the sink writes."""
    from streamforge_nb.workers.sink import dlq_headers

    producer = _producer(settings)
    source = topic.removesuffix("-dlq")
    start = 1722470400000
    for i in range(count):
        open_ms = start + i * 60_000
        key = f"BTCUSDT_1m_{open_ms}".encode()
        value = (
            f'{{"_key": "BTCUSDT_1m_{open_ms}", "open_time": {open_ms}, "open": "-5", '
            f'"high": "1", "low": "0.5", "close": "1", "volume": "1", "close_time": '
            f'{open_ms + 59_999}, "quote_asset_volume": "1", "number_of_trades": 3, '
            '"taker_buy_base_asset_volume": "1", "taker_buy_quote_asset_volume": "1"}'
        ).encode()
        reason = f"invalid candle 'BTCUSDT_1m_{open_ms}': open -5 is not a finite number > 0"
        headers = dlq_headers(reason, source, 0, i, [])
        while True:
            try:
                producer.produce(topic, key=key, value=value, headers=headers)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    producer.flush(120)


def fill_samples(settings: Settings, queue_id: str, count: int) -> None:
    """`count` sink progress reports with a lag sample, on the queue's partition."""
    from streamforge_nb.kafka.clients import make_consumer
    from streamforge_nb.kafka.partitions import queue_partition
    from streamforge_nb.platform.contract import Loading, encode

    consumer = make_consumer(settings)
    try:
        partition = queue_partition(consumer, settings.queue_events_topic, queue_id, settings)
    finally:
        consumer.close()
    producer = _producer(settings)
    start = time.time() - count * 2
    for i in range(count):
        lag = {"partition": 0, "committed": i * 1000, "end": i * 1000 + 500, "messages": 500}
        event = Loading(
            queue_id=queue_id, producer="arango-candles__bench1", timestamp=start + 2 * i,
            records_written=i * 1000, group=f"{queue_id}-sink", lag=[{**lag, "seconds": 1.5}],
        )  # fmt: skip
        while True:
            try:
                producer.produce(
                    settings.queue_events_topic, key=queue_id.encode(), value=encode(event),
                    partition=partition.partition,
                )  # fmt: skip
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    producer.flush(120)


def bare_read(settings: Settings, topic: str) -> int:
    """The anchor: librdkafka reads the topic to its end, nothing else."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": uuid.uuid4().hex,
         "enable.auto.commit": False}
    )  # fmt: skip
    _, end = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    read = 0
    while read < end:
        read += len(consumer.consume(5000, timeout=1.0))
    consumer.close()
    return read


def fill_timed(settings: Settings, topic: str, count: int) -> int:
    """`count` small messages, one ms apart in time; return the timestamp at 90%."""
    producer = _producer(settings)
    start = int(time.time() * 1000) - count
    for i in range(count):
        while True:
            try:
                producer.produce(topic, value=b"m%d" % i, timestamp=start + i)
                break
            except BufferError:
                producer.poll(0.1)
        if i % 10_000 == 0:
            producer.poll(0)
    producer.flush(300)
    return start + count * 9 // 10


def first_message(settings: Settings, topic: str, since_ms: int) -> tuple[float, float, float]:
    """Seconds to the first message: our CLI, kcat -o s@, and a bare interpreter start."""
    import os
    import shutil
    import subprocess

    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers}
    ours = [sys.executable, "-m", "streamforge_nb.cli", "messages", topic, "--since",
            f"@{since_ms}", "--limit", "1", "-J"]  # fmt: skip
    kcat = [shutil.which("kcat") or "kcat", "-C", "-b", settings.kafka_bootstrap_servers,
            "-t", topic, "-o", f"s@{since_ms}", "-c", "1", "-J", "-q"]  # fmt: skip
    bare = [sys.executable, "-c", "import streamforge_nb.cli"]
    times = []
    for command in (ours, kcat, bare):
        start = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        times.append(time.perf_counter() - start)
        assert done.returncode == 0, done.stderr
        if command is not bare:
            assert f'"ts":{since_ms}' in done.stdout.replace(" ", ""), done.stdout
    return times[0], times[1], times[2]


WEEK_S = 7 * 24 * 3600


def week_ids(queues: int) -> list[str]:
    """Queue ids named for the day the week began (each queue's reads start there)."""
    import datetime as dt

    from streamforge_nb.platform.names import queue_id

    day = dt.datetime.fromtimestamp(time.time() - WEEK_S, dt.UTC).date()
    tag = uuid.uuid4().hex[:3]
    return [
        queue_id(f"Q{i:03d}USDT", "api_candles_1m", day, f"{tag}{i:03x}") for i in range(queues)
    ]


def fill_week(settings: Settings, ids: list[str], step: float) -> int:
    """A week of sink reports, one per `step` seconds per queue, on each queue's partition of
    queue-events, each stamped with its report time (`offsets_for_times` searches a real time
    index); the values are the sink's `loading` reports (checked against the contract once).
    Return how many."""
    from confluent_kafka import Producer

    from streamforge_nb.kafka.partitions import partition_for
    from streamforge_nb.platform.contract import Loading

    # Batches of ~50 reports (16 KiB), lz4: a sink sends one report at a time (smaller batches
    # still), and 30M uncompressed reports would be 9 GiB on this disk.
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "linger.ms": 5,
            "batch.size": 16 * 1024,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    topic = settings.queue_events_topic
    count = len(producer.list_topics(topic, timeout=10).topics[topic].partitions)
    where = [(q.encode(), partition_for(q, count), f"{q}-sink") for q in ids]
    template = (
        '{"status":"loading","queue_id":"%s","producer":"arango-candles__bench1","timestamp":%.3f,'
        '"records_written":%d,"group":"%s","lag":[{"partition":0,"committed":%d,"end":%d,'
        '"messages":500,"seconds":1.5}]}'
    )
    Loading.model_validate_json(template % (ids[0], time.time(), 0, where[0][2], 0, 500))
    start = time.time() - WEEK_S
    sent = 0
    for k in range(int(WEEK_S / step)):
        at = start + k * step
        ms = int(at * 1000)
        for (key, partition, group), qid in zip(where, ids, strict=True):
            value = (template % (qid, at, k * 1000, group, k * 1000, k * 1000 + 500)).encode()
            while True:
                try:
                    producer.produce(topic, key=key, value=value, partition=partition,
                                     timestamp=ms)  # fmt: skip
                    break
                except BufferError:
                    producer.poll(0.1)
            sent += 1
        if k % 100 == 0:
            producer.poll(0)
    producer.flush(600)
    return sent


def _three(what: str, call: Callable[[], Any]) -> Any:
    """Run `call` three times; print min / median / max wall and CPU seconds."""
    import statistics

    walls, cpus = [], []
    for _ in range(3):
        wall, cpu = time.perf_counter(), time.process_time()
        result = call()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    print(
        f"{what:<58} {min(walls):.3f} / {statistics.median(walls):.3f} / {max(walls):.3f} s "
        f"(CPU {statistics.median(cpus):.3f} s)"
    )
    return result, statistics.median(walls)


def week_case(settings: Settings, queues: int, step: float, cache: Path | None = None) -> None:
    """`Batch.lag()` over a real week for `queues` queues, one queue's, and the full read.

    `cache`: a file naming a week filled earlier on this broker (topic, queue ids) for the
    same `queues` and `step`, read again instead of filling one (4 minutes); written after a fill.
    """
    import json

    from streamforge_nb.control.lag_read import read_queues_lag
    from streamforge_nb.control.queue import Queue
    from streamforge_nb.kafka.clients import make_admin
    from streamforge_nb.platform.topics import TopicSpec, ensure_topics
    from streamforge_nb.testing import topic_exists

    kept = json.loads(cache.read_text()) if cache is not None and cache.exists() else None
    if kept is not None and (kept["queues"], kept["step"]) == (queues, step):
        week = settings.model_copy(update={"queue_events_topic": kept["topic"]})
        kept = kept if topic_exists(week, kept["topic"]) else None
    else:
        kept = None
    if kept is not None:
        ids, sent = kept["ids"], kept["sent"]
        print(f"the week of {cache}: {kept['topic']}, filled {kept['filled']}")
    else:
        # queue-events of its own (12 partitions, as the platform's): the other cases'
        # reports, stamped now, would sit in the time index before the week's. Kept forever:
        # its first reports are a week old.
        name = f"bench-week-{uuid.uuid4().hex[:6]}"
        week = settings.model_copy(update={"queue_events_topic": name})
        admin = make_admin(week)
        try:
            spec = TopicSpec(name, partitions=12, config={"retention.ms": "-1"})
            ensure_topics(admin, (spec,))
        finally:
            admin.close()
        ids = week_ids(queues)
        sent = _timed(
            f"fill a week x {queues} queues, a report every {step:g} s",
            lambda: fill_week(week, ids, step),
        )
        if cache is not None:
            filled = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            cache.write_text(json.dumps({"topic": name, "queues": queues, "step": step,
                                         "ids": ids, "sent": sent, "filled": filled}))  # fmt: skip
    print(f"  {sent:,} reports on 12 partitions ({sent // queues:,} per queue)")
    frame, batch_s = _three(
        f"Batch.lag() read: {queues} queues, a week (points=200)",
        lambda: read_queues_lag(week, ids),
    )
    print(f"  {len(frame):,} rows; resolution {frame.attrs['resolution']}")
    with Queue(ids[0], week) as queue:
        one, one_s = _three("Queue.lag(): one queue, a week (points=200)", queue.lag)
        print(f"  {len(one):,} rows")
        full, full_s = _three("anchor: Queue.lag(points=None): one queue, every sample",
                              lambda: queue.lag(points=None))  # fmt: skip
    assert len(full) == sent // queues, len(full)
    print(
        f"  one queue sampled / full read: {one_s / full_s:.3f}; {queues} queues sampled / one "
        f"queue's full read: {batch_s / full_s:.3f} (the full read per queue, as Batch.lag "
        f"did: ~{full_s * queues:.0f} s)"
    )


def synthetic_week(queues: int = 100) -> Any:
    """A lag frame: one sample a minute for a week for each of `queues` sink groups."""
    import numpy as np
    import pandas as pd

    from streamforge_nb.control.lag import LAG_COLUMNS

    per = 7 * 24 * 60
    now = time.time()
    times = np.tile(now - (per - np.arange(per)) * 60.0, queues)
    committed = np.tile(np.arange(per, dtype=np.int64) * 1000, queues)
    frame = pd.DataFrame(
        {
            "time": pd.to_datetime(times, unit="s", utc=True),
            "group": np.repeat([f"wf-q{i:03d}-sink" for i in range(queues)], per),
            "producer": "arango-candles__bench1",
            "partition": 0,
            "committed": committed,
            "end": committed + 500,
            "messages_behind": 500,
            "seconds_behind": 1.5,
            "source": "telemetry",
        }
    )
    return frame[list(LAG_COLUMNS)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dead", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--topic-size", type=int, default=1_000_000)
    parser.add_argument("--bootstrap", default=None)
    parser.add_argument("--week-queues", type=int, default=100)
    parser.add_argument("--week-step", type=float, default=2.0, help="0: no week case")
    parser.add_argument("--home", type=Path, default=None, help="the local broker's folder, kept")
    parser.add_argument(
        "--week-cache", type=Path, default=None,
        help="a file naming the filled week (with --home or --bootstrap: read it again)",
    )  # fmt: skip
    args = parser.parse_args()

    from streamforge_nb.control.lag import judge_lag
    from streamforge_nb.control.queue import Queue
    from streamforge_nb.kafka.clients import make_admin
    from streamforge_nb.platform.names import data_topic, dlq_topic
    from streamforge_nb.platform.topics import TopicSpec, ensure_topics

    with _broker(args.bootstrap, args.home) as settings:
        qid = f"wf-btcusdt-api_candles_1m-20240801-{uuid.uuid4().hex[:6]}"
        dlq = dlq_topic(data_topic(qid))
        admin = make_admin(settings)
        try:
            ensure_topics(admin, (TopicSpec(dlq),))
        finally:
            admin.close()
        _timed(
            f"fill the DLQ with {args.dead:,} dead letters",
            lambda: fill_dlq(settings, dlq, args.dead),
        )
        _timed(
            f"fill queue-events with {args.samples:,} lag samples",
            lambda: fill_samples(settings, qid, args.samples),
        )
        print(f"peak RSS before reading: {_rss_mib():.0f} MiB")
        with Queue(qid, settings) as queue:
            frame = _timed(f"dead_letters() of {args.dead:,}", queue.dead_letters)
            assert len(frame) == args.dead, len(frame)
            _timed("dead_letters(limit=1000)", lambda: queue.dead_letters(limit=1000))
            _timed("anchor: bare librdkafka read of the DLQ", lambda: bare_read(settings, dlq))
            lag = _timed(
                f"lag(points=None) over {args.samples:,} samples",
                lambda: queue.lag(points=None),
            )
            assert len(lag) == args.samples, len(lag)
            _timed("lag_status() (samples and a live read)", queue.lag_status)
            _timed("anchor: list(events()) of those samples", lambda: list(queue.events()))
        if args.week_step > 0:
            week_case(settings, args.week_queues, args.week_step, args.week_cache)
        week = synthetic_week()
        judged = _timed(
            f"judge_lag over a week x 100 queues ({len(week):,} rows)", lambda: judge_lag(week)
        )
        assert len(judged) == 100
        big = f"bench-browse-{uuid.uuid4().hex[:6]}"
        admin = make_admin(settings)
        try:
            ensure_topics(admin, (TopicSpec(big),))
        finally:
            admin.close()
        at = _timed(
            f"fill a topic with {args.topic_size:,} messages",
            lambda: fill_timed(settings, big, args.topic_size),
        )
        for _ in range(3):
            ours, kcat, bare = first_message(settings, big, at)
            print(
                f"messages --since (90% in) to the first message: {ours:.3f} s; kcat -o s@ "
                f"{kcat:.3f} s; python + import streamforge_nb.cli {bare:.3f} s"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
