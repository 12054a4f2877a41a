"""Rails (Active Record): ``<version>_<name>.rb`` files and the ``schema_migrations`` table.

Table, as Active Record creates it::

    version VARCHAR PRIMARY KEY   one row per applied migration, the version as digits

Rails records a migration only once it succeeded, so no row is ever failed. The table has
no time of application, so the order is the numeric order of the versions, which is the
order `rails db:migrate` applies them in.

Not checked: checksums, which Rails does not store; a migration merged with an older
timestamp after newer ones ran, which this order cannot see.

Way back: Rails can undo a migration that defines ``down``, or ``change`` when every step
in it is reversible. A file that raises ActiveRecord::IrreversibleMigration, that defines
only ``up``, or that calls ``execute`` in ``change`` outside a ``reversible`` block has no
way back.
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

# Active Record's own pattern, with an optional scope such as 20240101000000_x.shop.rb.
_FILE = re.compile(r"^(?P<version>\d+)_(?P<name>[_a-z0-9]*)(?:\.[_a-z0-9]*)?\.rb$")
_DEFINES_DOWN = re.compile(r"^\s*def\s+down\b", re.MULTILINE)
_DEFINES_CHANGE = re.compile(r"^\s*def\s+change\b", re.MULTILINE)
_EXECUTE = re.compile(r"^\s*execute\b", re.MULTILINE)


class RailsAdapter(MigrationAdapter):
    tool = "rails"
    table = "schema_migrations"
    columns = ("version",)
    order_by = ("version",)
    down_hint = "define down (or a reversible change) in the migration"

    def repository_migrations(self, files: RepositoryFiles) -> list[RepositoryMigration]:
        migrations = []
        for path in files.paths:
            match = _FILE.match(path.rsplit("/", 1)[-1])
            if match is None:
                continue
            problem = _irreversible_reason(files.read_text(path))
            migrations.append(
                RepositoryMigration(
                    id=self.normalize_id(match["version"]),
                    path=path,
                    down=None if problem else f"down or change in {path}",
                    no_down_reason=f"{path} {problem}" if problem else "",
                )
            )
        return sorted(migrations, key=lambda migration: int(migration.id))

    def history(
        self, rows: Sequence[Row], repository: Sequence[RepositoryMigration]
    ) -> list[HistoryEntry]:
        versions = [self.normalize_id(str(row["version"])) for row in rows]
        return [HistoryEntry(id=version) for version in sorted(versions, key=_version_key)]

    def normalize_id(self, migration_id: str) -> str:
        text = migration_id.strip()
        return str(int(text)) if text.isdigit() else text


def _irreversible_reason(source: str) -> str:
    if "IrreversibleMigration" in source:
        return "raises ActiveRecord::IrreversibleMigration"
    if _DEFINES_DOWN.search(source):
        return ""
    if not _DEFINES_CHANGE.search(source):
        return "defines neither down nor change"
    if _EXECUTE.search(source) and "reversible" not in source:
        return "calls execute in change without a reversible block"
    return ""


def _version_key(version: str) -> tuple[int, int, str]:
    return (0, int(version), "") if version.isdigit() else (1, 0, version)
