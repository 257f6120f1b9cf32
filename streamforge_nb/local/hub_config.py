"""JupyterHub's traitlets config for the local hub, from the settings `hub_settings` wrote.

JupyterHub runs `jupyterhub -f <dir>/jupyterhub_config.py`; that file (written by `hub_up`,
always the same two lines) calls `configure(get_config())`. Everything variable comes from the
JSON settings file named by `STREAMFORGE_HUB_SETTINGS`, read as data: nothing in the values
or the settings runs as code.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

__all__ = ["SETTINGS_ENV", "configure"]

SETTINGS_ENV = "STREAMFORGE_HUB_SETTINGS"


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
