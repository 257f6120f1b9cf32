"""The local JupyterHub path: login to a ready server, and launch -> first telemetry event
through a user's Pod against the same launch from a kernel on this machine, in one run.

Starts a broker (SASL_SSL as the platform's), a single-user node with namespace stf as
manifests/ deploy it, and the hub (`streamforge-nb local hub`, configured from
manifests/jupyterhub-values.yaml); jovyan's server is started first, then per run:
  - login: in Chromium, from submitting the hub's login form to JupyterLab's main area shown
    (a fresh browser session each run; the server is already running);
  - hub: a new notebook in JupyterLab (a fresh kernel in the user's Pod, the notebook
    ServiceAccount) runs `Workflow.candles(...).launch("kubernetes")`;
  - local: the same notebook through papermill on this machine (a fresh kernel, the node's
    kubeconfig), `launch("kubernetes")` to the same node.
The two launches time themselves the same way inside their kernel: `launch()` -> the first
telemetry event of the queue (each then waits for its queue to finish). Needs root, the node's
binaries (scripts/install-node-deps, scripts/build-kube --node) and Chromium; installs the hub
extra and configurable-http-proxy (scripts/install-hub) when missing. Exit 2 if a step fails.

    flock /tmp/node-turn.lock .venv/bin/python bench/hub.py [--runs 3] [--image-archive TAR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
USER = "jovyan"
CHROMIUM = os.environ.get("STREAMFORGE_CHROMIUM", "/usr/bin/chromium")
DONE = "launch -> first telemetry event:"
# One cell, run as it is in both kernels; it times itself (kernel start and imports excluded).
CELL = """\
import threading, time
from streamforge_nb import Queue, Workflow
workflow = Workflow.candles('ETHUSDT', '15m', '2024-08-01:2024-08-02', base_url={base_url!r})
first = threading.Event()
with Queue(workflow.plan().queue_id) as watch:
    watch.subscribe(lambda event: first.set())
    watch.producers()
    started = time.perf_counter()
    with workflow.launch('kubernetes') as queue:
        if not first.wait(120):
            raise RuntimeError('no telemetry within 120 s: ' + queue.logs())
        took = time.perf_counter() - started
        queue.wait(timeout=300, progress=False)
print('{done}', f'{{took:.3f}} s')
"""


class StepFailed(Exception):
    """A step of the benchmark failed (exit 2)."""


@contextmanager
def step(name: str) -> Iterator[None]:
    try:
        yield
    except StepFailed:
        raise
    except Exception as exc:
        raise StepFailed(f"{name}: {type(exc).__name__}: {exc}") from exc


def install_hub() -> None:
    """The hub extra and configurable-http-proxy, as scripts/install-hub installs them."""
    try:
        import jupyterhub  # noqa: F401
        import kubespawner  # noqa: F401

        from streamforge_nb.local.hub import find_proxy

        find_proxy()
    except Exception:
        subprocess.run([str(REPO / "scripts" / "install-hub")], check=True)


def image_of(archive: Path | None) -> tuple[str, Path]:
    """(reference, docker archive): the given archive (its tag in its name) or a build."""
    if archive is None:
        from streamforge_nb.testing.image import build_image

        built = build_image()
        return built.ref, built.archive
    from streamforge_nb.testing.image import IMAGE_REPOSITORY

    tag = archive.name.removeprefix("jupyter-python311-").removesuffix(".docker.tar")
    return f"{IMAGE_REPOSITORY}:{tag}", archive


def took(text: str, where: str) -> float:
    found = re.search(rf"{re.escape(DONE)} ([0-9.]+) s", text)
    if not found:
        raise StepFailed(f"{where}: the cell did not report its time:\n{text[-3000:]}")
    return float(found.group(1))


def login_to_lab(browser: Any, state: dict[str, Any]) -> tuple[float, Any]:
    from playwright.sync_api import expect

    from streamforge_nb.testing.hub import fill_login

    page = browser.new_context(viewport={"width": 1100, "height": 800}).new_page()
    fill_login(page, state, USER)
    started = time.perf_counter()
    page.click("#login_submit")
    page.wait_for_url(f"**/user/{USER}/lab**", timeout=120_000)
    expect(page.locator("#jp-main-dock-panel")).to_be_visible(timeout=120_000)
    return time.perf_counter() - started, page


def launch_in_hub(page: Any, state: dict[str, Any], cell: str, index: int) -> float:
    """Run the cell in a new notebook of the user's server (a fresh kernel in the Pod)."""
    from playwright.sync_api import expect

    from streamforge_nb.testing.hub import open_notebook, put_notebook, run_cell

    base = f"{state['url']}user/{USER}/"
    name = f"bench_hub_{index}.ipynb"
    put_notebook(page, base, name, [cell])
    # A workspace per run: lab's default one (the login's) never restores these notebooks.
    open_notebook(page, base, name, workspace=f"bench-{index}")
    run_cell(page, 0)
    prompt = page.locator(".jp-Notebook .jp-Cell").nth(0).locator(".jp-InputPrompt")
    expect(prompt).to_have_text(re.compile(r"\[\d+\]"), timeout=480_000)
    seconds = took(page.locator(".jp-OutputArea").first.inner_text(), "hub kernel")
    # The next run starts a kernel of its own: this one would only take the Pod's memory.
    xsrf = next(c["value"] for c in page.context.cookies() if c["name"] == "_xsrf")
    for kernel in page.request.get(f"{base}api/kernels").json():
        page.request.delete(f"{base}api/kernels/{kernel['id']}", headers={"X-XSRFToken": xsrf})
    return seconds


def launch_in_local_kernel(cell: str, tmp: Path, env: dict[str, str], index: int) -> float:
    """Run the cell through papermill in a fresh kernel on this machine."""
    from streamforge_nb.testing.hub import notebook_json

    source, output = tmp / f"bench_local_{index}.ipynb", tmp / f"bench_local_{index}.out.ipynb"
    source.write_text(notebook_json([cell]))
    command = [sys.executable, "-m", "papermill", str(source), str(output), "-k", "python3",
               "--no-progress-bar", "--cwd", str(tmp)]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise StepFailed(f"papermill (local kernel) exit {done.returncode}:\n{done.stderr[-3000:]}")
    outputs = json.loads(output.read_text())["cells"][0]["outputs"]
    return took("".join("".join(o.get("text", "")) for o in outputs), "local kernel")


def kernel_env(settings: Any, kubeconfig: Path, shared: Path, home: Path) -> dict[str, str]:
    """What a user's Pod gets from the values, for a kernel on this machine and the node."""
    from streamforge_nb.workflow.launchers import NODE_HOST_PATHS_ENV

    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "ARANGO_"))}
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers,
        KAFKA_USER=settings.kafka_user, CA_PATH=settings.kafka_ca_path,
        KAFKA_PASSWORD=settings.kafka_password.get_secret_value(),
        ARANGO_URL=f"local://{shared / 'store'}", KUBECONFIG=str(kubeconfig),
        STREAMFORGE_HOME=str(home), **{NODE_HOST_PATHS_ENV: json.dumps([str(shared)])},
    )  # fmt: skip
    return env


def ready_server(state: dict[str, Any], timeout: float = 300) -> float:
    """Start jovyan's server through the hub's API; return the seconds until it is ready."""
    from streamforge_nb.testing.hub import hub_api, server

    started = time.perf_counter()
    hub_api(state, "POST", f"/users/{USER}/server")
    while time.perf_counter() - started < timeout:
        users = {u["name"]: u for u in hub_api(state, "GET", "/users")}
        if server(users[USER]).get("ready"):
            return time.perf_counter() - started
        time.sleep(0.5)
    raise StepFailed(f"{USER}'s server not ready within {timeout} s")


def summary(name: str, values: list[float]) -> str:
    return (
        f"{name}: median {statistics.median(values):.2f} s "
        f"(min {min(values):.2f}, max {max(values):.2f}, n={len(values)})"
    )


def measure(
    state: dict[str, Any], cell: str, tmp: Path, env: dict[str, str], runs: int
) -> tuple[list[float], list[float], list[float]]:
    """Per run: login, the hub's launch, the local kernel's launch (interleaved)."""
    from playwright.sync_api import sync_playwright

    logins: list[float] = []
    via_hub: list[float] = []
    via_local: list[float] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )  # fmt: skip
        for index in range(runs):
            with step(f"run {index}: login"):
                seconds, page = login_to_lab(browser, state)
                logins.append(seconds)
            with step(f"run {index}: launch from the hub's kernel"):
                via_hub.append(launch_in_hub(page, state, cell, index))
            page.context.close()
            with step(f"run {index}: launch from a local kernel"):
                via_local.append(launch_in_local_kernel(cell, tmp, env, index))
            print(
                f"run {index}: login {logins[-1]:.2f} s, hub {via_hub[-1]:.2f} s, "
                f"local {via_local[-1]:.2f} s", flush=True,
            )  # fmt: skip
        browser.close()
    return logins, via_hub, via_local


def run(args: argparse.Namespace) -> None:
    from streamforge_nb.local.cluster.node import local_node, node_unavailable
    from streamforge_nb.local.hub import hub_up
    from streamforge_nb.platform.topics import PLATFORM_USER
    from streamforge_nb.testing import local_broker
    from streamforge_nb.testing.exchange import ExchangeServer
    from streamforge_nb.testing.hub import (
        MANIFESTS,
        platform_namespace,
        stop_hub,
        tag_values_image,
    )

    reason = node_unavailable()
    if reason:
        raise StepFailed(f"no real node here: {reason}")
    with step("install the hub"):
        install_hub()
    with step("the image"):
        ref, archive = image_of(args.image_archive)
    values = MANIFESTS / "jupyterhub-values.yaml"
    with tempfile.TemporaryDirectory(prefix="bench-hub-") as name:
        tmp = Path(name)
        os.chmod(tmp, 0o755)
        os.environ["STREAMFORGE_HOME"] = str(tmp / "home")
        with step("broker, node, namespace stf"), ExitStack() as stack:
            broker = stack.enter_context(local_broker(tmp / "kafka"))
            settings = broker.settings(PLATFORM_USER)
            node = stack.enter_context(local_node(tmp / "node", images=[archive]))
            shared = stack.enter_context(platform_namespace(node, settings))
            exchange = stack.enter_context(ExchangeServer())
            tag_values_image(node, ref, values)
            cell = CELL.format(base_url=exchange.base_url, done=DONE)
            env = kernel_env(settings, node.kubeconfig, shared, tmp / "home")
            stack.callback(stop_hub, node, tmp / "hub")
            with step("hub up"):
                state = hub_up(
                    node.kubeconfig, values_path=values, directory=tmp / "hub",
                    host_paths=[shared],
                )  # fmt: skip
                spawn_s = ready_server(state)
            logins, via_hub, via_local = measure(state, cell, tmp, env, args.runs)
    print(f"image {ref}; {USER}'s server spawned and ready in {spawn_s:.1f} s (once)")
    print(summary("login -> JupyterLab ready (server running)", logins))
    print(summary("launch -> first telemetry, hub (kernel in the user's Pod)", via_hub))
    print(summary("launch -> first telemetry, local kernel (papermill on the host)", via_local))
    ratio = statistics.median(via_hub) / statistics.median(via_local)
    print(f"hub / local (medians): {ratio:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--image-archive", type=Path, default=None,
        help="a docker archive streamforge_nb.testing.image built (default: build or cache)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    try:
        run(args)
    except StepFailed as exc:
        print(f"bench/hub.py: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
