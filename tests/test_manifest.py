"""Reproducible reads: a load's manifest, stamped into a notebook, verified against the store.

Real Parquet files under tmp_path and a real papermill run; GENERATED candles
(`testing.CandleGenerator`, not market data)."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import numpy as np
import papermill
import pytest
from test_market import AUG1, MIN, generated  # tests/ is on sys.path (rootdir, no package)

from streamforge_nb.exceptions import InvalidName
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.store.manifest import MIME, Manifest, recorded


@pytest.fixture
def store(tmp_path: Path) -> CandleStore:
    store = CandleStore.open(tmp_path / "store")
    for sym in ("BTCUSDT", "ETHUSDT"):
        store.write(generated(sym, "1m", AUG1, AUG1 + 30 * MIN), sym, "1m")
    return store


def change_one_close(store: CandleStore, symbol: str, minute: int) -> None:
    """A second write of one candle with another close: the store's last-write-wins update."""
    one = store.load(symbol, "1m", AUG1 + minute * MIN, AUG1 + (minute + 1) * MIN)
    one["close"] = one["close"] * 1.001
    store.write(one, symbol, "1m")


def test_verify_names_the_series_whose_candle_a_second_write_changed(store: CandleStore) -> None:
    frame, manifest = store.load(["BTCUSDT", "ETHUSDT"], "1m", AUG1, AUG1 + 20 * MIN,
                                 manifest=True)  # fmt: skip
    assert len(frame) == 40 and manifest.rows == (20, 20) and manifest.total_rows == 40
    assert manifest.series == (("BTCUSDT", "1m"), ("ETHUSDT", "1m"))
    assert store.verify(manifest).ok
    change_one_close(store, "ETHUSDT", 25)  # outside the range read: nothing read changed
    assert store.verify(manifest)
    change_one_close(store, "ETHUSDT", 7)
    result = store.verify(manifest)
    assert not result
    assert result.changed == [
        {"symbol": "ETHUSDT", "interval": "1m", "rows_then": 20, "rows_now": 20}
    ]
    # A candle added inside the range changes it too; the dict form verifies the same.
    store.write(generated("BTCUSDT", "1m", AUG1 - MIN, AUG1 + 30 * MIN), "BTCUSDT", "1m")
    assert store.verify(manifest.to_dict()).changed[0]["symbol"] == "ETHUSDT"
    wide, _ = store.load("BTCUSDT", "1m", AUG1, AUG1 + 20 * MIN, manifest=True)
    assert wide.index.name == "open_time" and len(wide) == 20


def test_a_manifest_covers_the_fields_read_and_rebuilds_from_json(store: CandleStore) -> None:
    _, closes = store.load("BTCUSDT", "1m", AUG1, AUG1 + 20 * MIN, fields=["close"],
                           manifest=True)  # fmt: skip
    assert closes.fields == ("close",)
    back = Manifest.from_dict(json.loads(json.dumps(closes.to_dict())))
    assert back == closes and back.hash == closes.hash
    # A changed volume is not a changed close: the manifest read closes only.
    one = store.load("BTCUSDT", "1m", AUG1 + 3 * MIN, AUG1 + 4 * MIN)
    one["volume"] = one["volume"] + 1
    store.write(one, "BTCUSDT", "1m")
    assert store.verify(back).ok
    edited = {**closes.to_dict(), "rows": [21]}
    assert Manifest.from_dict(edited).rows == (21,)  # rows are not hashed: verify re-reads
    with pytest.raises(InvalidName, match="edited"):
        Manifest.from_dict({**closes.to_dict(), "hashes": ["0" * 64]})
    with pytest.raises(InvalidName, match="not a candle read manifest"):
        store.verify({"store": "x"})
    with pytest.raises(InvalidName, match="stamp needs"):
        store.stamp(closes.to_dict())  # type: ignore[arg-type]


STAMP_NOTEBOOK = [
    "from streamforge_nb import CandleStore\n"
    "store = CandleStore.open(STORE)\n"
    "frame, manifest = store.load(['BTCUSDT', 'ETHUSDT'], '1m', START, END, manifest=True)\n"
    "store.stamp(manifest)",
    "print(len(frame))",
]


def test_a_papermill_run_keeps_the_stamped_manifest_in_the_executed_notebook(
    store: CandleStore, tmp_path: Path
) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("STORE = ''\nSTART = 0\nEND = 0")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, *(nbformat.v4.new_code_cell(src) for src in STAMP_NOTEBOOK)]
    source, output = tmp_path / "analysis.ipynb", tmp_path / "executed.ipynb"
    nbformat.write(nb, source)
    root = str(store.backend.root)  # type: ignore[attr-defined]
    papermill.execute_notebook(
        str(source), str(output), kernel_name="python3", language="python", progress_bar=False,
        parameters={"STORE": root, "START": AUG1, "END": AUG1 + 10 * MIN},
        execution_timeout=120,
    )  # fmt: skip
    (found,) = recorded(output)
    assert found.series == (("BTCUSDT", "1m"), ("ETHUSDT", "1m")) and found.rows == (10, 10)
    assert found.store == store.url and found.start == AUG1
    outputs = nbformat.read(output, as_version=4).cells[2].outputs
    assert any(MIME in o.get("data", {}) for o in outputs)  # shown, not only hidden metadata
    assert store.verify(found).ok
    change_one_close(store, "BTCUSDT", 9)
    assert store.verify(found).changed == [
        {"symbol": "BTCUSDT", "interval": "1m", "rows_then": 10, "rows_now": 10}
    ]
    assert np.isfinite(found.total_rows)
