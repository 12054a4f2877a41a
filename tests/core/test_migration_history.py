"""Migration verification against each tool's real history table, in PostgreSQL and SQLite.

Every test builds a git repository with the tool's migration files, creates the tool's
history table with the tool's own column layout, writes the rows the tool would write,
and checks the verdict. The checksums stored in the rows are computed here from the tool's
documented algorithm, independently of the adapters.
"""

from __future__ import annotations

import base64
import hashlib
import re
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from rollback_coordinator.core.migration_state import MigrationVerdict
from rollback_coordinator.core.migrations import DatabaseTarget, verify_history

RunSql = Callable[[DatabaseTarget, str], None]
Commit = Callable[[Mapping[str, str | bytes | None]], str]

SERVICE = "orders"
TIMEOUT_S = 10.0
DATABASE = "the database of connection 'orders_db'"


def verify(
    target: DatabaseTarget,
    tool: str,
    expected: list[str],
    repo: Path,
    ref: str,
    directory: str,
    *,
    script_handles_down: bool = False,
) -> MigrationVerdict:
    return verify_history(
        target,
        tool,
        expected,
        repo,
        ref,
        directory,
        timeout_s=TIMEOUT_S,
        script_handles_down=script_handles_down,
        service=SERVICE,
    )


def literal(value: object) -> str:
    """Render a Python value as an SQL literal for the test's INSERT statements."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def insert(table: str, rows: list[Mapping[str, object]]) -> str:
    statements = []
    for row in rows:
        columns = ", ".join(f'"{column}"' for column in row)
        values = ", ".join(literal(value) for value in row.values())
        statements.append(f"INSERT INTO {table} ({columns}) VALUES ({values});")
    return "\n".join(statements)


# Prisma: folders <name>/migration.sql, checksum = SHA-256 hex of migration.sql.

PRISMA_DIR = "prisma/migrations"
PRISMA_INIT = "20240101000000_init"
PRISMA_ORDERS = "20240201000000_orders"
PRISMA_INIT_SQL = 'CREATE TABLE "customers" ("id" SERIAL PRIMARY KEY);\n'
PRISMA_ORDERS_SQL = 'CREATE TABLE "orders" ("id" SERIAL PRIMARY KEY, "total" INTEGER);\n'

# The DDL of Prisma's schema engine for PostgreSQL and for SQLite.
PRISMA_TABLE = {
    "postgres": """
        CREATE TABLE "_prisma_migrations" (
            "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
            "checksum"              VARCHAR(64) NOT NULL,
            "finished_at"           TIMESTAMPTZ,
            "migration_name"        VARCHAR(255) NOT NULL,
            "logs"                  TEXT,
            "rolled_back_at"        TIMESTAMPTZ,
            "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
            "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
        );""",
    "sqlite": """
        CREATE TABLE "_prisma_migrations" (
            "id"                    TEXT PRIMARY KEY NOT NULL,
            "checksum"              TEXT NOT NULL,
            "finished_at"           DATETIME,
            "migration_name"        TEXT NOT NULL,
            "logs"                  TEXT,
            "rolled_back_at"        DATETIME,
            "started_at"            DATETIME NOT NULL DEFAULT current_timestamp,
            "applied_steps_count"   INTEGER UNSIGNED NOT NULL DEFAULT 0
        );""",
}


def prisma_repo(commit: Commit, *, batch_down: bool = True) -> str:
    commit(
        {
            f"{PRISMA_DIR}/migration_lock.toml": 'provider = "postgresql"\n',
            f"{PRISMA_DIR}/{PRISMA_INIT}/migration.sql": PRISMA_INIT_SQL,
            f"{PRISMA_DIR}/{PRISMA_INIT}/down.sql": 'DROP TABLE "customers";\n',
        }
    )
    batch: dict[str, str | bytes | None] = {
        f"{PRISMA_DIR}/{PRISMA_ORDERS}/migration.sql": PRISMA_ORDERS_SQL,
    }
    if batch_down:
        batch[f"{PRISMA_DIR}/{PRISMA_ORDERS}/down.sql"] = 'DROP TABLE "orders";\n'
    return commit(batch)


def prisma_row(
    number: int,
    name: str,
    script: str,
    *,
    finished: bool = True,
    rolled_back: bool = False,
    logs: str | None = None,
) -> dict[str, object]:
    started = f"2024-03-01 10:00:{number:02d}+00"
    return {
        "id": f"00000000-0000-4000-8000-{number:012d}",
        "checksum": hashlib.sha256(script.encode()).hexdigest(),
        "finished_at": started if finished else None,
        "migration_name": name,
        "logs": logs,
        "rolled_back_at": started if rolled_back else None,
        "started_at": started,
        "applied_steps_count": 1 if finished else 0,
    }


def prisma_history(*rows: dict[str, object]) -> str:
    return insert('"_prisma_migrations"', list(rows))


@pytest.fixture(params=["postgres", "sqlite"])
def any_target(request: pytest.FixtureRequest) -> DatabaseTarget:
    """The PostgreSQL target, then the SQLite target."""
    return request.getfixturevalue(f"{request.param}_target")


def test_prisma_all_applied_is_safe(
    any_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = prisma_repo(commit)
    run_sql(any_target, PRISMA_TABLE[any_target.kind])
    run_sql(
        any_target,
        prisma_history(
            prisma_row(1, PRISMA_INIT, PRISMA_INIT_SQL),
            prisma_row(2, PRISMA_ORDERS, PRISMA_ORDERS_SQL),
        ),
    )

    verdict = verify(any_target, "prisma", [PRISMA_ORDERS], git_repo, ref, PRISMA_DIR)

    assert verdict.safe, verdict.reason
    assert verdict.source == "history_table"
    assert verdict.applied == (PRISMA_INIT, PRISMA_ORDERS)
    assert verdict.head == PRISMA_ORDERS
    assert "each has a way back" in verdict.reason


def test_prisma_unfinished_attempt_is_failed(
    any_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = prisma_repo(commit)
    run_sql(any_target, PRISMA_TABLE[any_target.kind])
    run_sql(
        any_target,
        prisma_history(
            prisma_row(1, PRISMA_INIT, PRISMA_INIT_SQL),
            prisma_row(
                2,
                PRISMA_ORDERS,
                PRISMA_ORDERS_SQL,
                finished=False,
                logs='relation "orders" already exists',
            ),
        ),
    )

    verdict = verify(any_target, "prisma", [PRISMA_ORDERS], git_repo, ref, PRISMA_DIR)

    assert not verdict.safe
    assert verdict.failed == (PRISMA_ORDERS,)
    assert f"service orders: prisma migration {PRISMA_ORDERS} failed" in verdict.reason
    assert "finished_at and rolled_back_at are empty" in verdict.reason
    assert f"failed or is half-applied in {DATABASE}" in verdict.reason
    assert "prisma migrate resolve" in verdict.reason


def test_prisma_rolled_back_attempt_is_ignored(
    postgres_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = prisma_repo(commit)
    run_sql(postgres_target, PRISMA_TABLE["postgres"])
    run_sql(
        postgres_target,
        prisma_history(
            prisma_row(1, PRISMA_INIT, PRISMA_INIT_SQL),
            prisma_row(2, PRISMA_ORDERS, PRISMA_ORDERS_SQL, finished=False, rolled_back=True),
            prisma_row(3, PRISMA_ORDERS, PRISMA_ORDERS_SQL),
        ),
    )

    verdict = verify(postgres_target, "prisma", [PRISMA_ORDERS], git_repo, ref, PRISMA_DIR)

    assert verdict.safe, verdict.reason


def test_prisma_later_migration_blocks_rewind(
    any_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = prisma_repo(commit)
    run_sql(any_target, PRISMA_TABLE[any_target.kind])
    later_sql = 'ALTER TABLE "orders" ADD COLUMN "note" TEXT;\n'
    run_sql(
        any_target,
        prisma_history(
            prisma_row(1, PRISMA_INIT, PRISMA_INIT_SQL),
            prisma_row(2, PRISMA_ORDERS, PRISMA_ORDERS_SQL),
            prisma_row(3, "20240301000000_note", later_sql),
        ),
    )

    verdict = verify(any_target, "prisma", [PRISMA_ORDERS], git_repo, ref, PRISMA_DIR)

    assert not verdict.safe
    assert verdict.report is not None
    assert verdict.report["later"] == ["20240301000000_note"]
    assert f"prisma migration {PRISMA_ORDERS} of the batch was followed by" in verdict.reason
    assert "20240301000000_note (not in prisma/migrations at commit" in verdict.reason


def test_prisma_changed_script_is_diverged(
    postgres_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = prisma_repo(commit)
    run_sql(postgres_target, PRISMA_TABLE["postgres"])
    applied_script = 'CREATE TABLE "orders" ("id" SERIAL PRIMARY KEY);\n'
    run_sql(
        postgres_target,
        prisma_history(
            prisma_row(1, PRISMA_INIT, PRISMA_INIT_SQL),
            prisma_row(2, PRISMA_ORDERS, applied_script),
        ),
    )

    verdict = verify(postgres_target, "prisma", [PRISMA_ORDERS], git_repo, ref, PRISMA_DIR)

    assert not verdict.safe
    assert f"prisma migration {PRISMA_ORDERS} in {DATABASE}" in verdict.reason
    assert hashlib.sha256(applied_script.encode()).hexdigest() in verdict.reason
    assert "diverged from the repository" in verdict.reason


def test_prisma_crlf_checkout_still_matches(
    postgres_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    commit({f"{PRISMA_DIR}/{PRISMA_ORDERS}/migration.sql": PRISMA_ORDERS_SQL.replace("\n", "\r\n")})
    ref = commit({f"{PRISMA_DIR}/{PRISMA_ORDERS}/down.sql": 'DROP TABLE "orders";\n'})
    run_sql(postgres_target, PRISMA_TABLE["postgres"])
    run_sql(postgres_target, prisma_history(prisma_row(1, PRISMA_ORDERS, PRISMA_ORDERS_SQL)))

    verdict = verify(postgres_target, "prisma", [PRISMA_ORDERS], git_repo, ref, PRISMA_DIR)

    assert verdict.safe, verdict.reason


def test_prisma_missing_down_sql(
    any_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = prisma_repo(commit, batch_down=False)
    run_sql(any_target, PRISMA_TABLE[any_target.kind])
    run_sql(
        any_target,
        prisma_history(
            prisma_row(1, PRISMA_INIT, PRISMA_INIT_SQL),
            prisma_row(2, PRISMA_ORDERS, PRISMA_ORDERS_SQL),
        ),
    )

    verdict = verify(any_target, "prisma", [PRISMA_ORDERS], git_repo, ref, PRISMA_DIR)

    assert not verdict.safe
    assert f"service orders: prisma migration {PRISMA_ORDERS} has no way back" in verdict.reason
    assert "there is no down.sql next to" in verdict.reason


def test_prisma_script_handles_down(
    postgres_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = prisma_repo(commit, batch_down=False)
    run_sql(postgres_target, PRISMA_TABLE["postgres"])
    run_sql(
        postgres_target,
        prisma_history(
            prisma_row(1, PRISMA_INIT, PRISMA_INIT_SQL),
            prisma_row(2, PRISMA_ORDERS, PRISMA_ORDERS_SQL),
        ),
    )

    verdict = verify(
        postgres_target,
        "prisma",
        [PRISMA_ORDERS],
        git_repo,
        ref,
        PRISMA_DIR,
        script_handles_down=True,
    )

    assert verdict.safe, verdict.reason
    assert "the rollback script undoes them" in verdict.reason


def test_prisma_batch_migration_not_applied(
    postgres_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = prisma_repo(commit)
    run_sql(postgres_target, PRISMA_TABLE["postgres"])
    run_sql(postgres_target, prisma_history(prisma_row(1, PRISMA_INIT, PRISMA_INIT_SQL)))

    verdict = verify(postgres_target, "prisma", [PRISMA_ORDERS], git_repo, ref, PRISMA_DIR)

    assert not verdict.safe
    assert f"prisma migration {PRISMA_ORDERS} of the batch is not applied" in verdict.reason
    assert f"the newest recorded migration is {PRISMA_INIT}" in verdict.reason


# Flyway: V<version>__<description>.sql, checksum = CRC32 over the script's lines.

FLYWAY_DIR = "db/migration"
FLYWAY_V1 = "CREATE TABLE customers (id BIGINT PRIMARY KEY);\n"
FLYWAY_V2 = "CREATE TABLE orders (\r\n  id BIGINT PRIMARY KEY,\r\n  total INT\r\n);\r\n"

# Flyway's DDL for PostgreSQL, and for SQLite.
FLYWAY_TABLE = {
    "postgres": """
        CREATE TABLE "flyway_schema_history" (
            "installed_rank" INT NOT NULL,
            "version" VARCHAR(50),
            "description" VARCHAR(200) NOT NULL,
            "type" VARCHAR(20) NOT NULL,
            "script" VARCHAR(1000) NOT NULL,
            "checksum" INTEGER,
            "installed_by" VARCHAR(100) NOT NULL,
            "installed_on" TIMESTAMP NOT NULL DEFAULT now(),
            "execution_time" INTEGER NOT NULL,
            "success" BOOLEAN NOT NULL
        );
        ALTER TABLE "flyway_schema_history"
            ADD CONSTRAINT "flyway_schema_history_pk" PRIMARY KEY ("installed_rank");
        CREATE INDEX "flyway_schema_history_s_idx" ON "flyway_schema_history" ("success");""",
    "sqlite": """
        CREATE TABLE "flyway_schema_history" (
            "installed_rank" INT NOT NULL PRIMARY KEY,
            "version" VARCHAR(50),
            "description" VARCHAR(200) NOT NULL,
            "type" VARCHAR(20) NOT NULL,
            "script" VARCHAR(1000) NOT NULL,
            "checksum" INT,
            "installed_by" VARCHAR(100) NOT NULL,
            "installed_on" TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f','now')),
            "execution_time" INT NOT NULL,
            "success" BOOLEAN NOT NULL
        );
        CREATE INDEX "flyway_schema_history_s_idx" ON "flyway_schema_history" ("success");""",
}


def flyway_crc(script: str) -> int:
    """Flyway's checksum: CRC32 of the lines joined without line breaks, signed."""
    lines = re.split(r"\r\n|\r|\n", script)
    if lines[-1] == "":
        lines.pop()
    value = zlib.crc32("".join(lines).encode())
    return value - 2**32 if value >= 2**31 else value


def flyway_repo(commit: Commit, *, batch_undo: bool = True) -> str:
    commit({f"{FLYWAY_DIR}/V1__customers.sql": FLYWAY_V1})
    batch: dict[str, str | bytes | None] = {f"{FLYWAY_DIR}/V2__orders.sql": FLYWAY_V2}
    if batch_undo:
        batch[f"{FLYWAY_DIR}/undo/U2__orders.sql"] = "DROP TABLE orders;\n"
    return commit(batch)


def flyway_row(
    rank: int,
    version: str | None,
    script_name: str,
    script: str | None,
    *,
    kind: str = "SQL",
    success: bool = True,
) -> dict[str, object]:
    return {
        "installed_rank": rank,
        "version": version,
        "description": script_name.split("__", 1)[-1].removesuffix(".sql"),
        "type": kind,
        "script": script_name,
        "checksum": None if script is None else flyway_crc(script),
        "installed_by": "deploy",
        "installed_on": f"2024-03-01 10:00:{rank:02d}",
        "execution_time": 12,
        "success": success,
    }


def flyway_history(*rows: dict[str, object]) -> str:
    return insert('"flyway_schema_history"', list(rows))


def test_flyway_all_applied_is_safe(
    any_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = flyway_repo(commit)
    run_sql(any_target, FLYWAY_TABLE[any_target.kind])
    run_sql(
        any_target,
        flyway_history(
            flyway_row(1, "1", "V1__customers.sql", FLYWAY_V1),
            flyway_row(2, "2", "V2__orders.sql", FLYWAY_V2),
        ),
    )

    verdict = verify(any_target, "flyway", ["2"], git_repo, ref, FLYWAY_DIR)

    assert verdict.safe, verdict.reason
    assert verdict.applied == ("1", "2")
    assert "the stored checksums match commit" in verdict.reason


def test_flyway_failed_migration_is_reported(
    any_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = flyway_repo(commit)
    run_sql(any_target, FLYWAY_TABLE[any_target.kind])
    run_sql(
        any_target,
        flyway_history(
            flyway_row(1, "1", "V1__customers.sql", FLYWAY_V1),
            flyway_row(2, "2", "V2__orders.sql", FLYWAY_V2, success=False),
        ),
    )

    verdict = verify(any_target, "flyway", ["2"], git_repo, ref, FLYWAY_DIR)

    assert not verdict.safe
    assert verdict.failed == ("2",)
    assert "service orders: flyway migration 2 failed or is half-applied" in verdict.reason
    assert "success is false for V2__orders.sql" in verdict.reason
    assert "flyway repair" in verdict.reason


def test_flyway_later_migration_blocks_rewind(
    any_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = flyway_repo(commit)
    run_sql(any_target, FLYWAY_TABLE[any_target.kind])
    run_sql(
        any_target,
        flyway_history(
            flyway_row(1, "1", "V1__customers.sql", FLYWAY_V1),
            flyway_row(2, "2", "V2__orders.sql", FLYWAY_V2),
            flyway_row(3, "3", "V3__invoices.sql", "CREATE TABLE invoices (id INT);\n"),
        ),
    )

    verdict = verify(any_target, "flyway", ["2"], git_repo, ref, FLYWAY_DIR)

    assert not verdict.safe
    assert "flyway migration 2 of the batch was followed by 3" in verdict.reason
    assert "rewinding would destroy that later work" in verdict.reason


def test_flyway_undone_later_migration_is_safe(
    postgres_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = flyway_repo(commit)
    run_sql(postgres_target, FLYWAY_TABLE["postgres"])
    later = "CREATE TABLE invoices (id INT);\n"
    run_sql(
        postgres_target,
        flyway_history(
            flyway_row(1, "1", "V1__customers.sql", FLYWAY_V1),
            flyway_row(2, "2", "V2__orders.sql", FLYWAY_V2),
            flyway_row(3, "3", "V3__invoices.sql", later),
            flyway_row(4, "3", "U3__invoices.sql", "DROP TABLE invoices;\n", kind="UNDO_SQL"),
        ),
    )

    verdict = verify(postgres_target, "flyway", ["2"], git_repo, ref, FLYWAY_DIR)

    assert verdict.safe, verdict.reason


def test_flyway_changed_script_is_diverged(
    any_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = flyway_repo(commit)
    run_sql(any_target, FLYWAY_TABLE[any_target.kind])
    edited = "CREATE TABLE customers (id BIGINT PRIMARY KEY, name TEXT);\n"
    run_sql(
        any_target,
        flyway_history(
            flyway_row(1, "1", "V1__customers.sql", edited),
            flyway_row(2, "2", "V2__orders.sql", FLYWAY_V2),
        ),
    )

    verdict = verify(any_target, "flyway", ["2"], git_repo, ref, FLYWAY_DIR)

    assert not verdict.safe
    assert f"flyway migration 1 in {DATABASE}" in verdict.reason
    assert f"has checksum {flyway_crc(edited)}" in verdict.reason
    assert f"db/migration/V1__customers.sql at commit {ref[:12]}" in verdict.reason


def test_flyway_missing_undo_script(
    postgres_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = flyway_repo(commit, batch_undo=False)
    run_sql(postgres_target, FLYWAY_TABLE["postgres"])
    run_sql(
        postgres_target,
        flyway_history(
            flyway_row(1, "1", "V1__customers.sql", FLYWAY_V1),
            flyway_row(2, "2", "V2__orders.sql", FLYWAY_V2),
        ),
    )

    verdict = verify(postgres_target, "flyway", ["2"], git_repo, ref, FLYWAY_DIR)

    assert not verdict.safe
    assert "service orders: flyway migration 2 has no way back" in verdict.reason
    assert "U2__*.sql" in verdict.reason


def test_flyway_skips_schema_and_baseline(
    postgres_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = flyway_repo(commit)
    run_sql(postgres_target, FLYWAY_TABLE["postgres"])
    run_sql(
        postgres_target,
        flyway_history(
            flyway_row(0, None, '"public"', None, kind="SCHEMA"),
            flyway_row(1, "1", "<< Flyway Baseline >>", None, kind="BASELINE"),
            flyway_row(2, "2", "V2__orders.sql", FLYWAY_V2),
        ),
    )

    verdict = verify(postgres_target, "flyway", ["2"], git_repo, ref, FLYWAY_DIR)

    assert verdict.safe, verdict.reason


# golang-migrate: <version>_<title>.up.sql / .down.sql, one row with the current version.

GOLANG_DIR = "migrations"
GOLANG_TABLE = {
    # golang-migrate's postgres driver.
    "postgres": (
        'CREATE TABLE IF NOT EXISTS "schema_migrations" '
        "(version bigint not null primary key, dirty boolean not null);"
    ),
    # golang-migrate's sqlite3 driver.
    "sqlite": (
        "CREATE TABLE IF NOT EXISTS schema_migrations (version uint64, dirty bool);\n"
        "CREATE UNIQUE INDEX IF NOT EXISTS version_unique ON schema_migrations (version);"
    ),
}


def golang_repo(commit: Commit, *, batch_down: bool = True) -> str:
    commit(
        {
            f"{GOLANG_DIR}/000001_customers.up.sql": "CREATE TABLE customers (id INT);\n",
            f"{GOLANG_DIR}/000001_customers.down.sql": "DROP TABLE customers;\n",
        }
    )
    batch: dict[str, str | bytes | None] = {
        f"{GOLANG_DIR}/000002_orders.up.sql": "CREATE TABLE orders (id INT);\n",
    }
    if batch_down:
        batch[f"{GOLANG_DIR}/000002_orders.down.sql"] = "DROP TABLE orders;\n"
    return commit(batch)


def golang_version(version: int, dirty: bool = False) -> str:
    return insert("schema_migrations", [{"version": version, "dirty": dirty}])


def test_golang_migrate_current_version_is_safe(
    any_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = golang_repo(commit)
    run_sql(any_target, GOLANG_TABLE[any_target.kind] + golang_version(2))

    verdict = verify(any_target, "golang-migrate", ["2"], git_repo, ref, GOLANG_DIR)

    assert verdict.safe, verdict.reason
    assert verdict.applied == ("1", "2")
    assert "golang-migrate stores no checksums" in verdict.reason


def test_golang_migrate_dirty_version_is_failed(
    any_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = golang_repo(commit)
    run_sql(any_target, GOLANG_TABLE[any_target.kind] + golang_version(2, dirty=True))

    verdict = verify(any_target, "golang-migrate", ["2"], git_repo, ref, GOLANG_DIR)

    assert not verdict.safe
    assert verdict.failed == ("2",)
    assert "golang-migrate migration 2 failed or is half-applied" in verdict.reason
    assert "dirty is true" in verdict.reason
    assert "migrate force" in verdict.reason


def test_golang_migrate_later_version_blocks_rewind(
    postgres_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = golang_repo(commit)
    run_sql(postgres_target, GOLANG_TABLE["postgres"] + golang_version(3))

    verdict = verify(postgres_target, "golang-migrate", ["2"], git_repo, ref, GOLANG_DIR)

    assert not verdict.safe
    assert "golang-migrate migration 2 of the batch was followed by 3" in verdict.reason


def test_golang_migrate_older_version_is_unapplied(
    postgres_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = golang_repo(commit)
    run_sql(postgres_target, GOLANG_TABLE["postgres"] + golang_version(1))

    verdict = verify(postgres_target, "golang-migrate", ["2"], git_repo, ref, GOLANG_DIR)

    assert not verdict.safe
    assert "golang-migrate migration 2 of the batch is not applied" in verdict.reason


def test_golang_migrate_missing_down_file(
    postgres_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = golang_repo(commit, batch_down=False)
    run_sql(postgres_target, GOLANG_TABLE["postgres"] + golang_version(2))

    verdict = verify(postgres_target, "golang-migrate", ["2"], git_repo, ref, GOLANG_DIR)

    assert not verdict.safe
    assert "golang-migrate migration 2 has no way back" in verdict.reason
    assert "there is no down file next to migrations/000002_orders.up.sql" in verdict.reason


# Rails: db/migrate/<version>_<name>.rb and schema_migrations(version).

RAILS_DIR = "db/migrate"
RAILS_TABLE = (
    'CREATE TABLE "schema_migrations" ("version" character varying NOT NULL PRIMARY KEY);'
)
RAILS_CUSTOMERS = """\
class CreateCustomers < ActiveRecord::Migration[7.1]
  def change
    create_table :customers
  end
end
"""
RAILS_ORDERS = """\
class CreateOrders < ActiveRecord::Migration[7.1]
  def change
    create_table :orders do |t|
      t.integer :total
    end
  end
end
"""
RAILS_BACKFILL_ONE_WAY = """\
class BackfillOrders < ActiveRecord::Migration[7.1]
  def up
    execute "UPDATE orders SET total = 0 WHERE total IS NULL"
  end

  def down
    raise ActiveRecord::IrreversibleMigration
  end
end
"""


def rails_repo(commit: Commit, batch: dict[str, str | bytes | None] | None = None) -> str:
    commit({f"{RAILS_DIR}/20240101000000_create_customers.rb": RAILS_CUSTOMERS})
    return commit(batch or {f"{RAILS_DIR}/20240201000000_create_orders.rb": RAILS_ORDERS})


def rails_versions(*versions: str) -> str:
    return insert('"schema_migrations"', [{"version": version} for version in versions])


def test_rails_all_applied_is_safe(
    postgres_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = rails_repo(commit)
    run_sql(postgres_target, RAILS_TABLE + rails_versions("20240101000000", "20240201000000"))

    verdict = verify(postgres_target, "rails", ["20240201000000"], git_repo, ref, RAILS_DIR)

    assert verdict.safe, verdict.reason


def test_rails_unapplied_batch_migration(
    postgres_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = rails_repo(commit)
    run_sql(postgres_target, RAILS_TABLE + rails_versions("20240101000000"))

    verdict = verify(postgres_target, "rails", ["20240201000000"], git_repo, ref, RAILS_DIR)

    assert not verdict.safe
    assert "rails migration 20240201000000 of the batch is not applied" in verdict.reason


def test_rails_later_version_blocks_rewind(
    postgres_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = rails_repo(commit)
    run_sql(
        postgres_target,
        RAILS_TABLE + rails_versions("20240101000000", "20240201000000", "20240301000000"),
    )

    verdict = verify(postgres_target, "rails", ["20240201000000"], git_repo, ref, RAILS_DIR)

    assert not verdict.safe
    assert "rails migration 20240201000000 of the batch was followed by 20240301000000" in (
        verdict.reason
    )


def test_rails_irreversible_migration(
    postgres_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = rails_repo(
        commit, {f"{RAILS_DIR}/20240201000000_backfill_orders.rb": RAILS_BACKFILL_ONE_WAY}
    )
    run_sql(postgres_target, RAILS_TABLE + rails_versions("20240101000000", "20240201000000"))

    verdict = verify(postgres_target, "rails", ["20240201000000"], git_repo, ref, RAILS_DIR)

    assert not verdict.safe
    assert "rails migration 20240201000000 has no way back" in verdict.reason
    assert "raises ActiveRecord::IrreversibleMigration" in verdict.reason


# Django: <app>/migrations/<name>.py and django_migrations(id, app, name, applied).

DJANGO_DIR = "shop"
DJANGO_TABLE = {
    # django_migrations as Django's MigrationRecorder creates it on PostgreSQL and on SQLite.
    "postgres": (
        'CREATE TABLE "django_migrations" ("id" bigint NOT NULL PRIMARY KEY GENERATED BY '
        'DEFAULT AS IDENTITY, "app" varchar(255) NOT NULL, "name" varchar(255) NOT NULL, '
        '"applied" timestamp with time zone NOT NULL);'
    ),
    "sqlite": (
        'CREATE TABLE "django_migrations" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, '
        '"app" varchar(255) NOT NULL, "name" varchar(255) NOT NULL, '
        '"applied" datetime NOT NULL);'
    ),
}
DJANGO_INITIAL = """\
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Order", fields=[("id", models.BigAutoField(primary_key=True))]
        ),
    ]
"""
DJANGO_ADD_TOTAL = """\
from django.db import migrations, models


def fill_totals(apps, schema_editor):
    apps.get_model("orders", "Order").objects.update(total=0)


class Migration(migrations.Migration):
    dependencies = [("orders", "0001_initial")]
    operations = [
        migrations.AddField("order", "total", models.IntegerField(null=True)),
        migrations.RunPython(fill_totals, migrations.RunPython.noop),
    ]
"""


def django_repo(commit: Commit, *, reversible: bool = True) -> str:
    commit(
        {
            f"{DJANGO_DIR}/orders/__init__.py": "",
            f"{DJANGO_DIR}/orders/migrations/__init__.py": "",
            f"{DJANGO_DIR}/orders/migrations/0001_initial.py": DJANGO_INITIAL,
        }
    )
    add_total = DJANGO_ADD_TOTAL
    if not reversible:
        add_total = add_total.replace(", migrations.RunPython.noop", "")
    return commit({f"{DJANGO_DIR}/orders/migrations/0002_add_total.py": add_total})


def django_applied(*names: str) -> str:
    rows = []
    for second, name in enumerate(names):
        app, migration = name.split(".")
        rows.append({"app": app, "name": migration, "applied": f"2024-03-01 10:00:{second:02d}"})
    return insert('"django_migrations"', rows)


def test_django_all_applied_is_safe(
    any_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = django_repo(commit)
    run_sql(
        any_target,
        DJANGO_TABLE[any_target.kind]
        + django_applied(
            "contenttypes.0001_initial", "orders.0001_initial", "orders.0002_add_total"
        ),
    )

    verdict = verify(any_target, "django", ["orders.0002_add_total"], git_repo, ref, DJANGO_DIR)

    assert verdict.safe, verdict.reason
    assert verdict.head == "orders.0002_add_total"


def test_django_unapplied_batch_migration(
    postgres_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = django_repo(commit)
    run_sql(postgres_target, DJANGO_TABLE["postgres"] + django_applied("orders.0001_initial"))

    verdict = verify(
        postgres_target, "django", ["orders.0002_add_total"], git_repo, ref, DJANGO_DIR
    )

    assert not verdict.safe
    assert "django migration orders.0002_add_total of the batch is not applied" in verdict.reason


def test_django_later_migration_blocks_rewind(
    postgres_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = django_repo(commit)
    run_sql(
        postgres_target,
        DJANGO_TABLE["postgres"]
        + django_applied("orders.0001_initial", "orders.0002_add_total", "billing.0001_initial"),
    )

    verdict = verify(
        postgres_target, "django", ["orders.0002_add_total"], git_repo, ref, DJANGO_DIR
    )

    assert not verdict.safe
    assert "orders.0002_add_total of the batch was followed by billing.0001_initial" in (
        verdict.reason
    )


def test_django_run_python_without_reverse(
    postgres_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = django_repo(commit, reversible=False)
    run_sql(
        postgres_target,
        DJANGO_TABLE["postgres"] + django_applied("orders.0001_initial", "orders.0002_add_total"),
    )

    verdict = verify(
        postgres_target, "django", ["orders.0002_add_total"], git_repo, ref, DJANGO_DIR
    )

    assert not verdict.safe
    assert "django migration orders.0002_add_total has no way back" in verdict.reason
    assert "RunPython at shop/orders/migrations/0002_add_total.py:12 has no reverse_code" in (
        verdict.reason
    )


# Alembic: revision files name their parent in down_revision; alembic_version contains the heads.

ALEMBIC_DIR = "alembic"
ALEMBIC_TABLE = (
    "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
    "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num));"
)
ALEMBIC_REVISION = '''\
"""{message}

Revision ID: {revision}
Revises: {down}
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

revision: str = "{revision}"
down_revision: Union[str, None] = {down_literal}
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table("{table}", sa.Column("id", sa.Integer(), primary_key=True))


def downgrade() -> None:
{downgrade}
'''


def alembic_revision(
    revision: str, down: str | None, table: str, *, reversible: bool = True
) -> str:
    downgrade = f'    op.drop_table("{table}")' if reversible else "    pass"
    return ALEMBIC_REVISION.format(
        message=f"create {table}",
        revision=revision,
        down=down or "",
        down_literal=repr(down),
        table=table,
        downgrade=downgrade,
    )


def alembic_repo(commit: Commit, *, reversible: bool = True) -> str:
    commit(
        {
            f"{ALEMBIC_DIR}/env.py": "from alembic import context\n",
            f"{ALEMBIC_DIR}/versions/1a2b3c4d5e6f_customers.py": alembic_revision(
                "1a2b3c4d5e6f", None, "customers"
            ),
        }
    )
    return commit(
        {
            f"{ALEMBIC_DIR}/versions/2b3c4d5e6f70_orders.py": alembic_revision(
                "2b3c4d5e6f70", "1a2b3c4d5e6f", "orders", reversible=reversible
            ),
        }
    )


def alembic_head(revision: str) -> str:
    return insert("alembic_version", [{"version_num": revision}])


def test_alembic_head_at_batch_is_safe(
    any_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = alembic_repo(commit)
    run_sql(any_target, ALEMBIC_TABLE + alembic_head("2b3c4d5e6f70"))

    verdict = verify(any_target, "alembic", ["2b3c4d5e6f70"], git_repo, ref, ALEMBIC_DIR)

    assert verdict.safe, verdict.reason
    assert verdict.applied == ("1a2b3c4d5e6f", "2b3c4d5e6f70")


def test_alembic_head_before_batch_is_unapplied(
    postgres_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = alembic_repo(commit)
    run_sql(postgres_target, ALEMBIC_TABLE + alembic_head("1a2b3c4d5e6f"))

    verdict = verify(postgres_target, "alembic", ["2b3c4d5e6f70"], git_repo, ref, ALEMBIC_DIR)

    assert not verdict.safe
    assert "alembic migration 2b3c4d5e6f70 of the batch is not applied" in verdict.reason


def test_alembic_unknown_head_blocks_rewind(
    postgres_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = alembic_repo(commit)
    later = alembic_revision("3c4d5e6f7081", "2b3c4d5e6f70", "invoices")
    commit({f"{ALEMBIC_DIR}/versions/3c4d5e6f7081_invoices.py": later})
    run_sql(postgres_target, ALEMBIC_TABLE + alembic_head("3c4d5e6f7081"))

    verdict = verify(postgres_target, "alembic", ["2b3c4d5e6f70"], git_repo, ref, ALEMBIC_DIR)

    assert not verdict.safe
    assert "the newest recorded migration 3c4d5e6f7081 is not in alembic at commit" in (
        verdict.reason
    )
    assert "a later migration was applied or the history diverged" in verdict.reason


def test_alembic_later_revision_in_repository(
    postgres_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    alembic_repo(commit)
    later = alembic_revision("3c4d5e6f7081", "2b3c4d5e6f70", "invoices")
    ref = commit({f"{ALEMBIC_DIR}/versions/3c4d5e6f7081_invoices.py": later})
    run_sql(postgres_target, ALEMBIC_TABLE + alembic_head("3c4d5e6f7081"))

    verdict = verify(postgres_target, "alembic", ["2b3c4d5e6f70"], git_repo, ref, ALEMBIC_DIR)

    assert not verdict.safe
    assert "alembic migration 2b3c4d5e6f70 of the batch was followed by 3c4d5e6f7081" in (
        verdict.reason
    )


def test_alembic_empty_downgrade(
    postgres_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = alembic_repo(commit, reversible=False)
    run_sql(postgres_target, ALEMBIC_TABLE + alembic_head("2b3c4d5e6f70"))

    verdict = verify(postgres_target, "alembic", ["2b3c4d5e6f70"], git_repo, ref, ALEMBIC_DIR)

    assert not verdict.safe
    assert "alembic migration 2b3c4d5e6f70 has no way back" in verdict.reason
    assert "downgrade() in alembic/versions/2b3c4d5e6f70_orders.py is missing or empty" in (
        verdict.reason
    )


# Liquibase: changesets in changelogs, databasechangelog with one row per changeset.

LIQUIBASE_DIR = "db/changelog"
# Liquibase 4's DDL for PostgreSQL.
LIQUIBASE_TABLE = """
    CREATE TABLE public.databasechangelog (
        id VARCHAR(255) NOT NULL, author VARCHAR(255) NOT NULL, filename VARCHAR(255) NOT NULL,
        dateexecuted TIMESTAMP WITHOUT TIME ZONE NOT NULL, orderexecuted INTEGER NOT NULL,
        exectype VARCHAR(10) NOT NULL, md5sum VARCHAR(35), description VARCHAR(255),
        comments VARCHAR(255), tag VARCHAR(255), liquibase VARCHAR(20), contexts VARCHAR(255),
        labels VARCHAR(255), deployment_id VARCHAR(10)
    );"""
LIQUIBASE_CUSTOMERS = """\
--liquibase formatted sql

--changeset alice:1
CREATE TABLE customers (id INT PRIMARY KEY);
--rollback DROP TABLE customers;
"""
LIQUIBASE_ORDERS = """\
<?xml version="1.0" encoding="UTF-8"?>
<databaseChangeLog xmlns="http://www.liquibase.org/xml/ns/dbchangelog">
    <changeSet id="2" author="bob">
        <createTable tableName="orders">
            <column name="id" type="int"/>
        </createTable>
    </changeSet>
    <changeSet id="3" author="bob">
        <sql>UPDATE orders SET id = id</sql>
        {rollback}
    </changeSet>
</databaseChangeLog>
"""
LIQUIBASE_MASTER = """\
databaseChangeLog:
  - include:
      file: 001-customers.sql
      relativeToChangelogFile: true
  - include:
      file: 002-orders.xml
      relativeToChangelogFile: true
"""


def liquibase_repo(commit: Commit, *, rollback: bool = True) -> str:
    commit(
        {
            f"{LIQUIBASE_DIR}/db.changelog-master.yaml": LIQUIBASE_MASTER,
            f"{LIQUIBASE_DIR}/001-customers.sql": LIQUIBASE_CUSTOMERS,
        }
    )
    block = "<rollback><sql>SELECT 1</sql></rollback>" if rollback else ""
    return commit({f"{LIQUIBASE_DIR}/002-orders.xml": LIQUIBASE_ORDERS.format(rollback=block)})


def liquibase_row(
    order: int, changeset: str, filename: str, exectype: str = "EXECUTED"
) -> dict[str, object]:
    author, changeset_id = changeset.split(":")
    return {
        "id": changeset_id,
        "author": author,
        "filename": filename,
        "dateexecuted": f"2024-03-01 10:00:{order:02d}",
        "orderexecuted": order,
        "exectype": exectype,
        "md5sum": f"9:{order:032x}",
        "description": "createTable",
        "comments": "",
        "tag": None,
        "liquibase": "4.29.2",
        "contexts": None,
        "labels": None,
        "deployment_id": "1000000001",
    }


def liquibase_history(*rows: dict[str, object]) -> str:
    return insert("public.databasechangelog", list(rows))


CUSTOMERS_FILE = "db/changelog/001-customers.sql"
ORDERS_FILE = "db/changelog/002-orders.xml"


def test_liquibase_all_applied_is_safe(
    postgres_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = liquibase_repo(commit)
    run_sql(
        postgres_target,
        LIQUIBASE_TABLE
        + liquibase_history(
            liquibase_row(1, "alice:1", CUSTOMERS_FILE),
            liquibase_row(2, "bob:2", ORDERS_FILE),
            liquibase_row(3, "bob:3", ORDERS_FILE),
        ),
    )

    verdict = verify(postgres_target, "liquibase", ["bob:2", "bob:3"], git_repo, ref, LIQUIBASE_DIR)

    assert verdict.safe, verdict.reason
    assert "liquibase's md5sum is not compared" in verdict.reason


def test_liquibase_failed_changeset(
    postgres_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = liquibase_repo(commit)
    run_sql(
        postgres_target,
        LIQUIBASE_TABLE
        + liquibase_history(
            liquibase_row(1, "alice:1", CUSTOMERS_FILE),
            liquibase_row(2, "bob:2", ORDERS_FILE),
            liquibase_row(3, "bob:3", ORDERS_FILE, exectype="FAILED"),
        ),
    )

    verdict = verify(postgres_target, "liquibase", ["bob:2", "bob:3"], git_repo, ref, LIQUIBASE_DIR)

    assert not verdict.safe
    assert "liquibase migration bob:3 failed or is half-applied" in verdict.reason
    assert "exectype is FAILED" in verdict.reason


def test_liquibase_later_changeset_blocks_rewind(
    postgres_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = liquibase_repo(commit)
    run_sql(
        postgres_target,
        LIQUIBASE_TABLE
        + liquibase_history(
            liquibase_row(1, "alice:1", CUSTOMERS_FILE),
            liquibase_row(2, "bob:2", ORDERS_FILE),
            liquibase_row(3, "bob:3", ORDERS_FILE),
            liquibase_row(4, "carol:4", "db/changelog/003-invoices.sql"),
        ),
    )

    verdict = verify(postgres_target, "liquibase", ["bob:2", "bob:3"], git_repo, ref, LIQUIBASE_DIR)

    assert not verdict.safe
    assert "liquibase migration bob:2 of the batch was followed by carol:4" in verdict.reason


def test_liquibase_sql_change_without_rollback(
    postgres_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = liquibase_repo(commit, rollback=False)
    run_sql(
        postgres_target,
        LIQUIBASE_TABLE
        + liquibase_history(
            liquibase_row(1, "alice:1", CUSTOMERS_FILE),
            liquibase_row(2, "bob:2", ORDERS_FILE),
            liquibase_row(3, "bob:3", ORDERS_FILE),
        ),
    )

    verdict = verify(postgres_target, "liquibase", ["bob:2", "bob:3"], git_repo, ref, LIQUIBASE_DIR)

    assert not verdict.safe
    assert "liquibase migration bob:3 has no way back" in verdict.reason
    assert "liquibase migration bob:2 has no way back" not in verdict.reason


# Atlas: <version>_<name>.sql with atlas.sum, atlas_schema_revisions in its own schema.

ATLAS_DIR = "migrations"
# Atlas's DDL for PostgreSQL, in the schema it creates for its revisions.
ATLAS_TABLE = """
    CREATE SCHEMA "atlas_schema_revisions";
    CREATE TABLE "atlas_schema_revisions"."atlas_schema_revisions" (
        "version" character varying NOT NULL,
        "description" character varying NOT NULL,
        "type" bigint NOT NULL DEFAULT 2,
        "applied" bigint NOT NULL DEFAULT 0,
        "total" bigint NOT NULL DEFAULT 0,
        "executed_at" timestamptz NOT NULL,
        "execution_time" bigint NOT NULL,
        "error" text NULL,
        "error_stmt" text NULL,
        "hash" character varying NOT NULL,
        "partial_hashes" jsonb NULL,
        "operator_version" character varying NOT NULL,
        PRIMARY KEY ("version")
    );"""
ATLAS_FILES = {
    "20240101000000_customers.sql": "CREATE TABLE customers (id int);\n",
    "20240201000000_orders.sql": "CREATE TABLE orders (id int);\nCREATE INDEX ON orders (id);\n",
}


def atlas_hashes(files: Mapping[str, str]) -> dict[str, str]:
    """atlas.sum entries: SHA-256 running over each name and content, base64 after each."""
    running = hashlib.sha256()
    hashes = {}
    for name in sorted(files):
        running.update(name.encode() + files[name].encode())
        hashes[name] = base64.b64encode(running.copy().digest()).decode()
    return hashes


def atlas_repo(commit: Commit) -> str:
    first = "20240101000000_customers.sql"
    commit({f"{ATLAS_DIR}/{first}": ATLAS_FILES[first]})
    return commit({f"{ATLAS_DIR}/{name}": content for name, content in ATLAS_FILES.items()})


def atlas_row(
    name: str,
    *,
    applied: int = 1,
    total: int = 1,
    error: str | None = None,
    hash_value: str | None = None,
) -> dict[str, object]:
    version, description = name.removesuffix(".sql").split("_", 1)
    return {
        "version": version,
        "description": description,
        "type": 2,
        "applied": applied,
        "total": total,
        "executed_at": "2024-03-01 10:00:00+00",
        "execution_time": 1_200_000,
        "error": error,
        "error_stmt": None if error is None else "CREATE INDEX ON orders (id)",
        "hash": hash_value or atlas_hashes(ATLAS_FILES)[name],
        "partial_hashes": None,
        "operator_version": "Atlas CLI v0.28.0",
    }


def verify_atlas(target: DatabaseTarget, repo: Path, ref: str) -> MigrationVerdict:
    """Verify the batch's Atlas migration with a rollback script that runs migrate down."""
    return verify(
        target, "atlas", ["20240201000000"], repo, ref, ATLAS_DIR, script_handles_down=True
    )


def atlas_history(*rows: dict[str, object]) -> str:
    identifiers = {
        "version": ".atlas_cloud_identifiers",
        "description": "",
        "type": 0,
        "applied": 0,
        "total": 0,
        "executed_at": "2024-03-01 09:00:00+00",
        "execution_time": 0,
        "error": None,
        "error_stmt": None,
        "hash": "",
        "partial_hashes": None,
        "operator_version": "Atlas CLI v0.28.0",
    }
    return insert('"atlas_schema_revisions"."atlas_schema_revisions"', [identifiers, *rows])


def test_atlas_applied_with_script_is_safe(
    postgres_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = atlas_repo(commit)
    run_sql(
        postgres_target,
        ATLAS_TABLE
        + atlas_history(
            atlas_row("20240101000000_customers.sql"),
            atlas_row("20240201000000_orders.sql", applied=2, total=2),
        ),
    )

    verdict = verify_atlas(postgres_target, git_repo, ref)

    assert verdict.safe, verdict.reason
    assert verdict.applied == ("20240101000000", "20240201000000")


def test_atlas_partial_file_is_failed(
    postgres_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = atlas_repo(commit)
    run_sql(
        postgres_target,
        ATLAS_TABLE
        + atlas_history(
            atlas_row("20240101000000_customers.sql"),
            atlas_row(
                "20240201000000_orders.sql",
                applied=1,
                total=2,
                error='relation "orders" exists',
            ),
        ),
    )

    verdict = verify_atlas(postgres_target, git_repo, ref)

    assert not verdict.safe
    assert "atlas migration 20240201000000 failed or is half-applied" in verdict.reason
    assert 'error: relation "orders" exists' in verdict.reason


def test_atlas_later_revision_blocks_rewind(
    postgres_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = atlas_repo(commit)
    run_sql(
        postgres_target,
        ATLAS_TABLE
        + atlas_history(
            atlas_row("20240101000000_customers.sql"),
            atlas_row("20240201000000_orders.sql", applied=2, total=2),
            atlas_row("20240301000000_invoices.sql", hash_value="bm90IGluIHRoZSByZXBv"),
        ),
    )

    verdict = verify_atlas(postgres_target, git_repo, ref)

    assert not verdict.safe
    assert "atlas migration 20240201000000 of the batch was followed by 20240301000000" in (
        verdict.reason
    )


def test_atlas_changed_file_is_diverged(
    postgres_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = atlas_repo(commit)
    edited = {**ATLAS_FILES, "20240201000000_orders.sql": "CREATE TABLE orders (id bigint);\n"}
    stale_hash = atlas_hashes(edited)["20240201000000_orders.sql"]
    run_sql(
        postgres_target,
        ATLAS_TABLE
        + atlas_history(
            atlas_row("20240101000000_customers.sql"),
            atlas_row("20240201000000_orders.sql", hash_value=stale_hash),
        ),
    )

    verdict = verify_atlas(postgres_target, git_repo, ref)

    assert not verdict.safe
    assert f"atlas migration 20240201000000 in {DATABASE}" in verdict.reason
    assert f"has checksum {stale_hash}" in verdict.reason
    assert "diverged from the repository" in verdict.reason


def test_atlas_needs_declared_script(
    postgres_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = atlas_repo(commit)
    run_sql(
        postgres_target,
        ATLAS_TABLE
        + atlas_history(
            atlas_row("20240101000000_customers.sql"),
            atlas_row("20240201000000_orders.sql", applied=2, total=2),
        ),
    )

    verdict = verify(postgres_target, "atlas", ["20240201000000"], git_repo, ref, ATLAS_DIR)

    assert not verdict.safe
    assert "atlas migration 20240201000000 has no way back" in verdict.reason
    assert "atlas migrate down" in verdict.reason


def test_empty_batch_is_safe(
    postgres_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = flyway_repo(commit)
    run_sql(postgres_target, FLYWAY_TABLE["postgres"])
    run_sql(postgres_target, flyway_history(flyway_row(1, "1", "V1__customers.sql", FLYWAY_V1)))

    verdict = verify(postgres_target, "flyway", [], git_repo, ref, FLYWAY_DIR)

    assert verdict.safe, verdict.reason
    assert "there is nothing to rewind" in verdict.reason


def test_verdict_digest_covers_history_rows(
    postgres_target: DatabaseTarget, run_sql: RunSql, commit: Commit, git_repo: Path
) -> None:
    ref = golang_repo(commit)
    run_sql(postgres_target, GOLANG_TABLE["postgres"] + golang_version(2))
    first = verify(postgres_target, "golang-migrate", ["2"], git_repo, ref, GOLANG_DIR)
    run_sql(postgres_target, "UPDATE schema_migrations SET dirty = true;")
    second = verify(postgres_target, "golang-migrate", ["2"], git_repo, ref, GOLANG_DIR)

    assert len(first.output_sha256) == 64
    assert first.output_sha256 != second.output_sha256
    assert first.sha256 != second.sha256
