"""Map the files a batch changed to the ids of the migrations it added."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from rollback_coordinator.core.migrations.repository import RepositoryFiles
from rollback_coordinator.core.migrations.tools import adapter_for


def batch_migration_ids(
    tool: str,
    paths: Iterable[str],
    repo: Path,
    ref: str,
    directory: str,
    *,
    before_ref: str | None = None,
) -> list[str]:
    """Return the ids of the migrations defined in ``paths`` at ``ref``, in the order the
    tool applies them.

    ``paths`` are repository-relative files, such as a batch's changed files; paths outside
    ``directory`` and files that are not migrations are ignored. Ids look like this:
    prisma ``<dir>/<name>/migration.sql`` gives ``<name>``; flyway ``V2__x.sql`` gives
    ``2``; golang-migrate ``000002_x.up.sql`` gives ``2``; rails ``20240101000000_x.rb``
    gives ``20240101000000``; django ``<app>/migrations/0002_x.py`` gives ``<app>.0002_x``;
    alembic gives the ``revision`` inside the file; liquibase gives ``<author>:<id>`` of
    every changeset in a changed changelog; atlas ``20240101000000_x.sql`` gives
    ``20240101000000``.

    With ``before_ref`` (the commit before the batch), migrations that already existed
    there are left out, so a batch that edits an old migration or adds a changeset to an
    old changelog reports only what it added. Raise MigrationCheckError when the
    repository, a commit or a migration file cannot be read.
    """
    adapter = adapter_for(tool)
    touched = set(paths)
    migrations = adapter.repository_migrations(RepositoryFiles(repo, ref, directory))
    ids = [migration.id for migration in migrations if migration.path in touched]
    if before_ref is None or not ids:
        return ids
    earlier = adapter.repository_migrations(RepositoryFiles(repo, before_ref, directory))
    existing = {migration.id for migration in earlier}
    return [migration_id for migration_id in ids if migration_id not in existing]
