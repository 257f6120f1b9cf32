"""The exchange: Binance's REST klines, its request-weight budget and its public-data archives."""

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
    from streamforge_nb.exchange.binance import EXCHANGE_INFO_PATH as EXCHANGE_INFO_PATH
    from streamforge_nb.exchange.binance import KLINES_LIMIT as KLINES_LIMIT
    from streamforge_nb.exchange.binance import KLINES_PATH as KLINES_PATH
    from streamforge_nb.exchange.binance import TIME_PATH as TIME_PATH
    from streamforge_nb.exchange.binance import KlinesClient as KlinesClient
    from streamforge_nb.exchange.binance import check_range as check_range
    from streamforge_nb.exchange.weight import BINANCE_WEIGHT_LIMIT as BINANCE_WEIGHT_LIMIT
    from streamforge_nb.exchange.weight import RateLimit as RateLimit
    from streamforge_nb.exchange.weight import WeightBudget as WeightBudget
    from streamforge_nb.exchange.weight import budget_for as budget_for
    from streamforge_nb.exchange.weight import parse_rate_limits as parse_rate_limits
    from streamforge_nb.exchange.weight import used_weight_header as used_weight_header

_EXPORTS = {
    "ARCHIVE_BASE_URL": "streamforge_nb.exchange.archives",
    "ArchiveName": "streamforge_nb.exchange.archives",
    "BINANCE_API_URL": "streamforge_nb.exchange.binance",
    "BINANCE_WEIGHT_LIMIT": "streamforge_nb.exchange.weight",
    "EXCHANGE_INFO_PATH": "streamforge_nb.exchange.binance",
    "KLINES_LIMIT": "streamforge_nb.exchange.binance",
    "KLINES_PATH": "streamforge_nb.exchange.binance",
    "KLINE_CSV_HEADER": "streamforge_nb.exchange.archives",
    "KlinesClient": "streamforge_nb.exchange.binance",
    "RateLimit": "streamforge_nb.exchange.weight",
    "SAMPLE_ARCHIVE": "streamforge_nb.exchange.archives",
    "TIME_PATH": "streamforge_nb.exchange.binance",
    "WeightBudget": "streamforge_nb.exchange.weight",
    "archive_candles": "streamforge_nb.exchange.archives",
    "archive_interval": "streamforge_nb.exchange.archives",
    "archive_path": "streamforge_nb.exchange.archives",
    "archive_paths": "streamforge_nb.exchange.archives",
    "archive_url": "streamforge_nb.exchange.archives",
    "budget_for": "streamforge_nb.exchange.weight",
    "check_range": "streamforge_nb.exchange.binance",
    "checksum_line": "streamforge_nb.exchange.archives",
    "iter_archive": "streamforge_nb.exchange.archives",
    "pack_archive": "streamforge_nb.exchange.archives",
    "parse_archive_name": "streamforge_nb.exchange.archives",
    "parse_rate_limits": "streamforge_nb.exchange.weight",
    "read_archive": "streamforge_nb.exchange.archives",
    "used_weight_header": "streamforge_nb.exchange.weight",
}
__getattr__, __dir__ = attach(__name__, _EXPORTS)
__all__ = [*_EXPORTS]
