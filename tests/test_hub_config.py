"""The local hub sets only what it knows: the values and its settings are allow-listed.

`streamforge-nb local hub up --values` takes a zero-to-jupyterhub values file, and the hub
process reads the settings file made from it. A key the local hub does not map (a trait
that would move the hub's address, add a service that runs a command, or a chart option
it silently would not apply) is refused naming the key before anything is made or started;
a hostPath leading out of the hub's directory (`..`, a symlink, an absolute path elsewhere)
is refused naming it. No node needed.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import MANIFESTS
from traitlets.config import Config

from streamforge_nb.cli import ExitCode, main
from streamforge_nb.exceptions import ConfigError
from streamforge_nb.local.hub import hub_settings, hub_up
from streamforge_nb.local.hub_config import configure

VALUES = MANIFESTS / "jupyterhub-values.yaml"


def _values(**changes: Any) -> dict[str, Any]:
    """The shipped values with `changes` set, each at a dotted path."""
    values: dict[str, Any] = yaml.safe_load(VALUES.read_text())
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = values
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return values


def _write(tmp_path: Path, values: dict[str, Any]) -> Path:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def _kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump({"clusters": [{"cluster": {"server": "https://127.0.0.1:6443"}}]})
    )
    return path


UNKNOWN = {
    # The hub's own address: a values file could open it beyond the loopback.
    "hub.config.JupyterHub.ip": "0.0.0.0",
    # A service with a command: JupyterHub would run it.
    "hub.config.JupyterHub.services": [{"name": "x", "command": ["sh", "-c", "id"]}],
    "hub.config.Spawner": {"cmd": ["sh"]},
    # Chart options the local hub does not map would silently not apply.
    "singleuser.lifecycleHooks": {"postStart": {"exec": {"command": ["id"]}}},
    "cull.maxAge": 3600,
    "hub.extraEnv": {"OAUTH_CLIENT_ID": "x"},
}


@pytest.mark.parametrize("key", sorted(UNKNOWN))
def test_a_key_the_local_hub_does_not_know_is_refused_naming_it(
    key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "hub"
    hub_settings(_values(), directory=directory, api_port=6443)  # as shipped: accepted
    with pytest.raises(ConfigError, match=rf"\b{key}\b"):
        hub_settings(_values(**{key: UNKNOWN[key]}), directory=directory, api_port=6443)
    # The command refuses it before it looks for a cluster (none runs here).
    path = _write(tmp_path, _values(**{key: UNKNOWN[key]}))
    assert main(["local", "hub", "up", "--values", str(path)]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert key in err and "no local cluster" not in err
    assert not directory.exists()


def test_the_production_overlay_is_refused_naming_its_first_unknown_key(tmp_path: Path) -> None:
    overlay = yaml.safe_load((MANIFESTS / "jupyterhub-values.production.yaml").read_text())
    with pytest.raises(ConfigError, match=r"unknown key hub\.extraEnv"):
        hub_settings(overlay, directory=tmp_path / "hub", api_port=6443)


def test_an_authenticator_other_than_the_dummy_is_refused(tmp_path: Path) -> None:
    values = _values(**{"hub.config.JupyterHub.authenticator_class": "evil.module.Auth"})
    with pytest.raises(ConfigError, match=r"authenticator_class 'evil\.module\.Auth'"):
        hub_settings(values, directory=tmp_path / "hub", api_port=6443)


def _with_host_path(path: str) -> dict[str, Any]:
    values = _values()
    volumes = copy.deepcopy(values["singleuser"]["storage"]["extraVolumes"])
    volumes.append({"name": "extra", "hostPath": {"path": path, "type": "Directory"}})
    values["singleuser"]["storage"]["extraVolumes"] = volumes
    return values


@pytest.fixture
def no_proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No configurable-http-proxy to be found: a hub that got past the checks stops there."""
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setenv("STREAMFORGE_HUB_CACHE", str(tmp_path / "no-proxy"))


@pytest.mark.usefixtures("no_proxy")
def test_a_host_path_escaping_with_dotdot_is_refused_before_anything_is_made(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "hub"
    path = _write(tmp_path, _with_host_path("/data/../../password"))
    with pytest.raises(ConfigError, match=r"'/data/\.\./\.\./password'"):
        hub_up(_kubeconfig(tmp_path), values_path=path, directory=directory)
    assert not directory.exists()


@pytest.mark.usefixtures("no_proxy")
def test_a_home_escaping_its_host_path_is_refused(tmp_path: Path) -> None:
    values = _values(**{"singleuser.storage.homeMountPath": "/home/../../etc/cron.d"})
    path = _write(tmp_path, values)
    with pytest.raises(ConfigError, match="homeMountPath"):
        hub_up(_kubeconfig(tmp_path), values_path=path, directory=tmp_path / "hub")
    assert not (tmp_path / "hub").exists()


def test_a_host_path_a_symlink_leads_out_of_the_hub_directory_is_refused(tmp_path: Path) -> None:
    directory, outside = tmp_path / "hub", tmp_path / "outside"
    outside.mkdir()
    (directory / "hostpaths").mkdir(parents=True)
    (directory / "hostpaths" / "data").symlink_to(outside)
    with pytest.raises(ConfigError, match=rf"'/data/home'.*outside {directory}"):
        hub_settings(_values(), directory=directory, api_port=6443)
    assert list(outside.iterdir()) == []


def _settings(directory: Path, **changes: Any) -> dict[str, Any]:
    """The settings file as `hub_up` writes it for the shipped values, with `changes`."""
    settings = hub_settings(_values(), directory=directory, api_port=6443)
    settings["hub"] = {
        "directory": str(directory), "port": 8000, "hub_port": 8081, "proxy_api_port": 8001,
        "proxy": "configurable-http-proxy", "proxy_token": "t", "db_url": "sqlite://",
        "host_paths": [],
    }  # fmt: skip
    for section, traits in changes.items():
        settings[section].update(traits)
    copied: dict[str, Any] = json.loads(json.dumps(settings))
    return copied


def test_the_hub_process_refuses_settings_with_a_trait_not_known_here(tmp_path: Path) -> None:
    config = Config()
    configure(config, _settings(tmp_path))  # as `hub_up` writes them: applied
    assert config.KubeSpawner.uid == 1001
    with pytest.raises(ConfigError, match=r"spawner\.pre_spawn_hook"):
        configure(Config(), _settings(tmp_path, spawner={"pre_spawn_hook": "os.system"}))
    with pytest.raises(ConfigError, match=r"config\.JupyterHub\.bind_url"):
        configure(
            Config(), _settings(tmp_path, config={"JupyterHub": {"bind_url": "http://0.0.0.0"}})
        )


def test_the_hub_process_refuses_a_host_path_elsewhere(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    settings["spawner"]["volumes"].append(
        {"name": "etc", "hostPath": {"path": "/etc", "type": "Directory"}}
    )
    with pytest.raises(ConfigError, match="'/etc' resolves to /etc, outside"):
        configure(Config(), settings)
    # A folder the caller named (`--host-path`) is mounted as it is.
    settings["hub"]["host_paths"] = ["/etc"]
    configure(Config(), settings)
