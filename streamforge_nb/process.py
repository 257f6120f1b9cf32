"""Process helpers for everything that starts a server or a Job: one way to do each step.

    process, log = spawn(command, log_path)        # own session, output appended to the log
    wait_ready(process, lambda: port_open(port), log=log, timeout=60, what="the server")
    ...
    terminate_group(process)                       # SIGTERM, grace, SIGKILL, bounded waits

`wait_ready` notices the process's death at once (`ProcessExited`) and gives up after its
timeout (`StartTimeout`); both carry the tail of the log written since the start. The
local broker, the Voila dashboards, etcd and kube-apiserver in tests, and local Jobs all use
these helpers. Standard library only, the HTTP parts imported on use.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # urllib.request loads http.client, email and ssl: only HttpProbe needs them
    import ssl

from streamforge_nb.exceptions import ProcessExited, StartTimeout

__all__ = [
    "HttpProbe",
    "LogFile",
    "free_port",
    "pid_alive",
    "pids_mentioning",
    "port_open",
    "read_state",
    "signal_group",
    "spawn",
    "terminate_group",
    "wait_pids_gone",
    "wait_ready",
]

LOOPBACK = "127.0.0.1"
# A tail reads at most this much of the end of a log: enough for any error, never a whole GB.
_TAIL_BYTES = 256 * 1024
_POLL_S = 0.1


# -- ports -----------------------------------------------------------------------------------
def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port nobody listens on now on `host` (IPv4 or IPv6), chosen below the
    kernel's ephemeral range where it can.

    Another process may take it before ours binds it. A port from bind(("", 0)) is one of the
    ephemeral range, which every outgoing connection on the machine also draws its source
    port from: a busy client took such a port from a broker between the choice and the
    broker's bind (seen in tests/test_broker.py under two workers). Below that range only
    a program that asks for the port by number can take it.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    low = min(_ephemeral_low(), _CHOSEN_BELOW)
    for port in random.sample(range(_CHOSEN_FROM, low), min(_TRIES, max(low - _CHOSEN_FROM, 0))):
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# 20000-29999: above the well-known and registered services most machines run (Kafka's
# 9092, Jupyter's 8888, the kubelet's 10250), below Kubernetes' NodePorts (30000-32767).
_CHOSEN_FROM, _CHOSEN_BELOW = 20_000, 30_000
_TRIES = 50


def _ephemeral_low() -> int:
    """The lowest port the kernel gives outgoing connections (Linux; 32768 elsewhere)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def port_open(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    """Tell whether something accepts TCP connections on `host:port`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((host, port)) == 0


# -- logs ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LogFile:
    """A process's log file from `offset` on (the file may hold earlier runs' output).

    `skip` names line starts a tail leaves out (e.g. Java stack frames, `("at ", "... ")`,
    which bury the one line that says what went wrong).
    """

    path: Path
    offset: int = 0
    skip: tuple[str, ...] = ()

    def read(self) -> str:
        """Everything written since `offset` (raises `OSError` when the file is gone)."""
        with self.path.open("rb") as log:
            log.seek(self.offset)
            return log.read().decode(errors="replace")

    def contains(self, text: str) -> bool:
        """Tell whether `text` was written since `offset` (False while there is no file)."""
        try:
            return text in self.read()
        except OSError:
            return False

    def tail(self, lines: int = 30, *, missing: str = "(no log)") -> str:
        """The last `lines` lines written since `offset` (`missing` when there is no file)."""
        try:
            with self.path.open("rb") as log:
                start = max(self.offset, log.seek(0, os.SEEK_END) - _TAIL_BYTES)
                log.seek(start)
                text = log.read().decode(errors="replace")
        except OSError:
            return missing
        recent = text.splitlines()[1:] if start > self.offset else text.splitlines()
        if self.skip:
            recent = [ln for ln in recent if not ln.lstrip().startswith(self.skip)]
        return "\n".join(recent[-lines:])


# -- starting --------------------------------------------------------------------------------
def spawn(
    command: Sequence[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> tuple[subprocess.Popen[bytes], LogFile]:
    """Start `command` in a session of its own; return it and its log from this start on.

    Its own session is its own process group, so `terminate_group` reaches anything it
    forks. stdin is /dev/null; stdout and stderr are appended to `log_path` (its folder is
    created). `env` replaces the environment (default: this process's).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        offset = log.seek(0, os.SEEK_END)
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process, LogFile(log_path, offset)


def wait_ready(
    process: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    *,
    log: LogFile,
    timeout: float | None = None,
    deadline: float | None = None,
    what: str = "the process",
) -> None:
    """Poll `ready()` until it holds, noticing at once when `process` ends.

    Give up after `timeout` seconds or at `deadline` (`time.monotonic()`), whichever comes
    first. Raise `ProcessExited` when the process ended, `StartTimeout` when time ran out;
    both carry `log`'s tail. The process is left as it is: ending it is the caller's choice.
    """
    if timeout is None and deadline is None:
        raise ValueError("wait_ready needs a timeout or a deadline")
    started = time.monotonic()
    limits = (deadline, None if timeout is None else started + timeout)
    end = min(limit for limit in limits if limit is not None)
    while time.monotonic() < end:
        if process.poll() is not None:
            tail = log.tail()
            raise ProcessExited(
                f"{what} exited with code {process.returncode} while starting; "
                f"log {log.path}:\n{tail}",
                what=what,
                log=log,
                tail=tail,
                returncode=process.returncode,
            )
        if ready():
            return
        time.sleep(_POLL_S)
    tail = log.tail()
    raise StartTimeout(
        f"{what} did not start within {end - started:.0f} s; log {log.path}:\n{tail}",
        what=what,
        log=log,
        tail=tail,
        returncode=None,
    )


class HttpProbe:
    """A readiness check: a GET of `url` answers 200, or with a body containing `accept`.

    `last` says what the latest failed try saw (an error, a status, the start of a body),
    for the message of a server that never got ready.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        accept: str | None = None,
        context: ssl.SSLContext | None = None,
        timeout: float = 2.0,
    ) -> None:
        self.url = url
        self.headers = dict(headers or {})
        self.accept = accept
        self.context = context
        self.timeout = timeout
        self.last = "no answer yet"

    def __call__(self) -> bool:
        import urllib.error
        import urllib.request

        try:
            request = urllib.request.Request(self.url, headers=self.headers)
            with urllib.request.urlopen(
                request, timeout=self.timeout, context=self.context
            ) as response:
                status = response.status
                body = response.read().decode("utf-8", errors="replace")
        except urllib.error.HTTPError as exc:
            self.last = f"HTTP {exc.code}: {exc.read().decode('utf-8', errors='replace')[-500:]}"
            return False
        except OSError as exc:  # refused, reset, timed out, TLS (ssl.SSLError is an OSError)
            self.last = str(exc)
            return False
        if (self.accept is None and status == 200) or (
            self.accept is not None and self.accept in body
        ):
            return True
        self.last = f"HTTP {status}: {body[:200]}"
        return False


# -- stopping --------------------------------------------------------------------------------
def signal_group(pgid: int, signum: int, *, leader_only: bool = False) -> None:
    """Send `signum` to process group `pgid` (or to its leader alone); gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if leader_only:
            os.kill(pgid, signum)
        else:
            os.killpg(pgid, signum)


def read_state(path: Path) -> dict[str, Any] | None:
    """The JSON state a background server wrote (`{"pid": ..., ...}`), or None when the file
    is missing, unreadable, or names a process that is gone."""
    import json

    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or not pid_alive(int(state.get("pid", 0))):
        return None
    return state


def pid_alive(pid: int) -> bool:
    """Tell whether `pid` runs (a zombie does not); for processes that are not our children."""
    if not Path("/proc/self").exists():  # no /proc here: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def wait_pids_gone(pids: set[int], timeout: float) -> set[int]:
    """Wait up to `timeout` s for `pids` (not our children) to end; return those still alive."""
    deadline = time.monotonic() + timeout
    alive = {pid for pid in pids if pid_alive(pid)}
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = {pid for pid in alive if pid_alive(pid)}
    return alive


def pids_mentioning(text: str) -> set[int]:
    """Pids (this one excepted) whose command line contains `text` (Linux /proc; else none)."""
    found: set[int] = set()
    needle = text.encode()
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "cmdline").read_bytes():
                found.add(int(entry.name))
    return found


def terminate_group(
    process: subprocess.Popen[bytes] | int,
    *,
    grace: float = 15.0,
    kill_wait: float = 10.0,
    leader_only: bool = False,
    gone: Callable[[], bool] | None = None,
) -> bool:
    """End the process group `process` leads; return whether its leader is gone.

    SIGTERM to the group (to the leader alone with `leader_only`, which then stops the rest
    its own way), up to `grace` s for the leader to exit, then SIGKILL to the group and up
    to `kill_wait` s more; once the leader is gone, SIGKILL sweeps whatever else is left in
    its group. A `Popen` is reaped; a bare pid (started by another process) counts as gone
    when `gone()` says so (default: `pid_alive` says it is not).
    """
    if isinstance(process, int):
        pid = process
        ended = gone or (lambda: not pid_alive(pid))

        def wait(seconds: float) -> bool:
            deadline = time.monotonic() + seconds
            while not ended():
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.05)
            return True

    else:
        pid, child = process.pid, process

        def wait(seconds: float) -> bool:
            try:
                child.wait(seconds)
            except subprocess.TimeoutExpired:
                return False
            return True

    finished = wait(0)
    if not finished:
        signal_group(pid, signal.SIGTERM, leader_only=leader_only)
        finished = wait(grace)
    if not finished:
        signal_group(pid, signal.SIGKILL)
        finished = wait(kill_wait)
    signal_group(pid, signal.SIGKILL)  # anything else left in the group
    return finished
