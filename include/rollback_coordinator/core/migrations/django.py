"""Django: ``<app>/migrations/<name>.py`` modules and the ``django_migrations`` table.

Table, as Django's MigrationRecorder creates it::

    id      INTEGER PRIMARY KEY      (the integer type depends on the Django version)
    app     VARCHAR(255) NOT NULL    app label
    name    VARCHAR(255) NOT NULL    migration module name, such as 0002_add_total
    applied TIMESTAMPTZ NOT NULL     when the migration finished

Migration ids are ``<app label>.<name>``, as Django prints them. The app label is taken
from the folder that contains ``migrations/``; an AppConfig that sets another label needs
its migrations named with that label by the caller.

Checked: order of application (applied, then id). Django records a migration only once it
succeeded, so no row is ever failed. Not checked: checksums, which Django does not store;
squashed migrations, which Django records under their own name and the replaced names.

Way back: Django reverses most operations by itself. RunPython without reverse_code and
RunSQL without reverse_sql cannot be reversed, so a migration that has one has no way back.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence

from rollback_coordinator.core.migrations.base import (
    HistoryEntry,
    MigrationAdapter,
    RepositoryMigration,
    Row,
)
from rollback_coordinator.core.migrations.repository import RepositoryFiles

# Operation name -> the keyword of its reverse, which is also its second positional argument.
_REVERSE_ARGUMENT = {"RunPython": "reverse_code", "RunSQL": "reverse_sql"}


class DjangoAdapter(MigrationAdapter):
    tool = "django"
    table = "django_migrations"
    columns = ("id", "app", "name", "applied")
    order_by = ("applied", "id")
    down_hint = "give every RunPython a reverse_code and every RunSQL a reverse_sql"

    def repository_migrations(self, files: RepositoryFiles) -> list[RepositoryMigration]:
        migrations = []
        for path in files.paths:
            parts = path.split("/")
            name = parts[-1].removesuffix(".py")
            if len(parts) < 3 or parts[-2] != "migrations" or not parts[-1].endswith(".py"):
                continue
            if name.startswith(("_", "~")):
                continue
            problem = _irreversible_operation(files.read_text(path), path)
            migrations.append(
                RepositoryMigration(
                    id=f"{parts[-3]}.{name}",
                    path=path,
                    down=None if problem else f"reversible operations in {path}",
                    no_down_reason=problem,
                )
            )
        return sorted(migrations, key=lambda migration: migration.id)

    def history(
        self, rows: Sequence[Row], repository: Sequence[RepositoryMigration]
    ) -> list[HistoryEntry]:
        return [HistoryEntry(id=f"{row['app']}.{row['name']}") for row in rows]


def _irreversible_operation(source: str, path: str) -> str:
    """Return why the migration cannot be reversed, or "" when it can."""
    try:
        module = ast.parse(source, filename=path)
    except SyntaxError as error:
        return f"{path} is not valid Python (line {error.lineno}), so it cannot be checked"
    for node in ast.walk(module):
        if not isinstance(node, ast.Call):
            continue
        operation = _called_name(node.func)
        keyword = _REVERSE_ARGUMENT.get(operation)
        if keyword is not None and not _has_reverse(node, keyword):
            return f"{operation} at {path}:{node.lineno} has no {keyword}"
    return ""


def _called_name(function: ast.expr) -> str:
    if isinstance(function, ast.Attribute):
        return function.attr
    if isinstance(function, ast.Name):
        return function.id
    return ""


def _has_reverse(call: ast.Call, keyword: str) -> bool:
    values = [item.value for item in call.keywords if item.arg == keyword]
    if len(call.args) >= 2:
        values.append(call.args[1])
    return any(not (isinstance(value, ast.Constant) and value.value is None) for value in values)
