"""`ArangoCollections`: the database an ArangoDB URL names and its candle collections.

A collection per workflow day, named by the platform (`platform.names.collection_name`). The
collection listing is read once per process and kept, with the collections this process
creates or finds added; a name it does not hold is asked for by name before anything is
created, so a user without rights to create collections works on collections that exist.
`store.arango.ArangoBackend` reads and writes through it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from streamforge_nb.exceptions import map_store_error, store_errors
from streamforge_nb.platform.names import candle_type, collection_name
from streamforge_nb.settings import Settings
from streamforge_nb.store.arango_connect import arango_client, parse_arango_url

__all__ = ["ArangoCollections"]

# The backend's logger, as before the collections had a module of their own.
log = logging.getLogger("streamforge_nb.store.arango")

_NAMES_QUERY = "FOR c IN COLLECTIONS() FILTER STARTS_WITH(c.name, @head) RETURN c.name"
_ERR_NOT_FOUND = 1203
_ERR_DUPLICATE_NAME = 1207


class ArangoCollections:
    """The database of an ArangoDB URL: names, lists and creates its candle collections."""

    def __init__(
        self,
        url: str,
        settings: Settings | None = None,
        *,
        source: str = "api",
        chunk: int = 10_000,
    ) -> None:
        settings = settings or Settings()
        self._target = parse_arango_url(url, settings)
        self.url = f"{self._target.hosts}/_db/{self._target.database}"
        self.source = source
        self.chunk = chunk
        # A notebook hears about a dead server in seconds, not python-arango's minutes.
        self._client = arango_client(self._target.hosts, settings)
        # No request yet (verify=False): the first operation reports an unreachable server.
        # Typed Any: python-arango types every result as a union with async and batch jobs,
        # which a standard database never returns.
        self._db: Any = self._client.db(
            self._target.database, username=self._target.user, password=self._target.password
        )
        # Collections known to exist (never dropped by the library): the listing, read once.
        self._known: set[str] | None = None

    # --- names ---------------------------------------------------------------------------

    def _type(self, interval: str) -> str:
        return candle_type(interval, self.source)

    def collection_for(self, symbol: str, interval: str, open_ms: int) -> str:
        """Return the collection a candle opening at `open_ms` is written to."""
        day = datetime.fromtimestamp(open_ms / 1000, UTC).date()
        if interval in ("1d", "3d", "1w", "1M"):
            day = day.replace(month=1, day=1)
        return collection_name(symbol, self._type(interval), day)

    def collections(self, symbol: str, interval: str) -> list[str]:
        """Return the names of every collection of the series, oldest day first.

        Asked of the server each time (filtered there): another process may have made one.
        """
        # The name without its date: `sym-` prefixed for a symbol starting with a digit.
        head = collection_name(symbol, self._type(interval), date(2000, 1, 1))[: -len("2000_01_01")]
        pattern = re.compile(re.escape(head) + r"\d{4}_\d{2}_\d{2}")
        with store_errors("cannot list ArangoDB collections", self.url):
            names = list(self._db.aql.execute(_NAMES_QUERY, bind_vars={"head": head}))
        found = sorted(n for n in names if pattern.fullmatch(n))
        if self._known is not None:
            self._known.update(found)
        return found

    def _listing(self, *, refresh: bool = False) -> set[str]:
        """Return the names of the database's collections, listed once per process."""
        if self._known is None or refresh:
            self._known = {c["name"] for c in self._db.collections()}
        return self._known

    def _exists(self, name: str) -> bool:
        """Whether collection `name` exists: known, else asked for by name (the listing may
        predate another process creating it)."""
        if name in self._listing():
            return True
        from arango.exceptions import ArangoServerError

        try:
            self._db.collection(name).properties()
        except ArangoServerError as exc:
            if exc.error_code == _ERR_NOT_FOUND:
                return False
            raise
        self._listing().add(name)
        return True

    def _ensure(self, name: str, index: Sequence[str] = ("open_time",)) -> Any:
        """Return collection `name`, created (with a persistent index on `index`) if missing.

        Existence is checked first: creating needs rw on the database, which a user with
        rights on the collections only does not have.
        """
        col = self._db.collection(name)
        if self._exists(name):
            return col
        from arango.exceptions import ArangoServerError

        try:
            self._db.create_collection(name)
        except ArangoServerError as exc:
            if exc.error_code != _ERR_DUPLICATE_NAME:  # else another writer created it first
                what = (
                    f"cannot create collection {name} (creating one needs rw on database "
                    f"{self._target.database} for user {self._target.user})"
                )
                raise map_store_error(exc, what=what, where=self.url) from exc
            self._listing().add(name)
            return col
        self._listing().add(name)
        if index:
            try:
                col.add_index({"type": "persistent", "fields": list(index), "sparse": False})
            except ArangoServerError as exc:
                # The index only speeds reads up: a refusal must not fail the write.
                log.warning("no index on %s: %s", name, exc.error_message or exc)
        return col
