"""Ingest: candles per second from a filled data topic into the embedded store, by the sink.

Against a local broker started in a temporary directory, the topic filled once, then each
of `--runs` rounds times, back to back on the same topic:
  anchor 1: the topic's raw read rate by `kcat -C -e` (Debian's kcat, librdkafka, no decoding);
  anchor 2: a plain confluent-kafka loop: batch consume, `json.loads` of each value, nothing
            else (no checks, no store, no commits): what a hand-written consumer costs;
            then the same loop with the sink's fetch.queue.backoff.ms (10 ms), since
            librdkafka's default pause (a second, once 100,000 messages wait) bounds it too;
  sink:     `python -m streamforge_nb.workers.sink` in a subprocess (validate, batch-write to
            the embedded CandleStore, commit offsets), its own group and store each round,
            with its peak RSS and CPU seconds. Two figures, both honest: the process from
            start to exit (interpreter start, imports, topics, group join and the store's
            close included: what a user waits for), and the sink's own loop, from its first
            message read to its last commit (its final log line): the rate the anchors,
            timed on a warm process, compare with.
The sink's rates, and their ratios to each anchor of the same round, print as min/median/max.
Optionally, a one-candle-per-write sink (`--single N`, on a prefix, once).

    .venv/bin/python bench/ingest.py [--count 1000000] [--runs 3] [--single 0]
    .venv/bin/python bench/ingest.py --count 5000000 --runs 1     # the memory figure
    .venv/bin/python bench/ingest.py --profile bench/flames/sink.svg   # py-spy of one more
        sink: a flame graph (.svg), speedscope (.json) or py-spy's collapsed stacks (other);
        with --gil, of the thread holding the GIL only
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from confluent_kafka import Consumer, Message, Producer

from streamforge_nb.kafka.clients import make_admin
from streamforge_nb.platform.contract import Candle, decode_candle, encode
from streamforge_nb.platform.topics import TopicSpec, ensure_topics
from streamforge_nb.settings import Settings
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.testing import CandleGenerator, local_broker
from streamforge_nb.workers.group import GroupReader
from streamforge_nb.workers.sink_stages import _READ_STEP

QUEUE_ID = "wf-btcusdt-api_candles_1m-20200101-bench01"
TOPIC = f"{QUEUE_ID}-data"
START_MS = 1577836800000  # 2020-01-01
SINK = "sink -> embedded store, to exit (candles/s)"
SINK_LOOP = "sink, first message to last commit (candles/s)"
_SINK_LINE = re.compile(r"stored (\d+) candles in ([0-9.]+) s from the first message read")
_STAGE_LINE = re.compile(r"(CPU|wall) per candle by stage: (.*)")
STAGES = ("read", "check", "store")


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


def json_loads_rate(bootstrap: str, count: int, group: str, **config: object) -> float:
    """Read the topic with a plain confluent-kafka loop that only `json.loads` each value."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            **config,
        }
    )
    started = time.perf_counter()
    consumer.subscribe([TOPIC])
    done = 0
    while done < count:
        for message in consumer.consume(10_000, timeout=1.0):
            if message.error():
                continue
            json.loads(message.value())
            done += 1
    took = time.perf_counter() - started
    consumer.close()
    return count / took


def consume_rate(settings: Settings, count: int, group: str, values: bool) -> Consumed:
    """Read the topic to its end with the sink's own consumer (`GroupReader`: its settings,
    its group options) calling only `consume(2000)`, as the sink's read stage does; with
    `values`, also take each message's `.value()` into a list (kept a batch of 20,000 long,
    as the sink's), the least any decoder needs. Nothing else: no checks, store or commits.

    Timed as the sink's loop is: from the first message read to the last."""
    reader = GroupReader(settings, TOPIC, group_id=group, instance_id=f"{group}-1")
    consumer = reader.consumer
    done, first, batch = 0, 0.0, list[bytes | None]()
    cpu, thread = time.process_time(), time.thread_time()
    while done < count:
        messages = consumer.consume(_READ_STEP, timeout=0.1)
        if messages and not done:
            first = time.perf_counter()
            cpu, thread = time.process_time(), time.thread_time()
        done += len(messages)
        if values:
            batch += map(Message.value, messages)
            if len(batch) >= 20_000:
                batch = []
    took = time.perf_counter() - first
    used = Consumed(count / took, time.process_time() - cpu, time.thread_time() - thread)
    reader.drop()  # as the sink lets go of it (see make_bulk_consumer)
    return used


class Consumed(NamedTuple):
    """A consume-only loop's rate (messages/s) and CPU seconds: the whole process's
    (librdkafka's own threads included) and the calling thread's alone."""

    rate: float
    cpu: float
    thread_cpu: float


def sink_rate(
    bootstrap: str,
    store_dir: Path,
    count: int,
    group: str,
    profile: Path | None = None,
    gil: bool = False,
) -> tuple[float, float, float, float]:
    """Run the sink to the end of the topic; return (candles/s to exit, candles/s of its
    loop, peak RSS MiB, CPU s)."""
    env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PATH": "/usr/bin:/bin"}
    spy: list[str] = []
    if profile is not None:
        py_spy = Path(sys.executable).with_name("py-spy")
        if not py_spy.exists():  # not a locked dependency (yet): the bench says so, loudly
            raise SystemExit(f"{py_spy} not found: {sys.executable} -m pip install py-spy")
        kind = {".svg": "flamegraph", ".json": "speedscope"}.get(profile.suffix, "raw")
        # --nolineno: one box a function, not a line: a flame graph small enough to commit.
        spy = [str(py_spy), "record", "--format", kind, "--nolineno", "-r", "100"]
        # --gil: only the thread holding the GIL is sampled: on two cores the sink's stages
        # wait for each other there, and this shows who holds it.
        spy += ["--gil"] if gil else []
        spy += ["-o", str(profile), "--"]
    log = store_dir.with_name(f"{store_dir.name}.log")
    err = log.open("wb")  # its JSON log lines: the loop's own timing is the last
    started = time.perf_counter()
    proc = subprocess.Popen(
        [
            *spy,
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
            "--group-id",
            group,
        ],
        env=env,
        stderr=err,
    )
    err.close()  # the sink has its own copy
    # The sink's own high-water mark, read from /proc while it runs: rusage would also count
    # the parent's pages the child shared between fork and exec.
    peak_kib = 0
    while True:
        # wait4: the sink's own CPU seconds too, a figure a loaded machine blurs less.
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        for sink_pid in [proc.pid, *_children(proc.pid)] if profile else [proc.pid]:
            peak_kib = max(peak_kib, _vm_hwm_kib(sink_pid))
        # Short: the sink's exit is seen at most this late (0.2 s before: ~0.1 s, 3%, of a
        # million candles' time to exit counted against the sink).
        time.sleep(0.02)
    took = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, "the sink failed"
    with CandleStore.open(f"local://{store_dir}") as store:
        stored = len(store.load("BTCUSDT", "1m", START_MS, START_MS + count * 60_000))
    assert stored == count, f"sink stored {stored} of {count}"
    loop = _loop_rate(log, count)
    return count / took, loop, peak_kib / 1024, usage.ru_utime + usage.ru_stime


def _loop_rate(log: Path, count: int) -> float:
    """Return the candles/s the sink logged for its loop (first message to last commit)."""
    for line in reversed(log.read_text(errors="replace").splitlines()):
        try:
            found = _SINK_LINE.search(json.loads(line).get("msg", ""))
        except (ValueError, AttributeError):
            continue
        if found:
            assert int(found[1]) == count, f"the sink logged {found[1]} of {count} stored"
            return count / float(found[2])
    # A sink from before the line existed (a before-and-after run): its loop is not known.
    print(f"the sink logged no rate line ({log})", file=sys.stderr)
    return float("nan")


def _stage_cpu(log: Path, what: str = "CPU") -> dict[str, float]:
    """Return the us per candle of each sink stage, `what` "CPU" (its own thread's) or
    "wall" (at work), as the sink logged it (NaN for a sink from before the line existed)."""
    for line in reversed(log.read_text(errors="replace").splitlines()):
        try:
            found = _STAGE_LINE.search(json.loads(line).get("msg", ""))
        except (ValueError, AttributeError):
            continue
        if found and found[1] == what:
            parts = dict(part.split()[:2] for part in found[2].split(", "))
            return {stage: float(parts.get(stage, "nan")) for stage in STAGES}
    return dict.fromkeys(STAGES, float("nan"))


def _children(pid: int) -> list[int]:
    """Return the child processes of `pid` (py-spy's: the sink it runs)."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


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


def _spread(values: list[float]) -> tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)


def main() -> None:
    parser = argparse.ArgumentParser()
    # A million: the process's fixed costs (interpreter, imports, group join, ~1-2 s) are a
    # fifth of the to-exit figure at half a million, less here; both figures print anyway.
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--single",
        type=int,
        default=0,
        help="candles for the one-write-per-candle anchor (0 skips it)",
    )
    parser.add_argument(
        "--profile", type=Path, help="py-spy profile of an extra sink run (.svg, .json, raw)"
    )
    parser.add_argument(
        "--gil", action="store_true", help="profile only the thread holding the GIL"
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
        if args.profile:  # apart from the timed runs: py-spy slows what it samples
            profiled = Path(tmp) / "profiled"
            sink_rate(bootstrap, profiled, args.count, "bench-profiled", args.profile, args.gil)
            shutil.rmtree(profiled)
            print(f"py-spy profile of a sink run: {args.profile}")
        figures: dict[str, list[float]] = {}
        for run in range(args.runs):
            kcat = kcat_rate(bootstrap, args.count)
            loads = json_loads_rate(bootstrap, args.count, f"bench-loads-{run}")
            # The same loop with the sink's fetch.queue.backoff.ms: librdkafka's default
            # (a second's pause once 100,000 messages wait) bounds the plain loop too.
            tuned = json_loads_rate(
                bootstrap, args.count, f"bench-tuned-{run}", **{"fetch.queue.backoff.ms": 10}
            )
            # The ceiling of any sink on confluent-kafka's Python API: its consume() alone.
            bare = consume_rate(settings, args.count, f"bench-consume-{run}", values=False)
            taken = consume_rate(settings, args.count, f"bench-values-{run}", values=True)
            store = Path(tmp) / f"store-{run}"
            rate, loop, peak, cpu = sink_rate(bootstrap, store, args.count, f"bench-sink-{run}")
            stages = _stage_cpu(store.with_name(f"{store.name}.log"))
            walls = _stage_cpu(store.with_name(f"{store.name}.log"), "wall")
            shutil.rmtree(store)
            print(
                f"run {run + 1}: kcat {kcat:,.0f}/s, consume + json.loads {loads:,.0f}/s, "
                f"sink to exit {rate:,.0f}/s ({rate / kcat:.2f}x kcat, {rate / loads:.2f}x "
                f"loop), sink's loop {loop:,.0f}/s ({loop / kcat:.2f}x kcat, "
                f"{loop / loads:.2f}x loop), peak RSS {peak:,.0f} MiB, {cpu:.1f} CPU s"
            )
            print(
                f"run {run + 1}: consume() only {bare.rate:,.0f}/s ({bare.rate / kcat:.2f}x "
                f"kcat), consume() + .value() {taken.rate:,.0f}/s ({taken.rate / kcat:.2f}x "
                f"kcat); the sink's loop is {loop / bare.rate:.2f}x consume() only"
            )
            per, rd = 1e6 / args.count, stages["read"]  # per: CPU seconds to us a candle
            for name, value in (
                ("anchor, kcat -C -e raw read (candles/s)", kcat),
                ("anchor, consume + json.loads loop (candles/s)", loads),
                (SINK, rate),
                ("sink to exit / kcat", rate / kcat),
                ("sink to exit / consume + json.loads loop", rate / loads),
                (SINK_LOOP, loop),
                ("sink's loop / kcat", loop / kcat),
                ("sink's loop / consume + json.loads loop", loop / loads),
                ("anchor, that loop, fetch.queue.backoff.ms 10", tuned),
                ("sink's loop / that loop, backoff 10 ms", loop / tuned),
                # The most a sink on confluent-kafka's Python API could reach: the sink's
                # consumer doing nothing but consume(2000) until the end, then also
                # taking .value() of each message (the least any decoder needs).
                ("consume() only, sink's settings (candles/s)", bare.rate),
                ("consume() only / kcat", bare.rate / kcat),
                ("consume() + .value() (candles/s)", taken.rate),
                ("consume() + .value() / kcat", taken.rate / kcat),
                ("sink's loop / consume() only", loop / bare.rate),
                ("consume() only CPU per candle, process (us)", bare.cpu * per),
                ("  of which the calling thread (us)", bare.thread_cpu * per),
                ("consume() + .value() CPU per candle (us)", taken.cpu * per),
                # What the sink's consume calls cost of its CPU: the consume-only process
                # (librdkafka's threads included) against the sink's whole process.
                ("consume() only CPU / sink CPU", bare.cpu / cpu),
                ("  calling thread / sink's read stage thread", bare.thread_cpu * per / rd),
                ("sink peak RSS (MiB)", peak),
                ("sink CPU (user + system) per candle (us)", cpu / args.count * 1e6),
                # Each stage's own thread, without waits: the figure a loaded machine blurs
                # least (librdkafka's threads and the process's start are in none).
                *(
                    (f"  of which the {stage} stage's thread(s) (us)", stages[stage])
                    for stage in STAGES
                ),
                # The stage whose wall is nearest the loop's (1e6 / its rate) is its wall; the
                # check's is summed over its two threads (two batches are checked at once).
                *(
                    (f"sink's {stage} stage at work (us per candle)", walls[stage])
                    for stage in STAGES
                ),
            ):
                figures.setdefault(name, []).append(value)
        print(f"{args.runs} runs, min / median / max:")
        for name, values in figures.items():
            low, mid, high = (f"{v:,.2f}" if v < 100 else f"{v:,.0f}" for v in _spread(values))
            print(f"  {name:<48} {low} / {mid} / {high}")
        if args.single:
            single = single_write_rate(bootstrap, Path(tmp) / "single", args.single)
            print(
                f"anchor, one write per candle:          {single:>10,.0f} candles/s "
                f"(the sink's median is {_spread(figures[SINK])[1] / single:.0f}x)"
            )


if __name__ == "__main__":
    main()
