#!/usr/bin/env python3
"""Migration state of the sample database, read from its prisma-style history table.

As the state command: prints one JSON object on its last line and exits 0 when the batch's
migrations can be rewound, 3 when they cannot. With --health: exits 0 when the database
file passes SQLite's integrity check and its history table is readable.
"""

import hashlib
import json
import os
import sqlite3
import subprocess
import sys

SAFE, UNSAFE = 0, 3


def database_path() -> str:
    return os.path.join(os.environ["ROLLBACK_DATA_DIR"], "sample", "app.db")


def connect() -> sqlite3.Connection:
    path = database_path()
    if not os.path.exists(path):
        print(f"database {path} does not exist")
        sys.exit(1)
    return sqlite3.connect(path, timeout=10)


def health() -> int:
    with connect() as db:
        verdict = db.execute("PRAGMA integrity_check").fetchone()[0]
        applied = db.execute(
            "SELECT count(*) FROM _prisma_migrations"
            " WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL"
        ).fetchone()[0]
    print(f"database {database_path()}: integrity {verdict}, {applied} migrations applied")
    return 0 if verdict == "ok" else 1


def repository_migrations(ref: str, directory: str) -> dict[str, str]:
    """Return migration name -> sha256 of its migration.sql at ref."""
    repo = os.environ["ROLLBACK_REPO"]
    listing = subprocess.run(
        ["git", "-C", repo, "ls-tree", "--name-only", f"{ref}:{directory}"],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    checksums = {}
    for name in listing:
        sql = subprocess.run(
            ["git", "-C", repo, "show", f"{ref}:{directory}/{name}/migration.sql"],
            check=True, capture_output=True,
        ).stdout
        checksums[name] = hashlib.sha256(sql).hexdigest()
    return checksums


def state() -> int:
    expected = [name for name in os.environ.get("ROLLBACK_MIGRATIONS", "").split("\n") if name]
    directory = os.environ.get("MIGRATIONS_DIR", "db/migrations")
    in_repo = repository_migrations(os.environ["ROLLBACK_FROM_REF"], directory)
    with connect() as db:
        rows = db.execute(
            "SELECT migration_name, checksum, finished_at, rolled_back_at"
            " FROM _prisma_migrations ORDER BY migration_name"
        ).fetchall()

    applied = [name for name, _, finished, rolled_back in rows if finished and not rolled_back]
    failed = [name for name, _, finished, rolled_back in rows if not finished and not rolled_back]
    later = [name for name in applied if name not in in_repo]
    diverged = [
        name for name, checksum, finished, rolled_back in rows
        if finished and not rolled_back and name in in_repo and in_repo[name] != checksum
    ]

    problems = []
    missing = [name for name in expected if name not in applied]
    if missing:
        problems.append(f"not applied: {', '.join(missing)}")
    if failed:
        problems.append(f"failed or half-applied: {', '.join(failed)}")
    if later:
        problems.append(f"applied after the batch, unknown to its release: {', '.join(later)}")
    if diverged:
        problems.append(f"checksum differs from the repository: {', '.join(diverged)}")

    report = {
        "applied": applied,
        "pending": [name for name in in_repo if name not in applied],
        "failed": failed,
        "head": applied[-1] if applied else None,
        "safe": not problems,
        "reason": "; ".join(problems) or f"{len(expected)} batch migrations applied, none after them",
    }
    print(json.dumps(report))
    return SAFE if not problems else UNSAFE


if __name__ == "__main__":
    sys.exit(health() if "--health" in sys.argv[1:] else state())
