"""CandleStore conformance: the same tests on the embedded store and on a real ArangoDB.

ArangoDB runs need STREAMFORGE_TEST_ARANGO_URL (optional ..._USER/_PASSWORD: may create
databases); each test gets a throwaway database, dropped afterwards. Never faked."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from streamforge_nb import store as store_module
from streamforge_nb.exceptions import (
    ConfigError,
    InvalidName,
    MessageError,
    QueueExists,
    StoreError,
    StoreUnavailable,
)
from streamforge_nb.platform.contract import Candle
from streamforge_nb.settings import Settings
from streamforge_nb.store.base import _BACKENDS
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.store.frames import candles_to_frame, empty_frame, to_ms
from streamforge_nb.store.local import LocalBackend

ROOT = Path(__file__).resolve().parent.parent
MIN = 60_000
JUL31_23H = 1_722_466_800_000  # 2024-07-31 23:00 UTC, an hour before a month boundary
AUG1 = 1_722_470_400_000  # 2024-08-01 00:00 UTC

ARANGO_URL = os.environ.get("STREAMFORGE_TEST_ARANGO_URL", "")
ARANGO_SKIP = pytest.mark.skipif(
    not ARANGO_URL,
    reason="STREAMFORGE_TEST_ARANGO_URL is not set: the ArangoDB conformance run needs a real "
    "server (plus optional STREAMFORGE_TEST_ARANGO_USER/PASSWORD); it is never faked",
)

CANONICAL_DTYPES = dict.fromkeys(store_module.FLOAT_COLUMNS, "float64") | {
    "close_time": "datetime64[ms, UTC]", "number_of_trades": "int64"
}  # fmt: skip


def utc(ms: int) -> pd.Timestamp:
    return pd.Timestamp(ms, unit="ms", tz="UTC")


def make_candles(symbol: str, interval: str, start_ms: int, n: int, step: int = MIN, v: int = 0):
    """Return `n` candles with exact decimal strings; `v` changes every value."""
    out = []
    for i in range(n):
        t = start_ms + i * step
        b = 100 + (t // step) % 1000 + v
        out.append(Candle.model_validate({
            "_key": f"{symbol}_{interval}_{t}", "open_time": t, "close_time": t + step - 1,
            "open": f"{b}.25", "high": f"{b + 2}.5", "low": f"{b - 1}.75", "close": f"{b + 1}.125",
            "volume": f"0.0000{i % 9 + 1}",  # tiny: numpy would print these as 1e-05
            "quote_asset_volume": f"{1000 + i}.12345678", "taker_buy_base_asset_volume": f"{i}.5",
            "taker_buy_quote_asset_volume": f"{3 * i}.0625", "number_of_trades": 10 * i + v,
        }))  # fmt: skip
    return out


def arango_env() -> dict[str, str]:
    """Credentials of the test server as the platform's variables (for child processes)."""
    get = os.environ.get
    return {
        "ARANGO_USER": get("STREAMFORGE_TEST_ARANGO_USER", "root"),
        "ARANGO_PASSWORD": get("STREAMFORGE_TEST_ARANGO_PASSWORD", ""),
    }


@pytest.fixture(params=["local", pytest.param("arango", marks=[ARANGO_SKIP, pytest.mark.arango])])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CandleStore]:
    """A fresh, empty store on each backend."""
    if request.param == "local":
        with CandleStore.open(tmp_path / "store") as local:
            yield local
        return
    from arango.client import ArangoClient

    from streamforge_nb.store.arango import parse_arango_url

    env = arango_env()
    settings = Settings(arango_user=env["ARANGO_USER"], arango_password=env["ARANGO_PASSWORD"])
    target = parse_arango_url(ARANGO_URL, settings)
    client = ArangoClient(hosts=target.hosts)
    system = client.db("_system", username=target.user, password=target.password)
    name = f"sf_test_{uuid.uuid4().hex[:12]}"
    system.create_database(name)
    try:
        with CandleStore.open(f"{target.hosts}/_db/{name}", settings) as remote:
            yield remote
    finally:
        system.delete_database(name, ignore_missing=True)
        client.close()


def child_env(store: CandleStore) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARANGO_")}
    env["PYTHONPATH"] = str(ROOT)
    if not isinstance(store.backend, LocalBackend):
        env.update(arango_env())
    return env


# --- conformance: both backends ---------------------------------------------------------------


def test_write_then_load_exact_values_and_dtypes(store: CandleStore) -> None:
    candles = make_candles("BTCUSDT", "1m", JUL31_23H, 30)
    assert store.write(candles) == 30
    df = store.load("BTCUSDT", "1m", JUL31_23H, JUL31_23H + 30 * MIN)
    assert {c: str(t) for c, t in df.dtypes.items()} == CANONICAL_DTYPES
    assert list(df.columns) == list(store_module.COLUMNS)
    assert str(df.index.dtype) == "datetime64[ms, UTC]" and df.index.name == "open_time"
    assert df.index.asi8.tolist() == [c.open_time for c in candles]
    for name in store_module.FLOAT_COLUMNS:
        assert df[name].tolist() == [float(getattr(c, name)) for c in candles], name
    assert df["close_time"].astype("int64").tolist() == [c.close_time for c in candles]
    assert df["number_of_trades"].tolist() == [c.number_of_trades for c in candles]


def test_load_accepts_datetimes_iso_strings_and_ms_with_end_exclusive(store: CandleStore) -> None:
    store.write(make_candles("BTCUSDT", "1m", AUG1, 60))
    start = datetime(2024, 8, 1, 0, 10, tzinfo=UTC)
    expected = pd.date_range(start, periods=5, freq="1min", name="open_time")
    for lo, hi in [
        (start, start + timedelta(minutes=5)),
        ("2024-08-01T00:10:00Z", "2024-08-01 00:15"),  # naive ISO means UTC
        (AUG1 + 10 * MIN, AUG1 + 15 * MIN),
        (pd.Timestamp("2024-08-01 02:10", tz="Europe/Berlin"), start.replace(minute=15)),
    ]:
        df = store.load("btcusdt", "1m", lo, hi)  # the symbol in any case
        assert df.index.equals(expected.as_unit("ms")), (lo, hi)
    assert len(store.load("BTCUSDT", "1m", date(2024, 8, 1))) == 60
    assert len(store.load("BTCUSDT", "1m")) == 60


def test_empty_ranges_keep_dtypes_and_reversed_range_is_an_error(store: CandleStore) -> None:
    store.write(make_candles("BTCUSDT", "1m", AUG1, 10))
    for df in (
        store.load("BTCUSDT", "1m", AUG1, AUG1),
        store.load("BTCUSDT", "1m", "2030-01-01", "2030-02-01"),
        store.load("ETHUSDT", "1m"),
    ):
        assert df.empty
        assert {c: str(t) for c, t in df.dtypes.items()} == CANONICAL_DTYPES
        assert str(df.index.dtype) == "datetime64[ms, UTC]"
    with pytest.raises(InvalidName, match=r"2024-08-02.*2024-08-01.*ends before it starts"):
        store.load("BTCUSDT", "1m", "2024-08-02", "2024-08-01")
    with pytest.raises(ValueError):  # InvalidName is a ValueError too
        store.gaps("BTCUSDT", "1m", AUG1 + MIN, AUG1)


def test_writes_are_idempotent_and_a_changed_candle_replaces_the_old(store: CandleStore) -> None:
    candles = make_candles("BTCUSDT", "1m", AUG1, 50)
    store.write(candles)
    store.write(candles)
    store.write(candles_to_frame(candles), "BTCUSDT", "1m")
    df = store.load("BTCUSDT", "1m")
    assert len(df) == 50 and df.index.is_unique
    changed = make_candles("BTCUSDT", "1m", AUG1 + 20 * MIN, 5, v=7)
    # Within one batch the later duplicate wins too.
    assert store.write([*make_candles("BTCUSDT", "1m", AUG1 + 20 * MIN, 5, v=3), *changed]) == 5
    df = store.load("BTCUSDT", "1m")
    assert len(df) == 50
    assert df["open"].iloc[20:25].tolist() == [float(c.open) for c in changed]
    assert df["open"].iloc[19] == float(candles[19].open)
    assert store.coverage()["rows"].tolist() == [50]


def test_write_accepts_frames_in_the_canonical_layout(store: CandleStore) -> None:
    candles = make_candles("BTCUSDT", "1m", AUG1, 20)
    store.write(candles)
    loaded = store.load("BTCUSDT", "1m")
    assert store.write(loaded, "ETHUSDT", "1m") == 20
    pd.testing.assert_frame_equal(store.load("ETHUSDT", "1m"), loaded)
    # Decoded messages as a frame: `_key` names the series, decimals stay strings.
    messages = pd.DataFrame([c.model_dump(by_alias=True) for c in candles])
    messages["_key"] = messages["_key"].str.replace("BTCUSDT", "SOLUSDT")
    assert store.write(messages) == 20
    pd.testing.assert_frame_equal(store.load("SOLUSDT", "1m"), loaded)


def test_load_spans_partitions_and_collections(store: CandleStore) -> None:
    # 23:00 July 31 to 01:00 August 1: two months (files) and two days (collections).
    store.write(make_candles("BTCUSDT", "1m", JUL31_23H, 120))
    df = store.load("BTCUSDT", "1m", "2024-07-31T23:30", "2024-08-01T00:30")
    assert len(df) == 60 and df.index.is_monotonic_increasing and df.index.is_unique
    assert (df.index[0], df.index[-1]) == (utc(AUG1 - 30 * MIN), utc(AUG1 + 29 * MIN))
    assert len(store.load("BTCUSDT", "1m")) == 120
    backend = store.backend
    if isinstance(backend, LocalBackend):
        files = sorted(p.name for p in backend.series_dir("BTCUSDT", "1m").glob("*.parquet"))
        assert files == ["2024-07.parquet", "2024-08.parquet"]
    else:
        assert backend.collections("BTCUSDT", "1m") == [  # type: ignore[attr-defined]
            "btcusdt_api_candles_1m_2024_07_31",
            "btcusdt_api_candles_1m_2024_08_01",
        ]


def test_gaps_finds_holes_exactly_and_none_when_complete(store: CandleStore) -> None:
    missing = {5, 6, 7, 30}
    store.write(
        [c for i, c in enumerate(make_candles("BTCUSDT", "1m", AUG1, 60)) if i not in missing]
    )
    gaps = store.gaps("BTCUSDT", "1m", AUG1 - 2 * MIN, AUG1 + 62 * MIN)
    assert list(gaps.columns) == ["start", "end", "missing", "kind"]
    holes = [(-2, 0, 2), (5, 8, 3), (30, 31, 1), (60, 62, 2)]  # minutes after AUG1
    expected = [(utc(AUG1 + a * MIN), utc(AUG1 + b * MIN), n, "missing") for a, b, n in holes]
    assert list(gaps.itertuples(index=False, name=None)) == expected
    assert store.gaps("BTCUSDT", "1m")["missing"].tolist() == [3, 1]  # between first and last
    assert store.gaps("BTCUSDT", "1m", AUG1 + 8 * MIN, AUG1 + 30 * MIN).empty
    assert store.gaps("ETHUSDT", "1m", AUG1, AUG1 + 10 * MIN)["missing"].tolist() == [10]
    # 1M: calendar months of 29, 30 and 31 days.
    for month in (1, 2, 4, 5, 6):
        store.write(make_candles("BTCUSDT", "1M", to_ms(date(2024, month, 1)), 1))
    gaps = store.gaps("BTCUSDT", "1M", "2024-01-01", "2024-08-01")
    assert list(gaps.itertuples(index=False, name=None)) == [
        (pd.Timestamp("2024-03-01", tz="UTC"), pd.Timestamp("2024-04-01", tz="UTC"), 1, "missing"),
        (pd.Timestamp("2024-07-01", tz="UTC"), pd.Timestamp("2024-08-01", tz="UTC"), 1, "missing"),
    ]


def test_exchange_empty_ranges_are_recorded_merged_and_split_gaps(store: CandleStore) -> None:
    assert store.exchange_empty("BTCUSDT", "1m").empty
    store.write(
        [c for i, c in enumerate(make_candles("BTCUSDT", "1m", AUG1, 60)) if not 10 <= i < 30]
    )
    # Recorded in two overlapping pieces, one of them twice: one range [10, 25).
    for start, end in ((10, 20), (15, 25), (10, 20)):
        assert (
            store.write_exchange_empty("BTCUSDT", "1m", [(AUG1 + start * MIN, AUG1 + end * MIN)])
            == 1
        )
    recorded = store.exchange_empty("BTCUSDT", "1m")
    assert list(recorded.itertuples(index=False, name=None)) == [
        (utc(AUG1 + 10 * MIN), utc(AUG1 + 25 * MIN))
    ]
    assert (
        store.exchange_empty("ETHUSDT", "1m").empty and store.exchange_empty("BTCUSDT", "5m").empty
    )
    clipped = store.exchange_empty("BTCUSDT", "1m", AUG1 + 12 * MIN, AUG1 + 14 * MIN)
    assert clipped["start"].tolist() == [utc(AUG1 + 12 * MIN)]
    gaps = store.gaps("BTCUSDT", "1m", AUG1, AUG1 + 60 * MIN)
    assert list(gaps.itertuples(index=False, name=None)) == [
        (utc(AUG1 + 10 * MIN), utc(AUG1 + 25 * MIN), 15, "exchange_empty"),
        (utc(AUG1 + 25 * MIN), utc(AUG1 + 30 * MIN), 5, "missing"),
    ]
    with pytest.raises(InvalidName, match="end is exclusive"):
        store.write_exchange_empty("BTCUSDT", "1m", [(AUG1, AUG1)])
    with pytest.raises(InvalidName, match="before"):
        store.write_exchange_empty("BTCUSDT", "1m", [(AUG1 + MIN, AUG1)])
    assert len(store.exchange_empty("BTCUSDT", "1m")) == 1


def test_coverage_lists_each_series(store: CandleStore) -> None:
    assert store.coverage().empty
    store.write(make_candles("BTCUSDT", "1m", JUL31_23H, 120))
    store.write(make_candles("ETHUSDT", "1h", AUG1, 10, step=3_600_000))
    store.write(make_candles("BTCUSDT", "1h", AUG1, 3, step=3_600_000))
    cov = store.coverage()
    assert list(cov.columns) == ["symbol", "interval", "first", "last", "rows"]
    assert str(cov["first"].dtype) == "datetime64[ms, UTC]" and str(cov["rows"].dtype) == "int64"
    assert list(cov.itertuples(index=False, name=None)) == [
        ("BTCUSDT", "1m", utc(JUL31_23H), utc(JUL31_23H + 119 * MIN), 120),
        ("BTCUSDT", "1h", utc(AUG1), utc(AUG1 + 2 * 3_600_000), 3),
        ("ETHUSDT", "1h", utc(AUG1), utc(AUG1 + 9 * 3_600_000), 10),
    ]


def test_symbols_starting_with_a_digit_are_stored_and_listed(store: CandleStore) -> None:
    # ArangoDB collections get the reversible `sym-` prefix (names.collection_name).
    store.write(make_candles("1INCHUSDT", "1m", JUL31_23H, 120))
    store.write(make_candles("1000SATSUSDT", "1h", AUG1, 3, step=3_600_000))
    assert len(store.load("1INCHUSDT", "1m", JUL31_23H, JUL31_23H + 120 * MIN)) == 120
    assert list(store.coverage().itertuples(index=False, name=None)) == [
        ("1000SATSUSDT", "1h", utc(AUG1), utc(AUG1 + 2 * 3_600_000), 3),
        ("1INCHUSDT", "1m", utc(JUL31_23H), utc(JUL31_23H + 119 * MIN), 120),
    ]


def test_coverage_survives_a_far_future_candle(tmp_path: Path) -> None:
    # The sink refuses such a candle; the embedded store's coverage must not break on one.
    with CandleStore.open(tmp_path) as store:
        store.write(make_candles("BTCUSDT", "1m", 9 * 10**15, 1))
        cov = store.coverage()
    assert cov["rows"].tolist() == [1]
    assert cov["first"].iloc[0].year > 9999


# A writer process: deterministic candles whose columns agree with each other, so a reader can
# tell a torn or mixed read. `volume` records the batch (or writer) that wrote the row.
WRITER = r"""
import sys, time
import numpy as np
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.store.frames import frame_from_arrays

url, symbol, start, first, stop, batch, stride, tag, pause = sys.argv[1:]
start, first, stop, batch, stride, tag = map(int, (start, first, stop, batch, stride, tag))
store = CandleStore.open(url)
print("ready", flush=True)
if sys.stdin.readline().strip() != "go":
    sys.exit(2)
for n, lo in enumerate(range(first, stop, stride)):
    t = start + np.arange(lo, min(lo + batch, stop), dtype=np.int64) * 60_000
    close = (t // 60_000) % 1000 + 0.5
    store.write(frame_from_arrays(t, {
        "open": close, "high": close + 1, "low": close - 1, "close": close,
        "volume": np.full(len(t), tag * 1000 + n, dtype=np.float64), "close_time": t + 59_999,
        "quote_asset_volume": close * 2, "number_of_trades": t // 60_000,
        "taker_buy_base_asset_volume": close / 2, "taker_buy_quote_asset_volume": close / 4,
    }), symbol, "1m")
    time.sleep(float(pause))
store.close()
print("done", flush=True)
"""


def start_writers(
    store: CandleStore, *arg_lists: tuple[object, ...], script: str = WRITER
) -> list[Any]:
    """Start writer processes; once all are ready (imports done), let them go at once."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, store.url, *map(str, args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(store),
            cwd=ROOT,
        )
        for args in arg_lists
    ]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready"
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    return procs


def finish(proc: Any) -> None:
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0 and out.strip() == "done", out


def assert_consistent(df: pd.DataFrame) -> None:
    assert df.index.is_monotonic_increasing and df.index.is_unique
    t = df.index.asi8
    close = (t // MIN) % 1000 + 0.5
    np.testing.assert_array_equal(df["close"].to_numpy(), close)
    np.testing.assert_array_equal(df["high"].to_numpy(), close + 1)
    np.testing.assert_array_equal(df["close_time"].astype("int64").to_numpy(), t + 59_999)
    np.testing.assert_array_equal(df["number_of_trades"].to_numpy(), t // MIN)


def test_a_reader_sees_consistent_frames_while_another_process_writes(store: CandleStore) -> None:
    start = JUL31_23H - 3 * 60 * MIN  # crosses the month (and day) boundary early
    # 41 batches of up to 600 rows, each replacing the last 200 rows of the one before.
    total, batch, stride = 16_200, 600, 400
    (writer,) = start_writers(store, ("BTCUSDT", start, 0, total, batch, stride, 0, 0.02))
    reads, partial, last_rows = 0, 0, 0
    try:
        while writer.poll() is None:
            df = store.load("BTCUSDT", "1m")
            assert_consistent(df)
            assert len(df) >= last_rows  # rows are only ever added or replaced
            last_rows = len(df)
            reads += 1
            partial += 0 < len(df) < total
    finally:
        finish(writer)
    assert partial >= 3, f"only {partial} of {reads} reads overlapped the writer"
    df = store.load("BTCUSDT", "1m")
    assert len(df) == total
    assert_consistent(df)
    # Each row holds the last batch that wrote it (overlapping batches replace).
    last_batch = np.arange(total) // stride
    np.testing.assert_array_equal(df["volume"].to_numpy(), last_batch.astype(float))


def test_concurrent_writers_into_one_partition_lose_nothing(store: CandleStore) -> None:
    # Two processes, overlapping ranges, the same month file (and the same day collection).
    for proc in start_writers(
        store,
        ("BTCUSDT", AUG1, 0, 900, 30, 30, 1, 0),
        ("BTCUSDT", AUG1, 450, 1350, 30, 30, 2, 0),
    ):
        finish(proc)
    df = store.load("BTCUSDT", "1m")
    assert len(df) == 1350
    assert_consistent(df)
    writer = (df["volume"].to_numpy() // 1000).astype(int)
    assert set(writer[:450]) == {1} and set(writer[900:]) == {2}


# A launch's first step: create the queue's state record unless the id has one.
CREATOR = r"""
import sys
from streamforge_nb.control.state import new_record
from streamforge_nb.exceptions import QueueExists
from streamforge_nb.store.candles import CandleStore

url, qid, racer = sys.argv[1:]
record = new_record(
    queue_id=qid, symbol="BTCUSDT", type_="api_candles_1m", targets=["loader-candles"],
    parameters={}, data_topic=qid + "-data", outputs={}, launcher="local",
    launcher_options={"home": "/racer/" + racer}, jobs=["job-" + racer],
)
store = CandleStore.open(url)
print("ready", flush=True)
if sys.stdin.readline().strip() != "go":
    sys.exit(2)
try:
    store.create_queue_state(record)
    print("won", flush=True)
except QueueExists as exc:
    print("lost", exc, flush=True)
"""


def test_of_racing_creates_of_one_queue_state_exactly_one_wins(store: CandleStore) -> None:
    """One launch per queue id: processes creating one queue's record at once (as racing
    launches do first) get one winner; the others hear who won, and nothing is replaced."""
    qid = f"wf-btcusdt-api_candles_1m-20240801-{uuid.uuid4().hex[:6]}"
    racers = start_writers(store, *[(qid, n) for n in range(6)], script=CREATOR)
    answers = [proc.communicate(timeout=120)[0].strip() for proc in racers]
    assert [proc.returncode for proc in racers] == [0] * 6, answers
    winners = [n for n, answer in enumerate(answers) if answer == "won"]
    assert len(winners) == 1, answers
    record = store.queue_state(qid)
    assert record is not None and record["jobs"] == [f"job-{winners[0]}"]
    when = datetime.fromtimestamp(record["created_at"], UTC).strftime("%Y-%m-%d %H:%M:%S")
    for answer in answers:
        if answer != "won":
            assert answer.startswith(f"lost queue {qid} was launched already, at {when} UTC")
            assert f"by the local launcher (home=/racer/{winners[0]})" in answer

    # Once created, a create is refused (naming the first) and later saves still update.
    with pytest.raises(QueueExists, match=f"queue {qid} was launched already") as refused:
        store.create_queue_state({**record, "jobs": ["job-late"]})
    assert refused.value.record == record
    store.save_queue_state({**record, "status": "running"})
    assert store.queue_state(qid) == {**record, "status": "running"}


# --- embedded store and facade ----------------------------------------------------------------


def test_open_resolves_urls_paths_and_settings(tmp_path: Path) -> None:
    default = CandleStore.open()
    assert isinstance(default.backend, LocalBackend)
    assert default.backend.root == Path(os.environ["STREAMFORGE_HOME"]) / "store"
    for url in (tmp_path / "a", str(tmp_path / "a"), f"local://{tmp_path / 'a'}"):
        opened = CandleStore.open(url)
        assert isinstance(opened.backend, LocalBackend) and opened.backend.root == tmp_path / "a"
    assert repr(opened) == f"CandleStore(LocalBackend({str(tmp_path / 'a')!r}))"
    with pytest.raises(ConfigError, match=r"no candle store backend for scheme 'ftp'.*local"):
        CandleStore.open("ftp://example.org/candles")


def test_arango_urls_come_from_settings_and_repr_masks_secrets() -> None:
    settings = Settings(
        arango_url="arango://bob:urlsecret@127.0.0.1:8529/candles",
        arango_password="settingsecret",
    )
    opened = CandleStore.open(settings=settings)  # connects lazily: no server needed here
    text = repr(opened)
    assert "http://127.0.0.1:8529/_db/candles" in text and "bob" in text
    assert "urlsecret" not in text and "settingsecret" not in text
    assert "secret" not in opened.url
    from streamforge_nb.store.arango import parse_arango_url

    target = parse_arango_url("https://h.example:8530/_db/x", settings)
    # ARANGO_URL's user info is split into the settings (issue 11): its user is the settings'
    # user now; an explicit arango_password wins over the URL's.
    assert settings.arango_url == "arango://127.0.0.1:8529/candles"
    expected = dict(hosts="https://h.example:8530", database="x", user="bob")
    assert vars(target) == {**expected, "password": "settingsecret"}
    assert "settingsecret" not in repr(target)
    plain = vars(parse_arango_url("arango://h:8529", Settings()))
    assert plain == dict(hosts="http://h:8529", database="streamforge", user="root", password="")


def test_arango_documents_are_the_platforms_candle_messages() -> None:
    from streamforge_nb.store.arango import ArangoBackend

    candles = make_candles("BTCUSDT", "1m", AUG1, 12)
    docs = ArangoBackend.to_documents("BTCUSDT", "1m", candles_to_frame(candles))
    assert [Candle.model_validate(doc) for doc in docs] == candles  # same strings, no 1e-05
    assert docs[0]["_key"] == f"BTCUSDT_1m_{AUG1}" and docs[0]["volume"] == "0.00001"


def test_unreachable_arango_names_the_server_but_not_the_password() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = Settings(arango_user="bob", arango_password="hunter22")
    opened = CandleStore.open(f"arango://127.0.0.1:{port}", settings)
    # How long until "unreachable" is measured (tests/test_arango.py prints it), not asserted.
    with pytest.raises(StoreUnavailable) as info:
        opened.load("BTCUSDT", "1m")
    assert f"127.0.0.1:{port}" in str(info.value) and "hunter22" not in str(info.value)
    opened.close()


def test_register_backend_adds_a_scheme(tmp_path: Path) -> None:
    seen: list[str] = []

    def factory(url: str, settings: Settings) -> LocalBackend:
        seen.append(url)
        return LocalBackend(tmp_path / url.removeprefix("mirror://"))

    store_module.register_backend("mirror", factory)
    try:
        opened = CandleStore.open("mirror://m1")
        assert seen == ["mirror://m1"] and opened.backend.root == tmp_path / "m1"  # type: ignore[attr-defined]
    finally:
        _BACKENDS.pop("mirror")


def test_backends_and_the_store_do_not_import_each_other() -> None:
    """Backends import only base and frames; the store reaches them through the registry."""
    for imported, absent in (
        ("streamforge_nb.store.local, streamforge_nb.store.arango", "streamforge_nb.store.candles"),
        ("streamforge_nb.store.candles", "streamforge_nb.store.local"),
        ("streamforge_nb.store.candles", "streamforge_nb.store.arango"),
    ):
        check = f"import sys, {imported}; assert {absent!r} not in sys.modules, sys.modules"
        subprocess.run([sys.executable, "-c", check], check=True, cwd=ROOT, timeout=120)


class _Cells(HTMLParser):
    """The text of every table cell, row by row."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def table_rows(markup: str) -> list[list[str]]:
    parser = _Cells()
    parser.feed(markup)
    return parser.rows


def test_html_repr_shows_backend_location_and_series(tmp_path: Path) -> None:
    root = tmp_path / "a&b<c>"  # a real directory whose name needs escaping
    opened = CandleStore.open(root)
    empty = opened._repr_html_()
    assert empty.startswith("<b>CandleStore</b>") and "LocalBackend" in empty
    assert table_rows(empty)[1:] == [["no candles stored yet"]]
    assert "0 series, 0 candles" in empty
    opened.write(make_candles("BTCUSDT", "1m", JUL31_23H, 120))
    opened.write(make_candles("ETHUSDT", "1h", AUG1, 10, step=3_600_000))
    markup = opened._repr_html_()
    assert f"<code>local://{tmp_path}/a&amp;b&lt;c&gt;</code>" in markup
    assert "<c>" not in markup
    assert "2 series, 130 candles" in markup
    assert table_rows(markup) == [
        ["symbol", "interval", "first (UTC)", "last (UTC)", "candles"],
        ["BTCUSDT", "1m", "2024-07-31 23:00", "2024-08-01 00:59", "120"],
        ["ETHUSDT", "1h", "2024-08-01 00:00", "2024-08-01 09:00", "10"],
    ]
    # 1s candles: times to the second.
    opened.write(make_candles("BTCUSDT", "1s", AUG1 - 5_000, 10, step=1_000))
    rows = table_rows(opened._repr_html_())
    assert rows[1] == ["BTCUSDT", "1s", "2024-07-31 23:59:55", "2024-08-01 00:00:04", "10"]
    assert rows[2][2:4] == ["2024-07-31 23:00:00", "2024-08-01 00:59:00"]


def test_html_repr_is_bounded(tmp_path: Path) -> None:
    opened = CandleStore.open(tmp_path)
    for i in range(23):
        opened.write(make_candles(f"C{i:02d}USDT", "1m", AUG1, 1 + i))
    markup = opened._repr_html_()
    rows = table_rows(markup)
    assert len(rows) == 1 + 20 + 1
    assert [r[0] for r in rows[1:4]] == ["C00USDT", "C01USDT", "C02USDT"]
    assert rows[-1] == ["\u2026 and 3 more series"]
    assert "23 series, 276 candles" in markup
    assert table_rows(opened._repr_html_(limit=2))[-1] == ["\u2026 and 21 more series"]


def test_html_repr_never_shows_credentials(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = Settings(arango_password="settingsecret")
    opened = CandleStore.open(f"arango://bob:url%40secret@127.0.0.1:{port}/candles", settings)
    markup = opened._repr_html_()  # the server is down: where it points, and why no table
    assert f"<code>http://127.0.0.1:{port}/_db/candles</code>" in markup
    assert "ArangoBackend" in markup and "no coverage" in markup
    for secret in ("bob", "secret"):
        assert secret not in markup
    opened.close()

    class Leaky(LocalBackend):  # a backend that forgot to drop the user info of its URL
        def __repr__(self) -> str:
            return f"Leaky({self.url!r})"

    leaky = Leaky(tmp_path)
    leaky.url = "mirror://bob:hunter2@mirror.example/candles"
    store = CandleStore(leaky)
    store.write(make_candles("BTCUSDT", "1m", AUG1, 3))
    for text in (store._repr_html_(), repr(store)):
        assert "mirror://mirror.example/candles" in text
        assert "hunter2" not in text and "bob" not in text


def test_local_layout_is_partitioned_and_leaves_no_temporaries(tmp_path: Path) -> None:
    opened = CandleStore.open(tmp_path)
    day = 86_400_000
    opened.write(make_candles("BTCUSDT", "1s", AUG1 - 5_000, 10, step=1_000))
    opened.write(make_candles("BTCUSDT", "1d", AUG1 - 200 * day, 400, step=day))
    for t in (AUG1, AUG1 + 31 * day):
        opened.write(make_candles("BTCUSDT", "1M", t, 1))
    base = tmp_path / "candles" / "BTCUSDT"
    names = {p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file()}
    visible = sorted(n for n in names if not n.split("/")[-1].startswith("."))
    # `1mo`, not `1M`: it would be the same directory as `1m` on macOS.
    assert visible == [
        "1d/2024.parquet", "1d/2025.parquet", "1mo/2024.parquet",
        "1s/2024-07-31.parquet", "1s/2024-08-01.parquet",
    ]  # fmt: skip
    assert not [n for n in names if n.endswith(".tmp")]
    assert len(opened.load("BTCUSDT", "1d")) == 400


def _codecs(path: Path) -> set[tuple[str, str]]:
    """(codec, value encoding) of every column chunk of a Parquet file."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    chunks = [meta.row_group(g).column(c) for g in range(meta.num_row_groups)
              for c in range(meta.num_columns)]  # fmt: skip
    return {(ch.compression, next(e for e in ch.encodings if e != "RLE")) for ch in chunks}


def test_a_month_filled_batch_by_batch_is_read_live_and_compact_after_every_batch(
    tmp_path: Path,
) -> None:
    # A sink's backend keeps the partitions it writes in memory; readers see every batch at
    # once, each candle once, and each file is in its compact final form as soon as it is
    # written: a sink killed -9 between batches leaves no bigger files behind.
    writer, reader = CandleStore.open(tmp_path), CandleStore.open(tmp_path)
    compact = {("UNCOMPRESSED", "PLAIN"), ("UNCOMPRESSED", "DELTA_BINARY_PACKED")}
    day = 86_400_000
    months = [AUG1 + m * 31 * day for m in range(7)]  # 7 months: more than are kept hot
    for m, start in enumerate(months):
        for part in range(3):
            writer.write(make_candles("BTCUSDT", "1m", start + part * 10 * MIN, 10))
            assert len(reader.load("BTCUSDT", "1m")) == (3 * m + part + 1) * 10
            newest = max((tmp_path / "candles" / "BTCUSDT" / "1m").glob("*.parquet"))
            assert _codecs(newest) == compact
    writer.write(make_candles("BTCUSDT", "1m", AUG1 + 5 * MIN, 10, v=7))  # re-delivered
    writer.close()
    files = sorted((tmp_path / "candles" / "BTCUSDT" / "1m").glob("*.parquet"))
    assert len(files) == 7
    assert all(_codecs(path) == compact for path in files)
    df = reader.load("BTCUSDT", "1m")
    assert len(df) == 210 and df.index.is_unique
    trades = list(df["number_of_trades"].iloc[:15])
    assert trades == [0, 10, 20, 30, 40, 7, 17, 27, 37, 47, 57, 67, 77, 87, 97]


_ALL_PLAIN = dict.fromkeys(  # a format measured and not kept: ints PLAIN too
    ["open_time", "close_time", "number_of_trades", "open", "high", "low", "close", "volume",
     "quote_asset_volume", "taker_buy_base_asset_volume", "taker_buy_quote_asset_volume"],
    "PLAIN",
)  # fmt: skip
_LZ4_ENCODINGS = {  # the format before: floats split by byte, times and counts delta-encoded
    **dict.fromkeys(["open_time", "close_time", "number_of_trades"], "DELTA_BINARY_PACKED"),
    **dict.fromkeys(["open", "high", "low", "close", "volume", "quote_asset_volume",
                     "taker_buy_base_asset_volume", "taker_buy_quote_asset_volume"],
                    "BYTE_STREAM_SPLIT"),
}  # fmt: skip


@pytest.mark.parametrize(
    ("old", "codec"),
    [
        ({"compression": "zstd", "compression_level": 1}, "ZSTD"),
        ({"compression": "none"}, "UNCOMPRESSED"),
        ({"compression": "none", "column_encoding": _ALL_PLAIN}, "UNCOMPRESSED"),  # ints PLAIN
        ({"compression": "lz4_raw", "column_encoding": _LZ4_ENCODINGS}, "LZ4"),  # pyarrow: LZ4_RAW
    ],
)
def test_partitions_written_by_older_versions_read_exactly_and_take_new_batches(
    tmp_path: Path, old: dict[str, Any], codec: str
) -> None:
    # Stores written before the current format (zstd, LZ4 with byte-split floats, or plain
    # files a killed sink left) load the same frame, and a batch merged into such a file
    # keeps every old row.
    import pyarrow.parquet as pq

    from streamforge_nb.store.scan import SCHEMA

    new = CandleStore.open(tmp_path / "new")
    new.write(make_candles("BTCUSDT", "1m", JUL31_23H, 180))
    expected = new.load("BTCUSDT", "1m")
    older = tmp_path / "old"
    for path in (tmp_path / "new" / "candles").rglob("[0-9]*.parquet"):
        target = older / "candles" / path.relative_to(tmp_path / "new" / "candles")
        target.parent.mkdir(parents=True, exist_ok=True)
        rows = pq.read_table(path).cast(SCHEMA)  # OPTIONAL columns, as they were written
        pq.write_table(rows, target, use_dictionary=False, write_statistics=["open_time"], **old)
        assert pq.ParquetFile(target).schema_arrow.field("close").nullable
        assert {written for written, _ in _codecs(target)} == {codec}
    store = CandleStore.open(older)
    pd.testing.assert_frame_equal(store.load("BTCUSDT", "1m"), expected)
    assert store.coverage()["rows"].tolist() == [180]
    store.write(make_candles("BTCUSDT", "1m", JUL31_23H + 170 * MIN, 20, v=3))
    got = CandleStore.open(older).load("BTCUSDT", "1m")
    pd.testing.assert_frame_equal(got.iloc[:170], expected.iloc[:170])
    assert len(got) == 190 and list(got["number_of_trades"].iloc[170:172]) == [3, 13]


def test_a_sinks_table_is_stored_as_the_same_candles_written_one_by_one(tmp_path: Path) -> None:
    # The sink's Arrow path (decoded, checked, unsorted, a candle sent twice) stores what
    # `write` of the same candles stores: the later of two wins, values and dtypes exact.
    from streamforge_nb.platform.checks import decode_and_check
    from streamforge_nb.platform.contract import encode

    first = make_candles("BTCUSDT", "1m", JUL31_23H, 120)
    again = make_candles("BTCUSDT", "1m", JUL31_23H + 30 * MIN, 1, v=5)
    sent = [*first[60:], *first[:60], *again]
    table, refused = decode_and_check([encode(c) for c in sent], None, "BTCUSDT", "1m")
    assert refused == []
    arrow, frames = CandleStore.open(tmp_path / "arrow"), CandleStore.open(tmp_path / "frames")
    assert arrow.write_table(table) == 120
    frames.write(sent)
    got, expected = arrow.load("BTCUSDT", "1m"), frames.load("BTCUSDT", "1m")
    pd.testing.assert_frame_equal(got, expected)
    assert got["number_of_trades"].iloc[30] == 5


def test_a_partition_another_writer_replaced_is_merged_not_overwritten(tmp_path: Path) -> None:
    # The rows a backend keeps of the partition it wrote last are stale once another
    # process (or store) replaces the file: its next batch must merge what is on disk.
    sink, other = CandleStore.open(tmp_path), CandleStore.open(tmp_path)
    sink.write(make_candles("BTCUSDT", "1m", AUG1, 100))
    other.write(make_candles("BTCUSDT", "1m", AUG1 + 100 * MIN, 100, v=1))
    sink.write(make_candles("BTCUSDT", "1m", AUG1 + 200 * MIN, 100, v=2))
    other.write(make_candles("BTCUSDT", "1m", AUG1 + 50 * MIN, 100, v=3))
    other.close()
    sink.close()
    df = CandleStore.open(tmp_path).load("BTCUSDT", "1m")
    assert len(df) == 300 and df.index.is_unique
    writer = df["number_of_trades"].to_numpy() % 10
    assert list(writer[:50]) == [0] * 50 and list(writer[50:150]) == [3] * 100
    assert list(writer[150:200]) == [1] * 50 and list(writer[200:]) == [2] * 100


def test_file_errors_are_store_errors_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match=r"cannot create the candle store: .*file/store"):
        CandleStore.open(tmp_path / "file" / "store")
    opened = CandleStore.open(tmp_path)
    opened.write(make_candles("BTCUSDT", "1m", AUG1, 3))
    path = tmp_path / "candles" / "BTCUSDT" / "1m" / "2024-08.parquet"
    path.write_bytes(b"not parquet")
    with pytest.raises(StoreError, match=r"cannot read BTCUSDT 1m candles.*candles/BTCUSDT/1m"):
        opened.load("BTCUSDT", "1m")


def test_candles_to_frame_derives_the_series_and_rejects_strangers() -> None:
    candles = make_candles("BTCUSDT", "1m", AUG1, 3)
    frame = candles_to_frame(candles)
    assert frame.index.asi8.tolist() == [AUG1, AUG1 + MIN, AUG1 + 2 * MIN]
    assert frame["volume"].tolist() == [1e-5, 2e-5, 3e-5]
    as_dicts = candles_to_frame([c.model_dump(by_alias=True) for c in candles], "BTCUSDT", "1m")
    pd.testing.assert_frame_equal(as_dicts, frame)
    assert candles_to_frame([]).equals(empty_frame())
    lower = [c.model_copy(update={"key": c.key.lower()}) for c in candles]
    pd.testing.assert_frame_equal(candles_to_frame(lower, "BTCUSDT", "1m"), frame)
    with pytest.raises(MessageError, match=r"ETHUSDT_1m_.* is not of series BTCUSDT 1m"):
        candles_to_frame([*candles, *make_candles("ETHUSDT", "1m", AUG1, 1)])
    with pytest.raises(MessageError, match="missing field"):
        candles_to_frame([{"_key": "BTCUSDT_1m_1"}])


def test_write_groups_mixed_series_and_checks_frames(tmp_path: Path) -> None:
    opened = CandleStore.open(tmp_path)
    mixed = make_candles("BTCUSDT", "1m", AUG1, 3) + make_candles("ETHUSDT", "5m", AUG1, 2)
    assert opened.write(mixed) == 5
    assert opened.coverage()["rows"].tolist() == [3, 2]
    frame = opened.load("BTCUSDT", "1m")
    with pytest.raises(MessageError, match="needs symbol and interval"):
        opened.write(frame)
    keys = [f"BTCUSDT_1m_{t}" for t in frame.index.asi8]
    with pytest.raises(MessageError, match=r"'ETHUSDT_1m_1' is not of series BTCUSDT 1m"):
        opened.write(frame.assign(_key=[keys[0], "ETHUSDT_1m_1", *keys[2:]]))
    with pytest.raises(MessageError, match=r"lacks column.*volume"):
        opened.write(frame.drop(columns="volume"), "BTCUSDT", "1m")
    with pytest.raises(InvalidName, match="interval"):
        opened.write(frame, "BTCUSDT", "2m")


def test_to_ms_reads_every_time_spelling() -> None:
    assert to_ms(AUG1) == to_ms(np.int64(AUG1)) == to_ms(float(AUG1)) == AUG1
    assert to_ms(datetime(2024, 8, 1)) == AUG1  # naive means UTC
    assert to_ms(datetime(2024, 8, 1, 2, tzinfo=timezone(timedelta(hours=2)))) == AUG1
    assert to_ms(date(2024, 8, 1)) == to_ms("2024-08-01") == to_ms("2024-08-01T00:00Z") == AUG1
    assert to_ms(pd.Timestamp("2024-08-01 00:00:00.123", tz="UTC")) == AUG1 + 123
    for bad in (True, "yesterday", None, [1]):
        with pytest.raises(InvalidName):
            to_ms(bad)


def test_times_are_iso_8601_or_milliseconds_only(tmp_path: Path) -> None:
    opened = CandleStore.open(tmp_path)
    opened.write(make_candles("BTCUSDT", "1m", AUG1, 3))
    # Day-first or month-first: ambiguous, so an error (it used to read as January 3rd).
    with pytest.raises(InvalidName, match=r"start '01/03/2024' is not an ISO 8601 date"):
        opened.load("BTCUSDT", "1m", "01/03/2024", "02/03/2024")
    # A seconds epoch would silently select 1970 and return 0 rows: refused, unit named.
    with pytest.raises(
        InvalidName, match=r"start 1722470400 looks like Unix seconds.*1722470400000"
    ):
        opened.load("BTCUSDT", "1m", AUG1 // 1000, AUG1 // 1000 + 180)
    assert len(opened.load("BTCUSDT", "1m", AUG1, AUG1 + 180_000)) == 3  # ms, as on the wire
    assert len(opened.load("BTCUSDT", "1m", pd.Timestamp(AUG1 // 1000, unit="s"))) == 3
    assert len(opened.load("BTCUSDT", "1m", "2024-08-01T00:00:00+00:00", "2024-08-01 00:03")) == 3
    for bad in ("1722470400000", "2024/08/01", "Aug 1 2024", float(AUG1 // 1000)):
        with pytest.raises(InvalidName):
            to_ms(bad)


def test_concurrent_exchange_empty_writers_lose_no_range(tmp_path: Path) -> None:
    """Sinks recording at once into a new store: the first writes race to create the
    database (a writer died on "database is locked" in CI, 9 races in 100 here)."""
    import threading

    for attempt in range(10):
        root = tmp_path / f"store-{attempt}"
        failures: list[BaseException] = []

        def record(worker: int, root: Path, failures: list[BaseException]) -> None:
            try:
                with CandleStore.open(root) as mine:
                    for i in range(3):
                        at = AUG1 + (worker * 100 + i * 2) * MIN  # one minute each, one apart
                        mine.write_exchange_empty("BTCUSDT", "1m", [(at, at + MIN)])
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=record, args=(w, root, failures)) for w in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert failures == []
        with CandleStore.open(root) as store:
            assert len(store.exchange_empty("BTCUSDT", "1m")) == 24


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda s: s.load("BTCUSDT", "1m", start=10**30), r"start 10{30} is outside the times"),
        (lambda s: s.load("BTCUSDT", "1m", end=-(10**30)), r"end -10{30} is outside the times"),
        (lambda s: s.load("BTCUSDT", "1m", start=10**400), r"start 10{400} is not a time"),
        (lambda s: s.load("BTCUSDT", "1m", start=2**53), r"start 9007199254740992 is outside"),
        (lambda s: s.load("BTCUSDT", "1m", date.min), r"start datetime.date\(1, 1, 1\) is out"),
        (lambda s: s.gaps("BTCUSDT", "1m", -(10**15), AUG1), r"start -10{15} is outside"),
        (lambda s: s.gaps("BTCUSDT", "1m", AUG1, 10**30), r"end 10{30} is outside the times"),
        (lambda s: s.exchange_empty("BTCUSDT", "1m", 10**30), r"start 10{30} is outside"),
        (lambda s: s.write_exchange_empty("BTCUSDT", "1m", [(AUG1, 10**30)]), r"end 10{30} is"),
        (lambda s: s.write_exchange_empty("BTCUSDT", "1m", None), r"ranges must be \(start, end\)"),
        (lambda s: s.write_exchange_empty("BTCUSDT", "1m", [AUG1]), r"got the item 1722470400000"),
    ],
)
def test_absurd_times_and_bad_types_are_library_errors_naming_the_parameter(
    tmp_path: Path, call: Any, match: str
) -> None:
    """Not a TypeError or OverflowError from numpy: the library's error, naming what is wrong."""
    with CandleStore.open(tmp_path) as opened:
        opened.write(make_candles("BTCUSDT", "1m", AUG1, 3))
        with pytest.raises(InvalidName, match=match):
            call(opened)
        assert len(opened.load("BTCUSDT", "1m", 0, 2**53 - 1)) == 3  # the bounds themselves
