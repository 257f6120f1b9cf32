"""What a sink process imports: never pandas (issue 20: ~0.2 s of every sink's start)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
from conftest import subprocess_env
from hypothesis import given
from hypothesis import strategies as st
from test_sink import START_MS, as_messages, candles, fill, new_queue

from streamforge_nb.control.queue import Queue
from streamforge_nb.kafka.clients import make_producer
from streamforge_nb.platform.arrow_values import binary_array, from_numpy, to_numpy
from streamforge_nb.platform.markers import EXCHANGE_EMPTY, RECORD_HEADER, encode_exchange_empty
from streamforge_nb.platform.names import data_topic, dlq_topic
from streamforge_nb.settings import Settings
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.testing import read_topic

_SINK_WITHOUT_PANDAS = """
import sys
from streamforge_nb.workers.sink import main
code = main(sys.argv[1:])
print("pandas imported" if "pandas" in sys.modules else "no pandas")
sys.exit(code)
"""


def test_a_sink_run_to_the_end_of_its_topic_never_imports_pandas(
    settings: Settings, tmp_path: Path
) -> None:
    """A sink stores candles, an exchange-empty window, an anomaly (a zero-volume candle) and a
    dead letter, and ends `finished`, without importing pandas (nor does its store: a local
    CandleStore's writes and queue state need none)."""
    qid = new_queue()
    topic = data_topic(qid)
    good = candles(50)
    good[3] = good[3].model_copy(update={"volume": "0"})
    fill(settings, topic, [*as_messages(good), (b"x", b"{not json")])
    hole = (START_MS + 50 * 60_000, START_MS + 60 * 60_000)
    producer = make_producer(settings)
    key, value = encode_exchange_empty("BTCUSDT", "1m", *hole)
    producer.send(topic, key=key, value=value, headers=[(RECORD_HEADER, EXCHANGE_EMPTY)])
    producer.flush()
    producer.close()
    store_url = f"local://{tmp_path / 'store'}"
    command = [
        sys.executable, "-c", _SINK_WITHOUT_PANDAS, "--queue-id", qid, "--store-url", store_url,
        "--no-wait-for-loader", "--report-every", "0",
    ]  # fmt: skip
    proc = subprocess.run(
        command, env=subprocess_env(settings), capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "no pandas"
    with CandleStore.open(store_url) as store:
        assert len(store.load("BTCUSDT", "1m")) == 50
        assert len(store.exchange_empty("BTCUSDT", "1m")) == 1
    assert len(read_topic(settings, dlq_topic(topic))) == 1
    with Queue(qid, settings) as queue:
        last = list(queue.events())[-1]
    assert (last.status, last.records_written) == ("finished", 50)
    assert (getattr(last, "anomalies", 0), getattr(last, "dead_letters", 0)) == (1, 1)


@given(st.lists(st.one_of(st.none(), st.binary(max_size=30)), max_size=40))
def test_binary_array_is_what_pyarrow_converts(keys: list[bytes | None]) -> None:
    assert binary_array(keys).equals(pa.array(keys, type=pa.binary()))


@given(
    st.lists(st.integers(-(2**63), 2**63 - 1), max_size=40),
    st.lists(st.booleans(), max_size=40),
    st.integers(0, 5),
)
def test_numpy_views_are_what_pyarrow_converts(
    ints: list[int], bools: list[bool], cut: int
) -> None:
    """Offsets (slices) and chunks included: the sink's checks read sliced, chunked columns."""
    for values, type_ in ((ints, pa.int64()), (bools, pa.bool_()), (ints, pa.timestamp("ms"))):
        array = pa.array(values, type=type_).slice(cut)
        chunked = pa.chunked_array([array, array.slice(1)], type=type_)
        for arrow in (array, chunked):
            got, want = to_numpy(arrow), arrow.to_numpy(zero_copy_only=False)
            # Bytes: int64's minimum is NaT as a time, and NaT equals nothing.
            assert (got.dtype, got.tobytes()) == (want.dtype, want.tobytes())
    mask = np.array(bools, dtype=bool)
    assert from_numpy(mask).equals(pa.array(mask))
    assert from_numpy(np.array(ints, dtype=np.int64)).equals(pa.array(ints, type=pa.int64()))
