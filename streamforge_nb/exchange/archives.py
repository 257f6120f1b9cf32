"""Binance public-data kline archives: where they are, and how to read them safely.

Binance publishes klines as zips holding one CSV (FACTS.md, Binance):

    data/spot/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2024-08.zip        whole months
    data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-08-01.zip       single days
    <same>.zip.CHECKSUM                                               "<sha256>  <file name>"

The CSV has the 12 columns of a REST kline row, usually without a header (some newer files
have one: a first line equal to Binance's header is skipped; a UTF-8 byte order mark is
dropped). Any other line that does not parse is an `ArchiveError` naming the file and line:
no candle is ever dropped silently. Spot files from 2025-01-01 carry MICROSECOND timestamps;
rows read here are always normalised to milliseconds, with prices and volumes kept as
Binance's strings, so `Candle.from_kline` builds the same candle from an archive row as from a
REST row.

`archive_tables` reads an archive column-wise (Arrow's CSV reader streaming the zip member,
the checks on whole columns) for the loader's bulk path; anything unusual in a file (a
header, spaces, a line that does not parse) sends that file through the row reader above,
which names the line: both give the same candles.

Paths and names are `exchange.archive_names`; fetching and verifying a file is
`exchange.archive_fetch` (both re-exported here).
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import re
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from streamforge_nb.exceptions import ArchiveError
from streamforge_nb.exchange.archive_fetch import fetch_archive, source_name, verify_checksum
from streamforge_nb.exchange.archive_names import (
    ARCHIVE_BASE_URL,
    ArchiveName,
    archive_interval,
    archive_path,
    archive_paths,
    archive_url,
    parse_archive_name,
)
from streamforge_nb.platform.arrow_values import int64_scalar
from streamforge_nb.platform.candle_columns import (
    CANDLE_FIELDS,
    CANDLE_SCHEMA,
    candles_table,
    column_problem,
)
from streamforge_nb.platform.contract import DECIMAL_PATTERN, Candle
from streamforge_nb.platform.intervals import check_interval
from streamforge_nb.platform.names import check_symbol

if TYPE_CHECKING:
    import requests

__all__ = [
    "ARCHIVE_BASE_URL",
    "KLINE_CSV_HEADER",
    "SAMPLE_ARCHIVE",
    "ArchiveName",
    "archive_candles",
    "archive_interval",
    "archive_path",
    "archive_paths",
    "archive_tables",
    "archive_url",
    "checksum_line",
    "iter_archive",
    "pack_archive",
    "parse_archive_name",
    "read_archive",
]

KLINE_CSV_HEADER: tuple[str, ...] = (
    "open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume",
    "count", "taker_buy_volume", "taker_buy_quote_volume", "ignore",
)  # fmt: skip
"""The header line some newer archive files start with."""

SAMPLE_ARCHIVE = Path(__file__).parent.parent / "resources" / "sample" / "BTCUSDT-1m-2024-08-01.zip"
"""A GENERATED (not market data) day of BTCUSDT 1m candles for the offline quickstart."""

_MICROS = 10**15  # Any timestamp this large is in microseconds (ms reach it in year 33658).
_DECIMAL_RE = re.compile(DECIMAL_PATTERN)
_DECIMAL_COLUMNS = (1, 2, 3, 4, 5, 7, 9, 10)
# Arrow reads the CSV in blocks of this size: about 55k 1m candles, so a month of 1s candles
# never sits in memory whole.
_BLOCK_BYTES = 8 * 2**20
_SLOW_ROWS = 50_000


# --- reading ----------------------------------------------------------------------------------


def read_archive(
    source: str | Path, *, verify: bool = True, session: requests.Session | None = None
) -> list[list[Any]]:
    """Return the kline rows of one archive (URL or local path), checked and in milliseconds."""
    return list(iter_archive(source, verify=verify, session=session))


def iter_archive(
    source: str | Path, *, verify: bool = True, session: requests.Session | None = None
) -> Iterator[list[Any]]:
    """Fetch and verify one archive now; return an iterator over its rows (lazy parsing).

    `source` is an http(s) or file URL, or a local path. With `verify`, a sibling
    `<name>.CHECKSUM` is compared with the zip's sha256 (`ArchiveError` on mismatch); a missing
    CHECKSUM is logged and allowed.
    """
    name, archive, member, data = _open(source, verify=verify, session=session)
    return _rows(name, archive, member, data)


def _open(
    source: str | Path, *, verify: bool, session: requests.Session | None
) -> tuple[str, zipfile.ZipFile, zipfile.ZipInfo, IO[bytes]]:
    """Fetch and verify one archive; return its name, zip, CSV member and the open data."""
    name = source_name(source)
    data, digest, checksum = fetch_archive(source, verify=verify, session=session)
    try:
        if verify:
            verify_checksum(name, digest, checksum)
        try:
            archive = zipfile.ZipFile(data)
        except zipfile.BadZipFile as exc:
            raise ArchiveError(f"{name} is not a valid zip file: {exc}") from None
        members = [info for info in archive.infolist() if not info.is_dir()]
        if len(members) != 1:
            archive.close()
            raise ArchiveError(f"{name} holds {len(members)} files, expected one CSV")
    except BaseException:
        data.close()
        raise
    return name, archive, members[0], data


def archive_candles(
    symbol: str,
    interval: str,
    sources: Iterable[str | Path],
    *,
    verify: bool = True,
    session: requests.Session | None = None,
) -> Iterator[list[Candle]]:
    """Yield the `Candle`s of each archive in `sources`, one list per file."""
    check_symbol(symbol)
    check_interval(interval)
    for source in sources:
        _check_name(source_name(source), symbol, interval)
        rows = iter_archive(source, verify=verify, session=session)
        yield [Candle.from_kline(symbol, interval, row) for row in rows]


def archive_tables(
    symbol: str,
    interval: str,
    sources: Iterable[str | Path],
    *,
    verify: bool = True,
    session: requests.Session | None = None,
) -> Iterator[pa.Table]:
    """Yield the candles of each archive in `sources` as tables of `CANDLE_SCHEMA`, in order.

    The same candles as `archive_candles`, in blocks (several tables per big file), read
    column-wise; a file that breaks the contract raises as there, naming the file and line.
    """
    check_symbol(symbol)
    check_interval(interval)
    for source in sources:
        _check_name(source_name(source), symbol, interval)
        name, archive, member, data = _open(source, verify=verify, session=session)
        done, unusual = 0, False
        try:
            try:
                for table in _column_blocks(archive, member):
                    done += table.num_rows
                    yield table
            except _Unusual:
                unusual = True
            if unusual:
                # The row reader names the line (or reads what Arrow would not, like spaces
                # around a number); the rows already yielded are the same, so skip them.
                rows = _rows(name, zipfile.ZipFile(data), member, data)
                rows = itertools.islice(rows, done, None)
                while chunk := list(itertools.islice(rows, _SLOW_ROWS)):
                    yield candles_table([Candle.from_kline(symbol, interval, r) for r in chunk])
        finally:
            archive.close()
            data.close()


class _Unusual(Exception):
    """A block Arrow could not read, or whose columns break the contract."""


def _column_blocks(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> Iterator[pa.Table]:
    names = [*CANDLE_FIELDS, "ignore"]
    options = pacsv.ReadOptions(column_names=names, block_size=_BLOCK_BYTES)
    types = {name: pa.string() for name in names}
    first = True
    try:
        with archive.open(member) as raw:
            # Arrow drops a byte order mark and blank lines, as the row reader does.
            reader = pacsv.open_csv(
                raw, read_options=options, convert_options=pacsv.ConvertOptions(column_types=types)
            )
            for batch in reader:
                table = pa.Table.from_batches([batch])
                if first and table.num_rows and _is_header(_first_row(table)):
                    table = table.slice(1)
                first = False
                yield _normalised_columns(table)
    except (pa.ArrowException, zipfile.BadZipFile, zlib.error, OSError, EOFError, UnicodeError):
        raise _Unusual from None


def _first_row(table: pa.Table) -> list[str]:
    return [str(table.column(i)[0]) for i in range(table.num_columns)]


def _normalised_columns(table: pa.Table) -> pa.Table:
    """Return CSV text columns as candle columns (ms times), or raise `_Unusual`."""
    columns: dict[str, Any] = {}
    for name, kind in zip(CANDLE_SCHEMA.names, CANDLE_SCHEMA.types, strict=True):
        columns[name] = pc.cast(table.column(name), kind)  # ArrowInvalid: not an integer
    opens, closes = columns["open_time"], columns["close_time"]
    # Constants as Arrow scalars: a Python int here would import pandas (`arrow_values`).
    micros, one, thousand = int64_scalar(_MICROS), int64_scalar(1), int64_scalar(1000)
    # Spot files from 2025 hold microseconds; x...999999 us ends the same ms as x...999.
    columns["open_time"] = pc.if_else(
        pc.greater_equal(opens, micros), pc.divide(opens, thousand), opens
    )
    columns["close_time"] = pc.if_else(
        pc.greater_equal(closes, micros),
        pc.subtract(pc.divide(pc.add(closes, one), thousand), one),
        closes,
    )
    result = pa.table(columns, schema=CANDLE_SCHEMA)
    if column_problem(result) is not None:
        raise _Unusual
    return result


def _check_name(name: str, symbol: str, interval: str) -> None:
    named = parse_archive_name(name)
    if named is not None and (named.symbol, named.interval) != (symbol, interval):
        raise ArchiveError(f"{name} does not hold {symbol} {interval} klines")


def _rows(
    name: str, archive: zipfile.ZipFile, member: zipfile.ZipInfo, data: IO[bytes]
) -> Iterator[list[Any]]:
    try:
        with archive.open(member) as raw:
            # utf-8-sig: a byte order mark at the start is dropped, not read as data.
            text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
            reader = csv.reader(text)
            for fields in reader:
                lineno = reader.line_num
                if not fields:
                    continue  # a blank line holds no candle
                if lineno == 1 and _is_header(fields):
                    continue  # Binance's header line, which some newer files have
                yield _normalise(fields, name, lineno)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, csv.Error, UnicodeError) as exc:
        raise ArchiveError(f"{name}: cannot read the zip's CSV: {exc}") from None
    finally:
        archive.close()
        data.close()


def _is_header(fields: Sequence[str]) -> bool:
    return tuple(field.strip().lower() for field in fields) == KLINE_CSV_HEADER


def _normalise(fields: Sequence[str], name: str, lineno: int) -> list[Any]:
    """Return a CSV row as a REST kline row: int times (ms) and trade count, strings otherwise."""
    if len(fields) != 12:
        raise ArchiveError(f"{name} line {lineno}: {len(fields)} columns, expected 12")
    row: list[Any] = [field.strip() for field in fields]
    try:
        open_time, close_time, trades = int(row[0]), int(row[6]), int(row[8])
    except ValueError:
        raise ArchiveError(
            f"{name} line {lineno}: open_time, close_time and count must be integers: "
            f"{','.join(fields)[:120]!r}"
        ) from None
    for index in _DECIMAL_COLUMNS:
        if not _DECIMAL_RE.fullmatch(row[index]):
            raise ArchiveError(
                f"{name} line {lineno}: column {index + 1} ({KLINE_CSV_HEADER[index]}) is not a "
                f"decimal number: {row[index][:40]!r}"
            )
    if open_time >= _MICROS:
        open_time //= 1000
    if close_time >= _MICROS:
        # x...999999 us ends the same millisecond as x...999 ms: round up, then step back.
        close_time = (close_time + 1) // 1000 - 1
    row[0], row[6], row[8] = open_time, close_time, trades
    return row


# --- writing (the inverse, for the test server and the shipped sample) ------------------------


def pack_archive(
    rows: Iterable[Sequence[Any]],
    csv_name: str,
    *,
    microseconds: bool = False,
    header: bool = False,
) -> bytes:
    """Return a Binance-style archive zip of REST kline `rows` (times in ms) as `csv_name`.

    `microseconds` writes times like spot files from 2025; `header` adds a header line.
    The zip is byte-for-byte reproducible (fixed member time).
    """
    out = io.StringIO()
    if header:
        out.write(",".join(KLINE_CSV_HEADER) + "\n")
    for row in rows:
        fields = [str(value) for value in row]
        if microseconds:
            fields[0] = str(int(row[0]) * 1000)
            fields[6] = str((int(row[6]) + 1) * 1000 - 1)
        out.write(",".join(fields) + "\n")
    buf = io.BytesIO()
    info = zipfile.ZipInfo(csv_name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr(info, out.getvalue())
    return buf.getvalue()


def checksum_line(data: bytes, filename: str) -> str:
    """Return the `.CHECKSUM` text for `data` named `filename`: `<sha256>  <filename>`."""
    return f"{hashlib.sha256(data).hexdigest()}  {filename}\n"
