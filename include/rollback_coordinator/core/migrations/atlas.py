"""Atlas: ``<version>_<description>.sql`` files and the ``atlas_schema_revisions`` table.

Table, as Atlas creates it (on PostgreSQL in its own schema, also named
``atlas_schema_revisions``)::

    version          VARCHAR PRIMARY KEY   file name up to the first "_"
    description      VARCHAR NOT NULL      file name after the first "_", without .sql
    type             BIGINT NOT NULL       bit flags: 1 baseline, 2 executed, 4 resolved
    applied          BIGINT NOT NULL       statements that ran
    total            BIGINT NOT NULL       statements in the file
    executed_at      TIMESTAMPTZ NOT NULL
    execution_time   BIGINT NOT NULL       nanoseconds
    error            TEXT                  database error of a failed run
    error_stmt       TEXT                  the statement that failed
    hash             VARCHAR NOT NULL      the file's entry in atlas.sum
    partial_hashes   JSONB                 one hash per applied statement
    operator_version VARCHAR NOT NULL      Atlas version that applied it

Checked: rows are ordered by version, as Atlas orders revisions. A row with an error, or
with fewer applied statements than total, failed part way, unless it carries the resolved
flag that `atlas migrate set` writes. Rows whose version starts with "." are Atlas's own
bookkeeping (such as ".atlas_cloud_identifiers") and are skipped. The hash is compared with
the one Atlas writes into atlas.sum: a running SHA-256 over each file's name and content,
in file name order, base64 encoded after each file. A file whose first line is an
``atlas:sum ignore`` directive adds only its name and gets no hash. Baseline rows have no
hash to compare.

Way back: Atlas keeps no down files; `atlas migrate down` plans the revert against the
database when it runs. The adapter therefore finds no way back in the repository, and a
rollback of Atlas migrations needs a rollback script that declares it undoes them.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence

from rollback_coordinator.core.migrations.base import (
    HistoryEntry,
    MigrationAdapter,
    RepositoryMigration,
    Row,
)
from rollback_coordinator.core.migrations.repository import RepositoryFiles

BASELINE_FLAG = 1
RESOLVED_FLAG = 4
# Atlas matches its file directives against the start of the file with this pattern.
_DIRECTIVE = re.compile(r"^([ -~]*)atlas:(\w+)(?: +([ -~]*))*")


class AtlasAdapter(MigrationAdapter):
    tool = "atlas"
    table = "atlas_schema_revisions"
    columns = (
        "version",
        "description",
        "type",
        "applied",
        "total",
        "executed_at",
        "execution_time",
        "error",
        "error_stmt",
        "hash",
        "partial_hashes",
        "operator_version",
    )
    order_by = ("version",)
    default_schema = "atlas_schema_revisions"
    checksum = "atlas.sum hash of the file"
    repair_hint = (
        "fix the database, then finish the file with `atlas migrate apply` or record it "
        "with `atlas migrate set`"
    )
    down_hint = (
        "let the rollback script run `atlas migrate down` and declare that it undoes the "
        "migrations"
    )

    def repository_migrations(self, files: RepositoryFiles) -> list[RepositoryMigration]:
        names = [
            files.relative(path)
            for path in files.paths
            if "/" not in files.relative(path) and path.endswith(".sql")
        ]
        running = hashlib.sha256()
        migrations = []
        for name in sorted(names):
            path = files.join(name)
            content = files.read_bytes(path)
            running.update(name.encode())
            if _ignored_by_sum(content):
                continue
            running.update(content)
            migrations.append(
                RepositoryMigration(
                    id=name.removesuffix(".sql").split("_", 1)[0],
                    path=path,
                    checksums=(base64.b64encode(running.copy().digest()).decode(),),
                    no_down_reason=f"Atlas keeps no down file for {path}",
                )
            )
        return migrations

    def history(
        self, rows: Sequence[Row], repository: Sequence[RepositoryMigration]
    ) -> list[HistoryEntry]:
        entries = []
        for row in rows:
            version = str(row["version"])
            if version.startswith("."):
                continue
            flags = int(row["type"] or 0)
            checksum = None if flags & BASELINE_FLAG or not row["hash"] else str(row["hash"])
            problem = _failure_detail(row)
            failed = bool(problem) and not flags & RESOLVED_FLAG
            entries.append(
                HistoryEntry(id=version, failed=failed, detail=problem, checksum=checksum)
            )
        return entries


def _ignored_by_sum(content: bytes) -> bool:
    match = _DIRECTIVE.match(content.decode("utf-8", errors="replace"))
    return match is not None and match[2] == "sum" and match[3] == "ignore"


def _failure_detail(row: Row) -> str:
    error = str(row["error"] or "").strip()
    if error:
        return f"error: {error.splitlines()[0][:200]}"
    if int(row["applied"] or 0) < int(row["total"] or 0):
        return f"applied {row['applied']} of {row['total']} statements"
    return ""
