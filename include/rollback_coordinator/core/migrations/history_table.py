"""Read a migration tool's history table from PostgreSQL (psycopg2) or SQLite (sqlite3).

Every read is bounded by the caller's timeout: PostgreSQL gets it as connect_timeout and
as statement_timeout on the session, SQLite as the busy timeout and as a deadline that
interrupts a running query. Sessions are read-only. Every failure raises HistoryTableError
with a message that names the connection but never its password.
"""

from __future__ import annotations

import math
import sqlite3
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import psycopg2
import psycopg2.errors
from psycopg2 import sql

from rollback_coordinator.core.migrations.base import MigrationAdapter, Row
from rollback_coordinator.core.migrations.target import DatabaseTarget

# libpq rounds a connect_timeout below 2 seconds up to 2.
_MIN_CONNECT_TIMEOUT_S = 2
# SQLite calls the progress handler after this many virtual machine instructions.
_SQLITE_PROGRESS_STEPS = 10_000


class HistoryTableError(Exception):
    """A history table that could not be read; the message names the connection."""


@dataclass(frozen=True)
class HistoryTable:
    """The rows of a history table, with the table's name as it was queried."""

    name: str
    rows: list[Row]


def read_history_table(
    target: DatabaseTarget, adapter: MigrationAdapter, *, timeout_s: float
) -> HistoryTable:
    """Read the adapter's columns of its history table, sorted by ``adapter.order_by``."""
    if target.kind == "postgres":
        return _read_postgres(target, adapter, timeout_s)
    return _read_sqlite(target, adapter, timeout_s)


def _table_parts(target: DatabaseTarget, adapter: MigrationAdapter) -> tuple[str, ...]:
    schema = target.schema
    if schema is None and target.kind == "postgres":
        schema = adapter.default_schema
    return (schema, adapter.table) if schema else (adapter.table,)


def _read_postgres(
    target: DatabaseTarget, adapter: MigrationAdapter, timeout_s: float
) -> HistoryTable:
    parts = _table_parts(target, adapter)
    name = ".".join(parts)
    query = sql.SQL("SELECT {columns} FROM {table} ORDER BY {order}").format(
        columns=sql.SQL(", ").join(sql.Identifier(column) for column in adapter.columns),
        table=sql.Identifier(*parts),
        order=sql.SQL(", ").join(sql.Identifier(column) for column in adapter.order_by),
    )
    try:
        connection = psycopg2.connect(**_connect_arguments(target, timeout_s))
    except psycopg2.Error as error:
        raise HistoryTableError(
            f"cannot connect to {target.describe()}: {_first_line(error, target)}"
        ) from None
    try:
        connection.set_session(readonly=True)
        with connection.cursor() as cursor:
            cursor.execute(query)
            columns = [column.name for column in cursor.description]
            rows = [dict(zip(columns, values, strict=True)) for values in cursor.fetchall()]
    except psycopg2.errors.UndefinedTable:
        raise HistoryTableError(_missing_table(target, adapter, name)) from None
    except psycopg2.errors.UndefinedColumn as error:
        raise HistoryTableError(_missing_column(target, adapter, name, error)) from None
    except psycopg2.errors.QueryCanceled:
        raise HistoryTableError(
            f"reading {name} from {target.describe()} timed out after {timeout_s:g} s"
        ) from None
    except psycopg2.Error as error:
        raise HistoryTableError(
            f"reading {name} from {target.describe()} failed: {_first_line(error, target)}"
        ) from None
    finally:
        connection.close()
    return HistoryTable(name=name, rows=rows)


def _connect_arguments(target: DatabaseTarget, timeout_s: float) -> dict[str, Any]:
    statement_timeout_ms = max(1, math.ceil(timeout_s * 1000))
    arguments: dict[str, Any] = {
        "host": target.host or None,
        "port": target.port,
        "dbname": target.dbname or None,
        "user": target.user or None,
        "password": target.password or None,
        "connect_timeout": max(_MIN_CONNECT_TIMEOUT_S, math.ceil(timeout_s)),
        "options": f"-c statement_timeout={statement_timeout_ms}",
        "application_name": "rollback-coordinator migration check",
    }
    if target.sslmode:
        arguments["sslmode"] = target.sslmode
    return {key: value for key, value in arguments.items() if value is not None}


def _read_sqlite(
    target: DatabaseTarget, adapter: MigrationAdapter, timeout_s: float
) -> HistoryTable:
    parts = _table_parts(target, adapter)
    name = ".".join(parts)
    table = ".".join(_sqlite_identifier(part) for part in parts)
    columns = ", ".join(_sqlite_identifier(column) for column in adapter.columns)
    order = ", ".join(_sqlite_identifier(column) for column in adapter.order_by)
    query = f"SELECT {columns} FROM {table} ORDER BY {order}"
    try:
        connection = sqlite3.connect(
            f"file:{quote(target.path)}?mode=ro", uri=True, timeout=timeout_s
        )
    except sqlite3.Error as error:
        raise HistoryTableError(f"cannot open {target.describe()}: {error}") from None
    deadline = time.monotonic() + timeout_s
    connection.set_progress_handler(
        lambda: int(time.monotonic() > deadline), _SQLITE_PROGRESS_STEPS
    )
    try:
        cursor = connection.execute(query)
        names = [column[0].lower() for column in cursor.description]
        rows = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
    except sqlite3.OperationalError as error:
        raise HistoryTableError(_sqlite_problem(target, adapter, name, error, timeout_s)) from None
    except sqlite3.Error as error:
        message = f"reading {name} from {target.describe()} failed: {error}"
        raise HistoryTableError(message) from None
    finally:
        connection.close()
    return HistoryTable(name=name, rows=rows)


def _sqlite_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sqlite_problem(
    target: DatabaseTarget,
    adapter: MigrationAdapter,
    name: str,
    error: sqlite3.OperationalError,
    timeout_s: float,
) -> str:
    message = str(error)
    if message.startswith("no such table"):
        return _missing_table(target, adapter, name)
    if message.startswith("no such column"):
        return _missing_column(target, adapter, name, error)
    if message == "interrupted" or "locked" in message:
        return f"reading {name} from {target.describe()} timed out after {timeout_s:g} s"
    if "unable to open" in message:
        return f"cannot open {target.describe()}: {message}; check that the file exists"
    return f"reading {name} from {target.describe()} failed: {message}"


def _missing_table(target: DatabaseTarget, adapter: MigrationAdapter, name: str) -> str:
    return (
        f"table {name} not found in {target.describe()}; check that the connection points at "
        f"the service's database and that {adapter.tool} has migrated it"
    )


def _missing_column(
    target: DatabaseTarget, adapter: MigrationAdapter, name: str, error: Exception
) -> str:
    return (
        f"table {name} in {target.describe()} does not have the columns {adapter.tool} "
        f"writes ({_first_line(error, target)}); check that migrations.tool is right"
    )


def _first_line(error: Exception, target: DatabaseTarget) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    # libpq does not echo passwords; the replacement guards against a driver that would.
    return text.replace(target.password, "***") if target.password else text
