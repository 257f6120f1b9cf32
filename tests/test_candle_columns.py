"""Candles encoded in bulk from columns are the contract's messages: equal to `encode(Candle)`."""

from __future__ import annotations

import re

import orjson
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_real_klines import real_rows

from streamforge_nb.exceptions import MessageError
from streamforge_nb.platform.candle_columns import (
    CANDLE_FIELDS,
    CANDLE_SCHEMA,
    candles_table,
    encode_columns,
)
from streamforge_nb.platform.contract import DECIMAL_PATTERN, Candle, encode, message_key
from streamforge_nb.platform.intervals import INTERVALS

digits = st.text(alphabet="0123456789", min_size=1, max_size=20)
decimals = st.builds(
    lambda sign, whole, fraction: f"{sign}{whole}{fraction and '.' + fraction}",
    st.sampled_from(["", "-"]),
    digits,
    st.one_of(st.just(""), digits),
)
counts = st.integers(min_value=0, max_value=2**63 - 1)
klines = st.tuples(counts, *[decimals] * 5, counts, decimals, counts, decimals, decimals)
symbols = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=2, max_size=20)


def assert_encoded_as_the_contract(symbol: str, interval: str, candles: list[Candle]) -> None:
    keys, values = encode_columns(symbol, interval, candles_table(candles))
    expected = [encode(c) for c in candles]
    assert [v.encode() for v in values.to_pylist()] == expected  # byte for byte, even
    assert [orjson.loads(v) for v in values.to_pylist()] == [orjson.loads(e) for e in expected]
    assert [k.encode() for k in keys.to_pylist()] == [message_key(c) for c in candles]


@settings(max_examples=100, deadline=None)
@given(symbol=symbols, interval=st.sampled_from(INTERVALS), rows=st.lists(klines, max_size=20))
def test_any_candles_encode_as_the_contract_does(
    symbol: str, interval: str, rows: list[tuple[object, ...]]
) -> None:
    candles = [Candle.from_kline(symbol, interval, row) for row in rows]
    assert_encoded_as_the_contract(symbol, interval, candles)


def test_real_klines_encode_as_the_contract_does() -> None:
    rows = real_rows()
    assert len(rows) >= 10
    for row in rows:
        candle = Candle.from_kline(row.symbol, row.interval, row.kline)
        assert_encoded_as_the_contract(row.symbol, row.interval, [candle])


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("open", '1"}', "open: a value that is not a decimal number"),  # would break the JSON
        ("volume", None, "volume: 1 missing values"),
        ("open_time", -1, "open_time: a negative value"),
    ],
)
def test_columns_that_break_the_contract_are_refused_not_encoded(
    field: str, value: object, problem: str
) -> None:
    row = Candle.from_kline("BTCUSDT", "1m", [60_000, *"1234", "5", 119_999, "6", 7, "8", "9"])
    columns = {name: [getattr(row, name)] for name in CANDLE_FIELDS}
    columns[field] = [value]
    table = pa.table(columns, schema=CANDLE_SCHEMA)
    with pytest.raises(MessageError, match=f"invalid BTCUSDT 1m candles: {problem}"):
        encode_columns("BTCUSDT", "1m", table)


@given(decimals)
def test_the_generated_decimals_are_the_contracts(text: str) -> None:
    assert re.fullmatch(DECIMAL_PATTERN, text)
