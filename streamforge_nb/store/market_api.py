"""The whole-market calls of `CandleStore`: SQL and resampling in DuckDB, coverage by period.

`CandleStore` inherits them; the work is in `store.query` (DuckDB), `store.coverage` and
`store.market` (series and argument checks).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from streamforge_nb.platform.intervals import INTERVALS
from streamforge_nb.store.base import CandleBackend
from streamforge_nb.store.frames import range_ms

__all__ = ["MarketQueries"]


class MarketQueries:
    """SQL, multi-symbol resampling and coverage by period over a store's backend."""

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
        from streamforge_nb.store import market
        from streamforge_nb.store.coverage import BY, coverage_by

        if by is None and symbols is None and intervals is None and start is end is None:
            return self._backend.coverage()
        market.check_choice("by", by or "month", list(BY))
        if intervals is None:
            stored = {iv for _, iv in self._backend.series()}
            intervals = [iv for iv in INTERVALS if iv in stored]
        if not intervals:
            return coverage_by(self._backend, [], by or "month", (0, 0), (True, True))
        series = market.resolve_series(self._backend, symbols or "*", intervals)
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
        """Aggregate `interval` candles of many symbols to `rule` in DuckDB; memory follows
        the result. Long: symbol, open_time, the candle fields, `candles` (how many merged)."""
        from streamforge_nb.store import market
        from streamforge_nb.store import query as q

        market.check_choice("backend", backend, market.BACKENDS)
        local = self._local("resample_many")
        q.resample_sql([], interval, rule)  # the rule checked before any file is listed
        series = market.resolve_series(local, symbols, interval)
        return q.resample_many(local, series, rule, range_ms(start, end), backend)

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
