"""The alerts of manifests/prometheus-rules.yaml, checked by Prometheus's own promtool.

`promtool check rules` parses every expression; `promtool test rules` runs the unit tests in
tests/data/prometheus-rules.test.yaml, which fire each alert on made-up series. promtool is
built from the Go module proxy by scripts/build-kube (cached with the kube binaries).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import missing_prerequisite

from streamforge_nb.control.metrics import WorkerMetrics
from streamforge_nb.local.cluster import kube_cache_dir

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "manifests" / "prometheus-rules.yaml"
UNIT_TESTS = ROOT / "tests" / "data" / "prometheus-rules.test.yaml"
DOCS = ROOT / "docs" / "operations.md"


def promtool() -> Path:
    path = kube_cache_dir() / "bin" / "promtool"
    if not path.is_file():
        missing_prerequisite(f"no {path}: build it with scripts/build-kube")
    return path


def rule_groups() -> dict[str, Any]:
    (rule,) = yaml.safe_load_all(RULES.read_text(encoding="utf-8"))
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["kind"] == "PrometheusRule"
    return dict(rule["spec"])


def alerts() -> list[dict[str, Any]]:
    return [r for group in rule_groups()["groups"] for r in group["rules"] if "alert" in r]


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    """The PrometheusRule's spec as a plain rule file, beside a copy of the unit tests."""
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule_groups()), encoding="utf-8")
    shutil.copy(UNIT_TESTS, tmp_path / "tests.yaml")
    return tmp_path


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip


def test_promtool_accepts_the_rules(rules_dir: Path) -> None:
    result = run("check", "rules", "rules.yaml", cwd=rules_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_each_alert_fires_in_the_unit_tests(rules_dir: Path) -> None:
    result = run("test", "rules", "tests.yaml", cwd=rules_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)", UNIT_TESTS.read_text(encoding="utf-8")))
    assert tested == {a["alert"] for a in alerts()}


def test_a_broken_unit_test_fails(rules_dir: Path) -> None:
    """The unit tests are not vacuous: an alert expected where none fires fails them."""
    text = (rules_dir / "tests.yaml").read_text(encoding="utf-8")
    (rules_dir / "tests.yaml").write_text(text.replace("queue_id: q7", "queue_id: q8"))
    result = run("test", "rules", "tests.yaml", cwd=rules_dir)
    assert result.returncode != 0
    assert "StreamforgeExchangeBanned" in result.stdout + result.stderr


def test_the_alerts_use_only_metrics_a_worker_serves() -> None:
    served = {m.name for m in WorkerMetrics("q", "loader-candles").registry.collect()}
    used = {name for a in alerts() for name in re.findall(r"\b(streamforge_\w+)", a["expr"])}
    # Counters are served as <name>_total; the registry names the family without it.
    assert {name.removesuffix("_total") for name in used} <= served


def test_each_alert_has_a_runbook_in_the_operations_guide() -> None:
    text = DOCS.read_text(encoding="utf-8")
    headings = {h.strip().lower() for h in re.findall(r"^#+ (\w+)\s*$", text, re.M)}
    for alert in alerts():
        assert alert["annotations"]["runbook"] == f"docs/operations.md#{alert['alert'].lower()}"
        assert alert["alert"].lower() in headings, f"no heading {alert['alert']} in {DOCS}"
