"""Binance public-data archives: paths, download, checksum, microseconds, header, sample."""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pytest
import requests

from streamforge_nb.exceptions import ArchiveError, ExchangeUnavailable, InvalidName, MessageError
from streamforge_nb.exchange import archives
from streamforge_nb.exchange.archives import (
    KLINE_CSV_HEADER,
    SAMPLE_ARCHIVE,
    archive_candles,
    archive_path,
    archive_paths,
    archive_tables,
    archive_url,
    checksum_line,
    pack_archive,
    parse_archive_name,
    read_archive,
)
from streamforge_nb.exchange.binance import KlinesClient
from streamforge_nb.platform.candle_columns import candles_table
from streamforge_nb.platform.names import TimeRange
from streamforge_nb.testing import DEFAULT_SEED, ExchangeServer

DAY = "data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-08-01.zip"
DAY_START = 1722470400000  # 2024-08-01 00:00 UTC
DAY_MS = 86_400_000


@pytest.fixture
def server() -> Iterator[ExchangeServer]:
    with ExchangeServer() as srv:
        yield srv


def download(server: ExchangeServer, path: str, directory: Path, checksum: bool = True) -> Path:
    """Fetch an archive (and its CHECKSUM) from the server into `directory`, like curl would."""
    target = directory / path.rsplit("/", 1)[-1]
    suffixes = ("", ".CHECKSUM") if checksum else ("",)
    for suffix in suffixes:
        resp = requests.get(archive_url(path + suffix, server.base_url), timeout=10)
        resp.raise_for_status()
        target.with_name(target.name + suffix).write_bytes(resp.content)
    return target


def csv_lines(zip_path: Path) -> list[str]:
    with zipfile.ZipFile(zip_path) as archive:
        (member,) = archive.namelist()
        return archive.read(member).decode().splitlines()


# --- paths ------------------------------------------------------------------------------------


def test_whole_months_are_monthly_files_and_the_rest_daily() -> None:
    paths = archive_paths("BTCUSDT", "1m", "2024-07-30:2024-09-02")
    assert paths == [
        "data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-07-30.zip",
        "data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-07-31.zip",
        "data/spot/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2024-08.zip",
        "data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-09-01.zip",
    ]


def test_exactly_one_month_is_one_monthly_file() -> None:
    tr = TimeRange(datetime(2024, 8, 1, tzinfo=UTC), datetime(2024, 9, 1, tzinfo=UTC))
    assert archive_paths("ETHUSDT", "5m", tr) == [
        "data/spot/monthly/klines/ETHUSDT/5m/ETHUSDT-5m-2024-08.zip"
    ]


def test_partly_covered_days_are_included_whole() -> None:
    paths = archive_paths("BTCUSDT", "1h", "2024-08-01T12:00/2024-08-02T01:00")
    assert [p.rsplit("/", 1)[-1] for p in paths] == [
        "BTCUSDT-1h-2024-08-01.zip",
        "BTCUSDT-1h-2024-08-02.zip",
    ]


def test_months_are_spelled_1mo_and_only_published_monthly() -> None:
    assert archive_paths("BTCUSDT", "1M", "2024-08-05:2024-09-02") == [
        "data/spot/monthly/klines/BTCUSDT/1mo/BTCUSDT-1mo-2024-08.zip",
        "data/spot/monthly/klines/BTCUSDT/1mo/BTCUSDT-1mo-2024-09.zip",
    ]
    assert archive_paths("BTCUSDT", "1w", "2024-12-30:2025-01-02")[-1].endswith("-2025-01.zip")


def test_bad_names_are_refused() -> None:
    with pytest.raises(InvalidName, match="expected one of"):
        archive_paths("BTCUSDT", "1mo", "2024-08-01:2024-08-02")
    with pytest.raises(InvalidName, match="did you mean 'BTCUSDT'"):
        archive_paths("btcusdt", "1m", "2024-08-01:2024-08-02")
    with pytest.raises(InvalidName, match="empty"):
        archive_paths("BTCUSDT", "1m", "2024-08-01:2024-08-01")


def test_archive_names_parse_back() -> None:
    named = parse_archive_name("BTCUSDT-1mo-2024-08.zip")
    assert named is not None
    assert (named.symbol, named.interval, named.monthly) == ("BTCUSDT", "1M", True)
    assert named.start_ms == 1722470400000 and named.end_ms == 1725148800000
    assert named.path == archive_path("BTCUSDT", "1M", date(2024, 8, 1), monthly=True)
    assert parse_archive_name(DAY) == ("BTCUSDT", "1m", date(2024, 8, 1), False)
    assert parse_archive_name("BTCUSDT-2m-2024-08-01.zip") is None
    assert parse_archive_name("notes.txt") is None


# --- reading ----------------------------------------------------------------------------------


def test_read_by_url_gives_the_servers_rows(server: ExchangeServer) -> None:
    rows = read_archive(archive_url(DAY, server.base_url))
    assert rows == server.expected_rows("BTCUSDT", "1m", DAY_START, DAY_START + DAY_MS)
    assert len(rows) == 1440
    paths = [r.path for r in server.requests]
    assert paths == ["/" + DAY, "/" + DAY + ".CHECKSUM"]


def test_read_monthly_file_by_url(server: ExchangeServer) -> None:
    path = "data/spot/monthly/klines/ETHUSDT/1h/ETHUSDT-1h-2024-02.zip"
    rows = read_archive(archive_url(path, server.base_url), session=requests.Session())
    assert len(rows) == 29 * 24
    assert rows == server.expected_rows("ETHUSDT", "1h", 1706745600000, 1709251200000)


def test_read_by_local_path_and_file_url(server: ExchangeServer, tmp_path: Path) -> None:
    local = download(server, DAY, tmp_path)
    expected = server.expected_rows("BTCUSDT", "1m", DAY_START, DAY_START + DAY_MS)
    assert read_archive(local) == expected
    assert read_archive(str(local)) == expected
    assert read_archive(local.as_uri()) == expected


def test_rows_match_rest_candles(server: ExchangeServer) -> None:
    (from_archive,) = archive_candles("BTCUSDT", "1m", [archive_url(DAY, server.base_url)])
    rest = KlinesClient(server.base_url)
    from_rest = [c for page in rest.candles("BTCUSDT", "1m", DAY_START, DAY_START + DAY_MS)
                 for c in page]  # fmt: skip
    assert from_archive == from_rest


def test_archive_candles_yields_one_list_per_file(server: ExchangeServer) -> None:
    paths = archive_paths("BTCUSDT", "1h", "2024-08-01:2024-08-04")
    lists = list(archive_candles("BTCUSDT", "1h", [archive_url(p, server.base_url) for p in paths]))
    assert [len(x) for x in lists] == [24, 24, 24]
    assert lists[1][0].key == "BTCUSDT_1h_1722556800000"


def test_archive_of_another_symbol_is_refused(server: ExchangeServer) -> None:
    with pytest.raises(ArchiveError, match="does not hold ETHUSDT 1m"):
        list(archive_candles("ETHUSDT", "1m", [archive_url(DAY, server.base_url)]))


def test_missing_checksum_is_allowed_and_logged(
    server: ExchangeServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    local = download(server, DAY, tmp_path, checksum=False)
    with caplog.at_level(logging.INFO, logger="streamforge_nb.exchange.archives"):
        assert len(read_archive(local)) == 1440
    assert "BTCUSDT-1m-2024-08-01.zip.CHECKSUM" in caplog.text
    assert "not verified" in caplog.text


def test_checksum_mismatch_raises(server: ExchangeServer, tmp_path: Path) -> None:
    local = download(server, DAY, tmp_path)
    data = bytearray(local.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the compressed CSV
    local.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match=r"checksum mismatch for BTCUSDT-1m-2024-08-01\.zip"):
        read_archive(local)
    # verify=False skips the check; the damage then shows up as a broken zip.
    with pytest.raises(ArchiveError, match=r"BTCUSDT-1m-2024-08-01\.zip"):
        read_archive(local, verify=False)


def test_checksum_of_another_file_raises(server: ExchangeServer, tmp_path: Path) -> None:
    local = download(server, DAY, tmp_path)
    checksum = local.with_name(local.name + ".CHECKSUM")
    checksum.write_text(checksum_line(b"something else", local.name))
    with pytest.raises(ArchiveError, match="checksum mismatch"):
        read_archive(local)
    checksum.write_text("not a checksum\n")
    with pytest.raises(ArchiveError, match="CHECKSUM is malformed"):
        read_archive(local)


def test_microsecond_files_are_normalised_to_milliseconds(
    server: ExchangeServer, tmp_path: Path
) -> None:
    ms_rows = read_archive(archive_url(DAY, server.base_url))
    server.archive_time_unit = "us"
    local = download(server, DAY, tmp_path)
    first = csv_lines(local)[0].split(",")
    assert first[0] == "1722470400000000" and first[6] == "1722470459999999"
    us_rows = read_archive(local)
    assert us_rows == ms_rows
    assert us_rows[0][0] == 1722470400000 and us_rows[0][6] == 1722470459999
    assert list(archive_candles("BTCUSDT", "1m", [local])) == list(
        archive_candles("BTCUSDT", "1m", [archive_url(DAY, server.base_url)])
    )


def test_spot_files_from_2025_are_in_microseconds_like_binance(
    server: ExchangeServer, tmp_path: Path
) -> None:
    local = download(
        server, "data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2025-01-01.zip", tmp_path
    )
    assert len(csv_lines(local)[0].split(",")[0]) == 16
    rows = read_archive(local)
    start = 1735689600000
    assert rows == server.expected_rows("BTCUSDT", "1m", start, start + DAY_MS)


def test_header_line_is_skipped(server: ExchangeServer, tmp_path: Path) -> None:
    server.archive_header = True
    local = download(server, DAY, tmp_path)
    assert csv_lines(local)[0].startswith("open_time,open,high,low,close,volume,close_time")
    assert read_archive(local) == server.expected_rows(
        "BTCUSDT", "1m", DAY_START, DAY_START + DAY_MS
    )


def test_not_a_zip_raises(tmp_path: Path) -> None:
    bad = tmp_path / "BTCUSDT-1m-2024-08-01.zip"
    bad.write_bytes(b"<html>Access denied</html>")
    with pytest.raises(ArchiveError, match="not a valid zip file"):
        read_archive(bad)


def test_wrong_columns_raise_naming_the_line(tmp_path: Path) -> None:
    good = [
        1722470400000,
        "1.0",
        "1.0",
        "1.0",
        "1.0",
        "1.0",
        1722470459999,
        "1.0",
        3,
        "1",
        "1",
        "0",
    ]
    rows = [good, good[:11]]
    bad = tmp_path / "BTCUSDT-1m-2024-08-01.zip"
    bad.write_bytes(pack_archive(rows, "BTCUSDT-1m-2024-08-01.csv"))
    with pytest.raises(ArchiveError, match="line 2: 11 columns, expected 12"):
        read_archive(bad)
    bad.write_bytes(pack_archive([good, [*good[:8], "x", *good[9:]]], "a.csv"))
    with pytest.raises(ArchiveError, match="line 2: open_time, close_time and count"):
        read_archive(bad)


def test_zip_with_two_files_raises(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("a.csv", "")
        archive.writestr("b.csv", "")
    path = tmp_path / "two.zip"
    path.write_bytes(buf.getvalue())
    with pytest.raises(ArchiveError, match="holds 2 files"):
        read_archive(path)


def test_missing_archives_raise(server: ExchangeServer, tmp_path: Path) -> None:
    future = "data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2999-01-01.zip"
    with pytest.raises(ArchiveError, match=r"no archive at http://.*2999-01-01\.zip \(HTTP 404\)"):
        read_archive(archive_url(future, server.base_url))
    with pytest.raises(ArchiveError, match="cannot read archive"):
        read_archive(tmp_path / "nothing.zip")


def test_unreachable_server_raises_unavailable() -> None:
    with ExchangeServer() as srv:
        url = archive_url(DAY, srv.base_url)
    with pytest.raises(ExchangeUnavailable, match=r"BTCUSDT-1m-2024-08-01\.zip"):
        read_archive(url)


def test_pack_archive_is_reproducible() -> None:
    rows = ExchangeServer().generator.rows("BTCUSDT", "1m", DAY_START, DAY_START + 3 * 60_000)
    assert pack_archive(rows, "x.csv") == pack_archive(rows, "x.csv")


# --- the shipped sample -----------------------------------------------------------------------


def test_shipped_sample_reads_and_verifies() -> None:
    checksum = SAMPLE_ARCHIVE.with_name(SAMPLE_ARCHIVE.name + ".CHECKSUM")
    assert checksum.read_text().endswith(f"  {SAMPLE_ARCHIVE.name}\n")
    assert SAMPLE_ARCHIVE.stat().st_size < 100_000
    rows = read_archive(SAMPLE_ARCHIVE)  # verifies the sha256
    assert len(rows) == 1440
    # It is the generator's day, so the offline quickstart and the test server agree.
    with ExchangeServer(seed=DEFAULT_SEED) as server:
        assert rows == server.expected_rows("BTCUSDT", "1m", DAY_START, DAY_START + DAY_MS)
    (candles,) = archive_candles("BTCUSDT", "1m", [SAMPLE_ARCHIVE])
    assert candles[0].key == "BTCUSDT_1m_1722470400000"
    assert (SAMPLE_ARCHIVE.parent / "README.md").read_text().count("GENERATED") >= 1


# --- first lines: BOM, header, and no silent drop ---------------------------------------------

_ROW = "1722470400000,1.0,2.0,0.5,1.5,10,1722470459999,15,3,4,6,0"
_ROW2 = "1722470460000,1.5,2.0,0.5,1.0,10,1722470519999,15,3,4,6,0"
_HEADER = ",".join(KLINE_CSV_HEADER)


def zip_text(tmp_path: Path, text: bytes) -> Path:
    path = tmp_path / "BTCUSDT-1m-2024-08-01.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("BTCUSDT-1m-2024-08-01.csv", text)
    return path


_FIRST_LINES = [
    f"\ufeff{_ROW}\n{_ROW2}\n",  # a byte order mark before the first candle
    f"\ufeff{_HEADER}\n{_ROW}\n{_ROW2}\n",  # ... before the header
    f"{_HEADER}\r\n{_ROW}\r\n{_ROW2}\r\n",  # the header, CRLF line ends
    f"{_ROW}\n\n{_ROW2}",  # a blank line, no final newline
]
_BAD_LINES = [
    # A malformed first row used to be skipped as a "header".
    (f"x{_ROW}\n{_ROW2}\n", r"BTCUSDT-1m-2024-08-01\.zip line 1: open_time"),
    (f"Open_Time,open\n{_ROW}\n", r"\.zip line 1: 2 columns, expected 12"),
    (f"{_HEADER.replace('count', 'trades')}\n{_ROW}\n", r"\.zip line 1: open_time"),
    (f"{_ROW}\n{_HEADER}\n", r"\.zip line 2: open_time"),  # a header is first or nothing
    (f"{_ROW}\n{_ROW2.replace(',1.5,', ',1,5,', 1)}\n", r"\.zip line 2: 13 columns"),
    (f"{_ROW}\n{_ROW2.replace(',2.0,', ',2.0x,', 1)}\n", r"line 2: column 3 \(high\)"),
    (f"{_ROW}\n{_ROW2.replace(',10,', ',,', 1)}\n", r"line 2: column 6 \(volume\)"),
]


@pytest.mark.parametrize("text", _FIRST_LINES)
def test_bom_and_header_are_dropped_and_every_candle_kept(tmp_path: Path, text: str) -> None:
    rows = read_archive(zip_text(tmp_path, text.encode()), verify=False)
    assert [row[0] for row in rows] == [1722470400000, 1722470460000]
    assert rows[0][1:6] == ["1.0", "2.0", "0.5", "1.5", "10"]


@pytest.mark.parametrize(("text", "match"), _BAD_LINES)
def test_a_line_that_does_not_parse_is_an_error_naming_file_and_line(
    tmp_path: Path, text: str, match: str
) -> None:
    with pytest.raises(ArchiveError, match=match):
        read_archive(zip_text(tmp_path, text.encode()), verify=False)


# --- the column reader (the loader's bulk path, issue 20) -------------------------------------


def same_candles(symbol: str, interval: str, sources: list[str | Path]) -> pa.Table:
    """Read `sources` with both readers; assert the same candles; return them as a table."""
    tables = list(archive_tables(symbol, interval, sources))
    columns = pa.concat_tables(tables) if tables else candles_table([])
    rows = [c for page in archive_candles(symbol, interval, sources) for c in page]
    assert columns.equals(candles_table(rows))
    return columns


def test_the_column_reader_gives_the_row_readers_candles(
    server: ExchangeServer, tmp_path: Path
) -> None:
    month = "data/spot/monthly/klines/ETHUSDT/1h/ETHUSDT-1h-2024-02.zip"
    assert same_candles("ETHUSDT", "1h", [archive_url(month, server.base_url)]).num_rows == 696
    for unit, header in (("us", False), ("ms", True)):  # microseconds; a header line
        server.archive_time_unit, server.archive_header = unit, header
        local = download(server, DAY, tmp_path)
        found = same_candles("BTCUSDT", "1m", [local])
        assert found.column("open_time")[0].as_py() == DAY_START
        assert found.column("close_time")[0].as_py() == DAY_START + 59_999
    assert same_candles("BTCUSDT", "1m", [SAMPLE_ARCHIVE]).num_rows == 1440


@pytest.mark.parametrize(
    "text",
    [
        *_FIRST_LINES,
        f"{_ROW}\n{_ROW2.replace(',1.5,', ', 1.5 ,', 1)}\n",  # spaces the row reader strips
        _ROW + "\n" + _ROW2.replace(",1.5,", ',"1.5",', 1) + "\n",  # a quoted field
    ],
)
def test_the_column_reader_reads_every_first_line_and_odd_field_alike(
    tmp_path: Path, text: str
) -> None:
    found = same_candles("BTCUSDT", "1m", [zip_text(tmp_path, text.encode())])
    assert found.column("open_time").to_pylist() == [1722470400000, 1722470460000]


@pytest.mark.parametrize(("text", "match"), _BAD_LINES)
def test_the_column_reader_names_the_line_that_does_not_parse(
    tmp_path: Path, text: str, match: str
) -> None:
    with pytest.raises(ArchiveError, match=match):
        list(archive_tables("BTCUSDT", "1m", [zip_text(tmp_path, text.encode())]))


def test_an_odd_line_in_a_later_block_keeps_every_candle_once_and_names_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archives, "_BLOCK_BYTES", 4096)  # blocks of about 60 lines
    rows = ExchangeServer().generator.rows("BTCUSDT", "1m", DAY_START, DAY_START + DAY_MS)
    lines = [",".join(str(v) for v in row) for row in rows]
    lines[1000] = lines[1000].replace(",", " , ", 3)  # the row reader reads it; Arrow does not
    path = zip_text(tmp_path, "\n".join(lines).encode())
    found = same_candles("BTCUSDT", "1m", [path])
    assert found.column("open_time").to_pylist() == [row[0] for row in rows]
    lines[1200] = lines[1200].replace(",", ";", 1)
    path = zip_text(tmp_path, "\n".join(lines).encode())
    with pytest.raises(ArchiveError, match=r"\.zip line 1201: 11 columns"):
        list(archive_tables("BTCUSDT", "1m", [path]))


def test_a_negative_time_is_refused_by_both_readers(tmp_path: Path) -> None:
    path = zip_text(tmp_path, f"{_ROW}\n-{_ROW2}\n".encode())
    with pytest.raises(MessageError, match="open_time"):
        list(archive_candles("BTCUSDT", "1m", [path]))
    with pytest.raises(MessageError, match="open_time"):
        list(archive_tables("BTCUSDT", "1m", [path]))
