"""The tutorials in notebooks/, executed by papermill against the session's local broker.

Cells tagged `cluster-only` need the platform's Kafka and Kubernetes: they are left out here
(docs/index.md says so to readers). Any other cell that raises fails its tutorial.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import papermill
import pytest

from streamforge_nb.settings import Settings

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
TUTORIALS = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
CLUSTER_ONLY = "cluster-only"
# What a reader of each tutorial is told happened, in the executed cells' outputs.
SHOWN = {
    "01_first_queue_and_ping.ipynb": ["PongReply(producer='dummy__", "interrupted"],
    "02_load_and_analyse_a_market.ipynb": ["SOLUSDT", "application/vnd.plotly.v1+json"],
    "03_operate_lag_and_dead_letters.ipynb": ["not-json", "number", "redrive", "ok"],
    "04_the_cluster_path.ipynb": ["loader-candles", "arango-candles"],
}


@pytest.fixture
def tutorial_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The kernels papermill starts read the session's broker from their environment."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", settings.kafka_bootstrap_servers)
    monkeypatch.setenv("QUEUE_CONTROL_TOPIC", settings.queue_control_topic)
    monkeypatch.setenv("QUEUE_EVENTS_TOPIC", settings.queue_events_topic)
    return settings


def without_cluster_cells(name: str, folder: Path) -> tuple[Path, int]:
    """Write `name` without its cluster-only cells into `folder`; return it and how many went."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    kept = [c for c in notebook.cells if CLUSTER_ONLY not in c.metadata.get("tags", [])]
    dropped = len(notebook.cells) - len(kept)
    notebook.cells = kept
    path = folder / f"input-{name}"
    nbformat.write(notebook, path)
    return path, dropped


def test_tutorials_are_thin_and_stripped() -> None:
    """Each starts from a `parameters` cell and is stored without outputs (git stays small and
    a reader runs it afresh); only the cluster path has cluster-only cells."""
    assert len(TUTORIALS) >= 4
    for name in TUTORIALS:
        cells = nbformat.read(NOTEBOOKS / name, as_version=4).cells
        code = [c for c in cells if c.cell_type == "code"]
        assert "parameters" in code[0].metadata.get("tags", []), name
        for cell in code:
            assert cell.outputs == [] and cell.execution_count is None, (name, cell.id)
        tagged = [c for c in code if CLUSTER_ONLY in c.metadata.get("tags", [])]
        assert bool(tagged) == ("cluster" in name), name


@pytest.mark.parametrize("name", TUTORIALS)
def test_tutorial_runs_against_the_local_broker(
    name: str, tutorial_env: Settings, tmp_path: Path
) -> None:
    source, _ = without_cluster_cells(name, tmp_path)
    declared = papermill.inspect_notebook(str(source))
    parameters = {"store_url": f"local://{tmp_path / 'store'}"} if "store_url" in declared else {}
    if "cluster" in name:
        parameters = {}  # its store is the cluster's; only the plan runs here
    output = tmp_path / name
    # A cell that raises raises PapermillExecutionError here, naming the cell.
    papermill.execute_notebook(
        str(source), str(output), parameters=parameters, cwd=str(tmp_path),
        kernel_name="python3", progress_bar=False, execution_timeout=120,
    )  # fmt: skip
    cells = nbformat.read(output, as_version=4).cells
    errors = [o for c in cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]  # fmt: skip
    assert not errors
    assert all(c.execution_count for c in cells if c.cell_type == "code" and c.source.strip())
    shown = " ".join(
        f"{key} {value}" for c in cells if c.cell_type == "code" for o in c.outputs
        for key, value in {**o.get("data", {}), "text": o.get("text", "")}.items()
    )  # fmt: skip
    for expected in SHOWN[name]:
        assert expected in shown, (name, expected)
