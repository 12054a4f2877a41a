"""Prisma Migrate: folders ``<name>/migration.sql`` and the ``_prisma_migrations`` table.

Table, as Prisma's schema engine creates it::

    id                  VARCHAR(36) PRIMARY KEY  random UUID of one attempt
    checksum            VARCHAR(64) NOT NULL     SHA-256 of migration.sql, lowercase hex
    finished_at         TIMESTAMPTZ              set when the migration succeeded
    migration_name      VARCHAR(255) NOT NULL    the folder name, such as 20240101000000_init
    logs                TEXT                     error output of a failed attempt
    rolled_back_at      TIMESTAMPTZ              set by `prisma migrate resolve --rolled-back`
    started_at          TIMESTAMPTZ NOT NULL     when the attempt began
    applied_steps_count INTEGER NOT NULL         statements of the script that ran

Checked: a row with neither finished_at nor rolled_back_at is a failed or interrupted
attempt, which Prisma does not continue past. Rolled-back rows are skipped, because Prisma
applies that migration again in a new row. The checksum matches when it is the SHA-256 of
migration.sql as stored, with CRLF line ends turned into LF, or with LF turned into CRLF,
in zero-padded hex or in the unpadded hex of older Prisma versions; these are the forms
Prisma's own comparison accepts.

Way back: Prisma has no down migrations of its own. Its documented practice is a down.sql
made with `prisma migrate diff --script` next to migration.sql, which is what counts here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from rollback_coordinator.core.migrations.base import (
    HistoryEntry,
    MigrationAdapter,
    RepositoryMigration,
    Row,
)
from rollback_coordinator.core.migrations.repository import RepositoryFiles

SCRIPT_NAME = "migration.sql"
DOWN_NAME = "down.sql"


class PrismaAdapter(MigrationAdapter):
    tool = "prisma"
    table = "_prisma_migrations"
    columns = (
        "id",
        "checksum",
        "finished_at",
        "migration_name",
        "logs",
        "rolled_back_at",
        "started_at",
        "applied_steps_count",
    )
    order_by = ("started_at", "finished_at")
    checksum = "SHA-256 of migration.sql"
    repair_hint = (
        "fix the database, then record the outcome with `prisma migrate resolve "
        "--rolled-back <name>` or `--applied <name>`"
    )
    down_hint = (
        "add <migration>/down.sql next to migration.sql (prisma migrate diff --script "
        "writes one)"
    )

    def repository_migrations(self, files: RepositoryFiles) -> list[RepositoryMigration]:
        migrations = []
        for path in files.paths:
            parts = files.relative(path).split("/")
            if len(parts) != 2 or parts[1] != SCRIPT_NAME:
                continue
            down = files.join(f"{parts[0]}/{DOWN_NAME}")
            migrations.append(
                RepositoryMigration(
                    id=parts[0],
                    path=path,
                    checksums=prisma_checksums(files.read_bytes(path)),
                    down=down if down in files else None,
                    no_down_reason=f"there is no {DOWN_NAME} next to {path}",
                )
            )
        return sorted(migrations, key=lambda migration: migration.id)

    def history(
        self, rows: Sequence[Row], repository: Sequence[RepositoryMigration]
    ) -> list[HistoryEntry]:
        entries = []
        for row in rows:
            if row["rolled_back_at"] is not None:
                continue
            entry = HistoryEntry(id=row["migration_name"], checksum=row["checksum"])
            if row["finished_at"] is None:
                entry = HistoryEntry(
                    id=entry.id,
                    failed=True,
                    detail=_failure_detail(row),
                    checksum=entry.checksum,
                )
            entries.append(entry)
        return entries


def prisma_checksums(script: bytes) -> tuple[str, ...]:
    """Return every checksum Prisma accepts for ``script``."""
    variants = (script, script.replace(b"\r\n", b"\n"), script.replace(b"\n", b"\r\n"))
    checksums: list[str] = []
    for variant in variants:
        digest = hashlib.sha256(variant).digest()
        for text in (digest.hex(), "".join(f"{byte:x}" for byte in digest)):
            if text not in checksums:
                checksums.append(text)
    return tuple(checksums)


def _failure_detail(row: Row) -> str:
    detail = (
        f"finished_at and rolled_back_at are empty after {row['applied_steps_count']} "
        "applied steps"
    )
    logs = (row["logs"] or "").strip()
    if logs:
        detail += f"; logs: {logs.splitlines()[0][:200]}"
    return detail
