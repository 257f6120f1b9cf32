"""Fetch one archive (an http(s) or file URL, or a local path) and verify its checksum.

A download is spooled to disk past `_SPOOL_BYTES`, so a big monthly file never sits in
memory whole; `<name>.CHECKSUM` (`<sha256>  <file name>`) is compared with the zip's sha256.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import tempfile
from pathlib import Path
from typing import IO, TYPE_CHECKING
from urllib.parse import urlsplit
from urllib.request import url2pathname

from streamforge_nb.exceptions import ArchiveError, ExchangeUnavailable

if TYPE_CHECKING:
    import requests

__all__ = ["fetch_archive", "source_name", "verify_checksum"]

# The reading module's logger: users who tuned it keep seeing the integrity notes.
log = logging.getLogger("streamforge_nb.exchange.archives")

_SPOOL_BYTES = 32 * 2**20


def source_name(source: str | Path) -> str:
    if isinstance(source, str) and _is_url(source):
        return urlsplit(source).path.rsplit("/", 1)[-1]
    return Path(source).name


def _is_url(text: str) -> bool:
    return urlsplit(text).scheme in ("http", "https", "file")


def fetch_archive(
    source: str | Path, *, verify: bool, session: requests.Session | None
) -> tuple[IO[bytes], str, str | None]:
    """Return the zip as an open binary file, its sha256 and the CHECKSUM text (or None)."""
    if isinstance(source, str) and urlsplit(source).scheme in ("http", "https"):
        return _download(source, verify=verify, session=session)
    if isinstance(source, str) and urlsplit(source).scheme == "file":
        source = url2pathname(urlsplit(source).path)
    path = Path(source)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArchiveError(f"cannot read archive {path}: {exc.strerror or exc}") from None
    sibling = path.with_name(path.name + ".CHECKSUM")
    checksum = sibling.read_text() if verify and sibling.is_file() else None
    return io.BytesIO(data), hashlib.sha256(data).hexdigest(), checksum


def _download(
    url: str, *, verify: bool, session: requests.Session | None
) -> tuple[IO[bytes], str, str | None]:
    # Imported here: a load from local files never needs it (30-100 ms of a loader's start).
    import requests

    http = session or requests.Session()
    try:
        # Spool big monthly files to disk instead of holding them in memory; the caller
        # closes the spool when it has read the rows.
        spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115
        sha = hashlib.sha256()
        with http.get(url, stream=True, timeout=60) as resp:
            if resp.status_code != 200:
                spool.close()
                raise ArchiveError(f"no archive at {url} (HTTP {resp.status_code})")
            for chunk in resp.iter_content(chunk_size=2**16):
                sha.update(chunk)
                spool.write(chunk)
        spool.seek(0)
        checksum = _download_checksum(http, url + ".CHECKSUM") if verify else None
    except requests.RequestException as exc:
        raise ExchangeUnavailable(f"GET {url} failed: {exc}", url=url) from None
    finally:
        if session is None:
            http.close()
    return spool, sha.hexdigest(), checksum


def _download_checksum(http: requests.Session, url: str) -> str | None:
    resp = http.get(url, timeout=30)
    if resp.status_code == 404:
        return None
    if resp.status_code != 200:
        raise ArchiveError(f"cannot fetch checksum {url} (HTTP {resp.status_code})")
    return str(resp.text)


def verify_checksum(name: str, digest: str, checksum: str | None) -> None:
    if checksum is None:
        log.info("no %s.CHECKSUM next to the archive; its integrity is not verified", name)
        return
    expected = (checksum.split() or [""])[0].lower()
    if not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise ArchiveError(f"{name}.CHECKSUM is malformed: {checksum[:100]!r}")
    if expected != digest:
        raise ArchiveError(
            f"checksum mismatch for {name}: sha256 is {digest}, its CHECKSUM says {expected} "
            "(a truncated or corrupted download; fetch it again)"
        )
