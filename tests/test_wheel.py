"""The wheel is the product: build it, install it into a fresh virtualenv, use it from there.

Once per session: `pip wheel --no-deps` builds the wheel from this checkout; a new virtualenv
(`venv --without-pip`, no system site-packages) outside the checkout gets it and its
dependencies from PyPI, as pip resolves them. Every check then runs the venv's own Python or
`streamforge-nb` from an empty working directory (no `notebooks/` folder, the checkout on no
path), with a fresh HOME and STREAMFORGE_HOME, against the session's broker.

The dependency wheels pip picks are kept in a wheelhouse
(`$STREAMFORGE_WHEELHOUSE`, default ~/.cache/streamforge-nb/wheelhouse) and installed from
there with `--no-index` while it is fresh: this machine's PyPI mirror sends no cache headers,
so pip's own cache holds nothing and a resolution against the index takes minutes. The
wheelhouse is downloaded again when the wheel's requirements change or after
`WHEELHOUSE_MAX_AGE_S`; `STREAMFORGE_WHEELHOUSE=off` installs straight from PyPI.

`python tests/test_wheel.py [WHEEL]` prints the file summary of a wheel (built when not given).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path
from typing import Any

import pytest
import requests

from streamforge_nb.settings import Settings

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "streamforge_nb"
WHEELHOUSE_MAX_AGE_S = 7 * 24 * 3600
SAMPLE_RANGE = "2024-08-01:2024-08-02"
SAMPLE_CANDLES = 1440
# The build and the install come first (minutes the first time: the wheelhouse), then two
# workflows whose Jobs start Jupyter kernels on a loaded 2-core machine.
pytestmark = [pytest.mark.wheel, pytest.mark.timeout(1800)]

# Inside the package, only these kinds of files ship (code, typing marker, payload data).
_SHIPPED_SUFFIXES = {".py", ".typed", ".ipynb", ".json", ".xml", ".zip", ".CHECKSUM", ".md"}
# Never in the wheel, wherever they would sit.
_FORBIDDEN_PARTS = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".mypy_cache", "tests"}


# -- the wheel ---------------------------------------------------------------------------------
def _run(
    command: list[str],
    what: str,
    *,
    timeout: float,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> str:
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd, env=env
    )
    if done.returncode != 0:
        pytest.fail(
            f"{what} failed ({done.returncode}): {' '.join(command)}\n"
            f"{(done.stdout + done.stderr)[-6000:]}",
            pytrace=False,
        )
    return done.stdout


def build_wheel(out: Path) -> Path:
    """Build the wheel from this checkout into `out` as a user would (isolated build)."""
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
        "building the wheel",
        timeout=900,
    )
    (wheel,) = out.glob(f"{PACKAGE}-*.whl")
    return wheel


def wheel_summary(names: list[str]) -> list[str]:
    """One line per top-level folder of the wheel (package subfolders apart): file count."""
    counts: Counter[str] = Counter()
    for name in names:
        parts = name.split("/")
        if parts[0] == PACKAGE and len(parts) > 2:
            counts[f"{PACKAGE}/{parts[1]}/"] += 1
        elif parts[0] == PACKAGE:
            counts[f"{PACKAGE}/ (top-level modules, py.typed)"] += 1
        else:
            counts[f"{parts[0]}/"] += 1
    width = max(len(k) for k in counts)
    return [f"{k:<{width}}  {v:>3}" for k, v in sorted(counts.items())] + [
        f"{'total':<{width}}  {len(names):>3}"
    ]


def _metadata(wheel: Path) -> Any:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = (n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(archive.read(name).decode())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


# -- the virtualenv ----------------------------------------------------------------------------
def _wheelhouse(wheel: Path) -> Path | None:
    """The dependency wheels pip resolves from PyPI for `wheel`, kept while fresh."""
    configured = os.environ.get("STREAMFORGE_WHEELHOUSE", "")
    if configured == "off":
        return None
    root = (
        Path(configured).expanduser()
        if configured
        else Path.home() / ".cache" / "streamforge-nb" / "wheelhouse"
    )
    tag = sys.implementation.cache_tag
    requires = sorted(
        r for r in _metadata(wheel).get_all("Requires-Dist") or [] if "extra ==" not in r
    )
    key = hashlib.sha256("\n".join([tag, platform.machine(), *requires]).encode()).hexdigest()
    folder = root / f"{tag}-{key[:12]}"
    stamp = folder / ".complete"

    def fresh() -> bool:
        return stamp.is_file() and time.time() - stamp.stat().st_mtime < WHEELHOUSE_MAX_AGE_S

    if fresh():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    partial = root / f"{folder.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    _run(
        [sys.executable, "-m", "pip", "download", "-q", "-d", str(partial), str(wheel)],
        "downloading the dependencies from PyPI",
        timeout=1500,
    )
    for own in partial.glob(f"{PACKAGE}-*"):
        own.unlink()
    if fresh():  # another session refreshed it meanwhile
        shutil.rmtree(partial, ignore_errors=True)
        return folder
    for old in root.glob(f"{tag}-*"):  # older keys and a stale copy of this one
        if ".partial-" not in old.name:
            shutil.rmtree(old, ignore_errors=True)
    partial.rename(folder)
    stamp.touch()
    return folder


@dataclass(frozen=True)
class Installed:
    """A virtualenv with only the wheel (and its dependencies) in it, and where to run it."""

    venv: Path
    workdir: Path
    home: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def env(self, **extra: str) -> dict[str, str]:
        """A new user's environment: this venv first on PATH, no Python/Kafka/StreamForge vars."""
        dropped = ("PYTHON", "VIRTUAL_ENV", "CONDA", "JUPYTER", "KAFKA_", "ARANGO_", "STREAMFORGE_")
        env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
        path = [p for p in env.get("PATH", "").split(os.pathsep) if p and not _in_repo(p)]
        env["PATH"] = os.pathsep.join([str(self.venv / "bin"), *path])
        env["HOME"] = str(self.home)
        env["STREAMFORGE_HOME"] = str(self.home / ".streamforge-nb")
        env.update(extra)
        return env

    def run(self, *command: str | Path, env: dict[str, str], timeout: float) -> str:
        return _run(
            [str(c) for c in command],
            f"`{Path(command[0]).name} {' '.join(str(c) for c in command[1:])[:60]}`",
            timeout=timeout,
            cwd=self.workdir,
            env=env,
        )

    def python_script(self, script: str, *args: str, env: dict[str, str], timeout: float) -> Any:
        """Run `script` with the venv's Python; return the JSON of its last output line."""
        out = self.run(self.python, "-c", script, *args, env=env, timeout=timeout)
        return json.loads(out.strip().splitlines()[-1])


def _in_repo(path: str) -> bool:
    return Path(path).resolve().is_relative_to(REPO)


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("installed")
    assert not _in_repo(str(root))
    venv, workdir, home = root / "venv", root / "work", root / "home"
    workdir.mkdir()
    home.mkdir()
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], "venv", timeout=120)
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
    wheelhouse = _wheelhouse(wheel)
    offline = ["--no-index", "--find-links", str(wheelhouse)] if wheelhouse else []
    _run(
        [*pip, "install", "-q", "--no-compile", *offline, str(wheel)],
        f"installing the wheel (wheelhouse: {wheelhouse}; delete it to resolve again)",
        timeout=1500,
    )
    _run([*pip, "check"], "pip check in the new venv", timeout=120)
    yield Installed(venv, workdir, home)
    # ~700 MB in ~30k files that pytest would keep (its last 3 temp dirs): deleting them takes
    # half a minute on a busy disk, so it runs alongside the next tests.
    subprocess.run(["sh", "-c", 'rm -rf -- "$1" >/dev/null 2>&1 &', "sh", str(venv)], check=True)


# -- what ships ------------------------------------------------------------------------------
def _package_files_on_disk() -> set[str]:
    files = set()
    for path in (REPO / PACKAGE).rglob("*"):
        relative = path.relative_to(REPO)
        if not path.is_file() or path.suffix in (".pyc", ".pyo"):
            continue
        if any(part in _FORBIDDEN_PARTS or part.startswith(".") for part in relative.parts):
            continue
        files.add(relative.as_posix())
    return files


def test_the_wheel_ships_code_notebooks_schemas_and_resources(
    wheel: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from streamforge_nb.platform.schemas import json_schemas
    from streamforge_nb.workflow.targets import TARGETS

    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    with capsys.disabled():
        print(f"\n{wheel.name}: files per folder")
        print("\n".join(f"  {line}" for line in wheel_summary(names)))

    dist_info = f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"
    outside = [n for n in names if not n.startswith((f"{PACKAGE}/", f"{dist_info}/"))]
    assert outside == [], "only the package and its dist-info belong in the wheel"
    stray = [
        n
        for n in names
        if _FORBIDDEN_PARTS & set(n.split("/"))
        or (n.startswith(f"{PACKAGE}/") and Path(n).suffix not in _SHIPPED_SUFFIXES)
    ]
    assert stray == [], "caches, tests or unexpected kinds of files in the wheel"
    # Everything of the package in the checkout ships; nothing else does.
    shipped = {n for n in names if n.startswith(f"{PACKAGE}/")}
    on_disk = _package_files_on_disk()
    assert sorted(on_disk - shipped) == [], "package files missing from the wheel"
    assert sorted(shipped - on_disk) == [], "wheel files that are not in the package"

    required = {
        f"{PACKAGE}/py.typed",
        f"{PACKAGE}/resources/pom.xml",
        f"{PACKAGE}/resources/sample/BTCUSDT-1m-2024-08-01.zip",
        *(f"{PACKAGE}/notebooks/{t.notebook}" for t in TARGETS.values()),
        *(
            f"{PACKAGE}/notebooks/{n}.ipynb"
            for n in ("control_panel", "launch_panel", "batch_panel")
        ),
        *(f"{PACKAGE}/schemas/{name}.schema.json" for name in json_schemas()),
        f"{PACKAGE}/schemas/openapi.json",
    }
    assert sorted(required - shipped) == []
    entry_points = zipfile.ZipFile(wheel).read(f"{dist_info}/entry_points.txt").decode()
    assert "streamforge-nb = streamforge_nb.cli:main" in entry_points


# -- the installed package, from a directory with no notebooks/ -------------------------------
PROBE = r"""
import importlib, json, pkgutil, sys
import streamforge_nb
from streamforge_nb.exchange import SAMPLE_ARCHIVE
from streamforge_nb.local.maven import KAFKA_VERSION, pom_path
from streamforge_nb.platform.schemas import json_schemas, schemas_dir
from streamforge_nb.ui.dashboard import default_notebooks_dir
from streamforge_nb.workflow.targets import TARGETS, notebook_path, notebooks_dir

broken = {}
def failed(name):
    broken[name] = repr(sys.exc_info()[1])
for module in pkgutil.walk_packages(streamforge_nb.__path__, "streamforge_nb.", onerror=failed):
    if module.name.rsplit(".", 1)[-1] == "__main__":
        continue
    try:
        importlib.import_module(module.name)
    except Exception as exc:
        broken[module.name] = repr(exc)
shipped = {
    name: json.loads((schemas_dir() / f"{name}.schema.json").read_text())
    for name in json_schemas()
}
print(json.dumps({
    "package": streamforge_nb.__file__,
    "sys_path": sys.path,
    "paths": {
        "notebooks_dir": str(notebooks_dir()),
        "dashboard_notebooks": str(default_notebooks_dir()),
        "schemas_dir": str(schemas_dir()),
        "pom": str(pom_path()),
        "sample": str(SAMPLE_ARCHIVE),
        **{t.name: str(notebook_path(t.notebook)) for t in TARGETS.values()},
    },
    "kafka_version": KAFKA_VERSION,
    "schemas_current": shipped == json_schemas(),
    "broken_modules": broken,
}))
"""


def test_the_installed_package_finds_its_files_inside_the_venv(installed: Installed) -> None:
    assert not (installed.workdir / "notebooks").exists()
    help_text = installed.run(
        installed.venv / "bin" / "streamforge-nb", "--help", env=installed.env(), timeout=120
    )
    assert "Usage: streamforge-nb" in help_text and "candles" in help_text

    probe = installed.python_script(PROBE, env=installed.env(), timeout=300)
    venv = installed.venv.resolve()
    assert Path(probe["package"]).resolve().is_relative_to(venv), probe["package"]
    assert [p for p in probe["sys_path"] if p and _in_repo(p)] == []
    for what, path in probe["paths"].items():
        assert Path(path).resolve().is_relative_to(venv), f"{what}: {path}"
        assert Path(path).exists(), f"{what}: {path}"
    assert probe["kafka_version"]
    assert probe["schemas_current"], "the shipped JSON Schemas differ from the models"
    assert probe["broken_modules"] == {}, "modules of the wheel that do not import"


def test_the_wheel_declares_its_license_urls_and_classifiers(wheel: Path) -> None:
    metadata = _metadata(wheel)
    assert metadata["License-Expression"] == "MIT"
    with zipfile.ZipFile(wheel) as archive:
        (license_file,) = (n for n in archive.namelist() if n.endswith("/licenses/LICENSE"))
        text = archive.read(license_file).decode()
    assert text.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in text
    urls = dict(u.split(", ", 1) for u in metadata.get_all("Project-URL") or [])
    assert {"Homepage", "Documentation", "Source", "Issues"} <= set(urls)
    assert all(url.startswith("https://") for url in urls.values())
    classifiers = metadata.get_all("Classifier") or []
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert "Typing :: Typed" in classifiers and "Framework :: Jupyter" in classifiers


def test_the_installed_cli_says_what_is_missing_and_never_writes_into_itself(
    installed: Installed,
) -> None:
    cli = installed.venv / "bin" / "streamforge-nb"
    # A cluster user's machine as the fresh HOME is: no kubeconfig yet, exit 1 naming it.
    doctor = subprocess.run(
        [str(cli), "doctor", "--for", "kubernetes", "--json"], cwd=installed.workdir,
        env=installed.env(), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert doctor.returncode == 1, doctor.stderr
    (check,) = [json.loads(line) for line in doctor.stdout.splitlines()]
    assert check["check"] == "kubeconfig" and check["ok"] is False and "KUBECONFIG" in check["how"]

    script = (
        "import json, streamforge_nb.platform.schemas as s; print(json.dumps(str(s.schemas_dir())))"
    )
    shipped = Path(installed.python_script(script, env=installed.env(), timeout=120))
    assert shipped.resolve().is_relative_to(installed.venv.resolve())
    before = {p.name: p.read_bytes() for p in shipped.iterdir()}
    for args in (["schemas"], ["schemas", str(shipped)], ["manifests", str(shipped)]):
        refused = subprocess.run(
            [str(cli), *args], cwd=installed.workdir, env=installed.env(),
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert refused.returncode == 2, (args, refused.stderr)
    assert {p.name: p.read_bytes() for p in shipped.iterdir()} == before
    written = installed.run(cli, "schemas", "-", env=installed.env(), timeout=120)
    assert json.loads(written)["ping"] == json.loads(before["ping.schema.json"])


def _job_logs(home: Path) -> str:
    logs = sorted((home / ".streamforge-nb" / "jobs").glob("*.log"))
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs)


CANDLES = r"""
import json, sys
from streamforge_nb import CandleStore, Workflow
from streamforge_nb.exchange import SAMPLE_ARCHIVE

store, time_range = sys.argv[1], sys.argv[2]
workflow = Workflow.candles(
    "BTCUSDT", "1m", time_range, source="archive", archives=[str(SAMPLE_ARCHIVE)], store=store
)
plan = workflow.plan()
with workflow.launch("local") as queue:
    final = queue.wait(timeout=900, targets=[s.target for s in plan.steps], progress=False)
start, end = time_range.split(":")
with CandleStore.open(store) as candles:
    stored = len(candles.load("BTCUSDT", "1m", start, end))
    found, summary = candles.quality_summary("BTC*", "1m", start, end)
    coverage = candles.coverage("BTCUSDT", "1m", by="day", start=start, end=end)
print(json.dumps({
    "quality": summary[["symbol", "candles"]].values.tolist(),
    "coverage": coverage[["stored", "missing"]].values.tolist(),
    "heatmap": type(coverage.plot().data[0]).__name__,
    "queue_id": plan.queue_id,
    "sample": str(SAMPLE_ARCHIVE),
    "status": final["status"].to_dict(),
    "records_written": {k: int(v) for k, v in final["records_written"].items()},
    "stored": stored,
}))
"""


def test_a_local_candle_workflow_on_the_shipped_sample_finishes(
    installed: Installed, settings: Settings
) -> None:
    from streamforge_nb.store.candles import CandleStore

    home = installed.home
    store = f"local://{home / 'store'}"
    env = installed.env(KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers)
    try:
        result = installed.python_script(CANDLES, store, SAMPLE_RANGE, env=env, timeout=1200)
    except BaseException:
        print(_job_logs(home))
        raise
    assert set(result["status"].values()) == {"finished"}, (result, _job_logs(home))
    assert len(result["status"]) == 2
    assert Path(result["sample"]).resolve().is_relative_to(installed.venv.resolve())
    assert result["stored"] == SAMPLE_CANDLES
    assert max(result["records_written"].values()) == SAMPLE_CANDLES
    # The market calls from the installed package: quality, coverage and its heatmap.
    assert result["quality"] == [["BTCUSDT", SAMPLE_CANDLES]]
    assert result["coverage"] == [[SAMPLE_CANDLES, 0]] and result["heatmap"] == "Heatmap"
    cli = installed.venv / "bin" / "streamforge-nb"
    day = ["--from", "2024-08-01", "--to", "2024-08-02", "--store-url", store, "--json"]
    out = installed.run(cli, "store", "coverage", "BTCUSDT", "-i", "1m", *day, env=env, timeout=120)
    assert [json.loads(line)["stored"] for line in out.splitlines()] == [SAMPLE_CANDLES]
    with CandleStore.open(store) as candles:  # the checkout reads what the wheel wrote
        assert len(candles.load("BTCUSDT", "1m", "2024-08-01", "2024-08-02")) == SAMPLE_CANDLES
    executed = home / ".streamforge-nb" / "runs" / result["queue_id"]
    assert sorted(p.name for p in executed.iterdir()) == [
        "arango-candles.ipynb",
        "loader-candles.ipynb",
    ]


DUMMY = r"""
import json, sys, time
from streamforge_nb import QueueTimeout, Workflow

workflow = Workflow(
    "BTCUSDT", "1m", sys.argv[2], ["dummy"], store=sys.argv[1],
    parameters={"dummy": {"metrics_port": 0, "exit_on_ping": True}},
)
plan = workflow.plan()
with workflow.launch("local") as queue:
    deadline = time.monotonic() + 300  # the Job starts a kernel first
    while True:
        try:
            (pong,) = queue.ping(timeout=2)
            break
        except QueueTimeout:
            jobs = queue.launcher.list(queue.queue_id)
            if time.monotonic() > deadline or not any(j.state == "active" for j in jobs):
                raise
    final = queue.wait(timeout=300, targets=["dummy"], progress=False)
print(json.dumps({
    "queue_id": plan.queue_id,
    "pong_from": pong.producer,
    "status": final["status"].to_dict(),
}))
"""


def test_the_dummy_runs_as_a_notebook_job_and_reports(
    installed: Installed, settings: Settings
) -> None:
    from streamforge_nb.control.queue import Queue

    home = installed.home
    store = f"local://{home / 'store-dummy'}"
    env = installed.env(KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers)
    try:
        result = installed.python_script(DUMMY, store, SAMPLE_RANGE, env=env, timeout=900)
    except BaseException:
        print(_job_logs(home))
        raise
    assert result["status"] == {result["pong_from"]: "finished"}, (result, _job_logs(home))
    # The telemetry is on the broker for anyone to read, here with the checkout's own Queue.
    with Queue(result["queue_id"], settings) as queue:
        statuses = [(e.producer, e.status) for e in queue.events(timeout=60)]
    producer = result["pong_from"]
    assert {p for p, _ in statuses} == {producer}
    assert statuses[0][1] == "started" and statuses[-1][1] == "finished", statuses
    assert "pong" in {s for _, s in statuses}
    executed = home / ".streamforge-nb" / "runs" / result["queue_id"] / "dummy.ipynb"
    assert executed.is_file()


BATCH_PLAN = r"""
import json
from datetime import UTC, datetime
from streamforge_nb import Workflow
from streamforge_nb.workflow.targets import notebook_path

batch = Workflow.candles(["BTCUSDT", "ETHUSDT"], ["1m", "1h"], "2024-06-01:now",
                         now=datetime(2026, 12, 2, tzinfo=UTC))
plan = batch.plan()
print(json.dumps({"summary": plan.summary(), "page": str(notebook_path("batch_panel.ipynb"))}))
"""


def test_serve_api_and_a_batch_plan_from_the_installed_package(
    installed: Installed, settings: Settings
) -> None:
    """The wheel's own `serve-api` serves the shipped OpenAPI document and the queues; a
    batch plans from it, with its dashboard page inside the venv."""
    from streamforge_nb.api.openapi import openapi_document

    token = "wheel-" + "x" * 32
    env = installed.env(
        KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers, STREAMFORGE_API_TOKEN=token
    )
    planned = installed.python_script(BATCH_PLAN, env=env, timeout=300)
    assert planned["summary"]["jobs"] == 2 * (3 + 1) * 2  # 1m: three years; 1h: one queue
    assert Path(planned["page"]).resolve().is_relative_to(installed.venv.resolve())

    command = [str(installed.venv / "bin" / "streamforge-nb"), "serve-api", "--port", "0"]
    proc = subprocess.Popen(command, cwd=installed.workdir, env=env, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().decode()  # the URL line comes before serving
        url = first.split(" at ", 1)[1].split()[0]
        reply = requests.get(f"{url}/openapi.json", timeout=60)
        served = reply.json()  # the shipped document, naming the server's own URL
        assert reply.status_code == 200 and served["servers"] == [{"url": url}]
        assert served["paths"] == openapi_document()["paths"]
        listed = requests.get(f"{url}/queues", headers={"Authorization": f"Bearer {token}"},
                              timeout=60)  # fmt: skip
        assert listed.status_code == 200 and listed.json()["queues"] == []
        refused = requests.get(f"{url}/queues", timeout=60)
        assert refused.status_code == 401 and token not in refused.text
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        if proc.stdout is not None:
            proc.stdout.close()


if __name__ == "__main__":
    if len(sys.argv) > 1:
        built = Path(sys.argv[1])
    else:
        built = build_wheel(Path(tempfile.mkdtemp(prefix="streamforge-wheel-")))
    with zipfile.ZipFile(built) as archive:
        print(built)
        print("\n".join(wheel_summary(archive.namelist())))
