"""The whole-market calls of `CandleStore`: SQL and resampling in DuckDB, coverage by period.

`CandleStore` inherits them; the work is in `store.query` (DuckDB), `store.coverage` and
`store.market` (series and argument checks).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from streamforge_nb.exceptions import InvalidName
from streamforge_nb.platform.intervals import INTERVALS
from streamforge_nb.platform.neighbours import JUMP_SIGMAS, STALE_CANDLES
from streamforge_nb.store.base import CandleBackend
from streamforge_nb.store.frames import empty_frame, range_ms

if TYPE_CHECKING:
    import pandas as pd

    from streamforge_nb.store.manifest import Manifest, Verification

__all__ = ["MarketQueries"]

_log = logging.getLogger(__name__)


class MarketQueries:
    """SQL, multi-symbol resampling, coverage by period and read manifests over a backend."""

    _backend: CandleBackend

    def coverage(
        self,
        symbols: str | Iterable[str] | None = None,
        intervals: str | Iterable[str] | None = None,
        *,
        by: str | None = None,
        start: Any = None,
        end: Any = None,
    ) -> pd.DataFrame:
        """Return one row per stored series: symbol, interval, first, last, rows.

        With `by` ("month", "day", "year"): one row per series and period with expected,
        stored, missing and exchange_empty candle counts, from file statistics (see
        `store.coverage`; `analysis.plot_coverage` draws it). `symbols`: names or patterns.
        """
        import pandas as pd

        from streamforge_nb.store import market
        from streamforge_nb.store.coverage import BY, coverage_by

        if by is None and symbols is None and intervals is None and start is end is None:
            return self._backend.coverage()
        market.check_choice("by", by or "month", list(BY))
        stored = self._series()  # listed once: patterns and intervals match against it
        if intervals is None:
            kept = {iv for _, iv in stored}
            intervals = [iv for iv in INTERVALS if iv in kept]
        if not intervals:
            return coverage_by(self._backend, [], by or "month", (0, 0), (True, True))
        series = market.resolve_series(self._backend, symbols or "*", intervals, stored)
        if by is None:  # the plain listing, of these series only
            found = self._backend.coverage()
            keep = pd.Series(list(zip(found["symbol"], found["interval"], strict=True)))
            return found[keep.isin(series).to_numpy()].reset_index(drop=True)
        span = range_ms(start, end)
        return coverage_by(self._backend, series, by, span, (start is not None, end is not None))

    def sql(self, query: str, params: Any = None, *, backend: str = "pandas") -> Any:
        """Run DuckDB SQL over the views `candles` and `exchange_empty` (see `store.query`).

        The embedded store only; files are read in place while sinks write.
        """
        from streamforge_nb.store import market
        from streamforge_nb.store import query as q

        market.check_choice("backend", backend, market.BACKENDS)
        return q.run_sql(self._local("sql"), query, params, backend)

    def resample_many(
        self,
        symbols: str | Iterable[str],
        interval: str,
        rule: str,
        start: Any = None,
        end: Any = None,
        *,
        backend: str = "pandas",
    ) -> Any:
        """Aggregate `interval` candles of many symbols to `rule`, series by series over the
        decoded partitions (`store.scan`; DuckDB where a partition is several files).
        Long: symbol, open_time, the candle fields, `candles` (how many merged)."""
        from streamforge_nb.store import market
        from streamforge_nb.store import query as q

        market.check_choice("backend", backend, market.BACKENDS)
        local = self._local("resample_many")
        q.resample_sql([], interval, rule)  # the rule checked before any file is listed
        series = market.resolve_series(local, symbols, interval)
        return q.resample_many(local, series, rule, range_ms(start, end), backend)

    def quality(
        self,
        symbols: str | Iterable[str],
        intervals: str | Iterable[str],
        start: Any = None,
        end: Any = None,
        *,
        jump_sigmas: float = JUMP_SIGMAS,
        stale_candles: int = STALE_CANDLES,
    ) -> pd.DataFrame:
        """Return one row per finding in the stored candles of `symbols` (names or patterns,
        as `load` takes them) x `intervals`: symbol, interval, open_time, kind, detail. Kinds
        (`store.quality.KINDS`): a candle's own, as the sink counts them (odd close times,
        off-grid opens, open or close outside low .. high, zero volume, flat prices), and
        against its neighbours: a close `jump_sigmas` robust sigmas from the one before, a
        close the same for `stale_candles` candles in a row. The data is never changed."""
        return self.quality_summary(symbols, intervals, start, end, jump_sigmas=jump_sigmas,
                                    stale_candles=stale_candles)[0]  # fmt: skip

    def quality_summary(
        self,
        symbols: str | Iterable[str],
        intervals: str | Iterable[str],
        start: Any = None,
        end: Any = None,
        *,
        jump_sigmas: float = JUMP_SIGMAS,
        stale_candles: int = STALE_CANDLES,
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Return `quality`'s findings and a summary: one row per series (clean ones too) with
        its candles, a count per kind and `findings` (all kinds). One series read at a time."""
        import pandas as pd

        from streamforge_nb.store import market, quality

        sigmas, stale = quality.check_parameters(jump_sigmas, stale_candles)
        series = market.resolve_series(self._backend, symbols, intervals)
        span = range_ms(start, end)

        def read(sym: str, iv: str) -> pd.DataFrame:
            return self._backend.read(sym, iv, *span) if span[0] < span[1] else empty_frame()

        counted = list(quality.quality(read, series, sigmas, stale))
        found = [f for *_, f in counted]
        table = pd.concat(found, ignore_index=True) if found else quality.empty_findings()
        return table, quality.summary(counted)

    def stamp(self, manifest: Manifest) -> Manifest:
        """Record `manifest` in the running notebook: a display output whose metadata holds
        it (`store.manifest`); papermill keeps it in the executed notebook. Returns it."""
        from streamforge_nb.store.manifest import Manifest, stamp_output

        if not isinstance(manifest, Manifest):
            raise InvalidName(
                f"stamp needs the Manifest of a load(..., manifest=True), got {manifest!r}"
            )
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:  # no IPython: nothing to record into
            get_ipython = None
        if get_ipython is None or get_ipython() is None:
            _log.info("stamp: no notebook session, manifest %s not recorded", manifest.hash)
            return manifest
        data, metadata = stamp_output(manifest)
        display(data, metadata=metadata, raw=True)  # type: ignore[no-untyped-call]
        return manifest

    def verify(self, manifest: Manifest | Mapping[str, Any]) -> Verification:
        """Say whether the store still holds what `manifest` recorded (a Manifest, or its
        `to_dict()` read back from a notebook): `ok`, and per changed series its rows then
        and now. Reads the same series, range and fields again."""
        from streamforge_nb.store.manifest import Manifest, Verification, series_hash

        if isinstance(manifest, Mapping):
            manifest = Manifest.from_dict(manifest)
        if not isinstance(manifest, Manifest):
            raise InvalidName(f"verify needs a Manifest or its dict, got {manifest!r}")
        changed = []
        for (sym, iv), rows, digest in zip(
            manifest.series, manifest.rows, manifest.hashes, strict=True
        ):
            table = self._backend.read_table(
                sym, iv, manifest.start, manifest.end, list(manifest.fields)
            )
            if series_hash(sym, iv, table) != digest:
                changed.append(
                    {"symbol": sym, "interval": iv, "rows_then": rows, "rows_now": table.num_rows}
                )
        return Verification(ok=not changed, changed=changed)

    def _series(self) -> list[tuple[str, str]]:
        from streamforge_nb.store.footers import local_series
        from streamforge_nb.store.local import LocalBackend

        if type(self._backend) is LocalBackend:  # scandir, not a glob per directory
            return local_series(self._backend)
        return self._backend.series()

    def _local(self, what: str) -> Any:
        from streamforge_nb.exceptions import StoreCapabilityError
        from streamforge_nb.store.local import LocalBackend

        if not isinstance(self._backend, LocalBackend):
            raise StoreCapabilityError(
                f"{what} runs DuckDB over the embedded store's files; "
                f"{type(self._backend).__name__} has none (store.arango_query holds the AQL "
                "versions)"
            )
        return self._backend
