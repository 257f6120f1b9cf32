"""The JupyterHub path for real: a hub with KubeSpawner on the local node spawns the image.

A user logs in on the hub's real login page in Chromium, the single-user Pod (the project's
image, the notebook ServiceAccount) starts on the node, JupyterLab opens, the LaunchPanel in
a notebook launches the candle workflow as Jobs from inside the user's Pod, and `CandleStore`
in that kernel reads the candles back. Then culling as manifests/jupyterhub-values.yaml sets
it, with the times shortened. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import MANIFESTS, NAMESPACE
from playwright.sync_api import Page, expect

from streamforge_nb.local.cluster.node import LocalNode
from streamforge_nb.local.hub import hub_up
from streamforge_nb.testing.exchange import ExchangeServer
from streamforge_nb.testing.hub import (
    hub_api,
    login,
    open_notebook,
    put_notebook,
    run_cell,
    server,
    stop_hub,
    tag_values_image,
)
from streamforge_nb.testing.image import BuiltImage

pytestmark = [pytest.mark.node, pytest.mark.browser]

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
VALUES = MANIFESTS / "jupyterhub-values.yaml"
SPAWN_MS = 240_000


@pytest.fixture
def platform_image(node: LocalNode, node_image: BuiltImage) -> str:
    """The locally built image under the name the values give (no registry to pull from)."""
    return tag_values_image(node, node_image.ref, VALUES)


def _start(directory: Path, node: LocalNode, stf: Path, **options: Any) -> dict[str, Any]:
    return hub_up(
        node.kubeconfig, values_path=VALUES, directory=directory, host_paths=[stf], **options
    )


@pytest.fixture
def hub_dir(tmp_path: Path, node: LocalNode) -> Iterator[Path]:
    directory = tmp_path / "hub"
    yield directory
    stop_hub(node, directory)


def test_a_user_logs_in_spawns_the_image_and_launches_jobs_from_jupyterlab(
    node: LocalNode,
    stf: Path,
    platform_image: str,
    hub_dir: Path,
    browser_page: Page,
) -> None:
    from kubernetes import client

    state = _start(hub_dir, node, stf)
    assert state["image"] == platform_image
    page = browser_page
    with ExchangeServer() as exchange:
        login(page, state, "jovyan")
        page.wait_for_url("**/user/jovyan/lab**", timeout=SPAWN_MS)
        expect(page.locator("#jp-main-dock-panel")).to_be_visible(timeout=120_000)

        # The server Pod: the image, the notebook ServiceAccount, uid 1001 / fsGid 100.
        pods = client.CoreV1Api(node.api_client()).list_namespaced_pod(
            NAMESPACE, label_selector="component=singleuser-server"
        )
        (pod,) = [p for p in pods.items if p.metadata.name == "jupyter-jovyan"]
        assert pod.spec.service_account_name == "streamforge-notebook"
        assert pod.spec.containers[0].image == platform_image
        assert pod.spec.containers[0].security_context.run_as_user == 1001
        assert pod.spec.security_context.fs_group == 100
        # KubeSpawner reads the values' "1G" as 2**30 bytes, as on the cluster.
        assert pod.spec.containers[0].resources.requests["memory"] == str(2**30)

        base = state["url"] + "user/jovyan/"
        panel = (
            "from streamforge_nb import LaunchPanel\n"
            "panel = LaunchPanel(symbol='ETHUSDT', interval='15m',\n"
            f"    time_range='2024-08-01:2024-08-02', base_url='{exchange.base_url}',\n"
            "    launcher='kubernetes')\n"
            "panel.widget"
        )
        read_back = (
            "from streamforge_nb import CandleStore\n"
            "with CandleStore.open(panel.store_url) as store:  # ARANGO_URL of the Pod\n"
            "    n = len(store.load('ETHUSDT', '15m', '2024-08-01', '2024-08-02'))\n"
            "print(f'read back {n} candles')"
        )
        put_notebook(page, base, "hub_launch.ipynb", [panel, read_back])
        open_notebook(page, base, "hub_launch.ipynb")
        run_cell(page, 0)
        launch = page.locator(".widget-button", has_text="Launch")
        expect(launch).to_be_visible(timeout=120_000)
        launch.click()
        progress = page.locator(".widget-label", has_text="candles stored")
        expect(progress).to_contain_text("96 candles stored", timeout=300_000)
        expect(progress).to_contain_text("arango-candles: finished", timeout=60_000)
        expect(progress).to_contain_text("loader-candles: finished", timeout=60_000)
        chart = page.locator(".jp-OutputArea .js-plotly-plot")
        expect(chart.locator(".gtitle")).to_contain_text("96 candles", timeout=60_000)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "hub_launch_panel.png"), full_page=True)

        # The queue's Jobs ran on the node, created from the user's Pod, and complete (a Job
        # ends a little after its worker's last event: the Pod still has to exit).
        text = page.locator(".jp-OutputArea").first.inner_text()
        (queue_id,) = set(re.findall(r"wf-ethusdt-api_candles_15m-20240801-[0-9a-z]+", text))
        batch = client.BatchV1Api(node.api_client())
        deadline = time.monotonic() + 120
        while True:
            jobs = batch.list_namespaced_job(NAMESPACE, label_selector=f"queue_id={queue_id}")
            done = {j.metadata.labels.get("target"): j.status.succeeded for j in jobs.items}
            if done == {"loader-candles": 1, "arango-candles": 1} or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert done == {"loader-candles": 1, "arango-candles": 1}

        run_cell(page, 1)
        expect(
            page.locator(".jp-OutputArea-output", has_text="read back 96 candles")
        ).to_be_visible(timeout=60_000)


def test_culling_stops_idle_servers_admins_included_and_keeps_every_account(
    node: LocalNode, stf: Path, platform_image: str, hub_dir: Path
) -> None:
    """manifests/jupyterhub-values.yaml: `cull.users: false` keeps accounts, `adminUsers: true`
    (which the culler reads only when it deletes users) leaves admins' servers culled too."""
    state = _start(hub_dir, node, stf, cull={"timeout": 20, "every": 5})
    hub_api(state, "POST", "/users/analyst")  # jovyan exists: an admin user of the values
    for user in ("jovyan", "analyst"):
        hub_api(state, "POST", f"/users/{user}/server")
    seen: set[str] = set()  # a server may be culled before the other is ready: each once
    deadline = time.monotonic() + SPAWN_MS / 1000
    users: dict[str, Any] = {}
    while seen != {"jovyan", "analyst"} and time.monotonic() < deadline:
        users = {u["name"]: u for u in hub_api(state, "GET", "/users")}
        seen |= {n for n in ("jovyan", "analyst") if server(users[n]).get("ready")}
        time.sleep(1)
    assert seen == {"jovyan", "analyst"}, f"servers not ready: {users}"
    assert users["jovyan"]["admin"] and not users["analyst"]["admin"]

    # Idle past the (shortened) timeout, checked every 5 s: both servers stopped.
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        users = {u["name"]: u for u in hub_api(state, "GET", "/users")}
        if not any(users[n]["servers"] for n in ("jovyan", "analyst")):
            break
        time.sleep(3)
    else:
        pytest.fail(f"idle servers not culled: {users}")
    assert {"jovyan", "analyst"} <= set(users)  # accounts stay
    log = Path(state["log"]).read_text()
    assert "Culling server" in log, log[-3000:]
