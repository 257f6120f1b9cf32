"""Operating costs: `Queue.dead_letters()` over a big DLQ and `Queue.lag()` over many samples.

Starts a local broker in a temporary directory (or uses `--bootstrap`, PLAINTEXT) and measures:

- `dead_letters()` of a DLQ holding `--dead` messages (default 100k) as the sink writes them
  (reason and source headers, Kafka Connect's too, a ~400-byte value), with the process's
  peak RSS before and after, and `dead_letters(limit=1000)`;
- `lag()` of one queue whose queue-events hold `--samples` sink progress reports with a lag
  sample (default 20k, about 11 hours of a sink reporting every 2 s), and `lag_status()`;
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
                            [--bootstrap HOST:PORT]
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
def _broker(bootstrap: str | None) -> Iterator[Settings]:
    if bootstrap:
        yield Settings(kafka_bootstrap_servers=bootstrap)
        return
    from streamforge_nb.testing import local_broker

    with local_broker(Path(tempfile.mkdtemp(prefix="bench-operate-"))) as broker:
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
    args = parser.parse_args()

    from streamforge_nb.control.lag import judge_lag
    from streamforge_nb.control.queue import Queue
    from streamforge_nb.kafka.clients import make_admin
    from streamforge_nb.platform.names import data_topic, dlq_topic
    from streamforge_nb.platform.topics import TopicSpec, ensure_topics

    with _broker(args.bootstrap) as settings:
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
            lag = _timed(f"lag() over {args.samples:,} samples", queue.lag)
            assert len(lag) == args.samples, len(lag)
            _timed("lag_status() (samples and a live read)", queue.lag_status)
            _timed("anchor: list(events()) of those samples", lambda: list(queue.events()))
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
