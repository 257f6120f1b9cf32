"""`streamforge-nb local cluster up|down|status`: the real single-node cluster for a laptop.

    kubeconfig = cluster_up()      # starts it in the background; returns the kubeconfig's path
    cluster_status()               # {"running": True, "kubeconfig": ..., "nodes": {...}, ...}
    cluster_down()                 # stops it; nothing is left behind

The cluster is `local_node` (local/cluster/node.py) held open by a background process
(`python -m streamforge_nb.local.cluster.service serve <dir>`) until `cluster_down()` sends
it SIGTERM.
Its files live in `$STREAMFORGE_HOME/cluster` (default ~/.streamforge-nb/cluster); the admin
kubeconfig is `cluster/kubeconfig`, so `KUBECONFIG=$(...)/kubeconfig` and then
`Workflow.launch(node_launcher(...))`, kubectl or helm work against it. Needs root, like the
node itself (`node_unavailable()` says why not).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from streamforge_nb.exceptions import ProcessExited, StartTimeout, StreamForgeError
from streamforge_nb.process import read_state, spawn, terminate_group, wait_ready
from streamforge_nb.settings import local_home

__all__ = ["cluster_dir", "cluster_down", "cluster_status", "cluster_up"]

_STATE = "cluster.json"


def cluster_dir() -> Path:
    """Where the laptop cluster keeps its files: $STREAMFORGE_HOME/cluster."""
    return local_home() / "cluster"


def _state(directory: Path) -> dict[str, Any] | None:
    return read_state(directory / _STATE)


def cluster_up(directory: Path | None = None, *, timeout: float = 300.0) -> Path:
    """Start the cluster in the background (if it is not running); return its kubeconfig.

    Raises `StreamForgeError` with the reason (not root, binaries missing, a component that
    did not start, with its log tail).
    """
    from streamforge_nb.local.cluster.node import node_unavailable
    from streamforge_nb.local.cluster.parts import check_socket_room

    directory = directory or cluster_dir()
    state = _state(directory)
    if state:
        return Path(state["kubeconfig"])
    run = Path(directory).resolve() / "run"
    check_socket_room(run)  # here, before anything is made: not in the background's log
    reason = node_unavailable()
    if reason:
        raise StreamForgeError(f"no local cluster: {reason}")
    shutil.rmtree(run, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / _STATE).unlink(missing_ok=True)
    process, log = spawn(
        [sys.executable, "-m", "streamforge_nb.local.cluster.service", "serve", str(directory)],
        directory / "serve.log",
    )
    try:
        wait_ready(process, lambda: _state(directory) is not None, log=log, timeout=timeout)
    except ProcessExited as exc:
        raise StreamForgeError(f"the local cluster did not start:\n{exc.tail}") from None
    except StartTimeout:
        terminate_group(process, grace=120.0)  # the node's own teardown takes a while
        raise StreamForgeError(
            f"the local cluster did not start within {timeout:.0f} s; see {log.path}"
        ) from None
    state = _state(directory)
    assert state is not None  # what wait_ready waited for
    return Path(state["kubeconfig"])


def cluster_down(directory: Path | None = None, *, timeout: float = 120.0) -> bool:
    """Stop the cluster; return whether one was running."""
    directory = directory or cluster_dir()
    state = _state(directory)
    if not state:
        (directory / _STATE).unlink(missing_ok=True)
        return False
    # SIGTERM to the server alone: it tears the node down itself; SIGKILL if that hangs.
    terminate_group(int(state["pid"]), grace=timeout, leader_only=True)
    (directory / _STATE).unlink(missing_ok=True)
    return True


def cluster_status(directory: Path | None = None) -> dict[str, Any]:
    """Whether the cluster runs, its kubeconfig, API server and Node conditions."""
    directory = directory or cluster_dir()
    state = _state(directory)
    if not state:
        return {"running": False, "directory": str(directory)}
    status: dict[str, Any] = {"running": True, **state}
    try:
        from kubernetes import client, config

        api = config.new_client_from_config(config_file=state["kubeconfig"])  # type: ignore[no-untyped-call]
        nodes = client.CoreV1Api(api).list_node().items
        status["nodes"] = {
            str(n.metadata and n.metadata.name): {
                c.type: c.status for c in (n.status and n.status.conditions) or []
            }
            for n in nodes
        }
        api.close()
    except Exception as exc:  # status reports, never raises
        status["error"] = str(exc)
    return status


def _serve(directory: Path) -> None:
    """Hold the node open until SIGTERM (the background half of `cluster_up`)."""
    from streamforge_nb.local.cluster.node import local_node

    stop = False

    def on_term(_signum: int, _frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    with local_node(directory / "run") as node:
        kubeconfig = directory / "kubeconfig"
        shutil.copy2(node.kubeconfig, kubeconfig)
        state = {
            "pid": os.getpid(),
            "kubeconfig": str(kubeconfig),
            "server": node.api.host,
            "node_ip": node.node_ip,
            "started": time.time(),
            "start_seconds": node.timings,
        }
        (directory / _STATE).write_text(json.dumps(state))
        while not stop:
            time.sleep(0.5)
    (directory / _STATE).unlink(missing_ok=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        try:
            _serve(Path(sys.argv[2]))
        except StreamForgeError as exc:  # the reason is what `cluster_up` shows: no traceback
            sys.exit(str(exc))
    else:
        sys.exit("usage: python -m streamforge_nb.local.cluster.service serve <directory>")
