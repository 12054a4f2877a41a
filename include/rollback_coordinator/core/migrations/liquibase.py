"""Liquibase: changesets in changelog files and the ``databasechangelog`` table.

Table, as Liquibase creates it (lower case on PostgreSQL)::

    id            VARCHAR(255) NOT NULL   changeset id
    author        VARCHAR(255) NOT NULL   changeset author
    filename      VARCHAR(255) NOT NULL   changelog path as Liquibase was given it
    dateexecuted  TIMESTAMP NOT NULL
    orderexecuted INT NOT NULL            order of application
    exectype      VARCHAR(10) NOT NULL    EXECUTED, FAILED, SKIPPED, RERAN or MARK_RAN
    md5sum        VARCHAR(35)             checksum such as 9:2f1a...
    description   VARCHAR(255)
    comments      VARCHAR(255)
    tag           VARCHAR(255)
    liquibase     VARCHAR(20)             Liquibase version
    contexts      VARCHAR(255)
    labels        VARCHAR(255)
    deployment_id VARCHAR(10)

Changeset ids are ``<author>:<id>``, the spelling of a formatted SQL changelog's
``--changeset`` line. The filename column is not compared, because its value depends on
how Liquibase was invoked (search path, classpath, relative path).

Changelogs read: formatted SQL (first line ``--liquibase formatted sql``), XML, YAML and
JSON, anywhere below the folder. Rows are ordered by orderexecuted. EXECUTED, RERAN and
MARK_RAN count as applied; FAILED, SKIPPED and any other exectype as failed.

Not checked: md5sum. Liquibase computes it over its own normalized form of each change,
and the algorithm differs between checksum versions (the 7:, 8: and 9: prefixes), so it
cannot be recomputed from the file here.

Way back: a rollback block (``--rollback`` lines, a ``<rollback>`` element or a
``rollback`` key, empty ones included), or changes that Liquibase rolls back by itself.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence

import yaml

from rollback_coordinator.core.migrations.base import (
    HistoryEntry,
    MigrationAdapter,
    MigrationCheckError,
    RepositoryMigration,
    Row,
)
from rollback_coordinator.core.migrations.repository import RepositoryFiles

APPLIED_EXEC_TYPES = frozenset({"EXECUTED", "RERAN", "MARK_RAN"})

# NOTE: change types with automatic rollback, from Liquibase's change type reference
# (4.x). Check the reference of your Liquibase version before relying on a type not listed.
AUTOMATIC_ROLLBACK = frozenset(
    {
        "addColumn",
        "addDefaultValue",
        "addForeignKeyConstraint",
        "addLookupTable",
        "addNotNullConstraint",
        "addPrimaryKey",
        "addUniqueConstraint",
        "createIndex",
        "createSequence",
        "createTable",
        "createView",
        "dropNotNullConstraint",
        "renameColumn",
        "renameSequence",
        "renameTable",
        "renameView",
        "tagDatabase",
    }
)
# Children of a changeset that describe it rather than change the database.
_CHANGESET_METADATA = frozenset({"comment", "preConditions", "validCheckSum", "rollback"})

_FORMATTED_SQL_HEADER = re.compile(r"^--\s*liquibase\s+formatted\s+sql", re.IGNORECASE)
_SQL_CHANGESET = re.compile(r'^--\s*changeset\s+("[^"]+"|[^:\s]+):\s*("[^"]+"|\S+)', re.IGNORECASE)
_SQL_ROLLBACK = re.compile(r"^(--\s*rollback\b|/\*\s*liquibase\s+rollback\b)", re.IGNORECASE)


class LiquibaseAdapter(MigrationAdapter):
    tool = "liquibase"
    table = "databasechangelog"
    columns = (
        "id",
        "author",
        "filename",
        "dateexecuted",
        "orderexecuted",
        "exectype",
        "md5sum",
        "description",
        "comments",
        "tag",
        "liquibase",
        "contexts",
        "labels",
        "deployment_id",
    )
    order_by = ("orderexecuted", "dateexecuted")
    repair_hint = "fix the database and the changeset, then run `liquibase update` again"
    unchecked_checksum = "liquibase's md5sum is not compared, because it cannot be recomputed"
    down_hint = "add a rollback block to the changeset"

    def repository_migrations(self, files: RepositoryFiles) -> list[RepositoryMigration]:
        migrations: list[RepositoryMigration] = []
        for path in files.paths:
            reader = _READERS.get(path.rsplit(".", 1)[-1].lower())
            if reader is None:
                continue
            for changeset_id, down in reader(files.read_text(path), path):
                migrations.append(
                    RepositoryMigration(
                        id=changeset_id,
                        path=path,
                        down=f"rollback of {changeset_id} in {path}" if down else None,
                        no_down_reason=f"changeset {changeset_id} in {path} has no rollback",
                    )
                )
        return migrations

    def history(
        self, rows: Sequence[Row], repository: Sequence[RepositoryMigration]
    ) -> list[HistoryEntry]:
        entries = []
        for row in rows:
            changeset_id = f"{row['author']}:{row['id']}"
            exectype = str(row["exectype"] or "").upper()
            if exectype in APPLIED_EXEC_TYPES:
                entries.append(HistoryEntry(id=changeset_id, checksum=None))
            else:
                detail = f"exectype is {exectype or 'empty'} in {row['filename']}"
                entries.append(HistoryEntry(id=changeset_id, failed=True, detail=detail))
        return entries


Changeset = tuple[str, bool]


def _formatted_sql(text: str, path: str) -> list[Changeset]:
    lines = text.splitlines()
    if not lines or not _FORMATTED_SQL_HEADER.match(lines[0].strip()):
        return []
    ids: list[str] = []
    with_rollback: set[str] = set()
    for line in lines[1:]:
        stripped = line.strip()
        match = _SQL_CHANGESET.match(stripped)
        if match is not None:
            author, changeset = (part.strip('"') for part in match.groups())
            ids.append(f"{author}:{changeset}")
        elif ids and _SQL_ROLLBACK.match(stripped):
            with_rollback.add(ids[-1])
    return [(changeset_id, changeset_id in with_rollback) for changeset_id in ids]


def _xml(text: str, path: str) -> list[Changeset]:
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as error:
        raise MigrationCheckError(f"{path} is not valid XML ({error}); fix the changelog") from None
    if _local_name(root.tag) != "databaseChangeLog":
        return []
    changesets = []
    for element in root.iter():
        if _local_name(element.tag) != "changeSet":
            continue
        children = [_local_name(child.tag) for child in element]
        changes = [name for name in children if name not in _CHANGESET_METADATA]
        changeset_id = f"{element.get('author', '')}:{element.get('id', '')}"
        changesets.append((changeset_id, "rollback" in children or _rolls_back_itself(changes)))
    return changesets


def _yaml(text: str, path: str) -> list[Changeset]:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise MigrationCheckError(f"{path} is not valid YAML or JSON ({error})") from None
    if not isinstance(document, dict) or not isinstance(document.get("databaseChangeLog"), list):
        return []
    changesets = []
    for item in document["databaseChangeLog"]:
        changeset = item.get("changeSet") if isinstance(item, dict) else None
        if not isinstance(changeset, dict):
            continue
        changes = [
            name
            for change in changeset.get("changes") or []
            if isinstance(change, dict)
            for name in change
        ]
        changeset_id = f"{changeset.get('author', '')}:{changeset.get('id', '')}"
        has_rollback = "rollback" in changeset
        changesets.append((changeset_id, has_rollback or _rolls_back_itself(changes)))
    return changesets


def _rolls_back_itself(changes: list[str]) -> bool:
    return bool(changes) and all(name in AUTOMATIC_ROLLBACK for name in changes)


def _local_name(tag: object) -> str:
    return str(tag).rsplit("}", 1)[-1]


_READERS = {"sql": _formatted_sql, "xml": _xml, "yaml": _yaml, "yml": _yaml, "json": _yaml}
