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
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer

from streamforge_nb.kafka.clients import make_admin
from streamforge_nb.platform.contract import Candle, decode_candle, encode
from streamforge_nb.platform.topics import TopicSpec, ensure_topics
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.testing import CandleGenerator, local_broker

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
    lines = 0
    # Count as it streams: holding kcat's output would inflate this process (and, through
    # fork, what the sink's rusage reports).
    with subprocess.Popen(
        [kcat, "-C", "-b", bootstrap, "-t", TOPIC, "-e", "-q", "-o", "beginning"],
        stdout=subprocess.PIPE,
    ) as proc:
        assert proc.stdout is not None
        while chunk := proc.stdout.read(1 << 20):
            lines += chunk.count(b"\n")
    took = time.perf_counter() - started
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
    # The sink's own high-water mark, read from /proc while it runs: rusage would also count
    # the parent's pages the child shared between fork and exec.
    peak_kib = 0
    while proc.poll() is None:
        peak_kib = max(peak_kib, _vm_hwm_kib(proc.pid))
        time.sleep(0.2)
    took = time.perf_counter() - started
    assert proc.returncode == 0, "the sink failed"
    with CandleStore.open(f"local://{store_dir}") as store:
        stored = len(store.load("BTCUSDT", "1m", START_MS, START_MS + count * 60_000))
    assert stored == count, f"sink stored {stored} of {count}"
    return count / took, peak_kib / 1024


def _vm_hwm_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:  # it just exited
        pass
    return 0


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
