"""`CandleStore`: frames, the backend base and registry, the embedded and ArangoDB backends."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamforge_nb._lazy import attach

if TYPE_CHECKING:
    from streamforge_nb.store.analysis import (
        find_gaps,
        interval_ms,
        plot,
        plot_volume_volatility,
        resample,
        volume_volatility,
    )
    from streamforge_nb.store.arango import (
        ArangoBackend,
        ArangoTarget,
        parse_arango_url,
    )
    from streamforge_nb.store.candles import (
        COLUMNS,
        FLOAT_COLUMNS,
        MAX_MS,
        BackendFactory,
        CandleBackend,
        CandleStore,
        candles_to_frame,
        empty_coverage,
        empty_frame,
        frame_from_arrays,
        normalize_frame,
        register_backend,
        to_ms,
        utc_index,
    )
    from streamforge_nb.store.local import (
        LocalBackend,
        partition_unit,
    )

_EXPORTS = {
    "ArangoBackend": "streamforge_nb.store.arango",
    "ArangoTarget": "streamforge_nb.store.arango",
    "BackendFactory": "streamforge_nb.store.candles",
    "COLUMNS": "streamforge_nb.store.candles",
    "CandleBackend": "streamforge_nb.store.candles",
    "CandleStore": "streamforge_nb.store.candles",
    "FLOAT_COLUMNS": "streamforge_nb.store.candles",
    "LocalBackend": "streamforge_nb.store.local",
    "MAX_MS": "streamforge_nb.store.candles",
    "candles_to_frame": "streamforge_nb.store.candles",
    "empty_coverage": "streamforge_nb.store.candles",
    "empty_frame": "streamforge_nb.store.candles",
    "find_gaps": "streamforge_nb.store.analysis",
    "frame_from_arrays": "streamforge_nb.store.candles",
    "interval_ms": "streamforge_nb.store.analysis",
    "normalize_frame": "streamforge_nb.store.candles",
    "parse_arango_url": "streamforge_nb.store.arango",
    "partition_unit": "streamforge_nb.store.local",
    "plot": "streamforge_nb.store.analysis",
    "plot_volume_volatility": "streamforge_nb.store.analysis",
    "register_backend": "streamforge_nb.store.candles",
    "resample": "streamforge_nb.store.analysis",
    "to_ms": "streamforge_nb.store.candles",
    "utc_index": "streamforge_nb.store.candles",
    "volume_volatility": "streamforge_nb.store.analysis",
}
__getattr__, __dir__ = attach(__name__, _EXPORTS)

__all__ = [
    "COLUMNS",
    "FLOAT_COLUMNS",
    "MAX_MS",
    "ArangoBackend",
    "ArangoTarget",
    "BackendFactory",
    "CandleBackend",
    "CandleStore",
    "LocalBackend",
    "candles_to_frame",
    "empty_coverage",
    "empty_frame",
    "find_gaps",
    "frame_from_arrays",
    "interval_ms",
    "normalize_frame",
    "parse_arango_url",
    "partition_unit",
    "plot",
    "plot_volume_volatility",
    "register_backend",
    "resample",
    "to_ms",
    "utc_index",
    "volume_volatility",
]

