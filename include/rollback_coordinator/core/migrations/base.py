"""The records and the adapter base shared by every migration tool.

An adapter knows two things about one tool: how the tool lays out migration files in a
repository folder, and how it records applied migrations in its history table. The
verifier compares the two without knowing which tool it is looking at.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from rollback_coordinator.core.errors import CoordinatorError

if TYPE_CHECKING:
    from rollback_coordinator.core.migrations.repository import RepositoryFiles

Row = dict[str, Any]


class MigrationCheckError(CoordinatorError):
    """A migration check that cannot start: an unknown tool, an unusable connection URI, or a
    repository, commit or migration file that cannot be read."""


@dataclass(frozen=True)
class RepositoryMigration:
    """One migration as the repository defines it at the checked commit.

    ``checksums`` lists every value the tool may have stored for the file, and is empty when
    the tool stores none. ``down`` describes the way back (a file, or a function in the
    file) and is None when there is none, with ``no_down_reason`` saying why. ``parents`` are
    the ids the migration builds on, for tools whose order is a graph (alembic).
    """

    id: str
    path: str
    checksums: tuple[str, ...] = ()
    down: str | None = None
    no_down_reason: str = ""
    parents: tuple[str, ...] = ()


@dataclass(frozen=True)
class HistoryEntry:
    """One migration as the history table records it.

    ``failed`` covers every state the tool cannot build on: a failed run, a dirty flag, a run
    that never finished or one that applied only part of its statements. ``detail`` names
    the columns that show it. ``checksum`` is the stored checksum as text, or None.
    """

    id: str
    failed: bool = False
    detail: str = ""
    checksum: str | None = None


class MigrationAdapter(ABC):
    """What the verifier needs to know about one migration tool.

    ``columns`` are the columns of the tool's history table that the adapter reads, and
    ``order_by`` sorts the rows into the order the tool applied them. ``default_schema`` is
    the PostgreSQL schema the tool creates its table in, or None for the search_path.
    ``checksum`` names what the stored checksum is computed over. It is None when no
    checksum is compared, and ``unchecked_checksum`` then says why for a tool that stores
    one. ``down_hint`` tells a user how to add a way back for a migration, and
    ``repair_hint`` how to clear a failed one.
    """

    tool: ClassVar[str]
    table: ClassVar[str]
    columns: ClassVar[tuple[str, ...]]
    order_by: ClassVar[tuple[str, ...]]
    default_schema: ClassVar[str | None] = None
    checksum: ClassVar[str | None] = None
    unchecked_checksum: ClassVar[str | None] = None
    down_hint: ClassVar[str]
    repair_hint: ClassVar[str] = "repair the database and its history table by hand"

    @abstractmethod
    def repository_migrations(self, files: RepositoryFiles) -> list[RepositoryMigration]:
        """Parse the migration files of the folder, in the order the tool applies them."""

    @abstractmethod
    def history(
        self, rows: Sequence[Row], repository: Sequence[RepositoryMigration]
    ) -> list[HistoryEntry]:
        """Turn the table rows into the migrations the database has, oldest first.

        An id may appear more than once, and the verifier keeps its last entry.
        ``repository`` serves the tools that store only the newest migration
        (golang-migrate, alembic), whose earlier migrations follow from the files.
        """

    def normalize_id(self, migration_id: str) -> str:
        """Return the spelling of ``migration_id`` that the adapter uses, such as "2" for
        the flyway version "2.0"."""
        return migration_id.strip()
