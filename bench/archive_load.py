"""Archive load: a year of 1m candles from 12 monthly archives into a data topic, by the loader.

In one run, against a local broker started in a temporary directory, each case three times:
  anchor 1: by hand, without the platform: pandas.read_csv of the 12 zips + to_parquet;
  anchor 2: `kcat -P` producing the same messages (keys and values the loader sends, from a
            file written beforehand) with the loader's producer settings (idempotent,
            acks=all, murmur2 partitioner);
  loader:   `python -m streamforge_nb.workers.loader --source archive` in a subprocess,
            from start to exit (checksums, parsing, encoding, publishing, telemetry), with
            its peak RSS;
  end to end (--end-to-end): `Workflow.candles(..., source="archive").launch("local")` into
            the embedded store, the archives served over HTTP in Binance's layout, from the
            launch to `Queue.wait` returning (goal, issue 20: <= 20x by hand).
  batch (--symbols N, N > 1; only this case and its anchor run): N symbols x the months as
            one `Batch.candles(..., source="archive").launch("local")` into the embedded
            store, from the launch to `Batch.wait` returning, against pandas on the same
            N x 12 zips (goal, issue 20: 5 symbols x a year <= 5x by hand).
Prints min/median/max of each and the ratios (goal, issue 20: loader >= 0.5x kcat -P).

The 12 GENERATED archives (`streamforge_nb.testing.write_archive`, 2023, BTCUSDT) are cached
in ~/.cache/streamforge-nb/bench-archives (about a minute to make the first time).

    .venv/bin/python bench/archive_load.py [--runs 3] [--months 12]
    PYTHONPATH=/path/to/older/checkout .venv/bin/python bench/archive_load.py   # "before"
    .venv/bin/python bench/archive_load.py --end-to-end    # also launch("local") to the store
    .venv/bin/python bench/archive_load.py --symbols 5 --runs 1   # the 5-symbol Batch
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import functools
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd

from streamforge_nb.exchange.archives import KLINE_CSV_HEADER
from streamforge_nb.platform.names import data_topic, new_short_id, queue_id
from streamforge_nb.settings import Settings
from streamforge_nb.testing import local_broker, read_topic, write_archive
from streamforge_nb.workers.publish import PRODUCER_CONFIG

SYMBOL, INTERVAL, YEAR = "BTCUSDT", "1m", 2023
SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT")
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
ARCHIVES = CACHE / "streamforge-nb" / "bench-archives"
# The loader's own producer settings (of the package being timed), so kcat batches alike.
KCAT_CONFIG = {
    "enable.idempotence": "true",
    "acks": "all",
    "linger.ms": str(PRODUCER_CONFIG["linger.ms"]),
    "batch.size": str(PRODUCER_CONFIG["batch.size"]),
    "partitioner": "murmur2_random",
}


def archives(months: int, symbol: str = SYMBOL) -> list[Path]:
    """Return the cached monthly archives of the year, writing those missing."""
    paths = []
    for month in range(1, months + 1):
        path = ARCHIVES / f"{symbol}-{INTERVAL}-{YEAR}-{month:02d}.zip"
        if not path.with_name(path.name + ".CHECKSUM").exists():
            write_archive(ARCHIVES, symbol, INTERVAL, f"{YEAR}-{month:02d}")
        paths.append(path)
    return paths


def new_queue() -> str:
    return queue_id(SYMBOL, f"archive_candles_{INTERVAL}", dt.date(YEAR, 1, 1), new_short_id())


def time_range(months: int) -> str:
    end = f"{YEAR + 1}-01-01" if months == 12 else f"{YEAR}-{months + 1:02d}-01"
    return f"{YEAR}-01-01:{end}"


def by_hand(paths: list[Path], out: Path) -> tuple[float, float]:
    """pandas: read the zips' CSVs, write one Parquet file; return wall and CPU seconds."""
    started, cpu = time.perf_counter(), time.process_time()
    frames = [pd.read_csv(p, header=None, names=list(KLINE_CSV_HEADER)) for p in paths]
    pd.concat(frames, ignore_index=True).to_parquet(out / "year.parquet")
    return time.perf_counter() - started, time.process_time() - cpu


def messages_file(paths: list[Path], out: Path) -> tuple[Path, int]:
    """Write the loader's messages as `key<TAB>value` lines for kcat; return it and the count."""
    from streamforge_nb.exchange.archives import archive_candles
    from streamforge_nb.platform.contract import encode

    target, count = out / "messages.tsv", 0
    with target.open("wb") as f:
        for page in archive_candles(SYMBOL, INTERVAL, paths):
            for candle in page:
                f.write(candle.key.encode() + b"\t" + encode(candle) + b"\n")
                count += 1
    return target, count


def timed_process(
    command: list[str], env: dict[str, str] | None = None
) -> tuple[float, float, float]:
    """Run `command`; return its wall seconds, CPU seconds (user + system) and peak RSS (MiB)."""
    started = time.perf_counter()
    # Not from the checkout: `python -m` would import the package there before PYTHONPATH's.
    proc = subprocess.Popen(command, env=env, cwd=tempfile.gettempdir())
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{command[0]} failed with exit code {code}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def kcat_produce(bootstrap: str, topic: str, messages: Path) -> tuple[float, float]:
    kcat = shutil.which("kcat")
    if kcat is None:
        raise SystemExit("kcat not found: scripts/setup installs it (apt-get install kcat)")
    options = [arg for key, value in KCAT_CONFIG.items() for arg in ("-X", f"{key}={value}")]
    command = [kcat, "-P", "-b", bootstrap, "-t", topic, "-K", "\t", "-l", *options, str(messages)]
    seconds, cpu, _ = timed_process(command)  # kcat -P exits once every message is delivered
    return seconds, cpu


def load(
    settings: Settings, paths: list[Path], qid: str, months: int
) -> tuple[float, float, float]:
    """Run the loader CLI on the archives; return wall and CPU seconds and peak RSS (MiB)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    env["KAFKA_BOOTSTRAP_SERVERS"] = settings.kafka_bootstrap_servers
    command = [
        sys.executable, "-m", "streamforge_nb.workers.loader", "--queue-id", qid,
        "--symbol", SYMBOL, "--interval", INTERVAL, "--time-range", time_range(months),
        "--source", "archive", *[arg for p in paths for arg in ("--archive", str(p))],
    ]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        figures = Path(tmp) / "figures.json"
        timed_process([sys.executable, "-c", _LAUNCH, str(figures), *command], env)
        seconds, cpu, peak = json.loads(figures.read_text())
    return seconds, cpu, peak


# Started by a small launcher: a child's peak RSS (ru_maxrss) counts the parent's RSS at its
# fork (Linux keeps the larger across exec), and this process holds pandas frames and the
# messages by then (the loader's was reported as 680-700 MiB; alone it peaks near 400).
# Wall and CPU are the loader's own, taken around it in the launcher.
_LAUNCH = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
code = subprocess.call(sys.argv[2:])
seconds = time.perf_counter() - started
used = resource.getrusage(resource.RUSAGE_CHILDREN)
figures = [seconds, used.ru_utime + used.ru_stime, used.ru_maxrss / 1024]
with open(sys.argv[1], "w") as out:
    json.dump(figures, out)
sys.exit(code)
"""


def spread(values: list[float]) -> str:
    return f"min {min(values):.2f}  median {statistics.median(values):.2f}  max {max(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--end-to-end", action="store_true")
    parser.add_argument("--symbols", type=int, default=1, choices=range(1, len(SYMBOLS) + 1))
    args = parser.parse_args()
    # The Jobs of the launched cases run `python -m` where this runs: from the checkout they
    # would import its package before PYTHONPATH's, and a "before" run would time today's code.
    os.chdir(tempfile.gettempdir())
    if args.symbols > 1:
        batch_main(args.symbols, args.months, args.runs)
        return
    paths = archives(args.months)
    hand, kcat, loader, rss, e2e = [], [], [], [], []
    cpu: dict[str, list[float]] = {"hand": [], "kcat": [], "loader": []}
    with tempfile.TemporaryDirectory() as tmp, local_broker(Path(tmp) / "broker") as broker:
        settings = broker.settings()
        bootstrap = settings.kafka_bootstrap_servers
        messages, count = messages_file(paths, Path(tmp))
        for run in range(args.runs):
            seconds, used = by_hand(paths, Path(tmp))
            hand.append(seconds)
            cpu["hand"].append(used)
            kcat_topic = data_topic(new_queue())
            _create(settings, kcat_topic)
            seconds, used = kcat_produce(bootstrap, kcat_topic, messages)
            kcat.append(seconds)
            cpu["kcat"].append(used)
            qid = new_queue()
            seconds, used, peak = load(settings, paths, qid, args.months)
            loader.append(seconds)
            cpu["loader"].append(used)
            rss.append(peak)
            if run == 0:  # every candle arrived, once
                published = len(read_topic(settings, data_topic(qid), timeout=300))
                if published != count:
                    raise SystemExit(f"the loader published {published} of {count} candles")
            print(f"run {run + 1}: by hand {hand[-1]:.2f} s, kcat -P {kcat[-1]:.2f} s, "
                  f"loader {seconds:.2f} s ({peak:.0f} MiB)", flush=True)  # fmt: skip
            if args.end_to_end:
                e2e.append(end_to_end(settings, paths, Path(tmp) / f"e2e{run}", args.months))
                print(f"run {run + 1}: end to end {e2e[-1]:.2f} s", flush=True)
    print(f"\n{count} candles from {len(paths)} monthly archives, {args.runs} runs")
    print(f"by hand (pandas read_csv + to_parquet) s: {spread(hand)}")
    print(f"kcat -P (same messages)               s: {spread(kcat)}")
    print(f"loader (archives -> data topic)       s: {spread(loader)}")
    print(f"loader candles/s (median): {count / statistics.median(loader):,.0f}")
    # The machine may be shared: CPU seconds tell the work done apart from the waiting.
    for name, values in cpu.items():
        print(f"CPU s (user + system) {name}: {spread(values)}")
    print(f"loader peak RSS MiB: {spread(rss)}")
    print(f"loader / by hand (median): {statistics.median(loader) / statistics.median(hand):.1f}x")
    if e2e:
        print(f"end to end (launch -> wait, store)     s: {spread(e2e)}")
        ratio = statistics.median(e2e) / statistics.median(hand)
        print(f"end to end / by hand (median): {ratio:.1f}x (goal <= 20x)")
    speed = statistics.median(kcat) / statistics.median(loader)
    print(f"loader speed / kcat -P speed (median): {speed:.2f}x (goal >= 0.5x)")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10
    print(f"peak RSS of this process: {own} MiB")


def batch_main(symbols: int, months: int, runs: int) -> None:
    """The batch case: `symbols` x `months` of 1m as one Batch, against pandas on the zips,
    with the CPU seconds of each kind of process the batch ran."""
    names = SYMBOLS[:symbols]
    paths = [p for name in names for p in archives(months, name)]
    hand, batch, hand_cpu = [], [], []
    cpu: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp, local_broker(Path(tmp) / "broker") as broker:
        settings = broker.settings()
        empty = {worker: empty_job_cpu(worker, Path(tmp)) for worker in _JOB_KINDS.values()}
        for run in range(runs):
            seconds, used = by_hand(paths, Path(tmp))
            hand.append(seconds)
            hand_cpu.append(used)
            took, kinds = batch_end_to_end(settings, names, paths, Path(tmp) / f"b{run}", months)
            batch.append(took)
            for kind, value in kinds.items():
                cpu.setdefault(kind, []).append(value)
            print(f"run {run + 1}: by hand {hand[-1]:.2f} s, batch {batch[-1]:.2f} s, CPU s "
                  f"by hand {used:.2f}, batch {kinds[BATCH_CPU]:.1f}", flush=True)  # fmt: skip
    candles = sum(len(pd.read_csv(p, header=None)) for p in paths)
    print(f"\n{candles} candles: {symbols} symbols x {months} monthly archives, {runs} runs")
    print(f"by hand (pandas read_csv + to_parquet) s: {spread(hand)}")
    print(f"batch (launch -> wait, store)          s: {spread(batch)}")
    print(f"batch candles/s (median): {candles / statistics.median(batch):,.0f}")
    ratio = statistics.median(batch) / statistics.median(hand)
    print(f"batch / by hand (median): {ratio:.1f}x (goal <= 5x for 5 symbols x 12 months)")
    print_batch_cpu(cpu, hand, hand_cpu)
    # What every Job costs before its first candle: the batch pays it once per Job.
    fixed = sum(empty[w] * statistics.median(cpu[f"{w} Jobs started"]) for w in empty)
    total = statistics.median(cpu[BATCH_CPU])
    print("a Job that only starts (runner, kernel, the worker's imports), CPU s: "
          + ", ".join(f"{w} {used:.2f}" for w, used in empty.items())
          + f"; times the batch's Jobs: {fixed:.1f} s of its {total:.1f}")  # fmt: skip


def empty_job_cpu(worker: str, tmp: Path) -> float:
    """CPU seconds of a Job that only starts: papermill as the runner calls it, on a
    notebook that imports what the worker's notebook imports, and does nothing."""
    cells = ["from streamforge_nb.workers import run_notebook", f"import {WORKER_MODULES[worker]}"]
    notebook = {
        "cells": [
            {"cell_type": "code", "id": f"c{i}", "execution_count": None, "metadata": {},
             "outputs": [], "source": cell}
            for i, cell in enumerate(cells)
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                    "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }  # fmt: skip
    source = tmp / f"empty_{worker}.ipynb"
    source.write_text(json.dumps(notebook))
    run = (
        "import sys, tempfile\n"
        "from streamforge_nb.workflow.runner import _import_papermill, kernel_over_ipc\n"
        "with tempfile.TemporaryDirectory() as sockets:\n"
        "    _import_papermill().execute_notebook(sys.argv[1], sys.argv[2], kernel_name="
        "'python3', progress_bar=False, config=kernel_over_ipc(sockets))\n"
    )
    out = source.with_name(f"{source.stem}.out.ipynb")
    # wait4's rusage: the runner's and the kernel it waited for.
    return timed_process([sys.executable, "-c", run, str(source), str(out)])[1]


WORKER_MODULES = {"loader": "streamforge_nb.workers.loader", "sink": "streamforge_nb.workers.sink"}


BATCH_CPU = "the batch, all its processes"
# Kinds of process a local Batch runs, told apart by their command lines (see cpu_kind).
_JOB_KINDS = {"loader_candles": "loader", "arango_candles": "sink"}


def print_batch_cpu(cpu: dict[str, list[float]], hand: list[float], hand_cpu: list[float]) -> None:
    """Print the batch's CPU seconds by kind of process against by hand's, and the shortest
    wall that much CPU allows on this machine's cores."""
    cores = len(os.sched_getaffinity(0))
    print("CPU s (user + system), min / median / max:")
    print(f"  {'by hand (pandas, this process)':<52} {spread(hand_cpu)}")
    for kind, values in sorted(cpu.items(), key=lambda kv: -statistics.median(kv[1])):
        if kind.endswith("Jobs started") or " / " in kind or not max(values):
            continue
        print(f"  {kind:<52} {spread(values)}")
        for part, of in sorted(cpu.items(), key=lambda kv: -statistics.median(kv[1])):
            if part.startswith(f"{kind} / ") and max(of):
                print(f"    of which {part.split(' / ', 1)[1]:<41} {spread(of)}")
    total, mid_hand = statistics.median(cpu[BATCH_CPU]), statistics.median(hand)
    print(f"batch CPU / by hand CPU (median): {total / statistics.median(hand_cpu):.1f}x")
    # Even spread perfectly over every core, the batch cannot take less wall than this.
    floor = total / cores
    print(f"floor from the batch's CPU on {cores} cores: {floor:.1f} s = "
          f"{floor / mid_hand:.1f}x by hand's wall (goal <= 5x: {5 * mid_hand:.1f} s)")  # fmt: skip
    # By hand's CPU: an anchor a loaded machine blurs less than its wall.
    mid_cpu = statistics.median(hand_cpu)
    print(f"  = {floor / mid_cpu:.1f}x by hand's CPU seconds")
    if BROKER_CPU in cpu:
        floor = (total + statistics.median(cpu[BROKER_CPU])) / cores
        print(f"  with the broker's CPU too: {floor:.1f} s = {floor / mid_hand:.1f}x by hand's "
              f"wall, {floor / mid_cpu:.1f}x its CPU")  # fmt: skip


BROKER_CPU = "broker (Kafka, shared; not in the batch's sum)"


def batch_end_to_end(
    settings: Settings, symbols: tuple[str, ...], paths: list[Path], home: Path, months: int
) -> tuple[float, dict[str, float]]:
    """Launch one Batch of `symbols` from archives into a new local store; return seconds
    and the CPU seconds of each kind of process it ran."""
    from streamforge_nb.workflow.batch import Batch

    with served_archives(paths, home / "served") as base_url:
        batch = Batch.candles(
            list(symbols), INTERVAL, time_range(months), source="archive", base_url=base_url,
            store=f"local://{home / 'store'}", settings=settings,
        )  # fmt: skip
        with ProcessCpu() as cpu:
            started = time.perf_counter()
            with batch.launch("local", settings=settings, home=home, max_parallel=len(symbols)):
                final = batch.wait(timeout=3600, progress=False)
            took = time.perf_counter() - started
            cpu.wait_jobs_gone(timeout=120)  # their last CPU (kernel shutdown, notebook save)
    if set(final["status"]) != {"finished"}:
        raise SystemExit(f"the batch did not finish: {final.to_dict('index')}")
    written = int(final["records_written"].sum())
    print(f"  the batch's queues recorded {written} records written", flush=True)
    return took, cpu.kinds


@dataclasses.dataclass
class _Seen:
    """A descendant process as last polled: its kind, own CPU s, reaped children's CPU s."""

    kind: str
    ppid: int
    own: float = 0.0
    children: float = 0.0
    threads: dict[str, tuple[str, float]] = dataclasses.field(default_factory=dict)
    """A kernel's threads by id: (group, CPU s)."""


class ProcessCpu:
    """CPU seconds of this process's descendants by kind, polled from /proc while in use,
    plus this process's own (the notebook side: `Batch.wait`, the launch thread, the
    archives' HTTP server). The Jobs' exact total comes from RUSAGE_CHILDREN once they are
    reaped; what a process spent after its last poll shows as "lost between polls"."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.tick = os.sysconf("SC_CLK_TCK")
        self.seen: dict[tuple[int, str], _Seen] = {}  # by (pid, start ticks)
        self.before: dict[tuple[int, str], float] = {}  # own CPU s of those already running
        self.kinds: dict[str, float] = {}
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll_until_stopped, daemon=True)
        self._poller_cpu = 0.0

    def __enter__(self) -> ProcessCpu:
        self._poll()
        self.before = {key: seen.own for key, seen in self.seen.items()}
        self._reaped = _children_cpu()
        self._own = time.process_time()
        self._poller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._poller.join()
        self._poll()
        own = time.process_time() - self._own - self._poller_cpu
        reaped = _children_cpu() - self._reaped  # exact, for the processes reaped since
        runners = {pid: seen for (pid, _), seen in self.seen.items() if "runner" in seen.kind}
        kinds: dict[str, float] = {}
        for key, seen in self.seen.items():
            used = seen.own - self.before.get(key, 0.0)
            if "kernel" in seen.kind and seen.ppid in runners:
                # Once its runner reaped it, the kernel's whole CPU is in the runner's.
                used = max(used, runners[seen.ppid].children)
            kinds[seen.kind] = kinds.get(seen.kind, 0.0) + used
            if seen.threads:
                for group, cpu in seen.threads.values():
                    kinds[f"{seen.kind} / {group}"] = kinds.get(f"{seen.kind} / {group}", 0) + cpu
                ended = used - sum(cpu for _, cpu in seen.threads.values())
                lost = f"{seen.kind} / not seen per thread (short threads, the end)"
                kinds[lost] = kinds.get(lost, 0.0) + max(0.0, ended)
        jobs = sum(v for k, v in kinds.items() if "Job" in k and " / " not in k)
        kinds["notebook side (this process: wait, launch, HTTP server)"] = own
        for worker in _JOB_KINDS.values():  # counts, not seconds: printed apart
            kinds[f"{worker} Jobs started"] = sum(
                f"{worker} Jobs' runners" in seen.kind for seen in self.seen.values()
            )
        kinds["Jobs, lost between polls (exact total - polled)"] = max(0.0, reaped - jobs)
        kinds[BATCH_CPU] = max(reaped, jobs) + own
        self.kinds = kinds

    def wait_jobs_gone(self, timeout: float) -> None:
        """Wait until every Job process (runner or kernel) of this process is reaped."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._poll()
            jobs = [key for key, seen in self.seen.items() if "Job" in seen.kind]
            if all(_stat(pid, start) is None for pid, start in jobs):
                return
            time.sleep(self.interval)
        print(f"  Job processes still running after {timeout:.0f} s", file=sys.stderr)

    def _poll_until_stopped(self) -> None:
        started = time.thread_time()
        while not self._stop.wait(self.interval):
            self._poll()
        self._poller_cpu = time.thread_time() - started

    def _poll(self) -> None:
        """Read every descendant's CPU (its own, and its reaped children's), parents first."""
        pending, found = [os.getpid()], list[int]()
        while pending:
            pid = pending.pop(0)
            for task in _listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError):  # it just ended
                    kids = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
                    pending += map(int, kids)
                    found += map(int, kids)
        for pid in found:
            fields = _stat(pid)
            if fields is None:
                continue
            key, ppid = (pid, fields[19]), int(fields[1])
            seen = self.seen.get(key)
            if seen is None:
                seen = self.seen[key] = _Seen(self._kind(pid, ppid), ppid)
            elif seen.kind.startswith("other"):  # seen between fork and exec: look again
                seen.kind = self._kind(pid, ppid)
            seen.own = (int(fields[11]) + int(fields[12])) / self.tick  # utime + stime
            seen.children = (int(fields[13]) + int(fields[14])) / self.tick  # cutime + cstime
            if "kernel" in seen.kind:  # where a worker's CPU goes: librdkafka's or Python's
                for task in _listdir(f"/proc/{pid}/task"):
                    with contextlib.suppress(OSError, IndexError):  # it just ended
                        text = Path(f"/proc/{pid}/task/{task}/stat").read_text()
                        name, rest = text.split("(", 1)[1].rsplit(")", 1)
                        cpu = sum(map(int, rest.split()[11:13])) / self.tick
                        seen.threads[task] = (_thread_group(task == str(pid), name), cpu)

    def _kind(self, pid: int, ppid: int) -> str:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return "other"
        line = " ".join(a.decode(errors="replace") for a in argv)
        # By its parent first: a kernel seen before its exec still has its runner's command.
        parent = next((seen for (p, _), seen in self.seen.items() if p == ppid), None)
        if parent is not None and "runner" in parent.kind:
            worker = parent.kind.split()[0]
            return f"{worker} Jobs' kernels (the {worker}s themselves)"
        for notebook, worker in _JOB_KINDS.items():
            if "streamforge_nb.workflow.runner" in line and notebook in line:
                return f"{worker} Jobs' runners (papermill)"
        if "java" in line or "kafka" in line:
            return BROKER_CPU
        return f"other ({Path(argv[0].decode(errors='replace')).name})"


def _stat(pid: int, start: str | None = None) -> list[str] | None:
    """Return /proc/pid/stat's fields after the command (state first); None once the pid
    is reaped, or is another process's now (`start`: its start ticks)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if start is not None and fields[19] != start else fields


def _thread_group(main: bool, name: str) -> str:
    """Name a kernel thread's group from its thread name (librdkafka and ZeroMQ name theirs;
    Python 3.11's threads and Arrow's keep the process's name: the worker's own threads,
    e.g. the loader's read-ahead and the sink's check and store stages, are among those)."""
    if main:
        return "main thread (cells: the worker's loop)"
    if name.startswith("rdk:"):
        return "librdkafka threads"
    if name.startswith("ZMQ"):
        return "ZeroMQ threads (the kernel's messaging)"
    return "other threads (Python's, Arrow's pool: unnamed)"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


@contextlib.contextmanager
def served_archives(paths: list[Path], served: Path) -> Iterator[str]:
    """Serve `paths` over HTTP in Binance's layout; yield the base URL."""
    from streamforge_nb.exchange.archives import parse_archive_name

    for path in paths:  # Binance's layout, so the loader derives the URLs itself
        named = parse_archive_name(path.name)
        assert named is not None
        for suffix in ("", ".CHECKSUM"):
            target = served / (named.path + suffix)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path.with_name(path.name + suffix))
    handler = functools.partial(QuietHandler, directory=str(served))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()


def end_to_end(settings: Settings, paths: list[Path], home: Path, months: int) -> float:
    """Launch the candle workflow from archives into a new local store; return seconds."""
    from streamforge_nb.workflow import Workflow

    with served_archives(paths, home / "served") as base_url:
        workflow = Workflow.candles(
            SYMBOL, INTERVAL, time_range(months), source="archive", base_url=base_url,
            store=f"local://{home / 'store'}", settings=settings,
        )  # fmt: skip
        started = time.perf_counter()
        with workflow.launch("local", settings=settings, home=home) as queue:
            final = queue.wait(timeout=3600, targets=["loader-candles", "arango-candles"],
                               progress=False)  # fmt: skip
        took = time.perf_counter() - started
    if set(final["status"]) != {"finished"}:
        raise SystemExit(f"the workflow did not finish: {final.to_dict('index')}")
    return took


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _create(settings: Settings, topic: str) -> None:
    from streamforge_nb.kafka.clients import make_admin
    from streamforge_nb.platform.topics import ensure_queue_topics

    admin = make_admin(settings)
    try:
        ensure_queue_topics(admin, settings, topic)
    finally:
        admin.close()


if __name__ == "__main__":
    main()
