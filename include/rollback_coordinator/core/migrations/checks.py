"""The five conditions a history must meet before a service's database is rewound.

Each check returns one message per problem. A message names the service, the tool, the
migration and the database, and says what to do next.
"""

from __future__ import annotations

from dataclasses import dataclass

from rollback_coordinator.core.migrations.base import (
    HistoryEntry,
    MigrationAdapter,
    RepositoryMigration,
)


@dataclass(frozen=True)
class HistoryFacts:
    """What the checks compare: the batch's migrations, the database's history (oldest
    first, one entry per migration) and the repository's migrations by id."""

    adapter: MigrationAdapter
    service: str | None
    database: str
    table: str
    commit: str
    directory: str
    expected: tuple[str, ...]
    history: tuple[HistoryEntry, ...]
    repository: dict[str, RepositoryMigration]
    script_handles_down: bool

    def migration(self, migration_id: str) -> str:
        """Name a migration the way every message starts: "service api: flyway migration 3"."""
        prefix = f"service {self.service}: " if self.service else ""
        return f"{prefix}{self.adapter.tool} migration {migration_id}"

    @property
    def at_commit(self) -> str:
        """The migration folder and the short commit, as messages name them."""
        folder = self.directory or "the repository root"
        return f"{folder} at commit {self.commit[:12]}"


def failed_migrations(facts: HistoryFacts) -> list[str]:
    """Report every failed, dirty or half-applied migration, whether or not the batch added it."""
    return [
        f"{facts.migration(entry.id)} failed or is half-applied in {facts.database} "
        f"({facts.table}: {entry.detail}); {facts.adapter.repair_hint}, then run the "
        "verification again"
        for entry in facts.history
        if entry.failed
    ]


def unapplied_batch_migrations(facts: HistoryFacts) -> list[str]:
    """Report the batch's migrations that the repository lacks or the history does not record."""
    recorded = {entry.id for entry in facts.history}
    messages = []
    for migration_id in facts.expected:
        if migration_id not in facts.repository:
            messages.append(
                f"{facts.migration(migration_id)} of the batch is not in {facts.at_commit}; "
                "check the batch's migration names and the service's migration folder"
            )
        elif migration_id not in recorded:
            messages.append(
                f"{facts.migration(migration_id)} of the batch is not applied in "
                f"{facts.database} ({facts.table} has no record of it{_newest(facts)}); "
                "find out whether the deployment ran it before undoing it"
            )
    return messages


def later_migrations(facts: HistoryFacts) -> list[str]:
    """Report migrations applied after the batch's earliest one, which a rewind would undo."""
    later = later_migration_ids(facts)
    if not later:
        return []
    first = next(entry.id for entry in facts.history if entry.id in facts.expected)
    described = ", ".join(
        entry_id if entry_id in facts.repository else f"{entry_id} (not in {facts.at_commit})"
        for entry_id in later
    )
    return [
        f"{facts.migration(first)} of the batch was followed by {described} in "
        f"{facts.database}, so the schema moved on and rewinding would destroy that later "
        "work; roll back the batches that added them first"
    ]


def later_migration_ids(facts: HistoryFacts) -> list[str]:
    """Return the ids recorded after the batch's earliest recorded migration."""
    positions = [
        index for index, entry in enumerate(facts.history) if entry.id in facts.expected
    ]
    if not positions:
        return []
    return [
        entry.id
        for entry in facts.history[min(positions) + 1 :]
        if entry.id not in facts.expected
    ]


def diverged_migrations(facts: HistoryFacts) -> list[str]:
    """Report applied migrations whose stored checksum differs from the repository's file."""
    messages = []
    for entry in facts.history:
        migration = facts.repository.get(entry.id)
        if entry.checksum is None or migration is None or not migration.checksums:
            continue
        if entry.checksum in migration.checksums:
            continue
        messages.append(
            f"{facts.migration(entry.id)} in {facts.database} has checksum {entry.checksum}, "
            f"but {migration.path} at commit {facts.commit[:12]} has "
            f"{migration.checksums[0]} ({facts.adapter.checksum}); the applied history "
            "diverged from the repository, so find out which version ran before rewinding it"
        )
    return messages


def batch_migrations_without_down(facts: HistoryFacts) -> list[str]:
    """Report the batch's migrations with no way back, unless the rollback script undoes them."""
    if facts.script_handles_down:
        return []
    messages = []
    for migration_id in facts.expected:
        migration = facts.repository.get(migration_id)
        if migration is None or migration.down is not None:
            continue
        messages.append(
            f"{facts.migration(migration_id)} has no way back: {migration.no_down_reason}; "
            f"{facts.adapter.down_hint}, or declare that the service's rollback script "
            "undoes it"
        )
    return messages


def _newest(facts: HistoryFacts) -> str:
    if not facts.history:
        return ", and the table is empty"
    newest = facts.history[-1].id
    if newest in facts.repository:
        return f"; the newest recorded migration is {newest}"
    return (
        f"; the newest recorded migration {newest} is not in {facts.at_commit}, so a later "
        "migration was applied or the history diverged"
    )
