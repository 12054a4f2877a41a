"""Migration verification when the database cannot be read, and connection URIs."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

import psycopg2
import pytest

from rollback_coordinator.core.migrations import (
    DatabaseTarget,
    MigrationCheckError,
    target_from_uri,
    verify_history,
)

RunSql = Callable[[DatabaseTarget, str], None]
Commit = Callable[[Mapping[str, str | bytes | None]], str]

FLYWAY_DIR = "db/migration"
FLYWAY_TABLE = (
    'CREATE TABLE {table} ("installed_rank" INT NOT NULL PRIMARY KEY, "version" VARCHAR(50), '
    '"description" VARCHAR(200) NOT NULL, "type" VARCHAR(20) NOT NULL, '
    '"script" VARCHAR(1000) NOT NULL, "checksum" INTEGER, "installed_by" VARCHAR(100) NOT NULL, '
    '"installed_on" TIMESTAMP NOT NULL DEFAULT now(), "execution_time" INTEGER NOT NULL, '
    '"success" BOOLEAN NOT NULL);'
)
SECRET = "s3cret-Pa55word"
DATABASE = "the database of connection 'orders_db'"


def flyway_repo(commit: Commit) -> str:
    return commit(
        {
            f"{FLYWAY_DIR}/V1__customers.sql": "CREATE TABLE customers (id INT);\n",
            f"{FLYWAY_DIR}/U1__customers.sql": "DROP TABLE customers;\n",
        }
    )


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_closed_port_names_connection(commit: Commit, git_repo: Path) -> None:
    ref = flyway_repo(commit)
    target = DatabaseTarget(
        kind="postgres",
        name="orders_db",
        host="127.0.0.1",
        port=closed_port(),
        dbname="orders",
        user="app",
        password=SECRET,
    )

    verdict = verify_history(target, "flyway", ["1"], git_repo, ref, FLYWAY_DIR, timeout_s=5)

    assert not verdict.safe
    assert f"cannot connect to {DATABASE}" in verdict.reason
    assert SECRET not in json.dumps(verdict.to_record())


def test_wrong_password_names_connection(
    postgres_target: DatabaseTarget, commit: Commit, git_repo: Path
) -> None:
    ref = flyway_repo(commit)
    target = replace(postgres_target, password=SECRET)

    verdict = verify_history(
        target, "flyway", ["1"], git_repo, ref, FLYWAY_DIR, timeout_s=5, service="orders"
    )

    assert not verdict.safe
    assert "service orders: cannot read the flyway history" in verdict.reason
    assert f"cannot connect to {DATABASE}" in verdict.reason
    assert "password authentication failed" in verdict.reason
    assert SECRET not in json.dumps(verdict.to_record())


def test_missing_table_names_table_and_connection(
    postgres_target: DatabaseTarget, commit: Commit, git_repo: Path
) -> None:
    ref = flyway_repo(commit)

    verdict = verify_history(
        postgres_target, "flyway", ["1"], git_repo, ref, FLYWAY_DIR, timeout_s=5
    )

    assert not verdict.safe
    assert f"table flyway_schema_history not found in {DATABASE}" in verdict.reason


def test_atlas_default_schema_is_queried(
    postgres_target: DatabaseTarget, commit: Commit, git_repo: Path
) -> None:
    ref = commit({"migrations/20240101000000_init.sql": "CREATE TABLE t (id int);\n"})

    verdict = verify_history(
        postgres_target, "atlas", ["20240101000000"], git_repo, ref, "migrations", timeout_s=5
    )

    assert "table atlas_schema_revisions.atlas_schema_revisions not found" in verdict.reason


def test_history_schema_is_honoured(
    postgres_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = flyway_repo(commit)
    run_sql(
        postgres_target,
        "CREATE SCHEMA deploy;"
        + FLYWAY_TABLE.format(table='deploy."flyway_schema_history"')
        + "INSERT INTO deploy.flyway_schema_history VALUES "
        "(1, '1', 'customers', 'SQL', 'V1__customers.sql', NULL, 'ci', now(), 5, true);",
    )
    target = replace(postgres_target, schema="deploy")

    verdict = verify_history(target, "flyway", ["1"], git_repo, ref, FLYWAY_DIR, timeout_s=5)

    assert verdict.safe, verdict.reason
    assert verdict.report is not None
    assert verdict.report["table"] == "deploy.flyway_schema_history"


def test_other_tools_table_layout_is_rejected(
    postgres_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = commit({"db/migrate/20240101000000_create_orders.rb": "def change\nend\n"})
    run_sql(
        postgres_target,
        'CREATE TABLE "schema_migrations" ("version" character varying NOT NULL PRIMARY KEY);',
    )

    verdict = verify_history(
        postgres_target, "golang-migrate", ["1"], git_repo, ref, "db/migrate", timeout_s=5
    )

    assert not verdict.safe
    assert "does not have the columns golang-migrate writes" in verdict.reason
    assert "check that migrations.tool is right" in verdict.reason


def test_row_in_foreign_format_is_not_safe(
    sqlite_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = commit({"migrations/000001_init.up.sql": "", "migrations/000001_init.down.sql": ""})
    run_sql(
        sqlite_target,
        "CREATE TABLE schema_migrations (version text, dirty bool);"
        "INSERT INTO schema_migrations VALUES ('20240101_init', 0);",
    )

    verdict = verify_history(
        sqlite_target, "golang-migrate", ["1"], git_repo, ref, "migrations", timeout_s=5
    )

    assert not verdict.safe
    assert "schema_migrations in the database of connection 'orders_db'" in verdict.reason
    assert "contains a row that is not in golang-migrate's format" in verdict.reason


def test_locked_table_times_out(
    postgres_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = flyway_repo(commit)
    run_sql(postgres_target, FLYWAY_TABLE.format(table='"flyway_schema_history"'))
    holder = psycopg2.connect(
        host=postgres_target.host,
        port=postgres_target.port,
        dbname=postgres_target.dbname,
        user=postgres_target.user,
        password=postgres_target.password,
    )
    try:
        with holder.cursor() as cursor:
            cursor.execute("LOCK TABLE flyway_schema_history IN ACCESS EXCLUSIVE MODE")
        verdict = verify_history(
            postgres_target, "flyway", ["1"], git_repo, ref, FLYWAY_DIR, timeout_s=1
        )
    finally:
        holder.rollback()
        holder.close()

    assert not verdict.safe
    assert f"reading flyway_schema_history from {DATABASE}" in verdict.reason
    assert "timed out after 1 s" in verdict.reason


def test_missing_sqlite_file_names_connection(
    tmp_path: Path, commit: Commit, git_repo: Path
) -> None:
    ref = flyway_repo(commit)
    target = DatabaseTarget(kind="sqlite", name="embedded", path=str(tmp_path / "absent.db"))

    verdict = verify_history(target, "flyway", ["1"], git_repo, ref, FLYWAY_DIR, timeout_s=5)

    assert not verdict.safe
    assert "cannot open the database of connection 'embedded' (SQLite" in verdict.reason
    assert not (tmp_path / "absent.db").exists()


def test_unknown_commit_is_not_safe(
    sqlite_target: DatabaseTarget, commit: Commit, git_repo: Path
) -> None:
    flyway_repo(commit)

    verdict = verify_history(
        sqlite_target, "flyway", ["1"], git_repo, "no-such-ref", FLYWAY_DIR, timeout_s=5
    )

    assert not verdict.safe
    assert "commit 'no-such-ref' is not in the git repository" in verdict.reason


def test_unknown_tool_raises(sqlite_target: DatabaseTarget, git_repo: Path) -> None:
    with pytest.raises(MigrationCheckError, match="Use migrations.state_command for other tools"):
        verify_history(sqlite_target, "other", [], git_repo, "HEAD", "db", timeout_s=5)


def test_target_repr_hides_password() -> None:
    target = DatabaseTarget(kind="postgres", name="orders_db", host="db", password=SECRET)

    assert SECRET not in repr(target)
    assert SECRET not in target.describe()


def test_postgres_uri_with_encoded_password() -> None:
    uri = f"postgres://app:{quote(SECRET + '@:/', safe='')}@db.internal:5433/orders?sslmode=require"

    target = target_from_uri("orders_db", uri)

    assert target.kind == "postgres"
    assert target.host == "db.internal"
    assert target.port == 5433
    assert target.dbname == "orders"
    assert target.user == "app"
    assert target.password == SECRET + "@:/"
    assert target.sslmode == "require"
    assert target.schema is None


def test_postgresql_scheme_without_port() -> None:
    target = target_from_uri("orders_db", "postgresql://app@db/orders")

    assert target.kind == "postgres"
    assert target.port is None
    assert target.password == ""


def test_history_schema_extra_from_uri() -> None:
    flat = target_from_uri("orders_db", "postgres://app:pw@db/orders?history_schema=deploy")
    extra = quote(json.dumps({"history_schema": "deploy", "retries": 3}), safe="")
    nested = target_from_uri("orders_db", f"postgres://app:pw@db/orders?__extra__={extra}")

    assert flat.schema == "deploy"
    assert nested.schema == "deploy"


@pytest.mark.parametrize(
    "uri",
    [
        "sqlite:////srv/shop/orders.db",
        "sqlite://%2Fsrv%2Fshop%2Forders.db",
        "sqlite:///%2Fsrv%2Fshop%2Forders.db",
    ],
)
def test_sqlite_uri_forms(uri: str) -> None:
    target = target_from_uri("embedded", uri)

    assert target.kind == "sqlite"
    assert target.path == "/srv/shop/orders.db"


def test_relative_sqlite_path_is_rejected() -> None:
    with pytest.raises(MigrationCheckError, match="not an absolute path"):
        target_from_uri("embedded", "sqlite:///orders.db")


def test_other_database_type_is_rejected() -> None:
    with pytest.raises(MigrationCheckError) as raised:
        target_from_uri("orders_db", f"mysql://app:{SECRET}@db/orders")

    assert "connection 'orders_db' is of type 'mysql'" in str(raised.value)
    assert SECRET not in str(raised.value)


def test_invalid_port_hides_password() -> None:
    with pytest.raises(MigrationCheckError) as raised:
        target_from_uri("orders_db", f"postgres://app:{SECRET}@db:port/orders")

    assert "connection 'orders_db' has an invalid URI" in str(raised.value)
    assert SECRET not in str(raised.value)


def test_sqlite_target_from_uri_is_read(
    tmp_path: Path, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = commit({"migrations/000001_init.up.sql": "", "migrations/000001_init.down.sql": ""})
    database = tmp_path / "embedded.db"
    database.touch()
    target = target_from_uri("embedded", f"sqlite://{quote(str(database), safe='')}")
    run_sql(
        target,
        "CREATE TABLE schema_migrations (version uint64, dirty bool);"
        "INSERT INTO schema_migrations VALUES (1, 0);",
    )

    verdict = verify_history(
        target, "golang-migrate", ["1"], git_repo, ref, "migrations", timeout_s=5
    )

    assert verdict.safe, verdict.reason
