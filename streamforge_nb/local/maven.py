"""Apache Kafka's broker jars, resolved from Maven Central by the pom.xml shipped in the package.

The jars are cached per Kafka version (`$STREAMFORGE_KAFKA_JARS`, default
`~/.cache/streamforge-nb/kafka-<version>`), so only the first `local up` on a machine pays for
the download.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from streamforge_nb.exceptions import LocalBrokerError

__all__ = ["KAFKA_VERSION", "fetch_jars", "jars_dir", "pom_path"]


def pom_path() -> Path:
    """Return the path of the pom.xml that pins the Kafka version."""
    return Path(str(resources.files("streamforge_nb") / "resources" / "pom.xml"))


def _kafka_version() -> str:
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom_path().read_text())
    if not match:
        raise LocalBrokerError(f"no <kafka.version> in {pom_path()}")
    return match.group(1)


KAFKA_VERSION = _kafka_version()
_COMPLETE = ".complete"


def jars_dir() -> Path:
    """Return where the broker's jars live (they may not be fetched yet)."""
    configured = os.environ.get("STREAMFORGE_KAFKA_JARS")
    if configured:
        return Path(configured)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "streamforge-nb" / f"kafka-{KAFKA_VERSION}"


def fetch_jars(*, quiet: bool = True) -> Path:
    """Resolve the broker's runtime jars with Maven unless already cached; return their folder."""
    target = jars_dir()
    if (target / _COMPLETE).is_file():
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LocalBrokerError(
            "Maven (`mvn`) is not installed; it resolves Kafka's jars from Maven Central "
            "(Debian: apt-get install maven openjdk-17-jre-headless)"
        )
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    command = [
        mvn,
        *(["-q"] if quiet else []),
        "-B",
        "-f",
        str(pom_path()),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={partial}",
    ]
    result = subprocess.run(command, capture_output=quiet, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout or "").splitlines()[-20:])
        raise LocalBrokerError(f"Maven could not resolve Kafka {KAFKA_VERSION}:\n{tail}")
    (partial / _COMPLETE).write_text(KAFKA_VERSION + "\n")
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial.rename(target)
    return target
