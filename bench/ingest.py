"""Ingest: candles per second from a filled data topic into the embedded store, by the sink.

In one run, against a local broker started in a temporary directory:
  anchor 1: the topic's raw read rate by `kcat -C -e` (Debian's kcat, librdkafka, no decoding);
  sink:     `python -m streamforge_nb.workers.sink` in a subprocess (validate, batch-write to
            the embedded CandleStore, commit offsets), timed from start to exit, with its
            peak RSS;
  anchor 2: a one-candle-per-write sink: the same consumer and decoding, one store write per
            candle (on a prefix of the topic, extrapolated to candles per second).

    .venv/bin/python bench/ingest.py [--count 500000] [--single 3000]
    .venv/bin/python bench/ingest.py --count 5000000 --single 0     # the memory figure
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer

from streamforge_nb.clients import make_admin
from streamforge_nb.contract import Candle, decode_candle, encode
from streamforge_nb.exchange_server import CandleGenerator
from streamforge_nb.store import CandleStore
from streamforge_nb.testing import local_broker
from streamforge_nb.topics import TopicSpec, ensure_topics

QUEUE_ID = "wf-btcusdt-api_candles_1m-20200101-bench01"
TOPIC = f"{QUEUE_ID}-data"
START_MS = 1577836800000  # 2020-01-01


def fill(bootstrap: str, count: int) -> float:
    """Publish `count` generated 1m candles; return seconds taken."""
    generator = CandleGenerator()
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    started = time.perf_counter()
    day = 1440 * 60_000
    for day_start in range(START_MS, START_MS + count * 60_000, day):
        end = min(day_start + day, START_MS + count * 60_000)
        for row in generator.rows("BTCUSDT", "1m", day_start, end):
            candle = Candle.from_kline("BTCUSDT", "1m", row)
            while True:
                try:
                    producer.produce(TOPIC, key=candle.key.encode(), value=encode(candle))
                    break
                except BufferError:
                    producer.poll(0.1)
        producer.poll(0)
    producer.flush()
    return time.perf_counter() - started


def kcat_rate(bootstrap: str, count: int) -> float:
    kcat = shutil.which("kcat")
    if kcat is None:
        raise SystemExit("kcat not found: apt-get install kcat")
    started = time.perf_counter()
    out = subprocess.run(
        [kcat, "-C", "-b", bootstrap, "-t", TOPIC, "-e", "-q", "-o", "beginning"],
        capture_output=True,
        check=True,
    ).stdout
    took = time.perf_counter() - started
    lines = out.count(b"\n")
    assert lines == count, f"kcat read {lines} of {count}"
    return count / took


def sink_rate(bootstrap: str, store_dir: Path, count: int) -> tuple[float, float]:
    """Run the sink to the end of the topic; return (candles/s, peak RSS MiB)."""
    env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PATH": "/usr/bin:/bin"}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamforge_nb.workers.sink",
            "--queue-id",
            QUEUE_ID,
            "--store-url",
            f"local://{store_dir}",
            "--no-wait-for-loader",
            "--batch-size",
            "20000",
            "--report-every",
            "5",
        ],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    # wait4 gives this child's own peak RSS (RUSAGE_CHILDREN would include kcat's).
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - started
    assert os.waitstatus_to_exitcode(status) == 0, "the sink failed"
    peak_kib = usage.ru_maxrss
    with CandleStore.open(f"local://{store_dir}") as store:
        stored = len(store.load("BTCUSDT", "1m", START_MS, START_MS + count * 60_000))
    assert stored == count, f"sink stored {stored} of {count}"
    return count / took, peak_kib / 1024


def single_write_rate(bootstrap: str, store_dir: Path, count: int) -> float:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-single",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([TOPIC])
    done = 0
    with CandleStore.open(f"local://{store_dir}") as store:
        started = None
        while done < count:
            for message in consumer.consume(min(500, count - done), timeout=1.0):
                if message.error():
                    continue
                started = started or time.perf_counter()
                store.write([decode_candle(message.value())])
                consumer.commit(message=message, asynchronous=False)
                done += 1
    consumer.close()
    return done / (time.perf_counter() - (started or time.perf_counter()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=500_000)
    parser.add_argument(
        "--single",
        type=int,
        default=3_000,
        help="candles for the one-write-per-candle anchor (0 skips it)",
    )
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp,
        local_broker(Path(tmp) / "kafka") as broker,
    ):
        settings = broker.settings()
        bootstrap = settings.kafka_bootstrap_servers
        admin = make_admin(settings)
        ensure_topics(admin, (TopicSpec(TOPIC),))
        admin.close()
        filled = fill(bootstrap, args.count)
        print(f"topic: {args.count:,} candles filled in {filled:.1f} s")
        kcat = kcat_rate(bootstrap, args.count)
        print(f"anchor, kcat -C -e raw read:           {kcat:>10,.0f} candles/s")
        rate, peak = sink_rate(bootstrap, Path(tmp) / "store", args.count)
        print(
            f"sink -> embedded store (to exit):       {rate:>10,.0f} candles/s "
            f"({rate / kcat:.2f}x kcat), peak RSS {peak:,.0f} MiB"
        )
        if args.single:
            single = single_write_rate(bootstrap, Path(tmp) / "single", args.single)
            print(
                f"anchor, one write per candle:          {single:>10,.0f} candles/s "
                f"(sink is {rate / single:.0f}x)"
            )


if __name__ == "__main__":
    main()
