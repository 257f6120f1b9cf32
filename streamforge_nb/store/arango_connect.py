"""Connections to ArangoDB: where a URL points (`parse_arango_url`) and the client for it.

`arango_client` bounds the time to "unreachable" (CONNECT_ATTEMPTS x `ARANGO_CONNECT_TIMEOUT`
per address), trusts `ARANGO_CA_PATH`, and raises TLS failures at once instead of letting
python-arango retry them as lost connections.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from streamforge_nb.exceptions import ConfigError
from streamforge_nb.settings import Settings

__all__ = ["CONNECT_ATTEMPTS", "ArangoTarget", "arango_client", "parse_arango_url"]

CONNECT_ATTEMPTS = 2
"""Connection attempts before "unreachable": urllib3 retries a failed connect once
(`Retry(total=1)`, no back-off before a first retry), python-arango does not try again
(`resolver_max_tries=1`); each attempt waits at most `ARANGO_CONNECT_TIMEOUT` per address."""


class ArangoTarget:
    """Where an ArangoDB URL points: hosts (no credentials), database, user, password."""

    def __init__(self, hosts: str, database: str, user: str, password: str) -> None:
        self.hosts, self.database, self.user, self.password = hosts, database, user, password

    def __repr__(self) -> str:
        return f"ArangoTarget({self.hosts!r}, database={self.database!r}, user={self.user!r})"


def parse_arango_url(url: str, settings: Settings | None = None) -> ArangoTarget:
    """Split `arango[s]://` or `http[s]://[user[:password]@]host:port[/db | /_db/db]`.

    The database defaults to `settings.arango_db`, the user and password to the settings'
    `arango_user` (else `root`) and `arango_password`.
    """
    settings = settings or Settings()
    parts = urlsplit(url)
    scheme = {"arango": "http", "arangos": "https"}.get(parts.scheme.lower(), parts.scheme.lower())
    if scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            "invalid ArangoDB URL: expected arango://host:port or http(s)://host:port "
            f"(got scheme {parts.scheme!r})"
        )
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    hosts = f"{scheme}://{host}" + (f":{parts.port}" if parts.port else "")
    path = parts.path.strip("/").removeprefix("_db/").strip("/")
    password = None if parts.password is None else unquote(parts.password)
    if password is None and settings.arango_password is not None:
        password = settings.arango_password.get_secret_value()
    return ArangoTarget(
        hosts=hosts,
        database=path or settings.arango_db,
        user=unquote(parts.username or "") or settings.arango_user or "root",
        password=password or "",
    )


def arango_client(hosts: str, settings: Settings) -> Any:
    """Return a python-arango `ArangoClient` for `hosts` with the settings' CA and timeouts."""
    from arango.client import ArangoClient

    ca = settings.arango_ca_path
    if ca and not Path(ca).is_file():
        raise ConfigError(f"ARANGO_CA_PATH {ca!r} is not a readable file")
    http = _http_client_class()(
        settings.arango_connect_timeout, settings.arango_request_timeout, ca
    )
    return ArangoClient(
        hosts=hosts, http_client=http, resolver_max_tries=1, verify_override=ca or None
    )


@functools.cache
def _http_client_class() -> type[Any]:
    # Built on first use: python-arango (and requests) load only for an ArangoDB store.
    from arango.exceptions import ArangoClientError
    from arango.http import DefaultHTTPClient
    from arango.response import Response
    from requests.exceptions import SSLError

    class HTTPClient(DefaultHTTPClient):
        """python-arango's HTTP client with a connect timeout of its own and TLS failures
        raised as such: requests' SSLError is a ConnectionError, which python-arango would
        retry and then report as an unreachable host."""

        def __init__(self, connect: float, read: float, ca: str | None) -> None:
            super().__init__(
                request_timeout=read, retry_attempts=CONNECT_ATTEMPTS - 1, backoff_factor=0.0
            )
            self._timeouts = (connect, read)
            # Given with each request: requests lets REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE
            # in the environment override the session's CA, never a request's.
            self._verify: str | bool = ca or True
            self._trust = f"ARANGO_CA_PATH={ca}" if ca else "ARANGO_CA_PATH unset"

        def send_request(
            self,
            session: Any,
            method: str,
            url: str,
            headers: Any = None,
            params: Any = None,
            data: Any = None,
            auth: Any = None,
        ) -> Any:
            try:
                response = session.request(
                    method=method, url=url, params=params, data=data, headers=headers,
                    auth=auth, timeout=self._timeouts, verify=self._verify,
                )  # fmt: skip
            except SSLError as exc:
                host = urlsplit(url).netloc
                raise ArangoClientError(f"TLS with {host} ({self._trust})") from exc
            return Response(
                method=method, url=response.url, headers=response.headers,
                status_code=response.status_code, status_text=response.reason,
                raw_body=response.text,
            )  # fmt: skip

    return HTTPClient
