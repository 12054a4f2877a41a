#!/usr/bin/env python3
"""Rewind the sample database to the release before the batch.

Every applied migration that the target release (ROLLBACK_TO_REF) does not contain is undone
with its down.sql from the batch's release (ROLLBACK_FROM_REF), newest first, and marked
rolled back in the history table, all in one transaction.
"""

import os
import sqlite3
import subprocess
import sys
from datetime import datetime, timezone


def git(*args: str) -> str:
    repo = os.environ["ROLLBACK_REPO"]
    return subprocess.run(
        ["git", "-C", repo, *args], check=True, capture_output=True, text=True
    ).stdout


def main() -> int:
    directory = os.environ.get("MIGRATIONS_DIR", "db/migrations")
    to_ref, from_ref = os.environ["ROLLBACK_TO_REF"], os.environ["ROLLBACK_FROM_REF"]
    if not to_ref:
        print("the batch starts at the first commit: there is no earlier release", file=sys.stderr)
        return 1

    kept = set(git("ls-tree", "--name-only", f"{to_ref}:{directory}").split())
    path = os.path.join(os.environ["ROLLBACK_DATA_DIR"], "sample", "app.db")
    db = sqlite3.connect(path, timeout=10, isolation_level=None)
    applied = [
        row[0]
        for row in db.execute(
            "SELECT migration_name FROM _prisma_migrations"
            " WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL"
            " ORDER BY migration_name DESC"
        )
    ]
    undo = [name for name in applied if name not in kept]
    if not undo:
        print("no migration to undo: the database already matches the release")
        return 0

    scripts = {}
    for name in undo:
        try:
            scripts[name] = git("show", f"{from_ref}:{directory}/{name}/down.sql")
        except subprocess.CalledProcessError:
            print(f"migration {name} has no down.sql at {from_ref}: cannot undo it", file=sys.stderr)
            return 1

    if os.environ.get("ROLLBACK_DRY_RUN") == "1":
        print(f"dry run: would undo {', '.join(undo)}")
        return 0

    now = datetime.now(timezone.utc).isoformat()
    db.execute("BEGIN IMMEDIATE")
    try:
        for name in undo:
            print(f"undoing migration {name}")
            # NOTE: splitting on ';' suits the sample's simple down.sql files only.
            for statement in filter(str.strip, scripts[name].split(";")):
                db.execute(statement)
            db.execute(
                "UPDATE _prisma_migrations SET rolled_back_at = ? WHERE migration_name = ?",
                (now, name),
            )
        db.execute("COMMIT")
    except sqlite3.Error as error:
        db.execute("ROLLBACK")
        print(f"rewind failed, database unchanged: {error}", file=sys.stderr)
        return 1
    print(f"undid {len(undo)} migration(s): {', '.join(undo)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
