"""golang-migrate: ``<version>_<title>.up.<ext>`` files and the ``schema_migrations`` table.

Table, as golang-migrate's PostgreSQL and SQLite drivers create it::

    version BIGINT NOT NULL PRIMARY KEY   the newest applied version
    dirty   BOOLEAN NOT NULL              true while a migration runs, and after it failed

The table holds one row, the current version. Every migration file with a lower version
counts as applied, as golang-migrate itself assumes. A negative version (golang-migrate's
"no version") or an empty table means nothing is applied.

Checked: dirty=true marks the current version as failed part way. Not checked: checksums,
which golang-migrate does not store, and migrations skipped by hand below the current
version. When the table holds more than one row, the highest version counts.

Way back: ``<version>_<title>.down.<ext>`` next to the up file. Files are read from the
folder itself, not from subfolders, as golang-migrate's file source does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rollback_coordinator.core.migrations.base import (
    HistoryEntry,
    MigrationAdapter,
    RepositoryMigration,
    Row,
)
from rollback_coordinator.core.migrations.repository import RepositoryFiles

_FILE = re.compile(r"^(?P<version>\d+)_(?P<title>.*)\.(?P<direction>up|down)\.(?P<ext>.+)$")


class GolangMigrateAdapter(MigrationAdapter):
    tool = "golang-migrate"
    table = "schema_migrations"
    columns = ("version", "dirty")
    order_by = ("version",)
    repair_hint = "fix the database, then clear the flag with `migrate force <version>`"
    down_hint = "add <version>_<title>.down.sql next to the up file"

    def repository_migrations(self, files: RepositoryFiles) -> list[RepositoryMigration]:
        ups: dict[int, str] = {}
        downs: dict[int, str] = {}
        for path in files.paths:
            relative = files.relative(path)
            match = _FILE.match(relative) if "/" not in relative else None
            if match is None:
                continue
            target = ups if match["direction"] == "up" else downs
            target[int(match["version"])] = path
        return [
            RepositoryMigration(
                id=str(version),
                path=ups[version],
                down=downs.get(version),
                no_down_reason=f"there is no down file next to {ups[version]}",
            )
            for version in sorted(ups)
        ]

    def history(
        self, rows: Sequence[Row], repository: Sequence[RepositoryMigration]
    ) -> list[HistoryEntry]:
        if not rows:
            return []
        current = max(rows, key=lambda row: int(row["version"]))
        version = int(current["version"])
        if version < 0:
            return []
        entries = [
            HistoryEntry(id=migration.id)
            for migration in repository
            if int(migration.id) < version
        ]
        if current["dirty"]:
            detail = "dirty is true: the migration stopped part way"
            entries.append(HistoryEntry(id=str(version), failed=True, detail=detail))
        else:
            entries.append(HistoryEntry(id=str(version)))
        return entries

    def normalize_id(self, migration_id: str) -> str:
        text = migration_id.strip()
        return str(int(text)) if text.isdigit() else text
