"""Ping round trip through Kafka: the library against the physical floor and kafka-python defaults.

Starts a local broker in a temporary directory (or uses `--bootstrap`, PLAINTEXT) and the real
dummy service in a subprocess (`python -m streamforge_nb.workers.dummy --queue-id Q
--metrics-port 0`, broker from KAFKA_BOOTSTRAP_SERVERS), then measures in one run:

(a) the library: `Queue(queue_id, settings).ping()` on one long-lived Queue, timed around the
    call (what a notebook user waits for);
(b) the anchor: the same request/reply the way kafka-python's docs show it, with its DEFAULT
    settings and one long-lived pair of clients: `KafkaProducer(bootstrap_servers=...)`
    (acks=all, idempotent, linger_ms=0) sends the `PingCommand` and `flush()`es;
    `KafkaConsumer("queue-events", bootstrap_servers=..., group_id=...)` (subscribe with a
    group: auto_offset_reset=latest, fetch_max_wait_ms=500, fetch_min_bytes=1) is polled
    until the pong carrying the ping's correlation id arrives.

(c) the physical anchor, the floor: the same round trip (request on one topic, reply on
    another, through the same broker) made by two processes using librdkafka (confluent-kafka)
    with latency settings (linger.ms=0, acks=1, fetch.wait.max.ms=10, Nagle off), and no
    Python logic in between beyond the minimum: an echo process (`--echo`) consumes the
    request topic and produces each value unchanged to the reply topic; the requester
    produces a unique value and polls the reply topic until it comes back.

(a), (b) and (c) alternate ping by ping (which one goes first swaps every round) so both see the
same broker warm-up, garbage collections and neighbours; `--warmup` rounds are dropped. Both
talk to the same dummy service. Then, for context, `--cold` one-off pings each with fresh
clients (a new Queue; new default clients + group join). Prints median / p99 / min / max in
ms and the targets (library median <= 10 ms and within 1.5x of the physical floor).
Exits 0 with the figures (a missed target is a figure too); exits 2 with the reason when any
client (the library, the anchor or the floor) fails: a bench that aborted has no figures.

    python bench/ping.py [--count 300] [--warmup 50] [--cold 5] [--bootstrap HOST:PORT]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer

from streamforge_nb.control.queue import Queue
from streamforge_nb.platform.contract import PingCommand, Pong, decode_event, encode, message_key
from streamforge_nb.settings import Settings
from streamforge_nb.testing import local_broker, unique_name

TARGET_MEDIAN_MS = 10.0
TARGET_FLOOR_RATIO = 1.5

# librdkafka settings for the lowest latency on one request/reply (the physical anchor).
LOW_LATENCY = {
    "linger.ms": 0,
    "acks": 1,
    "socket.nagle.disable": True,
    "fetch.wait.max.ms": 10,
    "fetch.min.bytes": 1,
    "enable.auto.commit": False,
    "enable.partition.eof": False,
}
_PRODUCER_KEYS = ("linger.ms", "acks", "socket.nagle.disable")
_CONSUMER_KEYS = ("socket.nagle.disable", "fetch.wait.max.ms", "fetch.min.bytes",
                  "enable.auto.commit", "enable.partition.eof")  # fmt: skip


def _rd_producer(bootstrap: str) -> object:
    from confluent_kafka import Producer

    return Producer({"bootstrap.servers": bootstrap, **{k: LOW_LATENCY[k] for k in _PRODUCER_KEYS}})


def _rd_consumer_at_end(bootstrap: str, topic: str) -> object:
    """A librdkafka consumer assigned partition 0 of `topic` at its end (no group join)."""
    from confluent_kafka import OFFSET_END, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-ping-floor",
                         **{k: LOW_LATENCY[k] for k in _CONSUMER_KEYS}})  # fmt: skip
    low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    del low
    consumer.assign([TopicPartition(topic, 0, high if high >= 0 else OFFSET_END)])
    return consumer


def echo_main(bootstrap: str, request_topic: str, reply_topic: str) -> int:
    """The physical anchor's far end: every request value goes back unchanged, at once."""
    consumer: Any = _rd_consumer_at_end(bootstrap, request_topic)
    producer: Any = _rd_producer(bootstrap)
    print("ready", flush=True)
    while True:
        message = consumer.poll(1.0)
        if message is None or message.error():
            continue
        producer.produce(reply_topic, message.value())
        producer.poll(0)


class Floor:
    """The requester of the physical anchor (librdkafka, latency settings, no group)."""

    def __init__(self, settings: Settings) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

        self.bootstrap = settings.kafka_bootstrap_servers
        suffix = uuid.uuid4().hex[:8]
        self.request_topic = f"bench-floor-req-{suffix}"
        self.reply_topic = f"bench-floor-rep-{suffix}"
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for future in admin.create_topics(
            [NewTopic(t, 1, 1) for t in (self.request_topic, self.reply_topic)]
        ).values():
            future.result(30)
        self.echo = subprocess.Popen(
            [sys.executable, __file__, "--echo", self.bootstrap, self.request_topic,
             self.reply_topic], stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.echo.stdout is not None
        if self.echo.stdout.readline().strip() != "ready":
            raise SystemExit("the physical anchor's echo process did not start")
        self.consumer: Any = _rd_consumer_at_end(self.bootstrap, self.reply_topic)
        self.producer: Any = _rd_producer(self.bootstrap)
        self.lost = 0

    def request(self, timeout: float = 10.0) -> float | None:
        token = uuid.uuid4().bytes
        started = time.perf_counter()
        self.producer.produce(self.request_topic, token)
        self.producer.poll(0)
        deadline = started + timeout
        while (left := deadline - time.perf_counter()) > 0:
            message = self.consumer.poll(left)
            if message is not None and not message.error() and message.value() == token:
                return time.perf_counter() - started
        return None

    def one(self) -> float:
        return retried("floor", self.request, self)

    def close(self) -> None:
        stop(self.echo)  # type: ignore[arg-type]
        self.consumer.close()
        self.producer.flush(5)


MAX_LOST = 5
"""Requests in a row that may go unanswered before a client's measurement is given up."""


def retried(name: str, request: Callable[[], float | None], counter: Any) -> float:
    """Return `request()`'s round trip, resent while it times out (`counter.lost` counts)."""
    for _ in range(MAX_LOST):
        if (took := request()) is not None:
            return took
        counter.lost += 1
    raise SystemExit(f"{name}: {MAX_LOST} requests in a row got no reply within 10 s")


def abort_loudly(script: str, run: Callable[[], int]) -> int:
    """Return `run()`; when any client fails, say which and why and return 2, never 0."""
    try:
        return run()
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # a check's SystemExit, or any client's error
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            raise
        reason = exc.code if isinstance(exc, SystemExit) else f"{type(exc).__name__}: {exc}"
        print(f"{script} ABORTED, no figures: {reason}", file=sys.stderr, flush=True)
        return 2


@contextlib.contextmanager
def broker_settings(bootstrap: str | None) -> Iterator[tuple[Settings, str]]:
    """Yield settings for `bootstrap`, or for a fresh local broker in a temp dir."""
    if bootstrap:
        yield Settings(kafka_bootstrap_servers=bootstrap, source="--bootstrap"), "given"
        return
    with tempfile.TemporaryDirectory(prefix="bench-ping-") as home:
        started = time.perf_counter()
        with local_broker(Path(home)) as broker:
            took = time.perf_counter() - started
            yield broker.settings(), f"local, started in {took:.1f} s"


@contextlib.contextmanager
def dummy_service(settings: Settings, queue_id: str) -> Iterator[subprocess.Popen[bytes]]:
    """Run the real dummy service for `queue_id` in a subprocess; stop it on exit.

    Its JSON log goes to a temporary file, shown if it exits before answering."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    env["KAFKA_BOOTSTRAP_SERVERS"] = settings.kafka_bootstrap_servers
    command = [sys.executable, "-m", "streamforge_nb.workers.dummy", "--queue-id", queue_id,
               "--metrics-port", "0"]  # fmt: skip
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, env=env, stderr=log)
        try:
            yield process
        except SystemExit:
            if process.poll() is not None:
                log.seek(0)
                print(log.read().decode(errors="replace")[-3000:], file=sys.stderr)
            raise
        finally:
            stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_until_serving(queue: Queue, process: subprocess.Popen[bytes], timeout: float) -> float:
    """Ping until the dummy answers; return how long that took."""
    started = time.perf_counter()
    while True:
        if process.poll() is not None:
            raise SystemExit(f"the dummy service exited with code {process.returncode}")
        try:
            queue.ping(timeout=1.0)
            return time.perf_counter() - started
        except TimeoutError:
            if time.perf_counter() - started > timeout:
                raise SystemExit(f"the dummy service did not answer within {timeout:g} s") from None


def interleaved(measures: list[Callable[[], float]], count: int, warmup: int) -> list[list[float]]:
    """Alternate the measurements (rotating which goes first every round) so all see the
    same broker warm-up, garbage collections and noisy neighbours; drop `warmup` rounds."""
    samples: list[list[float]] = [[] for _ in measures]
    n = len(measures)
    for i in range(warmup + count):
        for j in range(n):
            k = (i + j) % n
            took = measures[k]()
            if i >= warmup:
                samples[k].append(took)
    return samples


def library_ping(queue: Queue) -> Callable[[], float]:
    def one() -> float:
        started = time.perf_counter()
        queue.ping(timeout=10.0)
        return time.perf_counter() - started

    return one


class Anchor:
    """The same request/reply with kafka-python's DEFAULT producer and consumer settings.

    Only `bootstrap_servers` and a `group_id` are given: the textbook "subscribe to the topic
    with a group" usage. Defaults that matter here: producer acks=all (idempotent),
    linger_ms=0; consumer fetch_max_wait_ms=500, fetch_min_bytes=1,
    auto_offset_reset=latest. With `latest`, a ping sent before the group assigned the
    partition and resolved its position loses its pong, so `join()` waits for both first.
    """

    def __init__(self, settings: Settings, queue_id: str) -> None:
        bootstrap = settings.kafka_bootstrap_servers.split(",")
        self.queue_id = queue_id
        self.control_topic = settings.queue_control_topic
        self.producer = KafkaProducer(bootstrap_servers=bootstrap)
        self.consumer = KafkaConsumer(
            settings.queue_events_topic,
            bootstrap_servers=bootstrap,
            group_id=f"bench-ping-anchor-{uuid.uuid4().hex[:8]}",
        )
        self.lost = 0

    def join(self, timeout: float = 180.0) -> None:
        """Poll until the group assigned the partitions and their positions are known.

        The first group of a fresh broker waits for __consumer_offsets to be created: on a
        loaded 2-core machine that took over 60 s (issue 20). Not part of any figure."""
        deadline = time.perf_counter() + timeout
        while not self.consumer.assignment():
            if time.perf_counter() > deadline:
                raise SystemExit(f"anchor: no partition assigned within {timeout:g} s")
            self.consumer.poll(timeout_ms=100)
        for partition in self.consumer.assignment():
            self.consumer.position(partition)

    def request(self, timeout: float = 10.0) -> float | None:
        """Send one ping, poll until its pong; return the round trip (None on timeout)."""
        ping = PingCommand.new(self.queue_id)
        started = time.perf_counter()
        self.producer.send(self.control_topic, key=message_key(ping), value=encode(ping))
        self.producer.flush()
        deadline = started + timeout
        while (left := deadline - time.perf_counter()) > 0:
            for records in self.consumer.poll(timeout_ms=int(left * 1000) + 1).values():
                for record in records:
                    event = decode_event(record.value)
                    if isinstance(event, Pong) and event.correlation_id == ping.correlation_id:
                        return time.perf_counter() - started
        return None

    def one(self) -> float:
        return retried("anchor", self.request, self)

    def close(self) -> None:
        self.consumer.close()
        self.producer.close()


def cold_library(settings: Settings, queue_id: str) -> float:
    """A fresh `Queue` and its first pong: what a one-off notebook cell pays."""
    started = time.perf_counter()
    with Queue(queue_id, settings) as queue:
        queue.ping(timeout=10.0)
        return time.perf_counter() - started


def cold_anchor(settings: Settings, queue_id: str) -> float:
    """Fresh default clients, group join, then the first pong."""
    started = time.perf_counter()
    anchor = Anchor(settings, queue_id)
    try:
        anchor.join()
        anchor.one()
        return time.perf_counter() - started
    finally:
        anchor.close()


def summary(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return {"median": statistics.median(ms), "p99": p99, "min": ms[0], "max": ms[-1]}


def row(name: str, s: dict[str, float], unit: str = "ms") -> str:
    return (
        f"  {name:<40} median {s['median']:8.2f}  p99 {s['p99']:8.2f}  "
        f"min {s['min']:8.2f}  max {s['max']:8.2f}  ({unit})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="pings per measurement")
    parser.add_argument("--warmup", type=int, default=50, help="unmeasured rounds first")
    parser.add_argument("--cold", type=int, default=5, help="fresh-client first pings each")
    parser.add_argument("--bootstrap", help="use this PLAINTEXT broker instead of a local one")
    parser.add_argument("--echo", nargs=3, metavar=("BOOTSTRAP", "REQUEST", "REPLY"),
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args()
    if args.echo:
        return echo_main(*args.echo)
    return abort_loudly("bench/ping.py", lambda: run(args))


def run(args: argparse.Namespace) -> int:
    """Measure and print; raise (SystemExit with the reason) when a client fails."""
    with broker_settings(args.bootstrap) as (settings, how):
        queue_id = unique_name("wf-bench-ping")
        print(f"broker: {settings.kafka_bootstrap_servers} ({how}); 2 x {args.count} pings")
        print(f"queue:  {queue_id}; dummy: python -m streamforge_nb.workers.dummy (subprocess)")
        with dummy_service(settings, queue_id) as process, Queue(queue_id, settings) as queue:
            up = wait_until_serving(queue, process, timeout=60.0)
            print(f"dummy answered its first ping {up:.1f} s after it was started")
            anchor = Anchor(settings, queue_id)
            floor = Floor(settings)
            try:
                anchor.join()
                lib_s, anc_s, floor_s = interleaved(
                    [library_ping(queue), anchor.one, floor.one], args.count, args.warmup
                )
            finally:
                anchor.close()
                floor.close()
            cold_lib = [cold_library(settings, queue_id) for _ in range(args.cold)]
            cold_anc = [cold_anchor(settings, queue_id) for _ in range(args.cold)]
    lib, anc, flo = summary(lib_s), summary(anc_s), summary(floor_s)

    ratio = anc["median"] / lib["median"]
    over_floor = lib["median"] / flo["median"]
    print(
        f"\nsteady state: {args.count} pings each, interleaved, after {args.warmup} warm-up rounds"
    )
    print(row("(a) library: Queue.ping()", lib))
    print(row("(b) anchor: kafka-python defaults", anc))
    print(row("(c) floor: librdkafka echo, 2 processes", flo))
    if anchor.lost:
        print(f"  anchor pings that timed out and were resent: {anchor.lost}")
    print(f"  median ratio anchor / library: {ratio:.2f}x")
    print(f"  median ratio library / floor:  {over_floor:.2f}x")
    if args.cold:
        print(f"\ncold: fresh clients + first pong, {args.cold} each")
        print(row("(a) Queue(...) + ping() + close()", summary(cold_lib)))
        print(row("(b) default clients + group join + ping", summary(cold_anc)))

    ok_median = lib["median"] <= TARGET_MEDIAN_MS
    ok_floor = over_floor <= TARGET_FLOOR_RATIO
    print("\ntargets:")
    print(
        f"  library median <= {TARGET_MEDIAN_MS:g} ms: {'met' if ok_median else 'MISSED'} "
        f"({lib['median']:.2f} ms)"
    )
    print(
        f"  library / floor <= {TARGET_FLOOR_RATIO:g}x:  {'met' if ok_floor else 'MISSED'} "
        f"({over_floor:.2f}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
