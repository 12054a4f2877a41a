"""The database that holds a service's migration history, and how to build it from a URI."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from rollback_coordinator.core.migrations.base import MigrationCheckError

DatabaseKind = Literal["postgres", "sqlite"]

_POSTGRES_SCHEMES = ("postgres", "postgresql")
# Airflow's Connection.get_uri() puts a connection's extra JSON into this query parameter
# when the extra cannot be flattened into plain key=value pairs.
_AIRFLOW_EXTRA_KEY = "__extra__"
# Connection extra that names the PostgreSQL schema of the history table.
HISTORY_SCHEMA_EXTRA = "history_schema"


@dataclass(frozen=True)
class DatabaseTarget:
    """A database that holds a migration history table.

    ``name`` is how messages refer to the database, usually the Airflow connection id. A
    PostgreSQL target uses ``host``, ``port``, ``dbname``, ``user``, ``password`` and
    ``sslmode``; a SQLite target uses ``path``. ``schema`` is the PostgreSQL schema (or the
    attached SQLite database) of the history table; None means the tool's default. The
    password never appears in ``repr()`` or in ``describe()``.
    """

    kind: DatabaseKind
    name: str
    host: str = ""
    port: int | None = None
    dbname: str = ""
    user: str = ""
    password: str = field(default="", repr=False)
    path: str = ""
    schema: str | None = None
    sslmode: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("postgres", "sqlite"):
            raise MigrationCheckError(
                f"connection '{self.name}': database kind {self.kind!r} is not supported; "
                "use 'postgres' or 'sqlite'"
            )
        if self.kind == "sqlite" and not self.path:
            raise MigrationCheckError(
                f"connection '{self.name}': a SQLite target needs the database file's path"
            )

    def describe(self) -> str:
        """Return the database as messages name it, for example
        "the database of connection 'orders_db' (PostgreSQL app@db:5432/orders)"."""
        if self.kind == "sqlite":
            return f"the database of connection '{self.name}' (SQLite {self.path})"
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        host = self.host or "local socket"
        location = f"{user}{host}{port}/{self.dbname}"
        return f"the database of connection '{self.name}' (PostgreSQL {location})"


def target_from_uri(conn_id: str, uri: str) -> DatabaseTarget:
    """Build a DatabaseTarget from an Airflow connection URI, such as ``Connection.get_uri()``.

    Accepted forms: ``postgres://user:password@host:port/dbname`` (also ``postgresql://``),
    ``sqlite:////absolute/path.db``, and Airflow's spelling of a SQLite connection whose
    host is the path, ``sqlite://%2Fabsolute%2Fpath.db``. The extras ``sslmode`` and
    ``history_schema`` are read from the query string; other extras are ignored. Raise
    MigrationCheckError, without quoting the URI because it may hold a password, when the
    URI is of another kind or malformed.
    """
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    try:
        extras = _extras(parts.query)
        if scheme in _POSTGRES_SCHEMES:
            return DatabaseTarget(
                kind="postgres",
                name=conn_id,
                host=unquote(parts.hostname or ""),
                port=parts.port,
                dbname=unquote(parts.path.lstrip("/")),
                user=unquote(parts.username or ""),
                password=unquote(parts.password or ""),
                schema=extras.get(HISTORY_SCHEMA_EXTRA) or None,
                sslmode=extras.get("sslmode") or None,
            )
    except ValueError as error:
        raise MigrationCheckError(
            f"connection '{conn_id}' has an invalid URI ({error}); check its host, port and "
            "extras"
        ) from None
    if scheme == "sqlite":
        return _sqlite_target(conn_id, parts.netloc, parts.path)
    raise MigrationCheckError(
        f"connection '{conn_id}' is of type '{scheme or 'unknown'}', but the migration "
        "verifier reads only PostgreSQL (postgres://) and SQLite (sqlite://) databases"
    )


def _extras(query: str) -> dict[str, str]:
    pairs = dict(parse_qsl(query, keep_blank_values=True))
    if _AIRFLOW_EXTRA_KEY not in pairs:
        return pairs
    loaded = json.loads(pairs[_AIRFLOW_EXTRA_KEY])
    if not isinstance(loaded, dict):
        raise ValueError("the extra must be a JSON object")
    return {key: str(value) for key, value in loaded.items() if value is not None}


def _sqlite_target(conn_id: str, netloc: str, path: str) -> DatabaseTarget:
    # sqlite:////abs/path has an empty netloc and the path "//abs/path"; Airflow writes the
    # host-held path percent-encoded into the netloc instead.
    location = unquote(netloc) + unquote(path) if netloc else unquote(path[1:])
    if not location.startswith("/"):
        raise MigrationCheckError(
            f"connection '{conn_id}' names the SQLite file {location or '(none)'!r}, which is "
            "not an absolute path; use sqlite:////absolute/path/to/file.db"
        )
    return DatabaseTarget(kind="sqlite", name=conn_id, path=location)
