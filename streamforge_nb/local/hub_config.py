"""JupyterHub's traitlets config for the local hub, from the settings `hub_settings` wrote.

JupyterHub runs `jupyterhub -f <dir>/jupyterhub_config.py`; that file (written by `hub_up`,
always the same two lines) calls `configure(get_config())`. Everything variable comes from the
JSON settings file named by `STREAMFORGE_HUB_SETTINGS`, read as data: nothing in the values
or the settings runs as code, and only the traits named here are set (`check_values`,
`check_settings`): an unknown key is an error before anything starts.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from streamforge_nb.exceptions import ConfigError

__all__ = [
    "AUTHENTICATORS",
    "CONFIG_TRAITS",
    "SETTINGS_ENV",
    "SPAWNER_TRAITS",
    "check_settings",
    "check_values",
    "configure",
    "host_path_inside",
]

SETTINGS_ENV = "STREAMFORGE_HUB_SETTINGS"
# The traits values' `hub.config` may set, per section. The hub's address, database, proxy,
# services and spawner class are this module's: a value there could expose the hub or run
# a command, so it is refused, as is any trait not named here.
CONFIG_TRAITS: dict[str, frozenset[str]] = {
    "JupyterHub": frozenset(
        {"authenticator_class", "admin_access", "allow_named_servers",
         "named_server_limit_per_user", "shutdown_on_logout"}
    ),
    "Authenticator": frozenset(
        {"admin_users", "allowed_users", "blocked_users", "allow_all", "allow_existing_users"}
    ),
    "DummyAuthenticator": frozenset({"password"}),
}  # fmt: skip
# An authenticator class is imported by name: only the one the local hub runs.
AUTHENTICATORS = frozenset({"dummy", "jupyterhub.auth.DummyAuthenticator"})
# KubeSpawner's traits `hub_settings` maps the values to.
SPAWNER_TRAITS = frozenset(
    {"namespace", "image", "image_pull_policy", "image_pull_secrets", "cmd", "default_url",
     "service_account", "uid", "fs_gid", "mem_guarantee", "mem_limit", "environment",
     "volumes", "volume_mounts", "extra_pod_config", "start_timeout", "http_timeout",
     "container_security_context"}
)  # fmt: skip
CULL_KEYS = frozenset({"timeout", "every", "users", "admin_users"})
# The zero-to-jupyterhub values the local hub reads (a set: leaves; a dict: nested keys;
# None: any content). proxy, ingress, the hub's own Pod (nodeSelector, db, volumes) and the
# single-user nodeSelector are the cluster's and not used here (docs/operations.md).
_VALUES_KEYS: dict[str, Any] = {
    "imagePullSecrets": None,
    "hub": {"config": None, "nodeSelector": None, "db": None, "extraVolumes": None,
            "extraVolumeMounts": None},
    "proxy": None,
    "ingress": None,
    "singleuser": {
        "image": {"name", "tag", "pullPolicy"}, "cmd": None, "defaultUrl": None,
        "serviceAccountName": None, "uid": None, "fsGid": None, "nodeSelector": None,
        "memory": {"guarantee", "limit"}, "extraEnv": None,
        "storage": {"type", "homeMountPath", "extraVolumes", "extraVolumeMounts"},
        "containerSecurityContext": None,
    },
    "cull": {"enabled", "users", "adminUsers", "timeout", "every"},
}  # fmt: skip


def _check_keys(value: Any, known: Any, where: str, source: str) -> None:
    if known is None:
        return
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where or 'the values'} in {source} must be a mapping")
    for key, inner in value.items():
        name = f"{where}.{key}" if where else str(key)
        if key not in known:
            raise ConfigError(f"unknown key {name} in {source}: the local hub does not set it")
        _check_keys(inner, known[key] if isinstance(known, dict) else None, name, source)


def _check_config(config: Any, where: str, source: str) -> None:
    if not isinstance(config, Mapping):
        raise ConfigError(f"{where} in {source} must be a mapping")
    for section, traits in config.items():
        if section not in CONFIG_TRAITS:
            raise ConfigError(
                f"unknown key {where}.{section} in {source}: the local hub sets only "
                + ", ".join(sorted(CONFIG_TRAITS))
            )
        _check_keys(traits, CONFIG_TRAITS[section], f"{where}.{section}", source)
    authenticator = config.get("JupyterHub", {}).get("authenticator_class", "dummy")
    if authenticator not in AUTHENTICATORS:
        raise ConfigError(
            f"{where}.JupyterHub.authenticator_class {authenticator!r} in {source}: "
            "the local hub runs only the dummy authenticator"
        )


def check_values(values: Mapping[str, Any], source: str) -> None:
    """Raise `ConfigError` naming the first key of zero-to-jupyterhub `values` not known here."""
    _check_keys(values, _VALUES_KEYS, "", source)
    _check_config(values.get("hub", {}).get("config", {}), "hub.config", source)


def host_path_inside(path: Path, root: Path, what: str) -> Path:
    """Return `path` resolved (symlinks followed); `ConfigError` naming it unless inside `root`."""
    if ".." in PurePosixPath(path).parts:
        raise ConfigError(f"{what} {str(path)!r} has '..': host paths stay inside {root}")
    resolved = path.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise ConfigError(f"{what} {str(path)!r} resolves to {resolved}, outside {root}")
    return resolved


def check_settings(settings: Mapping[str, Any]) -> None:
    """Refuse settings with a trait not known here or a hostPath outside the hub's directory.

    `hub.host_paths` are the folders the caller named (`--host-path`), mounted as they are.
    """
    _check_config(settings["config"], "config", "the hub's settings")
    _check_keys(settings["spawner"], SPAWNER_TRAITS, "spawner", "the hub's settings")
    _check_keys(settings.get("cull") or {}, CULL_KEYS, "cull", "the hub's settings")
    hub = settings.get("hub", {})
    if "directory" not in hub:
        return
    named = {str(p) for p in hub.get("host_paths", [])}
    for volume in settings["spawner"].get("volumes", []):
        path = volume.get("hostPath", {}).get("path")
        if path is not None and path not in named:
            host_path_inside(Path(path), Path(hub["directory"]) / "hostpaths", "hostPath")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        port: int = sock.getsockname()[1]
        return port


def _host_port(spawner: Any) -> None:
    # Single-user Pods share the host's network (no kube-proxy here): each needs a port of
    # its own, where the cluster's hub gives every Pod 8888 on its own IP.
    spawner.port = _free_port()


def configure(c: Any, settings: dict[str, Any] | None = None) -> None:
    """Set JupyterHub's and KubeSpawner's traits on `c` from the local hub's settings."""
    if settings is None:
        settings = json.loads(Path(os.environ[SETTINGS_ENV]).read_text())
    check_settings(settings)
    hub = settings["hub"]
    c.JupyterHub.ip = "127.0.0.1"
    c.JupyterHub.port = hub["port"]
    c.JupyterHub.hub_ip = "127.0.0.1"
    c.JupyterHub.hub_port = hub["hub_port"]
    # hostNetwork Pods reach the hub's API on the host's loopback.
    c.JupyterHub.hub_connect_ip = "127.0.0.1"
    c.JupyterHub.cookie_secret_file = str(Path(hub["directory"]) / "cookie_secret")
    c.JupyterHub.db_url = hub["db_url"]
    c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
    c.ConfigurableHTTPProxy.command = [hub["proxy"]]
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{hub['proxy_api_port']}"
    c.ConfigurableHTTPProxy.auth_token = hub["proxy_token"]
    for section, traits in settings["config"].items():
        for name, value in traits.items():
            setattr(getattr(c, section), name, value)
    password_file = hub.get("password_file")
    if password_file:
        c.DummyAuthenticator.password = Path(password_file).read_text().strip()

    spawner = settings["spawner"]
    for name, value in spawner.items():
        setattr(c.KubeSpawner, name, value)
    c.KubeSpawner.pre_spawn_hook = _host_port

    services: list[dict[str, Any]] = []
    roles: list[dict[str, Any]] = []
    token_file = hub.get("admin_token_file")
    if token_file:
        # What `local hub status` and tests use to list and start servers (no password).
        token = Path(token_file).read_text().strip()
        services.append({"name": "local-admin", "api_token": token})
        scopes = ["admin:users", "admin:servers", "list:users", "read:users"]
        roles.append({"name": "local-admin", "scopes": scopes, "services": ["local-admin"]})

    cull = settings.get("cull")
    if cull:
        import sys

        command = [
            sys.executable, "-m", "jupyterhub_idle_culler",
            f"--timeout={cull['timeout']}", f"--cull-every={cull['every']}",
            f"--cull-users={str(cull['users']).lower()}",
            f"--cull-admin-users={str(cull['admin_users']).lower()}",
        ]  # fmt: skip
        services.append({"name": "idle-culler", "command": command})
        # The scopes zero-to-jupyterhub grants its culler (admin:users only when it deletes).
        scopes = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
        if cull["users"]:
            scopes.append("admin:users")
        roles.append({"name": "idle-culler", "scopes": scopes, "services": ["idle-culler"]})
    c.JupyterHub.services = services
    c.JupyterHub.load_roles = roles
