"""The exchange: Binance's REST klines and its public-data archives."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamforge_nb._lazy import attach

if TYPE_CHECKING:
    from streamforge_nb.exchange.archives import (
        ARCHIVE_BASE_URL,
        KLINE_CSV_HEADER,
        SAMPLE_ARCHIVE,
        ArchiveName,
        archive_candles,
        archive_interval,
        archive_path,
        archive_paths,
        archive_url,
        checksum_line,
        iter_archive,
        pack_archive,
        parse_archive_name,
        read_archive,
    )
    from streamforge_nb.exchange.binance import (
        BINANCE_API_URL,
        KLINES_LIMIT,
        KLINES_PATH,
        KlinesClient,
        check_range,
        close_time,
        interval_ms,
        open_times,
    )

_EXPORTS = {
    "ARCHIVE_BASE_URL": "streamforge_nb.exchange.archives",
    "ArchiveName": "streamforge_nb.exchange.archives",
    "BINANCE_API_URL": "streamforge_nb.exchange.binance",
    "KLINES_LIMIT": "streamforge_nb.exchange.binance",
    "KLINES_PATH": "streamforge_nb.exchange.binance",
    "KLINE_CSV_HEADER": "streamforge_nb.exchange.archives",
    "KlinesClient": "streamforge_nb.exchange.binance",
    "SAMPLE_ARCHIVE": "streamforge_nb.exchange.archives",
    "archive_candles": "streamforge_nb.exchange.archives",
    "archive_interval": "streamforge_nb.exchange.archives",
    "archive_path": "streamforge_nb.exchange.archives",
    "archive_paths": "streamforge_nb.exchange.archives",
    "archive_url": "streamforge_nb.exchange.archives",
    "check_range": "streamforge_nb.exchange.binance",
    "checksum_line": "streamforge_nb.exchange.archives",
    "close_time": "streamforge_nb.exchange.binance",
    "interval_ms": "streamforge_nb.exchange.binance",
    "iter_archive": "streamforge_nb.exchange.archives",
    "open_times": "streamforge_nb.exchange.binance",
    "pack_archive": "streamforge_nb.exchange.archives",
    "parse_archive_name": "streamforge_nb.exchange.archives",
    "read_archive": "streamforge_nb.exchange.archives",
}
__getattr__, __dir__ = attach(__name__, _EXPORTS)

__all__ = [
    "ARCHIVE_BASE_URL",
    "BINANCE_API_URL",
    "KLINES_LIMIT",
    "KLINES_PATH",
    "KLINE_CSV_HEADER",
    "SAMPLE_ARCHIVE",
    "ArchiveName",
    "KlinesClient",
    "archive_candles",
    "archive_interval",
    "archive_path",
    "archive_paths",
    "archive_url",
    "check_range",
    "checksum_line",
    "close_time",
    "interval_ms",
    "iter_archive",
    "open_times",
    "pack_archive",
    "parse_archive_name",
    "read_archive",
]

