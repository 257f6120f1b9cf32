"""`streamforge-nb store init`: the ArangoDB database, user, collections and rights the library
needs, made with the server's admin credentials; a second run changes nothing.

The rights granted are the least the library works with (docs/operations.md, "ArangoDB"):

- a writer (`access="rw"`, the sinks, launches, `CandleStore.write`): `rw` on the database,
  which ArangoDB calls Administrate and requires to create collections and indexes (a sink
  creates a collection, with its open_time index, for each UTC day it first writes), and
  `rw` on every collection of it (`*`: present and future), to insert and replace documents.
  Nothing on `_system`, on other databases, or on users;
- a reader (`access="ro"`, notebooks that only load): `ro` on the database and on `*`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from streamforge_nb.exceptions import ConfigError, StoreAuthError, store_errors
from streamforge_nb.settings import Settings
from streamforge_nb.store.arango import (
    EXCHANGE_EMPTY,
    EXCHANGE_EMPTY_INDEX,
    QUEUE_STATE,
    arango_client,
    parse_arango_url,
)

if TYPE_CHECKING:
    from arango.exceptions import ArangoServerError

__all__ = ["InitReport", "init_store", "root_credentials"]

Access = Literal["rw", "ro"]
# ArangoDB's traditional database names (what every server version accepts).
_DATABASE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_ERR_USER_NOT_FOUND = 1703
# The collections the library reads and writes besides the candle collections, and the
# persistent index each gets (the candle collections get theirs when a sink creates them).
COLLECTIONS: dict[str, tuple[str, ...]] = {QUEUE_STATE: (), EXCHANGE_EMPTY: EXCHANGE_EMPTY_INDEX}


@dataclass(frozen=True)
class InitReport:
    """What `init_store` changed, and what it found as wanted already."""

    where: str
    changed: tuple[str, ...]
    unchanged: tuple[str, ...]

    def lines(self) -> list[str]:
        """Return one line per change, or one saying that nothing changed."""
        if not self.changed:
            return [f"nothing to change at {self.where}: " + "; ".join(self.unchanged)]
        return [f"{self.where}: {line}" for line in self.changed]


def root_credentials(env: Mapping[str, str]) -> tuple[str, str]:
    """Return the server admin's (user, password) from ARANGO_ROOT_USER / ARANGO_ROOT_PASSWORD."""
    password = env.get("ARANGO_ROOT_PASSWORD")
    if password is None:
        raise ConfigError(
            "ARANGO_ROOT_PASSWORD is not set: store init runs as the server's admin "
            "(ARANGO_ROOT_USER, default root), whose password it needs"
        )
    return env.get("ARANGO_ROOT_USER") or "root", password


def init_store(
    settings: Settings,
    *,
    root_user: str,
    root_password: str,
    url: str | None = None,
    access: Access = "rw",
    update_password: bool = False,
) -> InitReport:
    """Create what is missing of the database, user, rights, collections and indexes.

    The database, user and password are the settings' (ARANGO_URL or `url`, ARANGO_DB,
    ARANGO_USER, ARANGO_PASSWORD). An existing user keeps its password unless
    `update_password`; its password is checked by logging in as it at the end.
    """
    url = url or settings.arango_url
    if not url:
        raise ConfigError("no ArangoDB URL: set ARANGO_URL (or pass --url)")
    target = parse_arango_url(url, settings)
    if access not in ("rw", "ro"):
        raise ConfigError(f"access must be 'rw' or 'ro', got {access!r}")
    if not _DATABASE_NAME.fullmatch(target.database):
        raise ConfigError(
            f"invalid ArangoDB database name {target.database!r} (ARANGO_DB): a letter, then "
            "up to 63 letters, digits, _ or -"
        )
    if target.user in (root_user, "root"):
        raise ConfigError(
            "ARANGO_USER must name the library's own user, not the admin "
            f"({root_user!r}): store init gives it only the rights the library needs"
        )
    if not target.password:
        raise ConfigError(f"ARANGO_PASSWORD is not set: the password of user {target.user!r}")
    where = f"{target.hosts}/_db/{target.database}"
    client = arango_client(target.hosts, settings)
    try:
        steps = _Steps(client, target.hosts, root_user, root_password)
        steps.database(target.database)
        steps.user(target.user, target.password, update_password)
        steps.rights(target.user, target.database, access)
        steps.collections(target.database)
        steps.check_login(target.database, target.user, target.password)
    finally:
        client.close()
    return InitReport(where, tuple(steps.changed), tuple(steps.unchanged))


class _Steps:
    """The steps of `init_store`, each checking before it changes anything."""

    def __init__(self, client: Any, hosts: str, root_user: str, root_password: str) -> None:
        self.client, self.hosts = client, hosts
        self.root_user, self.root_password = root_user, root_password
        self.system: Any = client.db("_system", username=root_user, password=root_password)
        self.changed: list[str] = []
        self.unchanged: list[str] = []

    def database(self, name: str) -> None:
        from arango.exceptions import ArangoServerError

        with store_errors("store init: cannot list the databases", self.hosts):
            try:
                exists = name in self.system.databases()
            except ArangoServerError as exc:
                raise self._admin_refusal(exc) from exc
        if exists:
            self.unchanged.append(f"database {name} exists")
            return
        with store_errors(f"store init: cannot create database {name}", self.hosts):
            self.system.create_database(name)
        self.changed.append(f"created database {name}")

    def _admin_refusal(self, exc: ArangoServerError) -> Exception:
        """The first request's refusal, named: a wrong admin password, or not an admin."""
        who = f"ARANGO_ROOT_USER={self.root_user!r}"
        if exc.http_code == 401:
            return StoreAuthError(
                f"store init: ArangoDB at {self.hosts} refused {who}: wrong ARANGO_ROOT_PASSWORD "
                "or no such user (HTTP 401)"
            )
        if exc.http_code == 403 or exc.error_code == 11:
            return StoreAuthError(
                f"store init: {who} may not list the databases at {self.hosts}: store init "
                f"needs the server's admin user, e.g. root (HTTP {exc.http_code}, error "
                f"{exc.error_code})"
            )
        return exc

    def user(self, user: str, password: str, update_password: bool) -> None:
        from arango.exceptions import ArangoServerError

        with store_errors(f"store init: cannot read user {user}", self.hosts):
            try:
                self.system.user(user)
                exists = True
            except ArangoServerError as exc:
                if exc.error_code != _ERR_USER_NOT_FOUND:
                    raise
                exists = False
        with store_errors(f"store init: cannot create or update user {user}", self.hosts):
            if not exists:
                self.system.create_user(user, password=password, active=True)
                self.changed.append(f"created user {user} (password from ARANGO_PASSWORD)")
            elif update_password:
                self.system.update_user(user, password=password)
                self.changed.append(f"set the password of user {user} (from ARANGO_PASSWORD)")
            else:
                self.unchanged.append(f"user {user} exists")

    def rights(self, user: str, database: str, access: Access) -> None:
        with store_errors(f"store init: cannot grant user {user} rights", self.hosts):
            granted = self.system.permissions(user).get(database) or {}
            if not isinstance(granted, dict):  # a server answering without `full`
                granted = {"permission": granted}
            wildcard = (granted.get("collections") or {}).get("*")
            for collection, level in ((None, granted.get("permission")), ("*", wildcard)):
                scope = f"database {database}" if collection is None else f"{database}/*"
                if level == access:
                    self.unchanged.append(f"{user} has {access} on {scope}")
                    continue
                self.system.update_permission(user, access, database, collection)
                self.changed.append(f"granted {user} {access} on {scope} (was {level})")

    def collections(self, database: str) -> None:
        db: Any = self.client.db(database, username=self.root_user, password=self.root_password)
        with store_errors(f"store init: cannot create the collections of {database}", self.hosts):
            names = {c["name"] for c in db.collections()}
            for name, fields in COLLECTIONS.items():
                if name in names:
                    self.unchanged.append(f"collection {name} exists")
                else:
                    db.create_collection(name)
                    self.changed.append(f"created collection {name}")
                if not fields:
                    continue
                indexes = db.collection(name).indexes() if name in names else []
                if any(ix.get("fields") == list(fields) for ix in indexes):
                    self.unchanged.append(f"index {name}({', '.join(fields)}) exists")
                    continue
                db.collection(name).add_index(
                    {"type": "persistent", "fields": list(fields), "sparse": False}
                )
                self.changed.append(f"created index {name}({', '.join(fields)})")

    def check_login(self, database: str, user: str, password: str) -> None:
        """Log in as the user and read queue_state: the password and rights work."""
        from arango.exceptions import ArangoServerError

        db: Any = self.client.db(database, username=user, password=password)
        with store_errors(f"store init: user {user} cannot read {QUEUE_STATE}", self.hosts):
            try:
                db.collection(QUEUE_STATE).count()
            except ArangoServerError as exc:
                if exc.http_code != 401:
                    raise
                raise StoreAuthError(
                    f"store init: user {user} exists at {self.hosts} with another password "
                    "than ARANGO_PASSWORD; `streamforge-nb store init --update-password` "
                    "sets it"
                ) from exc
