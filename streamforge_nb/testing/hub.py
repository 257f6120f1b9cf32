"""The local hub's pieces for tests and benchmarks: namespace stf on the node, the image under
the values' name, the hub's REST API, and a user's steps in JupyterLab (Playwright).

    with platform_namespace(node, settings) as shared:   # manifests/ deployed, test values
        tag_values_image(node, image.ref, VALUES)
        state = hub_up(node.kubeconfig, values_path=VALUES, host_paths=[shared])
        login(page, state, "jovyan")                     # the hub's real login page
        put_notebook(page, state["url"] + "user/jovyan/", "x.ipynb", ["1 + 1"])

tests/test_node_hub.py and bench/hub.py use them; Playwright is imported by the caller.
"""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nbformat
import yaml

from streamforge_nb.exceptions import KubeTestError
from streamforge_nb.settings import Settings

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from streamforge_nb.local.cluster.node import LocalNode

__all__ = [
    "MANIFESTS",
    "NAMESPACE",
    "NOTEBOOK_SA",
    "fill_login",
    "hub_api",
    "login",
    "notebook_json",
    "open_notebook",
    "platform_namespace",
    "put_notebook",
    "run_cell",
    "server",
    "stop_hub",
    "tag_values_image",
]

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
NAMESPACE = "stf"
NOTEBOOK_SA = "streamforge-notebook"


def _documents(name: str) -> list[dict[str, Any]]:
    with (MANIFESTS / name).open() as handle:
        return [d for d in yaml.safe_load_all(handle) if d]


@contextmanager
def platform_namespace(node: LocalNode, settings: Settings) -> Iterator[Path]:
    """Namespace stf as manifests/ deploy it: ConfigMap, Secrets (test values), notebook RBAC;
    yield a shared directory (hostPath) for the embedded store and the executed notebooks.

    `settings`: the SASL_SSL user the Pods get (KAFKA_USER, the CA). The Secrets go on exit.
    """
    from kubernetes import client

    core = client.CoreV1Api(node.api_client())
    # Not enforcing "restricted": the node's Pods need hostNetwork and hostPath (test_node.py).
    node.apply_allowing_host_pods(MANIFESTS / "namespace.yaml")
    node.apply(MANIFESTS / "notebook-rbac.yaml")
    shared = node.directory / "shared" / f"run-{time.monotonic_ns()}"
    shared.mkdir(parents=True)
    os.chmod(shared, 0o777)
    (config,) = _documents("worker-config.yaml")
    config["data"]["KAFKA_BOOTSTRAP_SERVERS"] = settings.kafka_bootstrap_servers
    config["data"]["ARANGO_URL"] = f"local://{shared / 'store'}"
    # hostNetwork Pods share the node's ports: each worker serves its metrics on a free port
    # (0), named in its `started` event; no lingering unless a test scrapes (test_node_metrics):
    # worker-config.yaml's 30 s would hold every Job (and every node test) 30 s longer.
    config["data"]["STREAMFORGE_METRICS_PORT"] = "0"
    config["data"]["STREAMFORGE_METRICS_LINGER_SECONDS"] = "0"
    (secret,) = _documents("worker-secret.template.yaml")
    if not (settings.kafka_user and settings.kafka_password and settings.kafka_ca_path):
        raise KubeTestError("platform_namespace needs SASL_SSL settings (a user and the CA)")
    secret["stringData"]["KAFKA_USER"] = settings.kafka_user
    secret["stringData"]["KAFKA_PASSWORD"] = settings.kafka_password.get_secret_value()
    ca = Path(settings.kafka_ca_path).read_bytes()
    ca_secret = {
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "kafka-cluster-ca", "namespace": NAMESPACE},
        "data": {"ca.crt": base64.b64encode(ca).decode()},
    }  # fmt: skip
    # The platform's registry Secret, which every Job names (imagePullSecrets); a test value.
    auths = {"auths": {"registry.dmz.home": {"auth": base64.b64encode(b"ci:test").decode()}}}
    regcred = {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": "regcred", "namespace": NAMESPACE},
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(auths).encode()).decode()},
    }  # fmt: skip
    node.apply([config, secret, ca_secret, regcred])
    node.wait_service_account(NAMESPACE, NOTEBOOK_SA)
    node.wait_service_account(NAMESPACE)
    # Files the host makes (the queue's record) stay writable for the Pods' uid 1001.
    umask = os.umask(0)
    try:
        yield shared
    finally:
        os.umask(umask)
        for name in ("kafka-cluster-ca", "streamforge-secrets", "regcred"):
            core.delete_namespaced_secret(name, NAMESPACE)


def tag_values_image(node: LocalNode, image_ref: str, values: Path) -> str:
    """Tag the locally built image with the values' `singleuser.image` (no registry here)."""
    image = yaml.safe_load(values.read_text())["singleuser"]["image"]
    name = f"{image['name']}:{image['tag']}"
    if name not in node.images():
        node.ctr("images", "tag", "--force", image_ref, name)
    return name


def hub_api(state: dict[str, Any], method: str, path: str) -> Any:
    """Call the hub's REST API with the local admin service's token; the hub log on an error."""
    token = Path(state["admin_token_file"]).read_text().strip()
    request = urllib.request.Request(
        f"{state['url']}hub/api{path}",
        method=method,
        headers={"Authorization": f"token {token}"},
        data=b"{}" if method == "POST" else None,
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        log = Path(state["log"]).read_text()[-4000:]
        raise KubeTestError(
            f"{method} {path}: {exc.code} {exc.read()[:500]!r}\nhub log:\n{log}"
        ) from None
    return json.loads(body) if body else None


def server(user: dict[str, Any]) -> dict[str, Any]:
    """The default server of a user as the hub's API lists it ({} when none)."""
    found: dict[str, Any] = user.get("servers", {}).get("", {})
    return found


def fill_login(page: Page, state: dict[str, Any], user: str) -> None:
    """Open the hub's login page and fill it in (the password from the hub's 0600 file)."""
    page.goto(state["login"], wait_until="domcontentloaded")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", Path(state["password_file"]).read_text().strip())


def login(page: Page, state: dict[str, Any], user: str) -> None:
    """Fill in the hub's login page and submit it."""
    fill_login(page, state, user)
    page.click("#login_submit")


def stop_hub(node: LocalNode, directory: Path) -> None:
    """Stop the hub in `directory` and delete the single-user Pods it spawned."""
    from streamforge_nb.local.hub import hub_down

    hub_down(directory)
    node.kubectl(
        "delete", "pods", "-n", NAMESPACE, "-l", "component=singleuser-server",
        "--wait=false", check=False,
    )  # fmt: skip


def notebook_json(cells: list[str]) -> str:
    """A Python 3 notebook of code `cells`, as nbformat writes it."""
    v4: Any = nbformat.v4  # untyped
    nb = v4.new_notebook(cells=[v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    writes: Any = nbformat.writes
    return str(writes(nb))


def put_notebook(page: Page, base: str, name: str, cells: list[str]) -> None:
    """Save a notebook into the user's server through its contents API (the page's session)."""
    xsrf = next(c["value"] for c in page.context.cookies() if c["name"] == "_xsrf")
    content = json.loads(notebook_json(cells))
    answer = page.request.put(
        f"{base}api/contents/{name}",
        data=json.dumps({"type": "notebook", "format": "json", "content": content}),
        headers={"X-XSRFToken": xsrf, "Content-Type": "application/json"},
    )
    if not answer.ok:
        raise KubeTestError(f"saving {name}: {answer.status} {answer.text()[:500]}")


def open_notebook(page: Page, base: str, name: str, *, workspace: str | None = None) -> None:
    """Open a saved notebook in JupyterLab and wait until its new kernel is idle.

    `workspace`: a JupyterLab workspace of that name (new: no other tab restored).
    """
    from playwright.sync_api import expect

    lab = f"{base}lab/workspaces/{workspace}/" if workspace else f"{base}lab/"
    page.goto(f"{lab}tree/{name}", wait_until="domcontentloaded")
    idle = page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")
    expect(idle).to_have_count(1, timeout=120_000)


def run_cell(page: Page, index: int) -> None:
    """Run cell `index` (Shift+Enter in it); again if the keys came before the editor did."""
    from playwright.sync_api import expect

    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    prompt = cell.locator(".jp-InputPrompt")
    for _ in range(3):
        cell.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Shift+Enter")
        try:
            expect(prompt).not_to_have_text("[ ]:", timeout=15_000)
            return
        except AssertionError:
            continue
    raise KubeTestError(f"cell {index} never started: {prompt.inner_text()!r}")
