"""How `testing.node` starts each piece: containerd, the controllers, the kubelet.

The settings are those that work on these machines (../shared/FACTS.md, "A real node"); each
`start_*` appends its process to `processes` (the caller stops them) and returns once the
piece answers, or raises `KubeTestError` with its log tail.
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
import subprocess
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from streamforge_nb.exceptions import KubeTestError, NotReady
from streamforge_nb.local.cluster.api import LocalApiServer
from streamforge_nb.local.cluster.podnet import pod_network_conflist
from streamforge_nb.local.tls import pkcs8_pem
from streamforge_nb.process import (
    HttpProbe,
    LogFile,
    free_port,
    spawn,
    wait_ready,
)

__all__ = [
    "CNI_BIN",
    "NODE_NAME",
    "PAUSE_IMAGE",
    "RUNC",
    "WORKER_LABEL",
    "kubelet_client_pki",
    "start_containerd",
    "start_controllers",
    "start_kubelet",
]

NODE_NAME = "streamforge-node"
PAUSE_IMAGE = "streamforge.local/pause:3.10-streamforge"
WORKER_LABEL = "streamforge-worker=true"
CNI_BIN = Path("/usr/lib/cni")
RUNC = Path("/usr/sbin/runc")


def _started(
    what: str,
    process: subprocess.Popen[bytes],
    log: LogFile,
    ready: Any,
    deadline: float,
) -> None:
    try:
        wait_ready(process, ready, log=log, deadline=deadline, what=what)
    except NotReady as exc:
        raise KubeTestError(str(exc)) from None


SOCKET_PATH_MAX = 104
"""Bytes containerd lets a Unix socket's path take (the kernel's sun_path holds 108)."""


def containerd_socket(directory: Path) -> Path:
    """Where the node under `directory` has containerd listen."""
    return directory / "containerd" / "containerd.sock"


def check_socket_room(directory: Path) -> None:
    """Raise `KubeTestError` if the node's sockets under `directory` would not fit a Unix
    socket's path: containerd would fail only after the API server had started."""
    longest = containerd_socket(directory).with_name("containerd.sock.ttrpc")
    size = len(os.fsencode(longest))
    if size > SOCKET_PATH_MAX:
        raise KubeTestError(
            f"the node's directory {directory} is too long: containerd's socket {longest} "
            f"would take {size} bytes, over the {SOCKET_PATH_MAX} a Unix socket's path may; "
            "use a shorter directory"
        )


def start_containerd(
    binaries: dict[str, Path],
    directory: Path,
    processes: list[subprocess.Popen[bytes]],
    deadline: float,
) -> Path:
    base = directory / "containerd"
    net_d = directory / "cni" / "net.d"
    for path in (base / "root", base / "state", base / "opt", net_d):
        path.mkdir(parents=True, exist_ok=True)
    socket_path = containerd_socket(directory)
    # The Pod network (podnet.py): a Ready node, and Pods of their own address on the
    # node's bridge; hostNetwork Pods do not use it.
    (net_d / "10-streamforge-pods.conflist").write_text(
        pod_network_conflist(directory / "cni" / "ipam")
    )
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    config = f"""version = 2
root = "{base / "root"}"
state = "{base / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{socket_path}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{base / "opt"}"
[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        BinaryName = "{RUNC}"
        SystemdCgroup = false
  [{cri}.cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{net_d}"
"""
    config_path = base / "config.toml"
    config_path.write_text(config)
    process, log = spawn(
        [str(binaries["containerd"]), "--config", str(config_path), "--log-level", "warn"],
        directory / "logs" / "containerd.log",
    )
    processes.append(process)
    _started("containerd", process, log, socket_path.exists, deadline)
    return socket_path


def start_controllers(
    binaries: dict[str, Path],
    directory: Path,
    api: LocalApiServer,
    processes: list[subprocess.Popen[bytes]],
    deadline: float,
) -> None:
    pki = api.directory / "pki"
    controllers = [
        "--use-service-account-credentials",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--root-ca-file={api.ca_path}",
        "--controllers=*",
        # Quick reaction to a dead Pod or a finished Job in tests.
        "--concurrent-ttl-after-finished-syncs=5",
    ]
    for name, extra in (("kube-controller-manager", controllers), ("kube-scheduler", [])):
        _start_component(name, binaries, directory, api, extra, processes, deadline)


def _start_component(
    name: str,
    binaries: dict[str, Path],
    directory: Path,
    api: LocalApiServer,
    extra: list[str],
    processes: list[subprocess.Popen[bytes]],
    deadline: float,
) -> None:
    """Start a control-plane component as the API server's admin; wait for its /healthz."""
    kubeconfig = str(api.kubeconfig)
    port = free_port()
    process, log = spawn(
        [
            str(binaries[name]),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            "--leader-elect=false",
            *extra,
            "--v=1",
        ],
        directory / "logs" / f"{name}.log",
    )
    processes.append(process)
    _started(
        name, process, log,
        HttpProbe(f"https://127.0.0.1:{port}/healthz", accept="ok", context=_insecure()), deadline,
    )  # fmt: skip


def _insecure() -> Any:

    # The components' self-signed serving certificates, on loopback: only /healthz is read.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def start_kubelet(
    binaries: dict[str, Path],
    directory: Path,
    api: LocalApiServer,
    ip: str,
    client_ca: Path,
    socket_path: Path,
    cgroup_root: str,
    processes: list[subprocess.Popen[bytes]],
    deadline: float,
) -> None:
    root = directory / "kubelet"
    (root / "pki").mkdir(parents=True, exist_ok=True)
    make_cgroup_root(cgroup_root)
    healthz = free_port()
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": ip,
        "port": free_port(ip),
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz,
        # Only the API server (its client certificate, from our CA) may call the kubelet.
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(client_ca)},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root,
        "cgroupsPerQOS": True,
        "enforceNodeAllocatable": ["pods"],
        "failCgroupV1": False,
        "failSwapOn": False,
        "makeIPTablesUtilChains": False,
        "containerRuntimeEndpoint": f"unix://{socket_path}",
        "podLogsDir": str(directory / "pod-logs"),
        "evictionHard": {
            "memory.available": "50Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "syncFrequency": "5s",
        "fileCheckFrequency": "5s",
        "nodeStatusUpdateFrequency": "5s",
        "resolvConf": "/etc/resolv.conf",
        "clusterDomain": "cluster.local",
        "localStorageCapacityIsolation": False,
        "protectKernelDefaults": False,
        "shutdownGracePeriod": "0s",
    }
    config_path = root / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    process, log = spawn(
        [
            str(binaries["kubelet"]),
            f"--config={config_path}",
            f"--kubeconfig={api.kubeconfig}",
            f"--root-dir={root}",
            f"--cert-dir={root / 'pki'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={ip}",
            f"--node-labels={WORKER_LABEL}",
            "--v=1",
        ],
        directory / "logs" / "kubelet.log",
    )
    processes.append(process)
    _started(
        "kubelet", process, log, HttpProbe(f"http://127.0.0.1:{healthz}/healthz", accept="ok"),
        deadline,
    )  # fmt: skip


def make_cgroup_root(cgroup_root: str) -> None:
    """The kubelet wants its cgroup root to exist in every hierarchy (cpuset: with cpus and
    mems, copied from the top, or nothing can join it)."""
    base = Path("/sys/fs/cgroup")
    for hierarchy in sorted(base.iterdir()):
        if not hierarchy.is_dir() or hierarchy.is_symlink():
            continue
        target = hierarchy / cgroup_root.strip("/")
        target.mkdir(exist_ok=True)
        for name in ("cpuset.cpus", "cpuset.mems"):
            if (hierarchy / name).is_file() and not (target / name).read_text().strip():
                (target / name).write_text((hierarchy / name).read_text())


def kubelet_client_pki(directory: Path) -> tuple[Path, Path, Path]:
    """A CA the kubelet trusts for clients, and the API server's client certificate from it."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    until = now + dt.timedelta(days=7)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "streamforge-node kubelet-client CA")]
    )
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
            x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver-kubelet-client"),
        ]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(until)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip

    pem = serialization.Encoding.PEM
    paths = directory / "kubelet-client-ca.crt", directory / "apiserver-kubelet-client.crt"
    paths[0].write_bytes(ca.public_bytes(pem))
    paths[1].write_bytes(cert.public_bytes(pem))
    key_path = directory / "apiserver-kubelet-client.key"
    key_path.write_bytes(pkcs8_pem(key))
    key_path.chmod(0o600)
    return paths[0], paths[1], key_path
