"""`CandleStore`: frames, the backend base and registry, the embedded and ArangoDB backends."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamforge_nb._lazy import attach

if TYPE_CHECKING:
    from streamforge_nb.store.analysis import (
        find_gaps,
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
    from streamforge_nb.store.base import (
        BackendFactory,
        CandleBackend,
        backend_for,
        register_backend,
    )
    from streamforge_nb.store.candles import (
        CandleStore,
    )
    from streamforge_nb.store.frames import (
        COLUMNS,
        FLOAT_COLUMNS,
        MAX_MS,
        candles_to_frame,
        empty_coverage,
        empty_frame,
        frame_from_arrays,
        normalize_frame,
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
    "BackendFactory": "streamforge_nb.store.base",
    "COLUMNS": "streamforge_nb.store.frames",
    "CandleBackend": "streamforge_nb.store.base",
    "CandleStore": "streamforge_nb.store.candles",
    "FLOAT_COLUMNS": "streamforge_nb.store.frames",
    "LocalBackend": "streamforge_nb.store.local",
    "MAX_MS": "streamforge_nb.store.frames",
    "backend_for": "streamforge_nb.store.base",
    "candles_to_frame": "streamforge_nb.store.frames",
    "empty_coverage": "streamforge_nb.store.frames",
    "empty_frame": "streamforge_nb.store.frames",
    "find_gaps": "streamforge_nb.store.analysis",
    "frame_from_arrays": "streamforge_nb.store.frames",
    "normalize_frame": "streamforge_nb.store.frames",
    "parse_arango_url": "streamforge_nb.store.arango",
    "partition_unit": "streamforge_nb.store.local",
    "plot": "streamforge_nb.store.analysis",
    "plot_volume_volatility": "streamforge_nb.store.analysis",
    "register_backend": "streamforge_nb.store.base",
    "resample": "streamforge_nb.store.analysis",
    "to_ms": "streamforge_nb.store.frames",
    "utc_index": "streamforge_nb.store.frames",
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
    "backend_for",
    "candles_to_frame",
    "empty_coverage",
    "empty_frame",
    "find_gaps",
    "frame_from_arrays",
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
