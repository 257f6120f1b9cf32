"""Kernels started at once on one host: how many fail to start, over TCP ports and over IPC.

Every Job's runner starts a Jupyter kernel. Over TCP, jupyter_client picks the kernel's five
ports by binding port 0 and closing the socket; the kernel binds them when its process is up,
seconds later on a busy machine. Meanwhile any other bind or outgoing connection on the host
may take one of them, and the kernel dies with "ZMQError: Address already in use"
(papermill#511). The runner uses IPC (Unix sockets in a folder of its own) instead.

One run, for each transport in turn: `--rounds` rounds of `--kernels` processes that each
start a kernel with the runner's configuration (`kernel_over_ipc`) or jupyter_client's default
(TCP), wait until it answers, run one cell and shut it down. Meanwhile `--churn` threads open
and close loopback connections, as Kafka clients and HTTP sessions do on a laptop running a
batch. Prints per transport: starts, failures (with the first reason), median time to ready,
and the IPC/TCP ratio of that median. Always exits 0.

    .venv/bin/python bench/kernel_starts.py [--kernels 6] [--rounds 5] [--churn 2]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import socket
import statistics
import tempfile
import threading
import time

from streamforge_nb.workflow.runner import kernel_over_ipc


def start_one(transport: str) -> tuple[bool, float, str]:
    """Start a kernel, run one cell, shut it down: (ok, seconds to ready, reason)."""
    from jupyter_client.manager import KernelManager

    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="streamforge-kernel-") as folder:
        config = kernel_over_ipc(folder) if transport == "ipc" else None
        manager = (
            KernelManager(kernel_name="python3", config=config)
            if config
            else (KernelManager(kernel_name="python3"))
        )
        try:
            manager.start_kernel()
            client = manager.client()
            client.start_channels()
            client.wait_for_ready(timeout=120)
            ready = time.monotonic() - began
            client.execute_interactive("x = 1", timeout=60)
            client.stop_channels()
            return True, ready, ""
        except Exception as exc:  # the reason is the measurement
            return False, time.monotonic() - began, f"{type(exc).__name__}: {exc}"[:200]
        finally:
            if manager.has_kernel:
                manager.shutdown_kernel(now=True)


def churn(stop: threading.Event) -> None:
    """Open and close loopback connections: ephemeral ports taken and freed all the time."""
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    port = server.getsockname()[1]
    while not stop.is_set():
        with contextlib.suppress(OSError):  # e.g. ephemeral ports all in TIME_WAIT
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        with contextlib.suppress(BlockingIOError):
            server.accept()[0].close()
        time.sleep(0.002)  # a few hundred connections a second
    server.close()


def measure(transport: str, kernels: int, rounds: int) -> list[tuple[bool, float, str]]:
    results: list[tuple[bool, float, str]] = []
    with mp.get_context("spawn").Pool(kernels) as pool:
        for _ in range(rounds):
            results += pool.map(start_one, [transport] * kernels)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernels", type=int, default=6, help="kernels started at once")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--churn", type=int, default=2, help="threads making connections")
    args = parser.parse_args()

    stop = threading.Event()
    threads = [threading.Thread(target=churn, args=(stop,), daemon=True) for _ in range(args.churn)]
    for thread in threads:
        thread.start()
    medians: dict[str, float] = {}
    try:
        for transport in ("tcp", "ipc"):
            results = measure(transport, args.kernels, args.rounds)
            failed = [reason for ok, _, reason in results if not ok]
            medians[transport] = (
                statistics.median(t for ok, t, _ in results if ok)
                if len(failed) < len(results)
                else float("nan")
            )
            print(
                f"{transport}: {len(results)} kernel starts ({args.kernels} at once), "
                f"{len(failed)} failed, median {medians[transport]:.2f} s to ready"
                + (f"; first failure: {failed[0]}" if failed else "")
            )
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
    print(f"ipc/tcp median time to ready: {medians['ipc'] / medians['tcp']:.2f}x")


if __name__ == "__main__":
    main()
