"""A running kube-apiserver seen from a test: API clients as admin, as a ServiceAccount or
impersonating someone, and create / server-side apply of manifests (dry run or not).

`local_apiserver` (in `kube.py`) starts the server and hands out a `LocalApiServer`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict, Unpack

import yaml

from streamforge_nb.exceptions import KubeTestError

__all__ = ["LocalApiServer"]

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
FIELD_MANAGER = "streamforge-nb"

Manifest = Path | str | Iterable[Mapping[str, Any]]
"""A YAML file's path, or the objects themselves."""


class SendOptions(TypedDict, total=False):
    """How `LocalApiServer.create` and `apply` send a manifest."""

    dry_run: bool
    """Server-side dry run: validation, defaulting, admission and authorization, nothing stored."""
    api_client: Any
    """Send as this client's user (default: the admin)."""
    namespace: str | None
    """For namespaced objects that name none (default: `default`)."""


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

    def create(self, manifest: Manifest, **options: Unpack[SendOptions]) -> list[dict[str, Any]]:
        """Create (POST) every document of a YAML file or of a list of objects; return them.

        Any kind the server serves works (dynamic client). Errors are
        `kubernetes.dynamic.exceptions` (ApiException subclasses); an existing object is a 409
        ConflictError. `options`: see `SendOptions`.
        """
        return self._each(manifest, "create", **options)

    def apply(self, manifest: Manifest, **options: Unpack[SendOptions]) -> list[dict[str, Any]]:
        """Server-side apply every document (`kubectl apply --server-side`); return them.

        Creates or updates, so it can be repeated; `dry_run=True` is
        `kubectl apply --server-side --dry-run=server`. `options`: see `SendOptions`.
        """
        return self._each(manifest, "apply", **options)

    def _each(
        self,
        manifest: Manifest,
        verb: str,
        *,
        dry_run: bool = False,
        api_client: Any = None,
        namespace: str | None = None,
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
