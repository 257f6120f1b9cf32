"""The dashboards: the notebooks in `notebooks/` served as web apps by Voila.

```python
from streamforge_nb.ui.dashboard import start_dashboard

with start_dashboard() as board:             # notebooks/, a free port on 127.0.0.1
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

**How parameters reach a notebook: the page URL's query string, applied by papermill.**
Voila is started with a config file that sets `VoilaConfiguration.prelaunch_hook` to this
module's `prelaunch_hook`. For each page request, before the kernel starts, the hook takes
the query arguments that name a variable of the notebook's `parameters` cell and injects them
exactly as `papermill -p` does (an `injected-parameters` cell after the parameters cell,
`papermill.parameterize.parameterize_notebook`), typed like the parameter's default (or its
annotation when the default is None): an int, float or bool default makes `?count=3` an int,
`?debug=false` a bool; a list/dict/tuple default takes a Python literal (`?tags=['a','b']`);
anything else stays a string. A query argument the notebook does not declare is refused with
HTTP 400 naming the declared ones (a typo such as `?queueid=` would otherwise silently show
the default queue). Voila's own arguments (`template`, `theme`, `token`) pass through.

Why this way, of those Voila 0.5 offers:

- The notebooks stay plain papermill payloads: `control_panel.ipynb` runs the same under
  `papermill -p queue_id Q`, in Jupyter, and in Voila, with no Voila-specific code.
- Voila does put the request's `QUERY_STRING` in a kernel's environment (when kernels are
  not preheated), so each notebook could parse `os.environ["QUERY_STRING"]`; but every
  notebook would need that code, untyped, and it would bypass its parameters cell. With
  `preheat_kernel` the notebook runs before the request and only code that blocks in
  `voila.utils.get_query_string()` sees the query: Voila-specific code again, and preheating
  is incompatible with `prelaunch_hook` (Voila refuses to start). We do not preheat.
- Writing a parameterised copy of the notebook per queue id into a served temp dir also
  works, but leaves one file per URL, the URL no longer names the notebook, and a user
  cannot change the queue id in the address bar.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlencode

from streamforge_nb.exceptions import DashboardError

__all__ = [
    "PAGES",
    "Dashboard",
    "DashboardError",
    "declared_parameters",
    "default_notebooks_dir",
    "parameterize",
    "prelaunch_hook",
    "start_dashboard",
]

# The dashboards the CLI lists, when the notebooks directory has them.
PAGES = ("control_panel.ipynb", "launch_panel.ipynb")
# Query arguments Voila itself reads: never notebook parameters.
VOILA_ARGUMENTS = frozenset({"template", "theme", "token"})

# A kernel whose page went away without a shutdown request (a crashed browser) is culled
# after this long without activity; one with an open page never is (cull_connected=False).
CULL_IDLE_TIMEOUT_S = 600
CULL_INTERVAL_S = 60
# Kernel start plus the notebook's imports on the 2-core CI machine: a few seconds; ample.
KERNEL_STARTUP_TIMEOUT_S = 120

_CONFIG = """\
# Written by streamforge_nb.ui.dashboard: query arguments of a page URL become the
# notebook's papermill parameters.
from streamforge_nb.ui.dashboard import prelaunch_hook

c.VoilaConfiguration.prelaunch_hook = prelaunch_hook
"""



def default_notebooks_dir() -> Path:
    """The notebooks directory: $STREAMFORGE_NOTEBOOKS, the repo's notebooks/, ./notebooks."""
    from streamforge_nb.workflow.targets import notebook_path

    # The same search as the Jobs' payloads, so dashboards and Jobs run the same notebooks.
    try:
        return notebook_path(PAGES[0]).parent
    except FileNotFoundError as exc:
        raise DashboardError(str(exc)) from None


# -- parameters ----------------------------------------------------------------------------
def parameterize(notebook: Any, arguments: Mapping[str, str]) -> Any:
    """Return a copy of `notebook` with `arguments` injected as papermill parameters.

    Each value is converted to the type of the parameter's default (int, float, bool, or a
    Python literal for list/tuple/dict), or of its annotation when the default is None
    (`count: int | None = None`); a name the parameters cell does not assign, or a value that
    does not convert, raises `DashboardError`.
    """
    from papermill.parameterize import parameterize_notebook

    nb = copy.deepcopy(notebook)
    # papermill expects what its own loader adds: tags on every cell, a papermill section.
    for cell in nb.cells:
        cell.metadata.setdefault("tags", [])
    nb.metadata.setdefault("papermill", {})
    declared = declared_parameters(nb)
    unknown = sorted(set(arguments) - set(declared))
    if unknown:
        known = ", ".join(declared) or "none"
        raise DashboardError(
            f"unknown parameter(s) {', '.join(unknown)}: this notebook's parameters are {known}"
        )
    values = {name: _convert(name, value, *declared[name]) for name, value in arguments.items()}
    # The parameters cell was read as Python, so the injected cell is Python too.
    kernel = nb.metadata.get("kernelspec", {}).get("name") or "python3"
    return parameterize_notebook(nb, values, kernel_name=kernel, language="python")


def declared_parameters(notebook: Any) -> dict[str, tuple[str, type | None]]:
    """Map each variable the `parameters` cell assigns to (its default's source, its type).

    The type is the default literal's, else the annotation's (int, float, bool, list, tuple,
    dict), else None (the value stays a string). Read with `ast`: papermill's line-based
    inspector skips lines such as `archives = []  # paths (source="archive")`.
    """
    cell = next((c for c in notebook.cells if "parameters" in c.metadata.get("tags", ())), None)
    if cell is None:
        return {}
    try:
        tree = ast.parse(cell.source)
    except SyntaxError as exc:
        raise DashboardError(f"the parameters cell is not plain Python: {exc}") from None
    found: dict[str, tuple[str, type | None]] = {}
    for statement in tree.body:
        if isinstance(statement, ast.Assign):
            targets, annotation = statement.targets, None
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            targets, annotation = [statement.target], statement.annotation
        else:
            continue
        assert statement.value is not None
        source = ast.get_source_segment(cell.source, statement.value) or ""
        kind = _literal_type(statement.value) or _annotated_type(annotation)
        for target in targets:
            if isinstance(target, ast.Name):
                found[target.id] = (source, kind)
    return found


def _literal_type(node: ast.expr) -> type | None:
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None  # an expression, not a literal
    return None if value is None else type(value)


def _annotated_type(annotation: ast.expr | None) -> type | None:
    for node in ast.walk(annotation) if annotation is not None else ():
        if isinstance(node, ast.Name) and node.id in _ANNOTATIONS:
            return _ANNOTATIONS[node.id]
    return None


def _convert(name: str, value: str, default_source: str, kind: type | None) -> Any:
    try:
        if kind is bool:
            lowered = value.strip().lower()
            if lowered not in _BOOLEANS:
                raise ValueError(f"not one of {', '.join(_BOOLEANS)}")
            return _BOOLEANS[lowered]
        if kind in (int, float):
            return kind(value)
        if kind in (list, tuple, dict):
            parsed = ast.literal_eval(value)
            if not isinstance(parsed, kind):
                raise ValueError(f"not a {kind.__name__} literal")
            return parsed
    except (ValueError, TypeError, SyntaxError) as exc:
        what = kind.__name__ if kind else "value"
        raise DashboardError(
            f"parameter {name}={value!r}: expected {what}, as its default {default_source} ({exc})"
        ) from None
    return value


_ANNOTATIONS: dict[str, type] = {
    "int": int, "float": float, "bool": bool, "list": list, "tuple": tuple, "dict": dict,
}  # fmt: skip
_BOOLEANS = {"true": True, "1": True, "yes": True, "on": True,
             "false": False, "0": False, "no": False, "off": False}  # fmt: skip


def prelaunch_hook(req: Any, notebook: Any, cwd: str) -> Any:
    """Voila's `prelaunch_hook`: the page URL's query arguments become parameters.

    It also gives the page the `_xsrf` cookie. Voila's page asks the server to shut its kernel
    down on `beforeunload` with a beacon that carries that cookie's value, but nothing sets the
    cookie on a rendered page (voila-dashboards/voila#1458, open): every such request is
    refused (403) and the kernel lives on until culled. Reading the token sets the cookie.
    """
    import tornado.web

    req.xsrf_token  # noqa: B018  # sets the cookie, see above
    arguments = {
        name: req.get_query_argument(name)
        for name in req.request.query_arguments
        if name not in VOILA_ARGUMENTS
    }
    if not arguments:
        return None  # Voila runs the notebook as it is
    try:
        return parameterize(notebook, arguments)
    except DashboardError as exc:
        raise tornado.web.HTTPError(400, str(exc), reason=str(exc)[:200]) from None


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
        log_path: Path,
        log_offset: int = 0,
    ) -> None:
        self.process = process
        self.notebooks = notebooks
        self.host = host
        self.port = port
        self.log_path = log_path
        self._log_offset = log_offset  # the log may hold earlier runs' output
        self._workdir = workdir
        url_host = "127.0.0.1" if host in ("", "0.0.0.0") else host
        url_host = f"[{url_host}]" if ":" in url_host else url_host
        self.url = f"http://{url_host}:{port}/"

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"Dashboard({self.url!r}, notebooks={str(self.notebooks)!r}, {state})"

    def __enter__(self) -> Dashboard:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def tree_url(self) -> str:
        """The page listing every notebook of the directory."""
        return f"{self.url}voila/tree"

    def page_url(self, notebook: str, **parameters: Any) -> str:
        """The URL of `notebook` (name, `.ipynb` optional) run with papermill `parameters`.

        Values: str, int, float, bool, and lists/tuples/dicts of those (as Python literals);
        None leaves a parameter at its default.
        """
        name = notebook if notebook.endswith(".ipynb") else f"{notebook}.ipynb"
        if not (self.notebooks / name).is_file():
            raise DashboardError(f"no notebook {name} in {self.notebooks}")
        url = f"{self.url}voila/render/{quote(name)}"
        query = {k: _query_value(v) for k, v in parameters.items() if v is not None}
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
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._log_offset)
                text = log.read().decode(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def kernel_pids(self) -> set[int]:
        """Pids of the kernels running pages now (one per open page)."""
        return _processes_mentioning(str(self._workdir)) - {self.process.pid}

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
        if self.running:
            # SIGTERM: Voila stops its loop and shuts every kernel down, then exits.
            _signal_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        else:
            self.process.wait()
        _signal_group(self.process.pid, signal.SIGKILL)  # anything else left in the group
        leftovers = kernels | _processes_mentioning(str(self._workdir))
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        _wait_gone(leftovers, 10)
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
) -> Dashboard:
    """Start Voila on the notebooks directory; return once its pages answer.

    `port=0` picks a free port. `env` is the environment of the server and of every page's
    kernel (default: this process's), which is how the kernels learn the broker address.
    Voila's output goes to `log_path` (default: a file in the dashboard's temp directory,
    removed by `stop()`). A server that does not come up raises `DashboardError` with the
    log's tail.
    """
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
                port or _free_port(host),
                host,
                workdir=workdir,
                env=env,
                log_path=log_path or workdir / "voila.log",
                cull_idle_timeout=cull_idle_timeout,
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
) -> Dashboard:
    # Not in the working directory: a ./voila.py would shadow the voila package for `-m`.
    (workdir / "config").mkdir()
    (workdir / "config" / "voila.py").write_text(_CONFIG)
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
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        offset = log.tell()
        process = subprocess.Popen(
            command,
            cwd=workdir,
            env=dict(os.environ if env is None else env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Dashboard(
        process,
        notebooks=folder,
        host=host,
        port=port,
        workdir=workdir,
        log_path=log_path,
        log_offset=offset,
    )


def _wait_ready(board: Dashboard, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not board.running:
            tail = board.log_tail()
            board.stop()
            if "no available port could be found" in tail:
                raise _PortTaken(f"port {board.port} on {board.host} is already in use")
            raise DashboardError(
                f"Voila exited with code {board.process.returncode} while starting; "
                f"{_log_name(board)}:\n{tail}"
            )
        try:
            with urllib.request.urlopen(board.tree_url, timeout=2) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    tail = board.log_tail()
    board.stop()
    raise DashboardError(
        f"Voila did not answer at {board.tree_url} within {timeout:g} s; "
        f"{_log_name(board)}:\n{tail}"
    )


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


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _processes_mentioning(text: str) -> set[int]:
    """Pids whose command line contains `text` (Linux /proc; empty elsewhere)."""
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


def _wait_gone(pids: set[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        for pid in list(alive):
            # Not our children (the kernels are Voila's), so no reaping: /proc tells.
            stat = Path(f"/proc/{pid}/stat")
            try:
                state = stat.read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                alive.discard(pid)
                continue
            if state in ("Z", "X"):
                alive.discard(pid)
        if alive:
            time.sleep(0.05)
