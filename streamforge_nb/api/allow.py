"""What a client may name on the server: archive paths and URLs, exchange base URLs.

A start request names files and URLs the server's loader then opens: without a limit, any
client could make the server read `/etc/passwd` or call any host. The one who starts the
server says which directories and URL prefixes are fair game (`serve-api --allow-archives`,
`--allow-base-url`); anything else is refused before a queue is planned, naming the field.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from streamforge_nb.exceptions import ConfigError, NotAllowed

__all__ = ["AllowList", "NotAllowed"]

_WEB = ("http", "https")


def _url_prefix(value: str, option: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in _WEB or not parts.netloc:
        raise ConfigError(f"{option} {value!r} is not an http(s) URL")
    # A prefix ending in '/' cannot be stretched onto a neighbour (…/data vs …/data-evil).
    return value if value.endswith("/") else value + "/"


@dataclass(frozen=True)
class AllowList:
    """Directories and URL prefixes archives may come from; base URLs the loader may call."""

    archive_dirs: tuple[Path, ...] = ()
    archive_urls: tuple[str, ...] = ()
    base_urls: tuple[str, ...] = field(default=())

    @classmethod
    def build(cls, archives: Iterable[str] = (), base_urls: Iterable[str] = ()) -> AllowList:
        """Return the allow-list of `archives` (directories or URL prefixes) and `base_urls`."""
        dirs: list[Path] = []
        urls: list[str] = []
        for value in archives:
            if urlsplit(value).scheme in _WEB:
                urls.append(_url_prefix(value, "--allow-archives"))
            else:
                path = Path(value).expanduser()
                if not path.is_dir():
                    raise ConfigError(f"--allow-archives {value!r} is not a directory")
                dirs.append(path.resolve())
        bases = tuple(_url_prefix(u, "--allow-base-url") for u in base_urls)
        return cls(tuple(dirs), tuple(urls), bases)

    def check_archives(self, archives: Sequence[str]) -> None:
        """Raise `NotAllowed` naming the first archive outside the allowed places."""
        for index, value in enumerate(archives):
            where = f"body.archives[{index}]"
            scheme = urlsplit(value).scheme
            if scheme in _WEB:
                if not any(value.startswith(prefix) for prefix in self.archive_urls):
                    raise NotAllowed(where, "this URL is not under an allowed archive URL")
            elif len(scheme) > 1:  # file:, ftp:, ... (a one-letter scheme: a Windows drive)
                raise NotAllowed(where, f"{scheme}: URLs are not accepted; give a path")
            else:
                path = Path(value)
                inside = path.is_absolute() and any(
                    path.resolve().is_relative_to(d) for d in self.archive_dirs
                )
                if not inside:
                    raise NotAllowed(where, "this path is not inside an allowed archive directory")

    def check_base_url(self, base_url: str | None) -> None:
        """Raise `NotAllowed` unless `base_url` is None (the exchange's) or allowed."""
        if base_url is None:
            return
        given = base_url if base_url.endswith("/") else base_url + "/"
        if given not in self.base_urls:
            raise NotAllowed("body.base_url", "this URL is not an allowed exchange base URL")
