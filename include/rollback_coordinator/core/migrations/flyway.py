"""Flyway: ``V<version>__<description>.sql`` files and the ``flyway_schema_history`` table.

Table, as Flyway creates it::

    installed_rank INT PRIMARY KEY    order of application
    version        VARCHAR(50)        NULL for repeatable (R__) migrations
    description    VARCHAR(200)
    type           VARCHAR(20)        SQL, JDBC, BASELINE, UNDO_SQL, DELETE, SCHEMA, ...
    script         VARCHAR(1000)      file name, such as V2__add_orders.sql
    checksum       INT                CRC32 of the script, as a signed 32-bit integer
    installed_by   VARCHAR(100)
    installed_on   TIMESTAMP
    execution_time INT                milliseconds
    success        BOOLEAN

Checked: rows are read in installed_rank order. A row with success false is a failed
migration. A successful UNDO_* row takes its version back out of the applied history, and
so does a DELETE row, which `flyway repair` writes for a migration whose file is gone.
SCHEMA rows are Flyway's own bookkeeping and are skipped. The checksum is compared for SQL
migrations, computed as Flyway does: CRC32 over the UTF-8 bytes of each line without its
line break, with a byte order mark removed from the first line.

Not checked: repeatable migrations (R__), which have no version to rewind, unless their
last run failed; Java migrations, whose checksum Flyway takes from the class; migrations
outside the folder's default V/U/R prefixes and ``__`` separator.

Way back: an undo script ``U<version>__<description>.sql`` anywhere in the folder.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

from rollback_coordinator.core.migrations.base import (
    HistoryEntry,
    MigrationAdapter,
    RepositoryMigration,
    Row,
)
from rollback_coordinator.core.migrations.repository import RepositoryFiles

_SCRIPT = re.compile(r"^(?P<prefix>[VU])(?P<version>\d+(?:[._]\d+)*)__(?P<description>.*)\.sql$")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_BYTE_ORDER_MARK = "\ufeff"


class FlywayAdapter(MigrationAdapter):
    tool = "flyway"
    table = "flyway_schema_history"
    columns = (
        "installed_rank",
        "version",
        "description",
        "type",
        "script",
        "checksum",
        "installed_by",
        "installed_on",
        "execution_time",
        "success",
    )
    order_by = ("installed_rank",)
    checksum = "CRC32 of the script's lines"
    repair_hint = "fix the database, then remove the failed row with `flyway repair`"
    down_hint = "add the undo script U<version>__<description>.sql"

    def repository_migrations(self, files: RepositoryFiles) -> list[RepositoryMigration]:
        scripts: dict[str, str] = {}
        undos: dict[str, str] = {}
        for path in files.paths:
            match = _SCRIPT.match(path.rsplit("/", 1)[-1])
            if match is None:
                continue
            version = self.normalize_id(match["version"])
            (scripts if match["prefix"] == "V" else undos)[version] = path
        migrations = [
            RepositoryMigration(
                id=version,
                path=path,
                checksums=(str(flyway_checksum(files.read_bytes(path))),),
                down=undos.get(version),
                no_down_reason=f"there is no U{version}__*.sql for {path}",
            )
            for version, path in scripts.items()
        ]
        return sorted(migrations, key=lambda migration: _version_key(migration.id))

    def history(
        self, rows: Sequence[Row], repository: Sequence[RepositoryMigration]
    ) -> list[HistoryEntry]:
        entries: list[HistoryEntry] = []
        for row in rows:
            kind = str(row["type"] or "").upper()
            succeeded = bool(row["success"])
            if kind == "SCHEMA":
                continue
            if row["version"] is None:
                if not succeeded:
                    entries.append(_failed(str(row["script"]), row))
                continue
            version = self.normalize_id(str(row["version"]))
            if kind == "DELETE" or (kind.startswith("UNDO") and succeeded):
                entries = [entry for entry in entries if entry.id != version]
            elif not succeeded:
                entries.append(_failed(version, row))
            else:
                checksum = None if row["checksum"] is None else str(row["checksum"])
                entries.append(HistoryEntry(id=version, checksum=checksum))
        return entries

    def normalize_id(self, migration_id: str) -> str:
        """Return the version without leading zeros or trailing zero parts, because Flyway
        treats 1.0, 1_0 and 001 as the same version 1."""
        text = migration_id.strip().removeprefix("V").removeprefix("v")
        if not re.fullmatch(r"\d+(?:[._]\d+)*", text):
            return text
        parts = [int(part) for part in re.split(r"[._]", text)]
        while len(parts) > 1 and parts[-1] == 0:
            parts.pop()
        return ".".join(str(part) for part in parts)


def flyway_checksum(script: bytes) -> int:
    """Return Flyway's checksum of a SQL script: CRC32 over each line's UTF-8 bytes without
    the line break, as a signed 32-bit integer. Bytes that are not UTF-8 are replaced the
    way Java's decoder replaces them."""
    lines = _LINE_BREAK.split(script.decode("utf-8", errors="replace"))
    if lines[-1] == "":
        # Java's readLine() returns no empty line after the final line break.
        lines.pop()
    crc = 0
    for index, line in enumerate(lines):
        if index == 0:
            line = line.removeprefix(_BYTE_ORDER_MARK)
        crc = zlib.crc32(line.encode("utf-8"), crc)
    return crc - (1 << 32) if crc >= (1 << 31) else crc


def _failed(migration_id: str, row: Row) -> HistoryEntry:
    return HistoryEntry(
        id=migration_id,
        failed=True,
        detail=f"success is false for {row['script']} (type {row['type']})",
        checksum=None if row["checksum"] is None else str(row["checksum"]),
    )


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())
