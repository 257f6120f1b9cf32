"""Coverage from cached footers, and readers over partitions of several Parquet files.

Real Parquet files under tmp_path; GENERATED candles (`testing.CandleGenerator`, not market
data). A partition of several files is written here by hand (`2024-08.1.parquet` beside
`2024-08.parquet`), as a writer appending batches as files would leave it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from test_market import AUG1, MIN, generated  # tests/ is on sys.path (rootdir, no package)

from streamforge_nb.store import footers
from streamforge_nb.store.candles import CandleStore


@pytest.fixture
def store(tmp_path: Path) -> CandleStore:
    store = CandleStore.open(tmp_path / "store")
    store.write(generated("BTCUSDT", "1m", AUG1, AUG1 + 10 * MIN), "BTCUSDT", "1m")
    store.write(generated("ETHUSDT", "1m", AUG1, AUG1 + 10 * MIN), "ETHUSDT", "1m")
    return store


def add_second_file(store: CandleStore) -> pa.Table:
    """Minutes 5..14 of BTCUSDT in a newer second file of August: 5..9 again with another
    close, 10..14 new. Return that file's rows."""
    directory = store.backend.root / "candles" / "BTCUSDT" / "1m"  # type: ignore[attr-defined]
    base = pq.read_table(directory / "2024-08.parquet")
    more = store.load("BTCUSDT", "1m")  # the same schema as the store writes
    newer = generated("BTCUSDT", "1m", AUG1 + 10 * MIN, AUG1 + 15 * MIN)
    table = pa.concat_tables([base.slice(5), _table(newer, base.schema)])
    table = table.set_column(
        table.schema.get_field_index("close"), "close", pc.multiply(table["close"], 2.0)
    )
    path = directory / "2024-08.1.parquet"
    pq.write_table(table, path)
    stamp = os.stat(directory / "2024-08.parquet").st_mtime_ns + 10**9
    os.utime(path, ns=(stamp, stamp))  # newer than the base file, whatever the clock did
    assert len(more) == 10
    return table


def _table(frame: Any, schema: pa.Schema) -> pa.Table:
    out = pa.Table.from_pandas(frame.reset_index(), preserve_index=False)
    return out.select(schema.names).cast(schema)


def test_a_partition_of_several_files_counts_and_queries_each_candle_once(
    store: CandleStore,
) -> None:
    second = add_second_file(store)
    got = store.coverage("BTCUSDT", "1m", by="month")
    assert got["stored"].tolist() == [15] and got["missing"].tolist() == [0]
    n = store.sql("SELECT count(*) AS n FROM candles WHERE symbol = 'BTCUSDT'")
    assert n["n"].tolist() == [15]
    # The newest file wins where both hold a candle: minute 7's close is the doubled one.
    close = store.sql(
        "SELECT close FROM candles WHERE symbol = 'BTCUSDT' AND open_time = ?",
        [pd_utc(AUG1 + 7 * MIN)],
    )
    assert close["close"].tolist() == [second["close"][2].as_py()]
    hour = store.resample_many("BTCUSDT", "1m", "1h")
    assert hour["candles"].tolist() == [15]
    assert hour["close"].tolist() == [second["close"][-1].as_py()]
    # A store of single-file partitions is read as before.
    assert store.sql("SELECT count(*) AS n FROM candles WHERE symbol = 'ETHUSDT'")["n"][0] == 10


def pd_utc(ms: int) -> Any:
    import pandas as pd

    return pd.Timestamp(ms, unit="ms", tz="UTC").to_pydatetime()


def test_coverage_reads_a_footer_again_only_for_a_replaced_file(
    store: CandleStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = store.coverage(by="month")
    opened: list[str] = []
    real = footers.pa.OSFile

    def spy(path: str, mode: str = "r") -> Any:
        if "w" not in mode:  # a footer read, not the store writing a partition
            opened.append(Path(path).parent.parent.name)
        return real(path, mode)

    monkeypatch.setattr(footers.pa, "OSFile", spy)
    again = store.coverage(by="month")
    assert opened == [] and again.equals(first)  # every footer from the cache
    store.write(generated("ETHUSDT", "1m", AUG1 + 10 * MIN, AUG1 + 20 * MIN), "ETHUSDT", "1m")
    after = store.coverage(by="month")
    assert opened == ["ETHUSDT"]  # the replaced partition only
    assert after["stored"].tolist() == [10, 20]
