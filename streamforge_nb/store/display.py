"""How a CandleStore shows itself in a notebook: backend, location, series stored."""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING

from streamforge_nb.exceptions import StreamForgeError

if TYPE_CHECKING:
    from streamforge_nb.store.candles import CandleStore

__all__ = ["store_html"]


def store_html(store: CandleStore, limit: int) -> str:
    """The backend, where it points and the first `limit` series stored, for notebooks."""
    import pandas as pd

    head = (
        f"<b>CandleStore</b> <code>{html.escape(_redact(store.url))}</code> "
        f"<small>{html.escape(type(store.backend).__name__)}"
    )
    try:
        coverage = store.coverage()
    except StreamForgeError as exc:  # a notebook still shows where the store points
        return f"{head}</small><br><i>no coverage: {html.escape(_redact(str(exc)))}</i>"
    total = int(coverage["rows"].sum())
    shown = coverage.head(limit)
    # Seconds only when a shown time has them (1s candles); minutes otherwise.
    times = pd.DatetimeIndex([*shown["first"], *shown["last"]])
    fmt = "%Y-%m-%d %H:%M:%S" if (times.second != 0).any() else "%Y-%m-%d %H:%M"
    rows = "".join(
        f"<tr><td>{html.escape(str(symbol))}</td><td>{html.escape(str(interval))}</td>"
        f"<td>{first:{fmt}}</td><td>{last:{fmt}}</td>"
        f"<td style='text-align:right'>{count:,}</td></tr>"
        for symbol, interval, first, last, count in shown.itertuples(index=False, name=None)
    )
    if coverage.empty:
        rows = "<tr><td colspan=5><i>no candles stored yet</i></td></tr>"
    elif len(coverage) > len(shown):
        more = len(coverage) - len(shown)
        rows += f"<tr><td colspan=5><i>&hellip; and {more:,} more series</i></td></tr>"
    return (
        f"{head} &middot; {len(coverage):,} series, {total:,} candles</small>"
        "<table><tr><th>symbol</th><th>interval</th><th>first (UTC)</th>"
        f"<th>last (UTC)</th><th>candles</th></tr>{rows}</table>"
    )


_USERINFO = re.compile(r"(?<=://)[^/\s'\"]*@")


def _redact(text: str) -> str:
    """Drop the user info (`user:password@`) of every URL in `text`."""
    return _USERINFO.sub("", text)
