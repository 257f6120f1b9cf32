"""Helpers for tests, ours and users': a real Kubernetes API server (with etcd) per test session.

from streamforge_nb.testing.kube import local_apiserver

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

import datetime as dt
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from streamforge_nb.exceptions import KubeTestError
from streamforge_nb.local.tls import make_server_certificate, pkcs8_pem

__all__ = [
    "KubeBinaries",
    "KubeTestError",
    "LocalApiServer",
    "find_kube_binaries",
    "kube_cache_dir",
    "local_apiserver",
]

BUILD_SCRIPT = "scripts/build-kube"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
_LOOPBACK = "127.0.0.1"
FIELD_MANAGER = "streamforge-nb"



@dataclass(frozen=True)
class KubeBinaries:
    """Paths of the kube-apiserver and etcd binaries."""

    kube_apiserver: Path
    etcd: Path


def kube_cache_dir() -> Path:
    """Where `scripts/build-kube` puts its work: $STREAMFORGE_KUBE_CACHE or the user cache."""
    configured = os.environ.get("STREAMFORGE_KUBE_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "streamforge-nb" / "kube"


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


@dataclass
class LocalApiServer:
    """A running kube-apiserver: where it is and how to talk to it as admin or as someone else."""

    host: str
    """`https://127.0.0.1:<port>`."""
    token: str
    """The admin's bearer token (user `admin`, group `system:masters`)."""
    ca_path: Path
    """PEM CA that signed the serving certificate (SANs 127.0.0.1, localhost)."""
    kubeconfig: Path
    """A kubeconfig for the admin, for `kubernetes.config.load_kube_config(config_file=...)`
    and `kubectl --kubeconfig`."""
    etcd_url: str
    directory: Path
    _clients: list[Any] = field(default_factory=list, init=False, repr=False)

    def api_client(
        self,
        token: str | None = None,
        *,
        impersonate: str | None = None,
        impersonate_groups: Sequence[str] = (),
    ) -> Any:
        """Return a `kubernetes.client.ApiClient`: the admin's, another token's, or impersonating.

        `impersonate="system:serviceaccount:<ns>:<name>"` acts as that ServiceAccount (with its
        groups) through the admin's impersonation right. The clients are closed on teardown.
        """
        from kubernetes import client

        configuration = client.Configuration(host=self.host, ssl_ca_cert=str(self.ca_path))
        configuration.api_key = {"BearerToken": f"Bearer {token or self.token}"}
        api: Any = client.ApiClient(configuration)
        if impersonate:
            api.set_default_header("Impersonate-User", impersonate)
            # One header value: the client keeps default headers in a dict.
            if len(impersonate_groups) > 1:
                raise ValueError("impersonate at most one group with this client")
            for group in impersonate_groups:
                api.set_default_header("Impersonate-Group", group)
        self._clients.append(api)
        return api

    def service_account_token(
        self, namespace: str, name: str, *, expiration_seconds: int = 3600
    ) -> str:
        """Issue a real token for ServiceAccount `namespace/name` (TokenRequest API).

        This is how a Pod's projected token authenticates, so RBAC sees exactly the user
        `system:serviceaccount:<namespace>:<name>` with its groups.
        """
        from kubernetes import client

        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(
                audiences=[SERVICE_ACCOUNT_ISSUER], expiration_seconds=expiration_seconds
            )
        )
        response = client.CoreV1Api(self.api_client()).create_namespaced_service_account_token(
            name, namespace, request
        )
        if response.status is None or not response.status.token:
            raise KubeTestError(f"no token issued for serviceaccount {namespace}/{name}")
        return str(response.status.token)

    def service_account_client(self, namespace: str, name: str) -> Any:
        """Return an `ApiClient` authenticated with a fresh token of that ServiceAccount."""
        return self.api_client(self.service_account_token(namespace, name))

    def create(
        self,
        manifest: Path | str | Iterable[Mapping[str, Any]],
        *,
        dry_run: bool = False,
        api_client: Any = None,
        namespace: str | None = None,
    ) -> list[dict[str, Any]]:
        """Create (POST) every document of a YAML file or of a list of objects; return them.

        `dry_run=True` asks for a server-side dry run: validation, defaulting, admission and
        authorization, nothing stored. Any kind the server serves works (dynamic client).
        Errors are `kubernetes.dynamic.exceptions` (ApiException subclasses); an existing
        object is a 409 ConflictError.
        """
        return self._each(manifest, "create", dry_run, api_client, namespace)

    def apply(
        self,
        manifest: Path | str | Iterable[Mapping[str, Any]],
        *,
        dry_run: bool = False,
        api_client: Any = None,
        namespace: str | None = None,
    ) -> list[dict[str, Any]]:
        """Server-side apply every document (`kubectl apply --server-side`); return them.

        Creates or updates, so it can be repeated; `dry_run=True` is
        `kubectl apply --server-side --dry-run=server`.
        """
        return self._each(manifest, "apply", dry_run, api_client, namespace)

    def _each(
        self,
        manifest: Path | str | Iterable[Mapping[str, Any]],
        verb: str,
        dry_run: bool,
        api_client: Any,
        namespace: str | None,
    ) -> list[dict[str, Any]]:
        from kubernetes.dynamic import DynamicClient

        dynamic_client: Any = DynamicClient
        if isinstance(manifest, Path | str):
            with open(manifest, encoding="utf-8") as handle:
                documents = [dict(d) for d in yaml.safe_load_all(handle) if d]
        else:
            documents = [dict(d) for d in manifest]
        dynamic = dynamic_client(
            api_client or self.api_client(), cache_file=str(self.directory / "discovery.json")
        )
        results: list[dict[str, Any]] = []
        for document in documents:
            resource = dynamic.resources.get(
                api_version=document["apiVersion"], kind=document["kind"]
            )
            target_namespace = None
            if resource.namespaced:
                target_namespace = (
                    document.get("metadata", {}).get("namespace") or namespace or "default"
                )
            # Strict: an unknown or duplicate field is an error, as with kubectl.
            options: dict[str, Any] = {
                "namespace": target_namespace,
                "query_params": [("fieldValidation", "Strict")],
            }
            if dry_run:
                options["dry_run"] = "All"
            if verb == "apply":
                result = dynamic.server_side_apply(
                    resource, body=document, field_manager=FIELD_MANAGER, **options
                )
            else:
                result = dynamic.create(resource, body=document, **options)
            results.append(result.to_dict())
        return results

    def close_clients(self) -> None:
        """Close every ApiClient handed out (their connection pools)."""
        while self._clients:
            self._clients.pop().close()


@contextmanager
def local_apiserver(directory: Path, *, timeout: float = 120.0) -> Iterator[LocalApiServer]:
    """Start etcd and kube-apiserver on free 127.0.0.1 ports under `directory`; stop both on exit.

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
        server = _start_apiserver(binaries.kube_apiserver, directory, etcd_url, processes, deadline)
        yield server
    finally:
        if server is not None:
            server.close_clients()
        for process in reversed(processes):
            _stop(process)


# --- processes ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _spawn(command: Sequence[str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        # Own session = own process group, so teardown reaches anything it forks.
        return subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(process: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """SIGTERM the process group, SIGKILL it after `grace` seconds, reap the leader."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _port_clash(log_path: Path) -> bool:
    return "address already in use" in _log_tail(log_path, 200)


def _wait_ready(
    name: str,
    process: subprocess.Popen[bytes],
    log_path: Path,
    probe: urllib.request.Request,
    context: ssl.SSLContext | None,
    accept: str,
    deadline: float,
) -> bool:
    """Poll `probe` until its body contains `accept`; False when the process died."""
    last = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(probe, timeout=2, context=context) as response:
                body = response.read().decode("utf-8", errors="replace")
            if accept in body:
                return True
            last = body[:200]
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}: {exc.read().decode('utf-8', errors='replace')[-500:]}"
        except (OSError, ssl.SSLError) as exc:
            last = str(exc)
        time.sleep(0.1)
    raise KubeTestError(
        f"{name} was not ready in time ({probe.full_url}: {last}); log {log_path}:\n"
        f"{_log_tail(log_path)}"
    )


def _start_etcd(
    binary: Path, directory: Path, processes: list[subprocess.Popen[bytes]], deadline: float
) -> str:
    log_path = directory / "etcd.log"
    for _attempt in range(3):
        client_port, peer_port = _free_port(), _free_port()
        client_url = f"http://{_LOOPBACK}:{client_port}"
        peer_url = f"http://{_LOOPBACK}:{peer_port}"
        data_dir = directory / "etcd-data"
        process = _spawn(
            [
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
            ],
            log_path,
        )
        processes.append(process)
        probe = urllib.request.Request(f"{client_url}/health")
        if _wait_ready("etcd", process, log_path, probe, None, '"health":"true"', deadline):
            return client_url
        processes.remove(process)
        _stop(process)
        if not _port_clash(log_path):
            break
        # Someone took a port between choosing and binding: start over, from scratch.
        shutil.rmtree(data_dir, ignore_errors=True)
    raise KubeTestError(f"etcd exited at start; log {log_path}:\n{_log_tail(log_path)}")


def _start_apiserver(
    binary: Path,
    directory: Path,
    etcd_url: str,
    processes: list[subprocess.Popen[bytes]],
    deadline: float,
) -> LocalApiServer:
    pki = directory / "pki"
    ca_path = _write_pki(pki)
    token = secrets.token_hex(32)
    token_file = pki / "tokens.csv"
    token_file.write_text(f'{token},admin,admin,"system:masters"\n', encoding="utf-8")
    token_file.chmod(0o600)
    log_path = directory / "kube-apiserver.log"
    context = ssl.create_default_context(cafile=str(ca_path))
    for _attempt in range(3):
        port = _free_port()
        host = f"https://{_LOOPBACK}:{port}"
        process = _spawn(
            [
                str(binary),
                f"--etcd-servers={etcd_url}",
                f"--bind-address={_LOOPBACK}",
                f"--advertise-address={_LOOPBACK}",
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
            ],
            log_path,
        )
        processes.append(process)
        probe = urllib.request.Request(
            f"{host}/readyz", headers={"Authorization": f"Bearer {token}"}
        )
        if _wait_ready("kube-apiserver", process, log_path, probe, context, "ok", deadline):
            kubeconfig = _write_kubeconfig(directory / "kubeconfig", host, ca_path, token)
            return LocalApiServer(
                host=host,
                token=token,
                ca_path=ca_path,
                kubeconfig=kubeconfig,
                etcd_url=etcd_url,
                directory=directory,
            )
        processes.remove(process)
        _stop(process)
        if not _port_clash(log_path):
            break
    raise KubeTestError(f"kube-apiserver exited at start; log {log_path}:\n{_log_tail(log_path)}")


# --- files -------------------------------------------------------------------------------------


def _write_private(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


def _write_pki(directory: Path) -> Path:
    """CA, serving certificate and ServiceAccount signing key; return the CA's path."""
    directory.mkdir(parents=True, exist_ok=True)
    made = make_server_certificate(
        organization="streamforge-nb kube test",
        common_name="kube-apiserver",
        ip_addresses=[_LOOPBACK, "10.0.0.1"],
        dns_names=["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"],
        validity=dt.timedelta(days=7),
    )
    ca_path = directory / "ca.crt"
    ca_path.write_bytes(made.ca_pem)
    (directory / "apiserver.crt").write_bytes(made.cert_pem + made.ca_pem)
    _write_private(directory / "apiserver.key", made.key_pem)

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_private(directory / "sa.key", pkcs8_pem(sa_key))
    (directory / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return ca_path


def _write_kubeconfig(path: Path, host: str, ca_path: Path, token: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "streamforge-test",
                "cluster": {"server": host, "certificate-authority": str(ca_path)},
            }
        ],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [
            {
                "name": "streamforge-test",
                "context": {"cluster": "streamforge-test", "user": "admin"},
            }
        ],
        "current-context": "streamforge-test",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    path.chmod(0o600)
    return path
