"""The exchange: Binance's REST klines and its public-data archives."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamforge_nb._lazy import attach

if TYPE_CHECKING:
    from streamforge_nb.exchange.archives import ARCHIVE_BASE_URL as ARCHIVE_BASE_URL
    from streamforge_nb.exchange.archives import KLINE_CSV_HEADER as KLINE_CSV_HEADER
    from streamforge_nb.exchange.archives import SAMPLE_ARCHIVE as SAMPLE_ARCHIVE
    from streamforge_nb.exchange.archives import ArchiveName as ArchiveName
    from streamforge_nb.exchange.archives import archive_candles as archive_candles
    from streamforge_nb.exchange.archives import archive_interval as archive_interval
    from streamforge_nb.exchange.archives import archive_path as archive_path
    from streamforge_nb.exchange.archives import archive_paths as archive_paths
    from streamforge_nb.exchange.archives import archive_url as archive_url
    from streamforge_nb.exchange.archives import checksum_line as checksum_line
    from streamforge_nb.exchange.archives import iter_archive as iter_archive
    from streamforge_nb.exchange.archives import pack_archive as pack_archive
    from streamforge_nb.exchange.archives import parse_archive_name as parse_archive_name
    from streamforge_nb.exchange.archives import read_archive as read_archive
    from streamforge_nb.exchange.binance import BINANCE_API_URL as BINANCE_API_URL
    from streamforge_nb.exchange.binance import KLINES_LIMIT as KLINES_LIMIT
    from streamforge_nb.exchange.binance import KLINES_PATH as KLINES_PATH
    from streamforge_nb.exchange.binance import KlinesClient as KlinesClient
    from streamforge_nb.exchange.binance import check_range as check_range

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
    "iter_archive": "streamforge_nb.exchange.archives",
    "pack_archive": "streamforge_nb.exchange.archives",
    "parse_archive_name": "streamforge_nb.exchange.archives",
    "read_archive": "streamforge_nb.exchange.archives",
}
__getattr__, __dir__ = attach(__name__, _EXPORTS)
__all__ = [*_EXPORTS]

