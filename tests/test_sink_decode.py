"""The sink's canonical decode (`platform.canonical`) takes only what the JSON reader reads alike.

Messages are the contract's own encoding (`encode(Candle)`), then bent a byte at a time
(quotes, commas, line breaks, spaces, escapes, signs, leading zeros, another field order,
extra fields): whatever the canonical decode accepts must be what a strict JSON parser reads
in those bytes, and the sink's verdict on a batch (the table stored, each refusal and its
reason) must be the one the JSON reader alone gives.
"""

from __future__ import annotations

import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_candle_columns import counts, decimals

from streamforge_nb.platform import candle_decode, checks
from streamforge_nb.platform.canonical import decode_canonical
from streamforge_nb.platform.contract import Candle, encode

START_MS = 1722470400000  # 2024-08-01


@st.composite
def candles(draw: st.DrawFn) -> bytes:
    """The contract's encoding of a candle, its open time near the queue's or anywhere."""
    open_time = draw(st.integers(0, 10_000).map(lambda m: START_MS + m * 60_000) | counts)
    row = [open_time, *[draw(decimals) for _ in range(5)], draw(counts), draw(decimals)]
    row += [draw(counts), draw(decimals), draw(decimals)]
    return encode(Candle.from_kline("BTCUSDT", "1m", row))


_BENT = [b",", b'"', b"\n", b"\r", b" ", b"\\", b"0", b"-", b"}", b"{", b":", b"|", b"\xef\xbb\xbf"]


@st.composite
def bent(draw: st.DrawFn) -> bytes:
    """A canonical candle, or one bent: bytes put in or taken out, a field moved, added or
    naming another open time."""
    value = draw(candles())
    kind = draw(st.integers(0, 6))
    if kind == 0:
        return value
    at = draw(st.integers(0, len(value)))
    if kind == 1:
        return value[:at] + draw(st.sampled_from(_BENT)) + value[at:]
    if kind == 2:
        return value[:at] + value[at + draw(st.integers(1, 5)) :]
    fields = orjson.loads(value)
    if kind == 3:  # an integer zero-padded or signed: JSON refuses the first, not the second
        name = draw(st.sampled_from(["open_time", "close_time", "number_of_trades"]))
        text = draw(st.sampled_from([b"0%d", b"-%d", b"%d.0", b"%de0"])) % fields[name]
        field = b'"%s":' % name.encode()
        return value.replace(field + b"%d" % fields[name], field + text)
    if kind == 4:  # another order
        names = draw(st.permutations(list(fields)))
        return orjson.dumps({name: fields[name] for name in names})
    if kind == 5:  # a key naming another open time: canonical, and refused
        key = fields["_key"].encode()
        return value.replace(key, key + draw(st.sampled_from([b"0", b"1"])))
    return orjson.dumps({**fields, draw(st.sampled_from(["x", "open"])): 1})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(bent(), min_size=1, max_size=12))
def test_what_the_canonical_decode_takes_is_what_json_says(values: list[bytes]) -> None:
    table = decode_canonical(b"\n".join(values), len(values))
    if table is None:
        return
    assert table.schema == candle_decode._candle_arrow_schema() and table.num_rows == len(values)
    # Each row is its message as a strict JSON parser reads it: the same fields, no more.
    assert table.to_pylist() == [orjson.loads(v) for v in values]


@settings(max_examples=100, deadline=None)
@given(st.lists(candles(), min_size=1, max_size=12))
def test_the_contracts_own_encoding_is_taken_canonically(values: list[bytes]) -> None:
    table = decode_canonical(b"\n".join(values), len(values))
    assert table is not None
    assert table.to_pylist() == [orjson.loads(v) for v in values]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(bent(), min_size=1, max_size=12), st.booleans())
def test_the_sinks_verdict_is_the_json_readers(values: list[bytes], with_keys: bool) -> None:
    keys = [v[9:34] for v in values] if with_keys else None
    got = checks.decode_and_check(values, keys, "BTCUSDT", "1m", now_ms=START_MS + 10**12)
    with pytest.MonkeyPatch.context() as patch:  # the JSON reader alone: the reference
        patch.setattr(candle_decode, "decode_canonical", lambda joined, count: None)
        expected = checks.decode_and_check(
            values, keys, "BTCUSDT", "1m", now_ms=START_MS + 10**12
        )  # fmt: skip
    assert got[1] == expected[1]  # each refusal, with its reason
    assert got[0].equals(expected[0])  # the table stored, decimals as float64 alike


def test_a_batch_with_one_bent_message_is_not_taken_canonically() -> None:
    good = encode(Candle.from_kline("BTCUSDT", "1m", [START_MS, *"1234", "5", 1, "6", 7, "8", "9"]))
    for bad in (
        good.replace(b'"open":"1"', b'"open": "1"'),  # a space: JSON, not canonical
        good.replace(b'"open_time":', b'"open_time":0'),  # a leading zero: not JSON
        good + b"\n" + good,  # two messages in one
        b"\xef\xbb\xbf" + good,  # a byte order mark the CSV reader would drop
    ):
        assert decode_canonical(b"\n".join([bad, good]), 2) is None
    assert decode_canonical(b"\n".join([good, good]), 2) is not None
    assert decode_canonical(b"", 0) is None
    assert pa.types.is_int64(decode_canonical(good, 1).schema.field("open_time").type)
