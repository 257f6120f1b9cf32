"""The dashboards: the package's notebooks (`streamforge_nb/notebooks/`) served by Voila.

```python
from streamforge_nb.ui.dashboard import start_dashboard

with start_dashboard() as board:             # the package's notebooks, a free port
    board.page_url("control_panel", queue_id="wf-btcusdt-api_candles_1m-20240801-abc123")
    # http://127.0.0.1:41234/voila/render/control_panel.ipynb?queue_id=wf-btcusdt-...
```

or `streamforge-nb dashboard [--port 8866] [--notebooks DIR]` in a shell (Ctrl-C stops).

`start_dashboard` runs `python -m voila <notebooks> --no-browser --port P --Voila.ip=HOST`
in its own process group and returns once `/voila/tree` answers. Every page load starts one
kernel that runs the notebook with code hidden; the kernels inherit the Voila process's
environment, so the broker address (`KAFKA_BOOTSTRAP_SERVERS`, `KAFKA_USER`, ... or
`$STREAMFORGE_HOME/local.env`) reaches them as it reaches a Job. A kernel ends when its page
is closed (Voila's `beforeunload` shutdown request, which works only thanks to
`prelaunch_hook`, see there), or is culled after `cull_idle_timeout` without a connection
and without activity (a panel that refreshes itself counts as activity: a page that vanished
without unloading, a crashed browser, keeps such a kernel until `stop()`). `stop()` ends
Voila, its kernels and nothing else (Jobs a launch panel started run detached, as they would
in the cluster).

Every page needs the server's token (`?token=...`, as Jupyter's): `start_dashboard` makes a
random one unless given one, and `page_url`/`tree_url` carry it. `token=""` serves without
one, and only on a loopback address (127.0.0.1, ::1): any local user could otherwise launch
and stop workflows.

How a page's query string becomes the notebook's papermill parameters, and why that
way: see `streamforge_nb.ui.page_parameters`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from streamforge_nb.exceptions import DashboardError, InvalidName, ProcessExited, StartTimeout
from streamforge_nb.platform.names import check_parameter_name
from streamforge_nb.process import (
    HttpProbe,
    LogFile,
    free_port,
    pids_mentioning,
    signal_group,
    spawn,
    terminate_group,
    wait_pids_gone,
    wait_ready,
)
from streamforge_nb.ui.page_parameters import VOILA_ARGUMENTS

__all__ = ["PAGES", "Dashboard", "DashboardError", "default_notebooks_dir", "start_dashboard"]

# The dashboards the CLI lists, when the notebooks directory has them.
PAGES = ("control_panel.ipynb", "launch_panel.ipynb", "batch_panel.ipynb")

# A kernel whose page went away without a shutdown request (a crashed browser) is culled
# after this long without activity; one with an open page never is (cull_connected=False).
CULL_IDLE_TIMEOUT_S = 600
CULL_INTERVAL_S = 60
# Kernel start plus the notebook's imports on the 2-core CI machine: a few seconds; ample.
KERNEL_STARTUP_TIMEOUT_S = 120

_CONFIG = """\
# Written by streamforge_nb.ui.dashboard: query arguments of a page URL become the
# notebook's papermill parameters.
from streamforge_nb.ui.page_parameters import prelaunch_hook

c.VoilaConfiguration.prelaunch_hook = prelaunch_hook
"""


def default_notebooks_dir() -> Path:
    """The notebooks directory: $STREAMFORGE_NOTEBOOKS, else the package's own."""
    from streamforge_nb.workflow.targets import notebook_path

    # The same search as the Jobs' payloads, so dashboards and Jobs run the same notebooks.
    try:
        return notebook_path(PAGES[0]).parent
    except FileNotFoundError as exc:
        raise DashboardError(str(exc)) from None


# -- the server ------------------------------------------------------------------------------
class Dashboard:
    """A running Voila server (see `start_dashboard`); a context manager that stops it."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        *,
        notebooks: Path,
        host: str,
        port: int,
        workdir: Path,
        log: LogFile,
        token: str = "",
    ) -> None:
        self.process = process
        self.token = token
        self.notebooks = notebooks
        self.host = host
        self.port = port
        self.log_path = log.path
        self._log = log  # from its offset: the file may hold earlier runs' output
        self._workdir = workdir
        url_host = "127.0.0.1" if host in ("", "0.0.0.0") else host
        url_host = f"[{url_host}]" if ":" in url_host else url_host
        self.url = f"http://{url_host}:{port}/"

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        # Never the token: a repr ends up in logs.
        return f"Dashboard({self.url!r}, notebooks={str(self.notebooks)!r}, {state})"

    def __enter__(self) -> Dashboard:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def tree_url(self) -> str:
        """The page listing every notebook of the directory (with the token, if any)."""
        return f"{self.url}voila/tree" + (
            f"?{urlencode({'token': self.token})}" if self.token else ""
        )

    def page_url(self, notebook: str, **parameters: Any) -> str:
        """The URL of `notebook` (name, `.ipynb` optional) run with papermill `parameters`.

        Values: str, int, float, bool, and lists/tuples/dicts of those (as Python literals);
        None leaves a parameter at its default.
        """
        name = notebook if notebook.endswith(".ipynb") else f"{notebook}.ipynb"
        if not (self.notebooks / name).is_file():
            raise DashboardError(f"no notebook {name} in {self.notebooks}")
        for key in parameters:
            if key in VOILA_ARGUMENTS:  # Voila would take it, the notebook never see it
                raise DashboardError(
                    f"parameter {key!r}: Voila reads it itself "
                    f"({', '.join(sorted(VOILA_ARGUMENTS))}), a notebook cannot take it"
                )
            try:
                check_parameter_name(key)
            except InvalidName as exc:
                raise DashboardError(str(exc)) from None
        url = f"{self.url}voila/render/{quote(name)}"
        query = {"token": self.token} if self.token else {}
        query.update({k: _query_value(v) for k, v in parameters.items() if v is not None})
        return f"{url}?{urlencode(query)}" if query else url

    def pages(self) -> dict[str, str]:
        """The dashboards (`PAGES`) this directory has, by name, with their URLs."""
        return {
            name.removesuffix(".ipynb"): self.page_url(name)
            for name in PAGES
            if (self.notebooks / name).is_file()
        }

    def log_tail(self, lines: int = 30) -> str:
        """The last `lines` lines this server wrote to its log."""
        return self._log.tail(lines)

    def kernel_pids(self) -> set[int]:
        """Pids of the kernels running pages now (one per open page)."""
        return pids_mentioning(str(self._workdir)) - {self.process.pid}

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until the server exits (or `timeout`); return its exit code, None if running."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            return self.process.wait(timeout)
        return None

    def stop(self, timeout: float = 20.0) -> None:
        """Stop Voila and its kernels; no process of theirs is left (idempotent)."""
        # Kernels run in sessions of their own (jupyter_client starts them so): find them by
        # the connection files in our directory before Voila can remove it.
        kernels = self.kernel_pids()
        # SIGTERM: Voila stops its loop and shuts every kernel down, then exits.
        terminate_group(self.process, grace=timeout)
        leftovers = kernels | pids_mentioning(str(self._workdir))
        for pid in leftovers:
            signal_group(pid, signal.SIGKILL, leader_only=True)
        wait_pids_gone(leftovers, 10)
        shutil.rmtree(self._workdir, ignore_errors=True)


def start_dashboard(
    notebooks_dir: Path | str | None = None,
    port: int = 0,
    host: str = "127.0.0.1",
    *,
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    timeout: float = 60.0,
    cull_idle_timeout: int = CULL_IDLE_TIMEOUT_S,
    token: str | None = None,
) -> Dashboard:
    """Start Voila on the notebooks directory; return once its pages answer.

    `port=0` picks a free port. `env` is the environment of the server and of every page's
    kernel (default: this process's), which is how the kernels learn the broker address.
    Voila's output goes to `log_path` (default: a file in the dashboard's temp directory,
    removed by `stop()`). A server that does not come up raises `DashboardError` with the
    log's tail.

    `token`: what every request must carry (`?token=` or `Authorization: token ...`); None
    makes a random one (`Dashboard.token`); "" serves without one, on a loopback host only.
    """
    token = secrets.token_hex(24) if token is None else token
    if not token and not _is_loopback(host):
        raise DashboardError(
            f"refusing to serve on {host} without a token: any machine that reaches it could "
            "launch and stop workflows (without a token only 127.0.0.1 or ::1)"
        )
    folder = Path(notebooks_dir) if notebooks_dir is not None else default_notebooks_dir()
    folder = folder.resolve()
    if not folder.is_dir():
        raise DashboardError(f"notebooks directory {folder} does not exist")
    attempts = 3 if port == 0 else 1  # a free port can be taken between choosing and binding
    for attempt in range(1, attempts + 1):
        workdir = Path(tempfile.mkdtemp(prefix="streamforge-dashboard-"))
        try:
            board = _launch(
                folder,
                port or free_port(host),
                host,
                workdir=workdir,
                env=env,
                log_path=log_path or workdir / "voila.log",
                cull_idle_timeout=cull_idle_timeout,
                token=token,
            )
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        try:
            _wait_ready(board, timeout)
            return board
        except _PortTaken as exc:
            shutil.rmtree(workdir, ignore_errors=True)
            if attempt == attempts:
                hint = "" if port == 0 else "; `--port 0` picks a free one"
                raise DashboardError(f"cannot start the dashboard: {exc}{hint}") from None
        except BaseException:  # also Ctrl-C while waiting: leave nothing running
            board.stop()
            raise
    raise AssertionError("unreachable")


class _PortTaken(Exception):
    pass


def _launch(
    folder: Path,
    port: int,
    host: str,
    *,
    workdir: Path,
    env: Mapping[str, str] | None,
    log_path: Path,
    cull_idle_timeout: int,
    token: str = "",
) -> Dashboard:
    # Not in the working directory: a ./voila.py would shadow the voila package for `-m`.
    (workdir / "config").mkdir()
    # The token goes in the config file (the directory is the user's alone), not in argv,
    # where any local user's `ps` would read it.
    config = _CONFIG + (f"c.Voila.token = {token!r}\n" if token else "")
    (workdir / "config" / "voila.py").write_text(config)
    (workdir / "connections").mkdir()
    command = [
        sys.executable,
        "-m",
        "voila",
        str(folder),
        "--no-browser",
        f"--port={port}",
        f"--Voila.ip={host}",
        # Fail instead of wandering to another port: the URL must be the one we report.
        "--Voila.port_retries=0",
        # Our config file (the parameters hook) first, then the user's Jupyter config.
        f"--Voila.config_file_paths={workdir / 'config'}",
        *(f"--Voila.config_file_paths={p}" for p in _jupyter_config_path()),
        # Kernel connection files here: `stop()` finds the kernels by this path.
        f"--Voila.connection_dir_root={workdir / 'connections'}",
        # A page's failing cell shows its traceback (e.g. the broker is unreachable).
        "--VoilaConfiguration.show_tracebacks=True",
        f"--VoilaExecutor.startup_timeout={KERNEL_STARTUP_TIMEOUT_S}",
        f"--MappingKernelManager.cull_idle_timeout={cull_idle_timeout}",
        f"--MappingKernelManager.cull_interval={min(CULL_INTERVAL_S, max(cull_idle_timeout, 1))}",
    ]
    process, log = spawn(command, log_path, env=env, cwd=workdir)
    return Dashboard(
        process, notebooks=folder, host=host, port=port, workdir=workdir, log=log, token=token
    )


def _wait_ready(board: Dashboard, timeout: float) -> None:
    probe = HttpProbe(board.tree_url)
    try:
        wait_ready(board.process, probe, log=board._log, timeout=timeout, what="Voila")
    except ProcessExited as exc:
        board.stop()
        if "no available port could be found" in exc.tail:
            raise _PortTaken(f"port {board.port} on {board.host} is already in use") from None
        raise DashboardError(
            f"Voila exited with code {exc.returncode} while starting; "
            f"{_log_name(board)}:\n{exc.tail}"
        ) from None
    except StartTimeout as exc:
        board.stop()
        raise DashboardError(
            f"Voila did not answer at {board.tree_url} within {timeout:g} s; "
            f"{_log_name(board)}:\n{exc.tail}"
        ) from None


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _log_name(board: Dashboard) -> str:
    # A default log lives in the temp directory that stop() removed: only its tail is left.
    return f"log {board.log_path}" if board.log_path.exists() else "Voila's log"


def _jupyter_config_path() -> list[str]:
    from jupyter_core.paths import jupyter_config_path

    return list(jupyter_config_path())


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
