"""Alembic: revision files with ``revision``/``down_revision`` and the ``alembic_version`` table.

Table, as Alembic creates it::

    version_num VARCHAR(32) NOT NULL PRIMARY KEY   one row per current head revision

Alembic stores only the heads. The applied revisions are each head and everything it
descends from through ``down_revision`` in the repository's revision files, which are the
Python files of the folder (usually ``versions/``) with a module-level ``revision``.
Revisions are ordered parents first, which is the order `alembic upgrade` applies them in.

Checked: a head that no revision file defines is reported as a migration applied after
the batch's, because the repository at the batch's commit does not know it. Not checked:
failures and checksums, which Alembic does not record.

Way back: a ``downgrade()`` function whose body does something other than ``pass``, a
docstring, ``...`` or a raise.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence

from rollback_coordinator.core.migrations.base import (
    HistoryEntry,
    MigrationAdapter,
    MigrationCheckError,
    RepositoryMigration,
    Row,
)
from rollback_coordinator.core.migrations.repository import RepositoryFiles


class AlembicAdapter(MigrationAdapter):
    tool = "alembic"
    table = "alembic_version"
    columns = ("version_num",)
    order_by = ("version_num",)
    down_hint = "implement downgrade() in the revision file"

    def repository_migrations(self, files: RepositoryFiles) -> list[RepositoryMigration]:
        migrations = []
        for path in files.paths:
            if not path.endswith(".py"):
                continue
            module = _parse(files.read_text(path), path)
            revision, parents = _revision_ids(module, path)
            if revision is None:
                continue
            has_downgrade = _implements_downgrade(module)
            migrations.append(
                RepositoryMigration(
                    id=revision,
                    path=path,
                    down=f"downgrade() in {path}" if has_downgrade else None,
                    no_down_reason=f"downgrade() in {path} is missing or empty",
                    parents=parents,
                )
            )
        return _parents_first(migrations)

    def history(
        self, rows: Sequence[Row], repository: Sequence[RepositoryMigration]
    ) -> list[HistoryEntry]:
        parents = {migration.id: migration.parents for migration in repository}
        heads = [str(row["version_num"]) for row in rows]
        applied: set[str] = set()
        pending = [head for head in heads if head in parents]
        while pending:
            revision = pending.pop()
            if revision in applied or revision not in parents:
                continue
            applied.add(revision)
            pending.extend(parents[revision])
        entries = [HistoryEntry(id=m.id) for m in repository if m.id in applied]
        entries += [HistoryEntry(id=head) for head in heads if head not in parents]
        return entries


def _parse(source: str, path: str) -> ast.Module:
    try:
        return ast.parse(source, filename=path)
    except SyntaxError as error:
        raise MigrationCheckError(
            f"{path} is not valid Python (line {error.lineno}); fix the revision file"
        ) from None


def _revision_ids(module: ast.Module, path: str) -> tuple[str | None, tuple[str, ...]]:
    """Return the module's ``revision`` and its ``down_revision`` ids."""
    values: dict[str, object] = {}
    for statement in module.body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target, value = statement.targets[0], statement.value
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            target, value = statement.target, statement.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
            try:
                values[target.id] = ast.literal_eval(value)
            except ValueError:
                raise MigrationCheckError(
                    f"{path}: {target.id} must be a literal string, tuple or None"
                ) from None
    revision = values.get("revision")
    if revision is None:
        return None, ()
    down = values.get("down_revision")
    parents = (down,) if isinstance(down, str) else tuple(down or ())
    if not isinstance(revision, str) or not all(isinstance(item, str) for item in parents):
        raise MigrationCheckError(f"{path}: revision and down_revision must be strings")
    return revision, parents


def _implements_downgrade(module: ast.Module) -> bool:
    for statement in module.body:
        if isinstance(statement, ast.FunctionDef) and statement.name == "downgrade":
            return any(not _is_placeholder(part) for part in statement.body)
    return False


def _is_placeholder(statement: ast.stmt) -> bool:
    if isinstance(statement, (ast.Pass, ast.Raise)):
        return True
    return isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)


def _parents_first(migrations: list[RepositoryMigration]) -> list[RepositoryMigration]:
    """Order revisions so each comes after its parents; ties keep file path order."""
    remaining = {migration.id: migration for migration in migrations}
    ordered: list[RepositoryMigration] = []
    while remaining:
        ready = [
            migration
            for migration in remaining.values()
            if not any(parent in remaining for parent in migration.parents)
        ]
        if not ready:
            # A cycle in down_revision; Alembic rejects it too, so keep the rest in path order.
            ready = list(remaining.values())
        for migration in ready:
            ordered.append(migration)
            del remaining[migration.id]
    return ordered
