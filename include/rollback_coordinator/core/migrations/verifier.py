"""Decide whether a service's database can be rewound by reading the tool's history table.

Failures: every problem with the database (unreachable, wrong password, missing table,
timeout) or with the repository (unknown commit, unreadable migration file) gives a
verdict with safe=False and the reason, the same as a failed check, so the caller writes
one kind of record and the rollback does not proceed. Only a tool without an adapter
raises MigrationCheckError, because that is a configuration error no database can fix.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import date, datetime, time, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from rollback_coordinator.core.migration_state import MigrationVerdict
from rollback_coordinator.core.migrations.base import (
    HistoryEntry,
    MigrationCheckError,
    Row,
)
from rollback_coordinator.core.migrations.checks import (
    HistoryFacts,
    batch_migrations_without_down,
    diverged_migrations,
    failed_migrations,
    later_migration_ids,
    later_migrations,
    unapplied_batch_migrations,
)
from rollback_coordinator.core.migrations.history_table import (
    HistoryTable,
    HistoryTableError,
    read_history_table,
)
from rollback_coordinator.core.migrations.repository import RepositoryFiles
from rollback_coordinator.core.migrations.target import DatabaseTarget
from rollback_coordinator.core.migrations.tools import adapter_for
from rollback_coordinator.core.plan import canonical_json

SOURCE = "history_table"


def verify_history(
    database: DatabaseTarget,
    tool: str,
    expected: list[str],
    repo: Path,
    ref: str,
    directory: str,
    *,
    timeout_s: float,
    script_handles_down: bool = False,
    service: str | None = None,
) -> MigrationVerdict:
    """Check the history table of ``tool`` in ``database`` against the migration files of
    ``directory`` at ``ref`` in the git repository ``repo``.

    ``expected`` lists the batch's migration ids (see ``batch_migration_ids``). The verdict
    is safe only when every one of them is applied, no migration failed or is half-applied,
    none was applied after them, stored checksums match the files, and each has a way back
    in the repository or ``script_handles_down`` is set. ``timeout_s`` bounds the database
    connection and the query. ``service`` names the service in messages.
    """
    adapter = adapter_for(tool)
    subject = f"service {service}: " if service else ""
    verdict = MigrationVerdict(
        safe=False,
        tool=tool,
        source=SOURCE,
        reason="",
        applied=(),
        failed=(),
        expected=tuple(adapter.normalize_id(name) for name in expected),
        head=None,
        output_sha256="",
        checked_at=datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
    )
    try:
        files = RepositoryFiles(repo, ref, directory)
        repository = adapter.repository_migrations(files)
    except MigrationCheckError as error:
        reason = f"{subject}cannot read the {tool} migrations of the repository: {error}"
        return replace(verdict, reason=reason)
    try:
        table = read_history_table(database, adapter, timeout_s=timeout_s)
    except HistoryTableError as error:
        return replace(verdict, reason=f"{subject}cannot read the {tool} history: {error}")
    try:
        history = _latest_entries(adapter.history(table.rows, repository))
    except (KeyError, TypeError, ValueError) as error:
        reason = (
            f"{subject}{table.name} in {database.describe()} contains a row that is not in "
            f"{tool}'s format ({type(error).__name__}: {error}); check that migrations.tool "
            "is right"
        )
        return replace(verdict, reason=reason, output_sha256=_rows_sha256(table.rows))
    facts = HistoryFacts(
        adapter=adapter,
        service=service,
        database=database.describe(),
        table=table.name,
        commit=files.commit,
        directory=files.directory,
        expected=verdict.expected,
        history=tuple(history),
        repository={migration.id: migration for migration in repository},
        script_handles_down=script_handles_down,
    )
    return _judge(facts, table, replace(verdict, output_sha256=_rows_sha256(table.rows)))


def _judge(
    facts: HistoryFacts, table: HistoryTable, verdict: MigrationVerdict
) -> MigrationVerdict:
    failed = failed_migrations(facts)
    unapplied = unapplied_batch_migrations(facts)
    later = later_migrations(facts)
    diverged = diverged_migrations(facts)
    without_down = batch_migrations_without_down(facts)
    problems = failed + unapplied + later + diverged + without_down
    report: dict[str, Any] = {
        "database": facts.database,
        "table": table.name,
        "rows": len(table.rows),
        "commit": facts.commit,
        "directory": facts.directory,
        "checksums": facts.adapter.checksum,
        "down": "rollback script" if facts.script_handles_down else "repository",
        "later": later_migration_ids(facts),
        "problems": problems,
    }
    applied = [entry.id for entry in facts.history if not entry.failed]
    judged = replace(
        verdict,
        applied=tuple(applied),
        failed=tuple(entry.id for entry in facts.history if entry.failed),
        head=applied[-1] if applied else None,
        report=report,
    )
    if problems:
        return replace(judged, reason="; ".join(problems))
    return replace(judged, safe=True, reason=_safe_reason(facts))


def _safe_reason(facts: HistoryFacts) -> str:
    prefix = f"service {facts.service}: " if facts.service else ""
    tool = facts.adapter.tool
    if not facts.expected:
        return (
            f"{prefix}the batch added no {tool} migrations, and {facts.table} in "
            f"{facts.database} shows no failed migration, so there is nothing to rewind"
        )
    names = ", ".join(facts.expected)
    if facts.adapter.checksum is None:
        checksums = facts.adapter.unchecked_checksum or f"{tool} stores no checksums"
    else:
        checksums = f"the stored checksums match commit {facts.commit[:12]}"
    if facts.script_handles_down:
        down = "the rollback script undoes them"
    else:
        down = "each has a way back in the repository"
    return (
        f"{prefix}{tool} migrations {names} of the batch are applied in {facts.database}; "
        f"none failed, none was applied after them, {checksums}, and {down}"
    )


def _latest_entries(entries: list[HistoryEntry]) -> list[HistoryEntry]:
    """Keep one entry per id, the latest, at its position: a failed attempt that a later
    successful run replaced no longer counts."""
    latest = {entry.id: index for index, entry in enumerate(entries)}
    return [entry for index, entry in enumerate(entries) if latest[entry.id] == index]


def _rows_sha256(rows: list[Row]) -> str:
    """SHA-256 of the rows as canonical JSON, the evidence the verdict was drawn from."""
    data = [{key: _json_value(value) for key, value in row.items()} for row in rows]
    return hashlib.sha256(canonical_json(data)).hexdigest()


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _json_value(item) for key, item in value.items()}
    return str(value)
