"""`CandleStore.quality` over many series: a candle's own anomalies, and jumps and stale runs
against its neighbours, in real Parquet files under tmp_path. GENERATED candles
(`testing.CandleGenerator`, not market data), with bad ticks and stale runs planted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_market import AUG1, MIN, generated  # tests/ is on sys.path (rootdir, no package)

from streamforge_nb.exceptions import InvalidName
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.store.frames import COLUMNS, frame_from_arrays
from streamforge_nb.store.quality import KINDS, findings

DAY = 1440 * MIN


def _price(frame: pd.DataFrame, at: int, close: float) -> None:
    """Set candle `at`'s close (and its high or low, so the candle stays consistent)."""
    frame.iloc[at, frame.columns.get_loc("close")] = close
    frame.iloc[at, frame.columns.get_loc("high")] = max(frame["high"].iloc[at], close)
    frame.iloc[at, frame.columns.get_loc("low")] = min(frame["low"].iloc[at], close)


@pytest.fixture
def store(tmp_path: Path) -> CandleStore:
    """A day of 1m each: BTCUSDT with a bad tick at minute 500 (x1.3, then back) and a low
    at half the price at minute 800, ETHUSDT with its close unchanged over minutes 100..139
    (40 candles) and 300..319 (20), SOLUSDT with a hole at minutes 700..709 after which the
    price is 40% higher (no jump: not neighbours), BNBUSDT clean; BTCUSDT 1h, the same day."""
    s = CandleStore.open(tmp_path / "store")
    btc = generated("BTCUSDT", "1m", AUG1, AUG1 + DAY)
    _price(btc, 500, float(btc["close"].iloc[499]) * 1.3)
    # A wick to half the price at minute 800: open and close as they were, inside high .. low.
    btc.iloc[800, btc.columns.get_loc("low")] = float(btc["close"].iloc[799]) * 0.5
    s.write(btc, "BTCUSDT", "1m")
    eth = generated("ETHUSDT", "1m", AUG1, AUG1 + DAY)
    for lo, hi in ((100, 140), (300, 320)):
        for i in range(lo, hi):
            _price(eth, i, float(eth["close"].iloc[lo]))
    s.write(eth, "ETHUSDT", "1m")
    sol = generated("SOLUSDT", "1m", AUG1, AUG1 + DAY)
    for column in ("open", "high", "low", "close"):
        sol.iloc[710:, sol.columns.get_loc(column)] *= 1.4
    s.write(sol.drop(sol.index[700:710]), "SOLUSDT", "1m")
    s.write(generated("BNBUSDT", "1m", AUG1, AUG1 + DAY), "BNBUSDT", "1m")
    s.write(generated("BTCUSDT", "1h", AUG1, AUG1 + DAY), "BTCUSDT", "1h")
    return s


def _at(minute: int) -> pd.Timestamp:
    return pd.Timestamp(AUG1 + minute * MIN, unit="ms", tz="UTC")


def test_quality_finds_a_bad_tick_and_stale_runs_across_a_market(store: CandleStore) -> None:
    before = store.load(["*USDT"], "1m")
    found, summary = store.quality_summary("*USDT", ["1m", "1h"])
    jumps = found[found["kind"] == "jump"]
    # Out and back: the tick and the candle after it; the wick; and the close that ends ETHUSDT's
    # 40-minute stale run (the walk moved on meanwhile: 40 minutes of it at once, ~9 sigmas
    # of a minute). Nothing else in the market, the hole in SOLUSDT included.
    assert list(zip(jumps["symbol"], jumps["open_time"], strict=True)) == [
        ("BTCUSDT", _at(500)), ("BTCUSDT", _at(501)), ("BTCUSDT", _at(800)), ("ETHUSDT", _at(140))
    ]  # fmt: skip
    # One finding a candle, for the price that moved the most sigmas: at 500 the high, the
    # close's price too (+30%, against the highs' smaller scale), the wick's low at 800.
    assert jumps["detail"].iloc[0].startswith("high ") and "+30.00%" in jumps["detail"].iloc[0]
    assert jumps["detail"].iloc[2].startswith("low ") and "-50.00%" in jumps["detail"].iloc[2]
    assert "robust sigmas" in jumps["detail"].iloc[2]
    stale = found[found["kind"] == "stale"]
    # The 40-candle run (from minute 100, the close it keeps), not the 20-candle one.
    assert list(zip(stale["symbol"], stale["open_time"], strict=True)) == [("ETHUSDT", _at(100))]
    assert "for 40 candles, to 2024-08-01T02:19:00" in stale["detail"].iloc[0]
    # One row per series, clean ones too, with every kind counted.
    assert list(summary.columns) == ["symbol", "interval", "candles", *KINDS, "findings"]
    rows = summary.set_index(["symbol", "interval"])
    assert len(rows) == 5 and rows.loc[("BNBUSDT", "1m"), "findings"] == 0
    assert rows.loc[("BTCUSDT", "1m"), "jump"] == 3 and rows.loc[("ETHUSDT", "1m"), "stale"] == 1
    assert rows.loc[("SOLUSDT", "1m"), "jump"] == 0
    assert rows.loc[("SOLUSDT", "1m"), "candles"] == 1430
    assert rows.loc[("BTCUSDT", "1h"), "findings"] == 0
    assert summary["findings"].sum() == len(found)
    # The findings changed nothing.
    pd.testing.assert_frame_equal(store.load(["*USDT"], "1m"), before)


def test_thresholds_are_the_callers(store: CandleStore) -> None:
    found = store.quality("ETHUSDT", "1m", stale_candles=20)
    assert list(found.loc[found["kind"] == "stale", "open_time"]) == [_at(100), _at(300)]
    # A looser jump threshold finds more; a range leaves the rest out.
    assert len(store.quality("BTCUSDT", "1m", jump_sigmas=3)) > 2
    assert store.quality("BTCUSDT", "1m", _at(600), _at(780)).empty
    # numpy's numbers are numbers (a threshold from a frame's cell).
    assert (
        len(store.quality("BTCUSDT", "1m", jump_sigmas=np.float32(3), stale_candles=np.int64(5)))
        > 2
    )
    # The old one-series call reads as it did.
    assert list(store.quality("BTCUSDT", "1m").columns) == [
        "symbol", "interval", "open_time", "kind", "detail"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"jump_sigmas": 0}, "jump_sigmas must be a finite number above 0"),
        ({"jump_sigmas": float("nan")}, "jump_sigmas must be a finite number above 0"),
        ({"jump_sigmas": "8"}, "jump_sigmas must be a number"),
        ({"jump_sigmas": True}, "jump_sigmas must be a number"),
        ({"stale_candles": 1}, "stale_candles must be 2 or more"),
        ({"stale_candles": 2.5}, "stale_candles must be a whole number"),
    ],
)
def test_unusable_thresholds_are_named_before_anything_is_read(
    store: CandleStore, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidName, match=message):
        store.quality("*USDT", "1m", **options)


def test_a_pattern_matching_nothing_and_a_reversed_range_are_errors(store: CandleStore) -> None:
    with pytest.raises(InvalidName, match="no stored series matches"):
        store.quality("*BUSD", "1m")
    with pytest.raises(InvalidName):
        store.quality("BTCUSDT", "1m", _at(900), _at(600))
    none = store.quality(["DOGEUSDT", "BNBUSDT"], "1m")  # a plain name: nothing stored
    assert none.empty and str(none["open_time"].dtype) == "datetime64[ms, UTC]"


def test_a_spike_in_a_quiet_block_is_measured_by_the_series_scale() -> None:
    """Minutes 120..239 trade at one price but for a 1% spike at 150 (and back at 151): in
    that block the spike's own moves are all the moves there are, so the series' scale
    (a walk's minute, ~0.05%) measures it instead, and it is found."""
    frame = generated("BTCUSDT", "1m", AUG1, AUG1 + 300 * MIN)
    quiet = float(frame["close"].iloc[119])
    for i in range(120, 240):
        price = quiet * 1.01 if i == 150 else quiet
        for column in ("open", "high", "low", "close"):
            frame.iloc[i, frame.columns.get_loc(column)] = price
    found = findings(frame, "1m", 8.0, 30)
    jumps = found[found["kind"] == "jump"]
    assert list(jumps["open_time"])[:2] == [_at(150), _at(151)]
    assert found[found["kind"] == "stale"]["open_time"].tolist() == [_at(119), _at(151)]


def test_a_run_of_zero_volume_is_named_in_each_of_its_findings() -> None:
    frame = generated("BTCUSDT", "1m", AUG1, AUG1 + 60 * MIN)
    volume = frame.columns.get_loc("volume")
    for i in (*range(10, 15), 30, 40, 41, 43):  # a run of 5, one alone, 40-41 | hole | 43
        frame.iloc[i, volume] = 0.0
    frame = frame.drop(frame.index[42])
    found = findings(frame, "1m", 8.0, 30)
    zero = found[found["kind"] == "zero_volume"]
    details = dict(zip(zero["open_time"], zero["detail"], strict=True))
    assert len(details) == 9  # each candle is still a finding, as the sink counts them
    assert details[_at(12)] == "no volume traded, 1 of 5 in a row from 2024-08-01T00:10:00+00:00"
    assert details[_at(30)] == details[_at(43)] == "no volume traded"
    assert details[_at(41)].endswith("1 of 2 in a row from 2024-08-01T00:40:00+00:00")


_PRICES = st.one_of(
    st.floats(min_value=1e-8, max_value=1e9),
    st.sampled_from([0.0, float("nan"), float("inf"), 1.0]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    closes=st.lists(_PRICES, min_size=0, max_size=200),
    holes=st.lists(st.integers(0, 199), max_size=10),
    sigmas=st.floats(min_value=0.5, max_value=20),
    stale=st.integers(2, 50),
)
def test_findings_hold_for_any_prices(
    closes: list[float], holes: list[int], sigmas: float, stale: int
) -> None:
    """Zero, NaN, infinite or constant prices, holes anywhere: findings never raise, name
    only candles of the frame, and leave it as it was."""
    times = np.array([t for t in range(len(closes)) if t not in set(holes)], np.int64)
    times = AUG1 + times * MIN
    price = np.array([closes[(t - AUG1) // MIN] for t in times], np.float64)
    columns = {n: price.copy() for n in COLUMNS if n not in ("close_time", "number_of_trades")}
    columns["close_time"] = times + MIN - 1
    columns["number_of_trades"] = np.ones(len(times), np.int64)
    frame = frame_from_arrays(times, columns)
    copy = frame.copy()
    found = findings(frame, "1m", sigmas, stale)
    pd.testing.assert_frame_equal(frame, copy)
    assert set(found["open_time"]) <= set(frame.index)
    assert set(found["kind"]) <= set(KINDS)
    order = list(zip(found["open_time"], found["kind"].map(list(KINDS).index), strict=True))
    assert order == sorted(order)
    assert found["detail"].map(lambda d: isinstance(d, str) and bool(d)).all()
    # Stale runs as a loop finds them: equal closes of consecutive minutes, `stale` or more.
    runs, first, count = [], 0, 1
    for i in range(1, len(times) + 1):
        if i < len(times) and times[i] - times[i - 1] == MIN and price[i] == price[i - 1]:
            count += 1
            continue
        if count >= stale:
            runs.append(pd.Timestamp(int(times[first]), unit="ms", tz="UTC"))
        first, count = i, 1
    assert list(found.loc[found["kind"] == "stale", "open_time"]) == runs


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARANGO_", "KAFKA_"))}
    return subprocess.run([sys.executable, "-m", "streamforge_nb.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


def test_the_shell_gives_coverage_and_quality(store: CandleStore) -> None:
    root = str(store.backend.root)  # type: ignore[attr-defined]
    day = ["--from", "2024-08-01", "--to", "2024-08-02", "--store-url", root]
    holed = _cli("store", "coverage", "*USDT", "-i", "1m", *day, "--json")
    assert holed.returncode == 1, holed.stderr  # a candle is missing: a script can backfill
    rows = {r["symbol"]: r for r in map(json.loads, holed.stdout.splitlines())}
    assert set(rows) == {"BNBUSDT", "BTCUSDT", "ETHUSDT", "SOLUSDT"}
    assert rows["SOLUSDT"]["missing"] == 10 and rows["SOLUSDT"]["period"] == "2024-08-01T00:00:00Z"
    whole = _cli("store", "coverage", "BTCUSDT", "-i", "1m", "-i", "1h", *day)
    assert whole.returncode == 0, whole.stderr
    assert "2 rows, 0 candles missing of 1,464" in whole.stdout
    found = _cli("store", "quality", "*USDT", "-i", "1m", "--store-url", root, "--json")
    assert found.returncode == 0, found.stderr
    jumps = [r for r in map(json.loads, found.stdout.splitlines()) if r["kind"] == "jump"]
    assert [(r["symbol"], r["open_time"]) for r in jumps][:2] == [
        ("BTCUSDT", "2024-08-01T08:20:00Z"), ("BTCUSDT", "2024-08-01T08:21:00Z")
    ]  # fmt: skip
    summary = _cli("store", "quality", "*USDT", "-i", "1m", "--store-url", root, "--summary")
    assert "findings in 4 series" in summary.stdout and "BNBUSDT" in summary.stdout
    bad = _cli(
        "store", "quality", "BTCUSDT", "-i", "1m", "--store-url", root, "--jump-sigmas", "-1"
    )
    assert bad.returncode == 2 and "--jump-sigmas" in bad.stderr
    typo = _cli("store", "coverage", "*BUSD", "-i", "1m", "--store-url", root)
    assert typo.returncode == 2 and "no stored series matches '*BUSD'" in typo.stderr


def test_the_shell_keeps_a_store_password_out_of_its_output_even_at_debug() -> None:
    """A store URL with a password (ArangoDB, nobody listening): the error names the store,
    never the password, with --debug's logs and traceback too."""
    url = "http://reader:s3cret-pw@127.0.0.1:9/candles"
    for command in (["store", "coverage"], ["--debug", "store", "quality"]):
        done = _cli(*command, "BTCUSDT", "-i", "1m", "--store-url", url)
        assert done.returncode != 0
        assert "127.0.0.1:9" in done.stderr
        assert "s3cret-pw" not in done.stdout + done.stderr
