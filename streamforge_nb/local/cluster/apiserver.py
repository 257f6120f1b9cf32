"""Helpers for tests, ours and users': a real Kubernetes API server (with etcd) per test session.

from streamforge_nb.local.cluster.apiserver import local_apiserver

with local_apiserver(tmp_path) as kube:
    api = kube.api_client()                      # kubernetes.client.ApiClient, as admin
    kube.apply("manifests/namespace.yaml")       # server-side apply of every document
    kube.apply("manifests/notebook-rbac.yaml")
    kube.create(job_documents, dry_run=True)     # server-side dry run
    as_notebook = kube.service_account_client("stf", "streamforge-notebook")  # real SA token
    load_kube_config(config_file=str(kube.kubeconfig))  # or kubectl --kubeconfig ...

The binaries are a kube-apiserver and an etcd built from the Go module proxy by
`scripts/build-kube` (into ~/.cache/streamforge-nb/kube/bin, or $STREAMFORGE_KUBE_CACHE/bin;
$STREAMFORGE_KUBE_APISERVER and $STREAMFORGE_ETCD name other binaries). There is no
controller manager, scheduler or kubelet: objects are stored, validated, admitted and
authorized exactly as on a cluster, but a Job never gets a Pod. Authentication: an admin
token (`--token-auth-file`, group `system:masters`) and real ServiceAccount tokens from the
TokenRequest API, signed by a key generated at start; authorization is RBAC.
"""

from __future__ import annotations

import os
import secrets
import shutil
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from streamforge_nb.exceptions import KubeTestError, ProcessExited, StartTimeout
from streamforge_nb.local.cluster.api import SERVICE_ACCOUNT_ISSUER, LocalApiServer
from streamforge_nb.local.cluster.pki import write_kubeconfig, write_pki
from streamforge_nb.process import (
    LOOPBACK,
    HttpProbe,
    free_port,
    spawn,
    terminate_group,
    wait_ready,
)

__all__ = [
    "KubeBinaries",
    "KubeTestError",
    "find_kube_binaries",
    "kube_cache_dir",
    "local_apiserver",
]

BUILD_SCRIPT = "scripts/build-kube"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
_T = TypeVar("_T")


@dataclass(frozen=True)
class KubeBinaries:
    """Paths of the kube-apiserver and etcd binaries."""

    kube_apiserver: Path
    etcd: Path


def cache_dir(name: str, env: str) -> Path:
    """Where a build for tests keeps its work: `$<env>`, else ~/.cache/streamforge-nb/<name>."""
    configured = os.environ.get(env)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "streamforge-nb" / name


def kube_cache_dir() -> Path:
    """Where `scripts/build-kube` puts its work: $STREAMFORGE_KUBE_CACHE or the user cache."""
    return cache_dir("kube", "STREAMFORGE_KUBE_CACHE")


def find_kube_binaries() -> KubeBinaries:
    """Locate the binaries; raise `KubeTestError` naming `scripts/build-kube` when missing."""
    bin_dir = kube_cache_dir() / "bin"
    found: dict[str, Path] = {}
    for name, env in (
        ("kube-apiserver", "STREAMFORGE_KUBE_APISERVER"),
        ("etcd", "STREAMFORGE_ETCD"),
    ):
        path = Path(os.environ[env]).expanduser() if os.environ.get(env) else bin_dir / name
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise KubeTestError(
                f"{name} not found at {path}: build it with `{BUILD_SCRIPT}` (kube-apiserver and "
                f"etcd from the Go module proxy, about 5 min once on 2 cores; it honours "
                f"STREAMFORGE_KUBE_CACHE), or point {env} at an existing binary"
            )
        found[name] = path
    return KubeBinaries(kube_apiserver=found["kube-apiserver"], etcd=found["etcd"])


@contextmanager
def local_apiserver(
    directory: Path, *, timeout: float = 120.0, extra_args: Sequence[str] = ()
) -> Iterator[LocalApiServer]:
    """Start etcd and kube-apiserver on free 127.0.0.1 ports under `directory`; stop both on exit.

    `extra_args` go last on the API server's command line (a repeated flag wins over ours):
    the real node (`streamforge_nb.local.cluster.node`) adds its kubelet client certificate.

    Raises `KubeTestError` when a binary is missing (naming `scripts/build-kube`) or a server
    does not become ready within `timeout` (with its log tail). On exit both process groups
    are terminated (then killed) and waited for: nothing is left running.
    """
    binaries = find_kube_binaries()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    processes: list[subprocess.Popen[bytes]] = []
    server: LocalApiServer | None = None
    try:
        etcd_url = _start_etcd(binaries.etcd, directory, processes, deadline)
        server = _start_apiserver(
            binaries.kube_apiserver, directory, etcd_url, processes, deadline, extra_args
        )
        yield server
    finally:
        if server is not None:
            server.close_clients()
        for process in reversed(processes):
            terminate_group(process)


# --- processes ---------------------------------------------------------------------------------


def _start_server(
    name: str,
    attempt: Callable[[], tuple[list[str], HttpProbe, _T]],
    log_path: Path,
    processes: list[subprocess.Popen[bytes]],
    deadline: float,
    *,
    again: Callable[[], None] = lambda: None,
) -> _T:
    """Start `name` and wait until its probe answers; return what `attempt` says it serves.

    `attempt()` picks free ports and returns the command, its readiness probe and the result.
    Someone may take a port between choosing and binding: then `again()` cleans up and a new
    attempt starts, three in all. The process is added to `processes` (stopped on exit).
    """
    tail = "(no log)"
    for _attempt in range(3):
        command, probe, result = attempt()
        process, log = spawn(command, log_path)
        processes.append(process)
        try:
            wait_ready(process, probe, log=log, deadline=deadline, what=name)
            return result
        except StartTimeout as exc:
            raise KubeTestError(
                f"{name} was not ready in time ({probe.url}: {probe.last}); log {log_path}:\n"
                f"{exc.tail}"
            ) from None
        except ProcessExited as exc:
            tail = exc.tail
            processes.remove(process)
            terminate_group(process)
            if not log.contains("address already in use"):
                break
            again()
    raise KubeTestError(f"{name} exited at start; log {log_path}:\n{tail}")


def _start_etcd(
    binary: Path, directory: Path, processes: list[subprocess.Popen[bytes]], deadline: float
) -> str:
    data_dir = directory / "etcd-data"

    def attempt() -> tuple[list[str], HttpProbe, str]:
        client_url = f"http://{LOOPBACK}:{free_port()}"
        peer_url = f"http://{LOOPBACK}:{free_port()}"
        command = [
            str(binary),
            "--name=streamforge-test",
            f"--data-dir={data_dir}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=streamforge-test={peer_url}",
            "--initial-cluster-state=new",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ]
        return command, HttpProbe(f"{client_url}/health", accept='"health":"true"'), client_url

    return _start_server(
        "etcd",
        attempt,
        directory / "etcd.log",
        processes,
        deadline,
        # A port was taken between choosing and binding: start over, from scratch.
        again=lambda: shutil.rmtree(data_dir, ignore_errors=True),
    )


def _start_apiserver(
    binary: Path,
    directory: Path,
    etcd_url: str,
    processes: list[subprocess.Popen[bytes]],
    deadline: float,
    extra_args: Sequence[str] = (),
) -> LocalApiServer:
    pki = directory / "pki"
    ca_path = write_pki(pki)
    token = secrets.token_hex(32)
    token_file = pki / "tokens.csv"
    token_file.write_text(f'{token},admin,admin,"system:masters"\n', encoding="utf-8")
    token_file.chmod(0o600)
    context = ssl.create_default_context(cafile=str(ca_path))

    def attempt() -> tuple[list[str], HttpProbe, str]:
        port = free_port()
        host = f"https://{LOOPBACK}:{port}"
        command = [
            str(binary),
            f"--etcd-servers={etcd_url}",
            f"--bind-address={LOOPBACK}",
            f"--advertise-address={LOOPBACK}",
            f"--secure-port={port}",
            f"--cert-dir={pki}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--authorization-mode=RBAC",
            f"--token-auth-file={token_file}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            # No kubelets: the `kubernetes` Service's endpoint (a loopback address) would
            # only be rejected and logged every few seconds.
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true",
            "--profiling=false",
            *extra_args,
        ]
        probe = HttpProbe(
            f"{host}/readyz",
            headers={"Authorization": f"Bearer {token}"},
            accept="ok",
            context=context,
        )
        return command, probe, host

    host = _start_server(
        "kube-apiserver", attempt, directory / "kube-apiserver.log", processes, deadline
    )
    return LocalApiServer(
        host=host,
        token=token,
        ca_path=ca_path,
        kubeconfig=write_kubeconfig(directory / "kubeconfig", host, ca_path, token),
        etcd_url=etcd_url,
        directory=directory,
    )
