"""A real single-node Kubernetes cluster, for tests and laptops: Pods actually run.

from streamforge_nb.local.cluster.node import local_node, node_unavailable

with local_node(tmp_path) as node:                  # etcd, API server, controllers, scheduler,
    node.import_image(archive)                       # kubelet, containerd + runc
    node.apply("manifests/namespace.yaml")           # everything LocalApiServer does, and Pods run
    launcher = node.launcher(host_paths=[shared])    # KubernetesLauncher; Pods on the host network
    launcher = node.launcher(host_network=False)     # ... or on the Pod network (podnet.py)

On top of `testing.kube.local_apiserver` (etcd + kube-apiserver) it starts containerd (Debian's,
with runc and the `bridge` CNI plugin), kube-controller-manager (all default controllers:
Job, TTL-after-finished, garbage collector, ServiceAccount tokens, ...), kube-scheduler and a
kubelet, all built by `scripts/build-kube --node` and installed by `scripts/install-node-deps`.
The settings are those that work on these machines (../shared/FACTS.md, "A real node"): no
negative oom_score_adj, cgroupfs driver under a cgroup root of its own, cgroup v1 allowed, the
kubelet leaves iptables alone, a static pause binary as the sandbox image. There is no
kube-proxy and no DNS: Pods on the host's network (`hostNetwork: true`, `NodeLauncher`'s
default) reach the API server and a local Kafka broker on 127.0.0.1; Pods on the Pod network
(a bridge, podnet.py) reach only servers listening on the bridge's address, `pod_gateway`.

Needs root (containers, mounts, cgroups); `node_unavailable()` says why not otherwise. One
node per machine at a time (containerd and the kubelet hard-code a few host paths); teardown
kills every process, unmounts, removes its cgroups and the files it made outside `directory`.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from streamforge_nb.exceptions import KubeTestError
from streamforge_nb.local.cluster.api import LocalApiServer
from streamforge_nb.local.cluster.apiserver import kube_cache_dir, local_apiserver
from streamforge_nb.local.cluster.hostfs import HostState, oci_archive
from streamforge_nb.local.cluster.parts import (
    CNI_BIN,
    NODE_NAME,
    PAUSE_IMAGE,
    RUNC,
    check_socket_room,
    kubelet_client_pki,
    start_containerd,
    start_controllers,
    start_kubelet,
)
from streamforge_nb.local.cluster.podnet import POD_GATEWAY, make_pod_bridge, remove_pod_bridge
from streamforge_nb.process import (
    LogFile,
    terminate_group,
)
from streamforge_nb.workflow.kubernetes import KubernetesLauncher

__all__ = [
    "CGROUP_ROOT",
    "NODE_NAME",
    "PAUSE_IMAGE",
    "LocalNode",
    "NodeLauncher",
    "find_node_binaries",
    "local_node",
    "node_unavailable",
]

CGROUP_ROOT = "/streamforge-node"
KUBE_COMMANDS = ("kube-controller-manager", "kube-scheduler", "kubelet", "kubectl", "helm", "pause")


def find_node_binaries() -> dict[str, Path]:
    """Locate the node's binaries; raise `KubeTestError` saying which script makes the missing."""
    bin_dir = kube_cache_dir() / "bin"
    found = {name: bin_dir / name for name in KUBE_COMMANDS}
    for name in ("containerd", "ctr"):
        located = shutil.which(name)
        found[name] = Path(located) if located else Path("/usr/bin") / name
    missing = [f"{n} ({p})" for n, p in found.items() if not os.access(p, os.X_OK)]
    plugins = ("loopback", "bridge", "host-local")
    if not os.access(RUNC, os.X_OK) or not all((CNI_BIN / p).is_file() for p in plugins):
        missing.append(f"runc ({RUNC}) or the CNI plugins ({CNI_BIN})")
    if missing:
        raise KubeTestError(
            "the node's binaries are missing: " + ", ".join(missing) + "; install them with "
            "`scripts/install-node-deps` (containerd, runc, CNI plugins: Debian) and "
            "`scripts/build-kube --node` (kubelet, controller manager, scheduler, kubectl, "
            "helm, pause: Go module proxy)"
        )
    return found


def node_unavailable() -> str | None:
    """Why a node cannot run here (not root, binaries missing, no cgroups), or None."""
    if os.geteuid() != 0:
        return "a real node needs root (containers, mounts, cgroups); run as root"
    if (
        not Path("/sys/fs/cgroup/memory").is_dir()
        and not Path("/sys/fs/cgroup/cgroup.controllers").is_file()
    ):
        return "no cgroup hierarchy at /sys/fs/cgroup"
    try:
        find_node_binaries()
    except KubeTestError as exc:
        return str(exc)
    return None


def node_ip() -> str:
    """The machine's first non-loopback IPv4 address (the kubelet refuses a loopback node IP)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.255", 9))  # no packet is sent: this only picks a route
            address = str(sock.getsockname()[0])
        except OSError:
            address = ""
    if address and not address.startswith("127."):
        return address
    out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, check=False).stdout
    for candidate in out.split():
        if "." in candidate and not candidate.startswith("127."):
            return candidate
    raise KubeTestError("no non-loopback IPv4 address for the kubelet's node IP")


ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"


class NodeLauncher(KubernetesLauncher):
    """`KubernetesLauncher` for the local node: local images only, by default on the host network.

    Each Job's Pod gets `imagePullPolicy: IfNotPresent` (no registry), `host_paths` mounted at
    the same path (an embedded store, executed notebooks) and, unless `host_network` is False,
    `hostNetwork: true` (no kube-proxy or DNS here: 127.0.0.1 is the host's, where the broker
    and the API server listen). With `host_network=False` and no `host_paths` the Jobs are left
    as planned, so they pass Pod Security "restricted"; they then reach only servers on the
    Pod network's gateway (`LocalNode.pod_gateway`) and keep files on a PersistentVolumeClaim.
    """

    def __init__(
        self,
        namespace: str = "stf",
        api_client: Any = None,
        host_paths: Sequence[Path] = (),
        host_network: bool = True,
        **options: Any,
    ) -> None:
        super().__init__(namespace=namespace, api_client=api_client, **options)
        self.host_paths = [Path(p) for p in host_paths]
        self.host_network = host_network

    def submit(self, job: dict[str, Any], *, dry_run: bool = False) -> str:
        shaped = for_node(job, self.host_paths, host_network=self.host_network)
        return super().submit(shaped, dry_run=dry_run)


def for_node(
    job: Mapping[str, Any], host_paths: Sequence[Path] = (), *, host_network: bool = True
) -> dict[str, Any]:
    """Return a copy of `job` shaped for the local node (see `NodeLauncher`)."""
    shaped: dict[str, Any] = yaml.safe_load(yaml.safe_dump(dict(job)))
    pod = shaped["spec"]["template"]["spec"]
    if host_network:
        pod["hostNetwork"] = True
        pod["dnsPolicy"] = "ClusterFirstWithHostNet"
    volumes = pod.setdefault("volumes", [])
    for index, path in enumerate(host_paths):
        volumes.append(
            {"name": f"host-{index}", "hostPath": {"path": str(path), "type": "Directory"}}
        )
    for container in pod["containers"]:
        container["imagePullPolicy"] = "IfNotPresent"
        mounts = container.setdefault("volumeMounts", [])
        for index, path in enumerate(host_paths):
            mounts.append({"name": f"host-{index}", "mountPath": str(path)})
    return shaped


@dataclass
class LocalNode:
    """A running single-node cluster: the API server's handles plus the node's own."""

    api: LocalApiServer
    directory: Path
    node_ip: str
    containerd_socket: Path
    binaries: dict[str, Path]
    timings: dict[str, float] = field(default_factory=dict)
    # The host's address on the Pod network: what Pods without hostNetwork can reach.
    pod_gateway: str = POD_GATEWAY

    @property
    def kubeconfig(self) -> Path:
        return self.api.kubeconfig

    def __getattr__(self, name: str) -> Any:
        # api_client, apply, create, service_account_token, ...: the API server's.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.api, name)

    def ctr(self, *args: str, timeout: float = 600) -> str:
        """Run `ctr` against this node's containerd, namespace k8s.io; return its output."""
        command = [str(self.binaries["ctr"]), "--address", str(self.containerd_socket)]
        done = subprocess.run(
            [*command, "--namespace", "k8s.io", *args],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise KubeTestError(f"ctr {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
        return done.stdout

    def import_image(self, archive: Path) -> None:
        """Import an OCI or docker archive into the node's containerd (then unpacked)."""
        self.ctr("images", "import", "--no-unpack=false", str(archive))

    def images(self) -> list[str]:
        """Names of the images the node has."""
        return [ln.split()[0] for ln in self.ctr("images", "ls").splitlines()[1:] if ln.strip()]

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run kubectl as admin against this cluster."""
        return subprocess.run(
            [str(self.binaries["kubectl"]), "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True, text=True, check=check, timeout=120,
        )  # fmt: skip

    def launcher(
        self,
        namespace: str = "stf",
        api_client: Any = None,
        host_paths: Sequence[Path] = (),
        host_network: bool = True,
        **options: Any,
    ) -> NodeLauncher:
        """A launcher for this node (admin, or `api_client`: e.g. a ServiceAccount's);
        `options` go to `KubernetesLauncher` (e.g. `stuck_grace`)."""
        return NodeLauncher(
            namespace, api_client or self.api_client(), host_paths, host_network, **options
        )

    def apply_allowing_host_pods(self, manifest: Path) -> list[dict[str, Any]]:
        """Apply `manifest` with its Namespaces' Pod Security enforcement set to "privileged".

        `NodeLauncher` by default gives Pods `hostNetwork` and hostPath volumes (the host's
        127.0.0.1 and files), which Pod Security "restricted" (and "baseline") forbids. Only
        the enforce label changes: warn and audit stay as shipped, and applying the manifest
        as is (same field manager) restores its enforcement.
        """
        with manifest.open(encoding="utf-8") as handle:
            documents = [d for d in yaml.safe_load_all(handle) if d]
        for document in documents:
            if document.get("kind") == "Namespace":
                document["metadata"].setdefault("labels", {})[ENFORCE_LABEL] = "privileged"
        return self.api.apply(documents)

    def wait_service_account(
        self, namespace: str, name: str = "default", timeout: float = 60
    ) -> None:
        """Wait until the ServiceAccount controller made `namespace/name` (Pods need it)."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        core = client.CoreV1Api(self.api_client())
        deadline = time.monotonic() + timeout
        while True:
            try:
                core.read_namespaced_service_account(name, namespace)
                return
            except ApiException as exc:
                if exc.status != 404 or time.monotonic() > deadline:
                    raise
            time.sleep(0.2)


# --- start -------------------------------------------------------------------------------------


@contextmanager
def local_node(
    directory: Path,
    *,
    timeout: float = 180.0,
    images: Iterable[Path] = (),
    cgroup_root: str = CGROUP_ROOT,
) -> Iterator[LocalNode]:
    """Start a whole single-node cluster under `directory`; tear it all down on exit.

    Raises `KubeTestError` when something is missing (naming the script that makes it) or a
    component does not become ready within `timeout` (with its log tail). The Node is Ready
    and labelled `streamforge-worker=true` when this yields.
    """
    directory = Path(directory).resolve()
    check_socket_room(directory)
    reason = node_unavailable()
    if reason:
        raise KubeTestError(reason)
    binaries = find_node_binaries()
    directory.mkdir(parents=True, exist_ok=True)
    with _machine_lock(timeout), _node(directory, binaries, timeout, images, cgroup_root) as node:
        yield node


@contextmanager
def _machine_lock(timeout: float) -> Iterator[None]:
    """One node per machine: containerd and the kubelet share hard-coded host paths."""
    path = kube_cache_dir().parent / "node.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise KubeTestError(
                        f"another node runs on this machine (lock {path} held)"
                    ) from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _node(
    directory: Path,
    binaries: dict[str, Path],
    timeout: float,
    images: Iterable[Path],
    cgroup_root: str,
) -> Iterator[LocalNode]:
    host = HostState.record(directory, cgroup_root)
    started = time.monotonic()
    deadline = started + timeout
    ip = node_ip()
    pki = directory / "node-pki"
    client_ca, client_cert, client_key = kubelet_client_pki(pki)
    processes: list[subprocess.Popen[bytes]] = []
    timings: dict[str, float] = {}
    try:
        make_pod_bridge()  # before any server may want to listen on its address
        with ExitStack() as stack:
            api = stack.enter_context(
                local_apiserver(
                    directory / "apiserver",
                    timeout=timeout,
                    extra_args=[
                        f"--kubelet-client-certificate={client_cert}",
                        f"--kubelet-client-key={client_key}",
                        "--kubelet-preferred-address-types=InternalIP",
                    ],
                )
            )
            timings["apiserver"] = time.monotonic() - started
            socket_path = start_containerd(binaries, directory, processes, deadline)
            node = LocalNode(api, directory, ip, socket_path, binaries, timings)
            pause = oci_archive(binaries["pause"], PAUSE_IMAGE, directory / "pause.oci.tar")
            node.import_image(pause)
            for archive in images:
                node.import_image(archive)
            timings["containerd"] = time.monotonic() - started
            start_controllers(binaries, directory, api, processes, deadline)
            start_kubelet(binaries, directory, api, ip, client_ca, socket_path, cgroup_root,
                           processes, deadline)  # fmt: skip
            _wait_node_ready(node, deadline)
            timings["ready"] = time.monotonic() - started
            yield node
            # The kubelet and the controllers first (nothing restarts a container then), the
            # containers through containerd, containerd; the API server and etcd last.
            for process in reversed(processes[1:]):
                terminate_group(process, grace=10)
            _drain(node)
            terminate_group(processes[0], grace=10)
            processes.clear()
    finally:
        for process in reversed(processes):
            terminate_group(process, grace=10)
        left = host.cleanup(str(directory))
        remove_pod_bridge()
        if left:
            (directory / "teardown.log").write_text("\n".join(left) + "\n")


def _drain(node: LocalNode) -> None:
    """Kill and delete every container and sandbox through containerd (no kubelet needed)."""
    try:
        tasks = node.ctr("tasks", "ls", "-q", timeout=30).split()
        for task in tasks:
            subprocess.run(
                [str(node.binaries["ctr"]), "-a", str(node.containerd_socket), "-n", "k8s.io",
                 "tasks", "kill", "-s", "SIGKILL", task],
                capture_output=True, timeout=30, check=False,
            )  # fmt: skip
        for task in tasks:
            subprocess.run(
                [str(node.binaries["ctr"]), "-a", str(node.containerd_socket), "-n", "k8s.io",
                 "tasks", "delete", "-f", task],
                capture_output=True, timeout=30, check=False,
            )  # fmt: skip
    except (KubeTestError, subprocess.TimeoutExpired):
        pass  # the sweep in HostState.cleanup kills whatever is left


def _wait_node_ready(node: LocalNode, deadline: float) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(node.api_client())
    last = "not registered"
    while time.monotonic() < deadline:
        try:
            found = core.read_node(NODE_NAME)
            conditions = {c.type: c for c in (found.status and found.status.conditions) or []}
            ready = conditions.get("Ready")
            taints = [t.key for t in (found.spec and found.spec.taints) or []]
            if ready is not None and ready.status == "True" and not taints:
                return
            state = f"{ready.status} ({ready.message})" if ready else "?"
            last = f"Ready={state}; taints {taints}"
        except ApiException as exc:
            last = f"HTTP {exc.status}"
        time.sleep(0.2)
    log = LogFile(node.directory / "logs" / "kubelet.log")
    raise KubeTestError(f"node {NODE_NAME} not Ready in time: {last}; kubelet log:\n{log.tail()}")
