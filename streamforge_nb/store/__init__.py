"""`CandleStore`: frames, the backend base and registry, the embedded and ArangoDB backends.

Also what `CandleStore.update` loads per series (`update`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamforge_nb._lazy import attach

if TYPE_CHECKING:
    from streamforge_nb.store.analysis import find_gaps as find_gaps
    from streamforge_nb.store.analysis import plot as plot
    from streamforge_nb.store.analysis import plot_volume_volatility as plot_volume_volatility
    from streamforge_nb.store.analysis import resample as resample
    from streamforge_nb.store.analysis import volume_volatility as volume_volatility
    from streamforge_nb.store.arango import ArangoBackend as ArangoBackend
    from streamforge_nb.store.arango import ArangoTarget as ArangoTarget
    from streamforge_nb.store.arango import parse_arango_url as parse_arango_url
    from streamforge_nb.store.base import BackendFactory as BackendFactory
    from streamforge_nb.store.base import CandleBackend as CandleBackend
    from streamforge_nb.store.base import backend_for as backend_for
    from streamforge_nb.store.base import merge_ranges as merge_ranges
    from streamforge_nb.store.base import register_backend as register_backend
    from streamforge_nb.store.candles import CandleStore as CandleStore
    from streamforge_nb.store.frames import COLUMNS as COLUMNS
    from streamforge_nb.store.frames import FLOAT_COLUMNS as FLOAT_COLUMNS
    from streamforge_nb.store.frames import MAX_MS as MAX_MS
    from streamforge_nb.store.frames import candles_to_frame as candles_to_frame
    from streamforge_nb.store.frames import empty_coverage as empty_coverage
    from streamforge_nb.store.frames import empty_frame as empty_frame
    from streamforge_nb.store.frames import frame_from_arrays as frame_from_arrays
    from streamforge_nb.store.frames import normalize_frame as normalize_frame
    from streamforge_nb.store.frames import to_ms as to_ms
    from streamforge_nb.store.frames import utc_index as utc_index
    from streamforge_nb.store.local import LocalBackend as LocalBackend
    from streamforge_nb.store.local import partition_unit as partition_unit
    from streamforge_nb.store.update import SeriesUpdate as SeriesUpdate
    from streamforge_nb.store.update import Updated as Updated
    from streamforge_nb.store.update import closed_end_ms as closed_end_ms
    from streamforge_nb.store.update import plan_updates as plan_updates
    from streamforge_nb.store.update import split_options as split_options

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
    "SeriesUpdate": "streamforge_nb.store.update",
    "Updated": "streamforge_nb.store.update",
    "backend_for": "streamforge_nb.store.base",
    "candles_to_frame": "streamforge_nb.store.frames",
    "closed_end_ms": "streamforge_nb.store.update",
    "empty_coverage": "streamforge_nb.store.frames",
    "empty_frame": "streamforge_nb.store.frames",
    "find_gaps": "streamforge_nb.store.analysis",
    "frame_from_arrays": "streamforge_nb.store.frames",
    "merge_ranges": "streamforge_nb.store.base",
    "normalize_frame": "streamforge_nb.store.frames",
    "parse_arango_url": "streamforge_nb.store.arango",
    "partition_unit": "streamforge_nb.store.local",
    "plan_updates": "streamforge_nb.store.update",
    "plot": "streamforge_nb.store.analysis",
    "plot_volume_volatility": "streamforge_nb.store.analysis",
    "register_backend": "streamforge_nb.store.base",
    "resample": "streamforge_nb.store.analysis",
    "split_options": "streamforge_nb.store.update",
    "to_ms": "streamforge_nb.store.frames",
    "utc_index": "streamforge_nb.store.frames",
    "volume_volatility": "streamforge_nb.store.analysis",
}
__getattr__, __dir__ = attach(__name__, _EXPORTS)
__all__ = [*_EXPORTS]
