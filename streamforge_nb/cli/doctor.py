"""`doctor`: what this machine has and lacks for each feature, and how to get what is missing.

A cluster user (the platform's Kafka, Jobs in its Kubernetes) needs none of the local
tools; the local broker needs a JDK 17+ and, until Kafka's jars are cached, Maven.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import click

from streamforge_nb.cli._output import ExitCode, echo_json, json_option

__all__ = ["FEATURES", "Check", "doctor", "run_checks"]

# Feature -> what it needs, as `doctor --for` names them.
FEATURES: dict[str, str] = {
    "local-broker": "`local up`, `quickstart`: a Kafka broker on this machine",
    "kubernetes": "`candles --launcher kubernetes`: Jobs in a cluster",
    "local-cluster": "`local cluster up`: a single-node Kubernetes here (root)",
}
JAVA_MIN = 17


@dataclass(frozen=True)
class Check:
    """One requirement: whether it is met, what was found, and how to get it."""

    check: str
    ok: bool
    found: str | None
    needed_for: list[str]
    how: str


def _version_output(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (done.stdout + done.stderr).strip() or None


def _java() -> Check:
    how = (
        f"a JDK {JAVA_MIN} or newer on PATH (Debian/Ubuntu: apt-get install "
        "openjdk-17-jre-headless; elsewhere https://adoptium.net)"
    )
    java = shutil.which("java")
    text = _version_output([java, "-version"]) if java else None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', text or "")
    if match is None:
        found = None if java is None else f"{java} (version unreadable)"
        return Check("java", False, found, ["local-broker"], how)
    major = int(match.group(1))
    major = int(match.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8
    found = f"Java {major} ({java})"
    return Check("java", major >= JAVA_MIN, found, ["local-broker"], how)


def _maven() -> Check:
    from streamforge_nb.local.maven import KAFKA_VERSION, jars_dir

    mvn = shutil.which("mvn")
    cached = (jars_dir() / ".complete").is_file()
    found: str | None
    if cached:
        found = f"Kafka {KAFKA_VERSION} jars cached in {jars_dir()}" + (f"; {mvn}" if mvn else "")
    else:
        found = mvn
    how = (
        "Maven on PATH, once, to fetch Kafka's jars (Debian/Ubuntu: apt-get install maven; "
        "https://maven.apache.org), then `streamforge-nb local fetch`"
    )
    return Check("maven", cached or mvn is not None, found, ["local-broker"], how)


def _kubeconfig() -> Check:
    how = (
        "a kubeconfig: KUBECONFIG or ~/.kube/config (from your cluster's admin), or run in a "
        "Pod with a service account"
    )
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return Check("kubeconfig", True, "in-cluster service account", ["kubernetes"], how)
    paths = [Path(p) for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    paths = paths or [Path.home() / ".kube" / "config"]
    present = [str(p) for p in paths if p.is_file()]
    return Check("kubeconfig", bool(present), ", ".join(present) or None, ["kubernetes"], how)


def _tool(name: str, features: list[str], how: str) -> Callable[[], Check]:
    def check() -> Check:
        path = shutil.which(name)
        return Check(name, path is not None, path, features, how)

    return check


def _root() -> Check:
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    how = "run as root (the node runs containerd and the kubelet)"
    return Check("root", is_root, "root" if is_root else None, ["local-cluster"], how)


_CHECKS: tuple[Callable[[], Check], ...] = (
    _java,
    _maven,
    _kubeconfig,
    _tool(
        "podman",
        ["local-cluster"],
        "podman builds the worker image (Debian/Ubuntu: apt-get install podman)",
    ),
    _tool(
        "containerd",
        ["local-cluster"],
        "containerd runs the node's Pods (Debian/Ubuntu: apt-get install containerd)",
    ),
    _root,
)


def run_checks(features: tuple[str, ...] = ()) -> list[Check]:
    """Run the checks the given features need (all of them when none are given)."""
    wanted = set(features or FEATURES)
    checks = []
    for make in _CHECKS:
        found = make()
        if wanted & set(found.needed_for):
            checks.append(found)
    return checks


@click.command("doctor")
@click.option(
    "--for",
    "features",
    type=click.Choice(sorted(FEATURES)),
    multiple=True,
    help="Only what this feature needs (repeat; default: every feature). A cluster user "
    "(the platform's Kafka and Kubernetes) needs only `kubernetes`.",
)
@json_option("One JSON object per check: check, ok, found, needed_for, how.")
def doctor(features: tuple[str, ...], as_json: bool) -> int:
    """Say what this machine lacks for each feature and how to get it; exit 1 if anything."""
    checks = run_checks(features)
    for check in checks:
        if as_json:
            echo_json(asdict(check))
            continue
        state = "ok     " if check.ok else "MISSING"
        uses = ", ".join(check.needed_for)
        click.echo(f"{state} {check.check}: {check.found or 'not found'} (for {uses})")
        if not check.ok:
            click.echo(f"        get it: {check.how}")
    missing = [c for c in checks if not c.ok]
    if not as_json:
        python = ".".join(map(str, sys.version_info[:3]))
        click.echo(
            f"Python {python}; "
            + (
                "nothing missing"
                if not missing
                else f"missing: {', '.join(c.check for c in missing)}"
            )
            + " for "
            + ", ".join(features or sorted(FEATURES))
        )
    return ExitCode.FAILED if missing else ExitCode.OK
