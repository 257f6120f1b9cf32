"""`streamforge-nb local hub up|down|status`: a real JupyterHub with KubeSpawner on the local node.

    hub = hub_up(kubeconfig)        # the node from `local cluster up`; returns the hub's state
    hub["url"]                      # http://127.0.0.1:<port>/  (the hub's real login page)
    hub_status(); hub_down()

The hub is configured from manifests/jupyterhub-values.yaml, the file zero-to-jupyterhub
installs on the cluster (`hub_settings` maps it): the same image (the locally built one), uid
and fsGid, memory guarantee, pull secret, ServiceAccount, environment, volumes, authenticator,
admin users and culling. Where the local hub must differ (`DIFFERENCES`, also in
docs/operations.md): JupyterHub runs as a host process with the admin kubeconfig (no hub
image, no hub ServiceAccount), configurable-http-proxy from npm, no ingress or TLS (the proxy
listens on 127.0.0.1), single-user Pods on the host network with a port each (no kube-proxy
or DNS here), host paths under the hub's directory, no node selector.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from streamforge_nb.exceptions import ConfigError, ProcessExited, StartTimeout, StreamForgeError
from streamforge_nb.local.hub_config import check_settings, check_values, host_path_inside
from streamforge_nb.process import (
    HttpProbe,
    free_port,
    read_state,
    spawn,
    terminate_group,
    wait_ready,
)
from streamforge_nb.settings import local_home
from streamforge_nb.workflow.launchers import NODE_HOST_PATHS_ENV

__all__ = [
    "DIFFERENCES",
    "HUB_NODE_ENV",
    "find_proxy",
    "hub_dir",
    "hub_down",
    "hub_settings",
    "hub_status",
    "hub_up",
    "read_values",
]

HUB_NODE_ENV = NODE_HOST_PATHS_ENV
DIFFERENCES = (
    "JupyterHub runs on the host with the admin kubeconfig: no hub image, Pod or ServiceAccount",
    "configurable-http-proxy from npm on the host; no ingress or TLS: it listens on 127.0.0.1",
    "single-user Pods use the host network, a free port each (no kube-proxy or DNS on the node)",
    "the single-user image is the locally built one, never pulled (imagePullPolicy IfNotPresent)",
    "hostPath volumes are mapped under the hub's directory; no nodeSelector (one node)",
    "the hub's database is a SQLite file under its directory, not in memory",
)
_STATE = "hub.json"
_PROXY_PACKAGE = "configurable-http-proxy@4"


def hub_dir() -> Path:
    """Where the local hub keeps its files: $STREAMFORGE_HOME/hub."""
    return local_home() / "hub"


def find_proxy(cache: Path | None = None) -> Path:
    """Return configurable-http-proxy: on PATH, else installed by npm into the cache."""
    found = shutil.which("configurable-http-proxy")
    if found:
        return Path(found)
    from streamforge_nb.local.cluster.apiserver import cache_dir

    prefix = cache or cache_dir("hub", "STREAMFORGE_HUB_CACHE")
    proxy = prefix / "node_modules" / ".bin" / "configurable-http-proxy"
    if proxy.exists():
        return proxy
    raise ConfigError(
        "configurable-http-proxy is not installed: "
        f"`npm install --prefix {prefix} {_PROXY_PACKAGE}` (scripts/install-hub does it)"
    )


def read_values(path: Path) -> dict[str, Any]:
    """Read zero-to-jupyterhub values; `ConfigError` naming a key the local hub does not know."""
    if not path.is_file():
        raise ConfigError(f"no JupyterHub values at {path}")
    values = yaml.safe_load(path.read_text()) or {}
    check_values(values, str(path))
    return dict(values)


def _host_path(path: str, root: Path) -> Path:
    """The host path of the cluster (`/data/home`) mapped under the hub's directory.

    A path with `..`, or one a symlink there leads out of `<root>/hostpaths`, is refused.
    """
    if not path.startswith("/"):
        raise ConfigError(f"hostPath {path!r} in the values is not absolute")
    mapped = root / "hostpaths" / path.lstrip("/")
    return host_path_inside(mapped, root / "hostpaths", f"hostPath {path!r} of the values, at")


def hub_settings(
    values: Mapping[str, Any],
    *,
    directory: Path,
    api_port: int,
    image: str | None = None,
    namespace: str = "stf",
    host_paths: Sequence[Path] = (),
    cull: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Map zero-to-jupyterhub values to the local hub's settings (data, never code).

    `image` replaces `singleuser.image` (default: that name, which the node must have: no
    registry here, `ctr images tag` a local build to it); `api_port` is the node's API
    server (single-user Pods reach it on 127.0.0.1); `host_paths` are mounted at the same path
    in single-user Pods and in the Jobs they launch (the embedded store, executed notebooks);
    `cull` overrides `cull.timeout` / `cull.every` (tests shorten them). Raises `ConfigError`
    for a key the local hub does not know or a hostPath leaving the directory; makes nothing.
    """
    check_values(values, "the values")
    hub_values = values.get("hub", {})
    config = {
        section: dict(traits)
        for section, traits in hub_values.get("config", {}).items()
        if section in ("JupyterHub", "Authenticator", "DummyAuthenticator")
    }
    config.get("DummyAuthenticator", {}).pop("password", None)  # never from a file in git
    single = values.get("singleuser", {})
    storage = single.get("storage", {})
    volumes: list[dict[str, Any]] = []
    for volume in storage.get("extraVolumes", []):
        volume = json.loads(json.dumps(volume))
        if "hostPath" in volume:
            volume["hostPath"]["path"] = str(_host_path(volume["hostPath"]["path"], directory))
        volumes.append(volume)
    mounts = [dict(m) for m in storage.get("extraVolumeMounts", [])]
    for index, path in enumerate(host_paths):
        volumes.append(
            {"name": f"host-{index}", "hostPath": {"path": str(path), "type": "Directory"}}
        )
        mounts.append({"name": f"host-{index}", "mountPath": str(path)})
    # Values as z2jh takes them: a string, or a dict with `valueFrom` (KubeSpawner turns a
    # dict into a V1EnvVar; nested keys stay as the API spells them).
    environment: dict[str, Any] = {
        name: ({"name": name, **value} if isinstance(value, dict) else value)
        for name, value in single.get("extraEnv", {}).items()
    }
    environment.update(
        {
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(api_port),
            HUB_NODE_ENV: json.dumps([str(p) for p in host_paths]),
        }
    )
    memory = single.get("memory", {})
    if image is None:
        named = single.get("image", {})
        image = f"{named['name']}:{named['tag']}" if named.get("tag") else named.get("name")
    spawner: dict[str, Any] = {
        "namespace": namespace,
        "image": image,
        "image_pull_policy": "IfNotPresent",
        "image_pull_secrets": list(values.get("imagePullSecrets", [])),
        "cmd": [single["cmd"]] if isinstance(single.get("cmd"), str) else single.get("cmd"),
        "default_url": single.get("defaultUrl", "/lab"),
        "service_account": single.get("serviceAccountName"),
        "uid": single.get("uid"),
        "fs_gid": single.get("fsGid"),
        "mem_guarantee": memory.get("guarantee"),
        "mem_limit": memory.get("limit"),
        "environment": environment,
        "volumes": volumes,
        "volume_mounts": mounts,
        "extra_pod_config": {
            "hostNetwork": True,
            "dnsPolicy": "ClusterFirstWithHostNet",
            "enableServiceLinks": False,
        },
        "start_timeout": 180,
        "http_timeout": 120,
    }
    if single.get("containerSecurityContext"):
        spawner["container_security_context"] = single["containerSecurityContext"]
    spawner = {k: v for k, v in spawner.items() if v is not None}
    culling = values.get("cull", {})
    cull_settings = None
    if culling.get("enabled"):
        cull_settings = {
            "timeout": int(culling.get("timeout", 3600)),
            "every": int(culling.get("every", 600)),
            "users": bool(culling.get("users", False)),
            "admin_users": bool(culling.get("adminUsers", True)),
            **(cull or {}),
        }
    return {"config": config, "spawner": spawner, "cull": cull_settings}


def hub_up(
    kubeconfig: Path,
    *,
    values_path: Path,
    image: str | None = None,
    directory: Path | None = None,
    host_paths: Sequence[Path] = (),
    cull: Mapping[str, Any] | None = None,
    timeout: float = 120.0,
) -> dict[str, Any]:
    """Start the hub in the background (if it is not running); return its state.

    The state names the login URL and the file holding the password (mode 0600; never
    printed). Raises `StreamForgeError` with the log's tail when the hub does not start.
    """
    directory = directory or hub_dir()
    state = read_state(directory / _STATE)
    if state:
        return state
    values = read_values(values_path)
    api_port = _api_port(kubeconfig)
    # Every check before the first folder is made: the values, the mapped host paths.
    settings = hub_settings(
        values, directory=directory, image=image, api_port=api_port,
        host_paths=host_paths, cull=cull,
    )  # fmt: skip
    check_settings({**settings, "hub": {"directory": str(directory), "host_paths": host_paths}})
    home = str(values.get("singleuser", {}).get("storage", {}).get("homeMountPath", ""))
    made: list[Path] = []
    for volume, mount in _host_mounts(settings["spawner"]):
        if volume in host_paths:
            continue  # the caller's folders, as they are
        made.append(volume)
        if home.startswith(mount.rstrip("/") + "/"):  # the home inside a host path: make it
            home_path = volume / home[len(mount.rstrip("/")) + 1 :]
            made.append(host_path_inside(home_path, volume, "singleuser.storage.homeMountPath"))
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    for folder in made:
        folder.mkdir(parents=True, exist_ok=True)
        _own(folder, settings["spawner"].get("uid"), settings["spawner"].get("fs_gid"))
    password_file, token_file = directory / "password", directory / "admin_token"
    for path, secret in ((password_file, secrets.token_urlsafe(18)), (token_file, None)):
        if not path.exists():
            path.write_text((secret or secrets.token_hex(32)) + "\n")
            os.chmod(path, 0o600)
    port, hub_port, proxy_api = free_port(), free_port(), free_port()
    settings["hub"] = {
        "directory": str(directory),
        "port": port,
        "hub_port": hub_port,
        "proxy_api_port": proxy_api,
        "proxy": str(find_proxy()),
        "proxy_token": secrets.token_hex(32),
        "db_url": f"sqlite:///{directory / 'jupyterhub.sqlite'}",
        "password_file": str(password_file),
        "admin_token_file": str(token_file),
        "host_paths": [str(p) for p in host_paths],
    }
    settings_file = directory / "settings.json"
    settings_file.write_text(json.dumps(settings, indent=1))
    os.chmod(settings_file, 0o600)  # it holds the proxy's token
    config_file = directory / "jupyterhub_config.py"
    config_file.write_text(
        "from streamforge_nb.local.hub_config import configure\n"
        "configure(get_config())  # noqa: F821 (JupyterHub defines get_config)\n"
    )
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "STREAMFORGE_HUB_SETTINGS": str(settings_file),
        # The proxy's token reaches configurable-http-proxy through its environment only.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    (directory / _STATE).unlink(missing_ok=True)
    process, log = spawn(
        [sys.executable, "-m", "jupyterhub", "-f", str(config_file)],
        directory / "hub.log",
        env=env,
        cwd=directory,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_ready(
            process, HttpProbe(f"{url}hub/health"), log=log, timeout=timeout, what="JupyterHub"
        )
    except (ProcessExited, StartTimeout) as exc:
        terminate_group(process)
        raise StreamForgeError(f"the local hub did not start: {exc}") from None
    state = {
        "pid": process.pid,
        "url": url,
        "login": f"{url}hub/login",
        "password_file": str(password_file),
        "admin_token_file": str(token_file),
        "log": str(log.path),
        "directory": str(directory),
        "kubeconfig": str(kubeconfig),
        "image": settings["spawner"]["image"],
    }
    (directory / _STATE).write_text(json.dumps(state, indent=1))
    return state


def _host_mounts(spawner: Mapping[str, Any]) -> list[tuple[Path, str]]:
    """(host path, mount path) of each hostPath volume single-user Pods mount."""
    paths = {v["name"]: v["hostPath"]["path"] for v in spawner["volumes"] if "hostPath" in v}
    return [
        (Path(paths[m["name"]]), str(m["mountPath"]))
        for m in spawner["volume_mounts"]
        if m["name"] in paths
    ]


def _api_port(kubeconfig: Path) -> int:
    config = yaml.safe_load(kubeconfig.read_text())
    server = str(config["clusters"][0]["cluster"]["server"])
    return int(server.rsplit(":", 1)[1].rstrip("/"))


def _own(path: Path, uid: int | None, gid: int | None) -> None:
    # The Pods' uid writes there (homes); only root may hand a folder to another uid.
    if uid is None or os.geteuid() != 0:
        return
    for folder in (path, *(p for p in path.rglob("*") if p.is_dir())):
        os.chown(folder, uid, gid if gid is not None else -1)


def hub_down(directory: Path | None = None, *, timeout: float = 60.0) -> bool:
    """Stop the hub and its proxy; return whether one was running.

    Single-user Pods stay (as with a hub restart on the cluster); `kubectl delete pod` or the
    cluster's own `down` ends them.
    """
    directory = directory or hub_dir()
    state = read_state(directory / _STATE)
    (directory / _STATE).unlink(missing_ok=True)
    if not state:
        return False
    terminate_group(int(state["pid"]), grace=timeout)
    return True


def hub_status(directory: Path | None = None) -> dict[str, Any]:
    """Whether the hub runs, its URL, the password file and the log (never the password)."""
    directory = directory or hub_dir()
    state = read_state(directory / _STATE)
    if not state:
        return {"running": False, "directory": str(directory)}
    return {"running": True, **state, "healthy": HttpProbe(f"{state['url']}hub/health")()}
