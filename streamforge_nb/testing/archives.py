"""Generated public-data archives on disk: a Binance-style zip and its CHECKSUM file.

    write_archive(Path("sample"), "BTCUSDT", "1m", "2024-08")   # how the shipped sample is made

The bytes are those `ExchangeServer` serves at the archive's path: GENERATED candles, not
market data.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from streamforge_nb.exchange.archives import archive_path
from streamforge_nb.testing.candles import DEFAULT_SEED
from streamforge_nb.testing.exchange import ExchangeServer

__all__ = ["write_archive"]


def write_archive(
    directory: Path,
    symbol: str,
    interval: str,
    period: str,
    *,
    seed: int = DEFAULT_SEED,
    time_unit: str = "auto",
    header: bool = False,
) -> Path:
    """Write the GENERATED archive `<SYM>-<iv>-<period>.zip` and its `.CHECKSUM` to `directory`.

    `period` is `YYYY-MM` (monthly file) or `YYYY-MM-DD` (daily file).
    """
    day = date.fromisoformat(period if len(period) == 10 else period + "-01")
    path = archive_path(symbol, interval, day, monthly=len(period) == 7)
    server = ExchangeServer([symbol], seed=seed, archive_time_unit=time_unit, archive_header=header)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / path.rsplit("/", 1)[-1]
    for suffix in ("", ".CHECKSUM"):
        data = server.archive(path + suffix)
        if data is None:
            raise ValueError(f"no archive {path} (a period not over yet, or before listing?)")
        target.with_name(target.name + suffix).write_bytes(data)
    return target
