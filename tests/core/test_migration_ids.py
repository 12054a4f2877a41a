"""Mapping a batch's changed files to migration ids, and the tools' checksum algorithms."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from rollback_coordinator.core.migrations import MigrationCheckError, batch_migration_ids
from rollback_coordinator.core.migrations.flyway import flyway_checksum
from rollback_coordinator.core.migrations.prisma import prisma_checksums

Commit = Callable[[Mapping[str, str | bytes | None]], str]


def signed(value: int) -> int:
    return value - 2**32 if value >= 2**31 else value


def test_prisma_folder_name_is_id(commit: Commit, git_repo: Path) -> None:
    files = {
        "prisma/migrations/migration_lock.toml": 'provider = "postgresql"\n',
        "prisma/migrations/20240201000000_orders/migration.sql": "CREATE TABLE o (id int);\n",
        "prisma/migrations/20240201000000_orders/down.sql": "DROP TABLE o;\n",
    }
    ref = commit(files)

    ids = batch_migration_ids("prisma", files, git_repo, ref, "prisma/migrations")

    assert ids == ["20240201000000_orders"]


def test_flyway_versions_from_file_names(commit: Commit, git_repo: Path) -> None:
    files = {
        "db/migration/V2__orders.sql": "CREATE TABLE o (id int);\n",
        "db/migration/V2_1__order_index.sql": "CREATE INDEX i ON o (id);\n",
        "db/migration/U2__orders.sql": "DROP TABLE o;\n",
        "db/migration/R__views.sql": "CREATE OR REPLACE VIEW v AS SELECT 1;\n",
    }
    ref = commit(files)

    ids = batch_migration_ids("flyway", files, git_repo, ref, "db/migration")

    assert ids == ["2", "2.1"]


def test_golang_migrate_versions_without_zeros(commit: Commit, git_repo: Path) -> None:
    files = {
        "migrations/000002_orders.up.sql": "CREATE TABLE o (id int);\n",
        "migrations/000002_orders.down.sql": "DROP TABLE o;\n",
        "migrations/000010_index.up.sql": "CREATE INDEX i ON o (id);\n",
    }
    ref = commit(files)

    ids = batch_migration_ids("golang-migrate", files, git_repo, ref, "migrations")

    assert ids == ["2", "10"]


def test_rails_version_from_file_name(commit: Commit, git_repo: Path) -> None:
    files = {"db/migrate/20240101000000_create_orders.rb": "class X; def change; end; end\n"}
    ref = commit(files)

    ids = batch_migration_ids("rails", files, git_repo, ref, "db/migrate")

    assert ids == ["20240101000000"]


def test_django_app_and_name(commit: Commit, git_repo: Path) -> None:
    files = {
        "shop/orders/migrations/__init__.py": "",
        "shop/orders/migrations/0002_add_total.py": "operations = []\n",
        "shop/orders/models.py": "",
    }
    ref = commit(files)

    ids = batch_migration_ids("django", files, git_repo, ref, "shop")

    assert ids == ["orders.0002_add_total"]


def test_alembic_revision_from_contents(commit: Commit, git_repo: Path) -> None:
    files = {
        "alembic/env.py": "from alembic import context\n",
        "alembic/versions/add_orders.py": 'revision = "9f8e7d6c5b4a"\ndown_revision = None\n',
    }
    ref = commit(files)

    ids = batch_migration_ids("alembic", files, git_repo, ref, "alembic")

    assert ids == ["9f8e7d6c5b4a"]


def test_atlas_version_from_file_name(commit: Commit, git_repo: Path) -> None:
    files = {
        "migrations/20240101000000_orders.sql": "CREATE TABLE o (id int);\n",
        "migrations/atlas.sum": "h1:abc=\n20240101000000_orders.sql h1:def=\n",
    }
    ref = commit(files)

    ids = batch_migration_ids("atlas", files, git_repo, ref, "migrations")

    assert ids == ["20240101000000"]


LIQUIBASE_BEFORE = """\
--liquibase formatted sql

--changeset alice:1
CREATE TABLE customers (id INT);
--rollback DROP TABLE customers;
"""
LIQUIBASE_AFTER = LIQUIBASE_BEFORE + """
--changeset "bob smith":2 runOnChange:false
ALTER TABLE customers ADD name TEXT;
--rollback ALTER TABLE customers DROP COLUMN name;
"""


def test_liquibase_changesets_of_changed_changelog(commit: Commit, git_repo: Path) -> None:
    path = "db/changelog/customers.sql"
    ref = commit({path: LIQUIBASE_AFTER})

    ids = batch_migration_ids("liquibase", [path], git_repo, ref, "db/changelog")

    assert ids == ["alice:1", "bob smith:2"]


def test_before_ref_drops_existing_changesets(commit: Commit, git_repo: Path) -> None:
    path = "db/changelog/customers.sql"
    before = commit({path: LIQUIBASE_BEFORE})
    ref = commit({path: LIQUIBASE_AFTER})

    ids = batch_migration_ids(
        "liquibase", [path], git_repo, ref, "db/changelog", before_ref=before
    )

    assert ids == ["bob smith:2"]


def test_liquibase_yaml_changelog(commit: Commit, git_repo: Path) -> None:
    path = "db/changelog/orders.yaml"
    changelog = (
        "databaseChangeLog:\n"
        "  - changeSet:\n"
        "      id: orders-1\n"
        "      author: carol\n"
        "      changes:\n"
        "        - createTable:\n"
        "            tableName: orders\n"
    )
    ref = commit({path: changelog})

    ids = batch_migration_ids("liquibase", [path], git_repo, ref, "db/changelog")

    assert ids == ["carol:orders-1"]


def test_paths_outside_folder_are_ignored(commit: Commit, git_repo: Path) -> None:
    files = {
        "db/migration/V3__x.sql": "SELECT 1;\n",
        "other/db/migration/V4__y.sql": "SELECT 1;\n",
    }
    ref = commit(files)

    ids = batch_migration_ids("flyway", files, git_repo, ref, "db/migration")

    assert ids == ["3"]


def test_deleted_migration_is_ignored(commit: Commit, git_repo: Path) -> None:
    commit({"db/migration/V1__a.sql": "SELECT 1;\n", "db/migration/V2__b.sql": "SELECT 2;\n"})
    ref = commit({"db/migration/V2__b.sql": None})

    ids = batch_migration_ids("flyway", ["db/migration/V2__b.sql"], git_repo, ref, "db/migration")

    assert ids == []


def test_folder_outside_repository_is_rejected(commit: Commit, git_repo: Path) -> None:
    ref = commit({"db/migration/V1__a.sql": "SELECT 1;\n"})

    with pytest.raises(MigrationCheckError, match="leaves the repository"):
        batch_migration_ids("flyway", [], git_repo, ref, "../elsewhere")


def test_invalid_alembic_file_is_reported(commit: Commit, git_repo: Path) -> None:
    path = "alembic/versions/broken.py"
    ref = commit({path: "revision = (\n"})

    with pytest.raises(MigrationCheckError, match="alembic/versions/broken.py is not valid Python"):
        batch_migration_ids("alembic", [path], git_repo, ref, "alembic")


def test_flyway_checksum_ignores_line_breaks() -> None:
    expected = signed(zlib.crc32(b"CREATE TABLE a (id int);INSERT INTO a VALUES (1);"))

    assert flyway_checksum(b"CREATE TABLE a (id int);\nINSERT INTO a VALUES (1);\n") == expected
    assert flyway_checksum(b"CREATE TABLE a (id int);\r\nINSERT INTO a VALUES (1);") == expected
    assert flyway_checksum(b"\xef\xbb\xbfCREATE TABLE a (id int);\rINSERT INTO a VALUES (1);") == (
        expected
    )


def test_flyway_checksum_of_empty_script() -> None:
    assert flyway_checksum(b"") == 0


def test_flyway_checksum_keeps_blank_lines_out() -> None:
    assert flyway_checksum(b"a\n\n\nb\n") == signed(zlib.crc32(b"ab"))


def test_prisma_checksum_variants() -> None:
    script = b"CREATE TABLE a (id int);\r\n"
    checksums = prisma_checksums(script)
    unix = hashlib.sha256(b"CREATE TABLE a (id int);\n").digest()

    assert hashlib.sha256(script).hexdigest() in checksums
    assert unix.hex() in checksums
    assert "".join(f"{byte:x}" for byte in unix) in checksums
