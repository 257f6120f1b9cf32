"""Shared fixtures: one real Kafka broker (KRaft, from Maven Central jars) per test session."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

import nbformat
import pytest

from streamforge_nb.exceptions import LocalBrokerError
from streamforge_nb.local.broker import LocalBroker
from streamforge_nb.platform.names import new_short_id, queue_id
from streamforge_nb.platform.topics import PLATFORM_USER, VIEWER_USER
from streamforge_nb.settings import Settings
from streamforge_nb.testing import local_broker
from streamforge_nb.testing.hub import (  # MANIFESTS: tests import it from here
    MANIFESTS,  # noqa: F401
    NAMESPACE,
    NOTEBOOK_SA,
    platform_namespace,
)
from streamforge_nb.workflow.targets import OUTPUT_ENV, PARAMETERS_ENV, job_spec

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Route

    from streamforge_nb.local.cluster.node import LocalNode
    from streamforge_nb.testing.image import BuiltImage
    from streamforge_nb.ui.dashboard import Dashboard
    from streamforge_nb.workflow.kubernetes import KubernetesLauncher
    from streamforge_nb.workflow.launchers import JobStatus


def command_lines() -> Iterator[tuple[int, bytes]]:
    """Yield (pid, command line) of every process this user can see in /proc."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                yield int(proc.name), (proc / "cmdline").read_bytes()
            except OSError:  # ended meanwhile
                continue


def _on_node(nodeid: str) -> bool:
    return Path(nodeid.split("::", 1)[0]).name.startswith("test_node")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Start the real node's tests first: under two workers they are the longest scope.
    Among them, those that start a node of their own go before the session's node starts
    (one node a machine: theirs would wait for its lock)."""
    for item in items:
        uses_node = item.get_closest_marker("node") is not None or "node" in item.fixturenames
        if uses_node and not _on_node(item.nodeid):
            raise pytest.UsageError(
                f"{item.nodeid} runs on the real node: put it in a tests/test_node*.py file, "
                "which one worker runs (the machine holds one node)"
            )
    items.sort(key=lambda item: (not _on_node(item.nodeid), "node" in item.fixturenames))


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Give each test file to one worker (its module fixtures start once) and every
    tests/test_node*.py file to the same one (the machine holds one node and one image build).

    Not `--dist loadgroup`: its marks name the group by rewriting `item._nodeid`, which
    pytest 9.2 no longer reads, so every test went its own way.
    """
    from xdist.scheduler import LoadScopeScheduling

    class ByFile(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "the node" if _on_node(nodeid) else nodeid.split("::", 1)[0]

    return ByFile(config, log)


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keep tests away from the user's own ~/.streamforge-nb and environment."""
    home = tmp_path_factory.mktemp("streamforge-home")
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith(("KAFKA_", "ARANGO_"))}
    os.environ["STREAMFORGE_HOME"] = str(home)
    yield home
    os.environ.update(saved)


@pytest.fixture(scope="module", autouse=True)
def _module_home(
    _isolated_home: Path, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Path]:
    """A STREAMFORGE_HOME per test module: its default store, runs and Job logs are its own.

    The session's broker keeps its files in a directory of its own, not in a home.
    """
    home = tmp_path_factory.mktemp(f"home-{request.module.__name__}")
    os.environ["STREAMFORGE_HOME"] = str(home)
    yield home
    os.environ["STREAMFORGE_HOME"] = str(_isolated_home)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A running broker; failing to start fails the tests with the broker's log tail."""
    manager = local_broker(tmp_path_factory.mktemp("kafka"))
    try:
        started = manager.__enter__()
    except LocalBrokerError as exc:
        pytest.fail(f"the local Kafka broker did not start: {exc}", pytrace=False)
    try:
        yield started
    finally:
        manager.__exit__(None, None, None)


@pytest.fixture(scope="session")
def settings(broker: LocalBroker) -> Settings:
    """PLAINTEXT settings (anonymous super user), the local default."""
    return broker.settings()


@pytest.fixture(scope="session")
def platform_settings(broker: LocalBroker) -> Settings:
    """The platform's production shape: SASL_SSL + SCRAM-SHA-512 as user-streamforge."""
    return broker.settings(PLATFORM_USER)


@pytest.fixture(scope="session")
def viewer_settings(broker: LocalBroker) -> Settings:
    """A SCRAM user whose ACLs allow only reading queue-events."""
    return broker.settings(VIEWER_USER)


def subprocess_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a worker process gets: the broker's address and nothing stale."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "ARANGO_"))}
    env["KAFKA_BOOTSTRAP_SERVERS"] = settings.kafka_bootstrap_servers
    # A module with service topics of its own (test_history.py) gives them to its workers.
    env["QUEUE_CONTROL_TOPIC"] = settings.queue_control_topic
    env["QUEUE_EVENTS_TOPIC"] = settings.queue_events_topic
    if settings.kafka_user and settings.kafka_password:  # the SASL_SSL listener
        env["KAFKA_USER"] = settings.kafka_user
        env["KAFKA_PASSWORD"] = settings.kafka_password.get_secret_value()
        env["CA_PATH"] = settings.kafka_ca_path or ""
    env.update(extra)
    return env


@pytest.fixture
def start_dummy(settings: Settings) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start real dummy services (`python -m streamforge_nb.workers.dummy`); kill leftovers."""
    started: list[subprocess.Popen[str]] = []

    def start(queue_id: str, *args: str, ready: bool = True) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamforge_nb.workers.dummy",
                "--queue-id",
                queue_id,
                "--metrics-port",
                "0",
                *args,
            ],
            env=subprocess_env(settings),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append(proc)
        if ready:
            wait_for_status(settings, queue_id, None)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def wait_for_status(
    settings: Settings, queue_id: str, status: str | None, timeout: float = 60
) -> None:
    """Block until a producer of `queue_id` is in `status` (None: any event), or fail."""
    from streamforge_nb.control.queue import Queue

    deadline = time.monotonic() + timeout
    with Queue(queue_id, settings) as queue:
        while time.monotonic() < deadline:
            if any(status in (None, s.status) for s in queue.producers().values()):
                return
            time.sleep(0.05)
    pytest.fail(f"queue {queue_id} sent no {status!r} event within {timeout} s")


# -- browser tests (`-m browser`): the Voila dashboards in Debian's Chromium -----------------
# Playwright's bundled driver runs the system browser: `playwright install` is never needed.
CHROMIUM = os.environ.get("STREAMFORGE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


@pytest.fixture(scope="session")
def dashboard(settings: Settings) -> Iterator[Dashboard]:
    """Voila serving notebooks/ on a free port; every page's kernel talks to the test broker."""
    from streamforge_nb.exceptions import DashboardError
    from streamforge_nb.ui.dashboard import start_dashboard

    try:
        board = start_dashboard(env=subprocess_env(settings))
    except DashboardError as exc:
        pytest.fail(f"the dashboard did not start: {exc}", pytrace=False)
    with board:
        yield board


@pytest.fixture(scope="session")
def chromium() -> Iterator[Browser]:
    """Headless Chromium (the Debian package) under Playwright; missing, the tests fail."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"no Chromium at {CHROMIUM}: the browser tests need Debian's Chromium "
            "(`sudo apt-get install chromium`, which scripts/setup does; or set "
            "STREAMFORGE_CHROMIUM to a Chromium binary)",
            pytrace=False,
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[test]'", pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_page(chromium: Browser) -> Iterator[Page]:
    """A page in a fresh context, offline: every request off the loopback is aborted.

    Closing it (after the test) runs the page's `beforeunload`, where Voila asks the server to
    shut the page's kernel down.
    """
    context = chromium.new_context(viewport={"width": 1100, "height": 800})

    def offline(route: Route) -> None:
        url = urlsplit(route.request.url)
        if url.scheme in ("data", "blob") or url.hostname in _LOOPBACK:
            route.continue_()
        else:
            route.abort()

    context.route("**/*", offline)
    page = context.new_page()
    try:
        yield page
    finally:
        with contextlib.suppress(Exception):
            page.close(run_before_unload=True)
        context.close()


# -- a real single-node cluster (`-m node`) ------------------------------------------------------
def missing_prerequisite(reason: str) -> NoReturn:
    """Skip the test on a developer's machine; fail it under CI (`CI=true`).

    CI installs every prerequisite (scripts/test), so one missing there is a broken set-up
    that a skip would turn green.
    """
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def node_image() -> BuiltImage:
    """jupyter-image/Dockerfile built offline with podman (cached on a hash of its inputs)."""
    from streamforge_nb.exceptions import KubeTestError
    from streamforge_nb.local.cluster.node import node_unavailable
    from streamforge_nb.testing.image import build_image

    reason = node_unavailable()
    if reason:
        missing_prerequisite(f"no real node here: {reason}")
    try:
        return build_image()
    except KubeTestError as exc:
        pytest.fail(f"the image did not build: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory, node_image: BuiltImage) -> Iterator[LocalNode]:
    """A real node (etcd, API server, controllers, scheduler, kubelet, containerd) with the image.

    Skipped, saying why, without root or the node's binaries (scripts/install-node-deps,
    scripts/build-kube --node); failed instead under CI (`missing_prerequisite`).
    """
    from streamforge_nb.exceptions import KubeTestError
    from streamforge_nb.local.cluster.node import local_node

    manager = local_node(tmp_path_factory.mktemp("node"), images=[node_image.archive])
    try:
        started = manager.__enter__()
    except KubeTestError as exc:
        pytest.fail(f"the local node did not start: {exc}", pytrace=False)
    try:
        yield started
    finally:
        manager.__exit__(None, None, None)


# -- namespace stf on the node, as manifests/ deploy it ------------------------------------------
@pytest.fixture
def stf(node: LocalNode, platform_settings: Settings) -> Iterator[Path]:
    """Namespace stf as manifests/ deploy it: ConfigMap, Secrets (test values), notebook RBAC;
    return a shared directory (hostPath) for the embedded store and the executed notebooks."""
    with platform_namespace(node, platform_settings) as shared:
        yield shared


def node_queue_id() -> str:
    return queue_id("BTCUSDT", "api_candles_1m", dt.date(2024, 8, 1), new_short_id())


def node_dummy_job(
    stf: Path,
    queue_id: str,
    image: str,
    spec: dict[str, Any] | None = None,
    **parameters: object,
) -> tuple[dict[str, Any], Path]:
    """A dummy's Job for the node (`spec`: more `job_spec` options), and its notebook's path."""
    output = stf / "runs" / queue_id / "dummy.ipynb"
    env = {
        "QUEUE_ID": queue_id,
        "TELEMETRY_PRODUCER_ID": "dummy__job001",
        PARAMETERS_ENV: json.dumps({"metrics_port": 0, **parameters}),
        OUTPUT_ENV: str(output),
    }
    job = job_spec(
        job_name=f"job-dummy-{queue_id[-8:]}",
        namespace=NAMESPACE,
        queue_id=queue_id,
        target="dummy",
        image=image,
        env=env,
        **(spec or {}),
    )
    return job, output


def wait_job(
    launcher: KubernetesLauncher, queue_id: str, states: set[str], timeout: float = 120
) -> list[JobStatus]:
    deadline = time.monotonic() + timeout
    jobs = launcher.list(queue_id)
    while time.monotonic() < deadline:
        jobs = launcher.list(queue_id)
        if jobs and all(j.state in states for j in jobs):
            return jobs
        time.sleep(0.5)
    pytest.fail(f"Jobs of {queue_id} not {states} within {timeout} s: {jobs}")


@pytest.fixture
def notebook_launcher(node: LocalNode, stf: Path) -> KubernetesLauncher:
    """The launcher a notebook has: the notebook ServiceAccount's real token."""
    as_notebook = node.service_account_client(NAMESPACE, NOTEBOOK_SA)
    return node.launcher(api_client=as_notebook, host_paths=[stf])


# -- payload notebooks and Job environments made by tests --------------------------------------
def notebook_dir(tmp_path: Path, name: str, *cells: str) -> Path:
    """A folder with a payload notebook `dummy_service.ipynb` made of `cells` (code), run by
    the `dummy` target when a Job's STREAMFORGE_NOTEBOOKS points there."""
    folder = tmp_path / name
    folder.mkdir()
    params = nbformat.v4.new_code_cell("queue_id = None\nproducer_id = None\nmetrics_port = 0")
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[params, *map(nbformat.v4.new_code_cell, cells)])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, folder / "dummy_service.ipynb")
    return folder


def with_env(job: dict, **env: str) -> dict:
    container = job["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [e for e in container["env"] if e["name"] not in env] + [
        {"name": k, "value": v} for k, v in env.items()
    ]
    return job
