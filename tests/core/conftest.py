"""Fixtures for the migration verifier tests: SQLite files and git repositories that hold
migration files. The PostgreSQL server comes from tests/postgres_fixture.py.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Callable, Mapping
from itertools import count
from contextlib import closing
from pathlib import Path

import psycopg2
import pytest

from postgres_fixture import CONNECTION_ID, RunSql
from rollback_coordinator.core.migrations import DatabaseTarget

Commit = Callable[[Mapping[str, str | bytes | None]], str]


@pytest.fixture
def sqlite_target(tmp_path: Path) -> DatabaseTarget:
    """An empty SQLite database file, as the embedded default deployment uses."""
    path = tmp_path / "service.db"
    sqlite3.connect(path).close()
    return DatabaseTarget(kind="sqlite", name=CONNECTION_ID, path=str(path))


@pytest.fixture
def run_sql() -> RunSql:
    """Run an SQL script (several statements) on a target, committing it."""

    def run(target: DatabaseTarget, script: str) -> None:
        if target.kind == "sqlite":
            with closing(sqlite3.connect(target.path)) as database:
                database.executescript(script)
            return
        connection = psycopg2.connect(
            host=target.host,
            port=target.port,
            dbname=target.dbname,
            user=target.user,
            password=target.password,
            connect_timeout=10,
        )
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute(script)
        finally:
            connection.close()

    return run


def _git_environment() -> dict[str, str]:
    return {
        **os.environ,
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Ada Lovelace",
        "GIT_AUTHOR_EMAIL": "ada@example.com",
        "GIT_COMMITTER_NAME": "Ada Lovelace",
        "GIT_COMMITTER_EMAIL": "ada@example.com",
        "GIT_AUTHOR_DATE": "1700000000 +0000",
        "GIT_COMMITTER_DATE": "1700000000 +0000",
    }


def _git(repo: Path, *args: str) -> str:
    completed = subprocess.run(
        ["git", *args], cwd=repo, env=_git_environment(), capture_output=True, check=True
    )
    return completed.stdout.decode().strip()


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    """An empty git repository for a service's migration files."""
    repo = tmp_path / "service-repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    return repo


@pytest.fixture
def commit(git_repo: Path) -> Commit:
    """Write files into ``git_repo`` (None deletes one), commit them and return the sha."""
    numbers = count(1)

    def write_and_commit(files: Mapping[str, str | bytes | None]) -> str:
        for name, content in files.items():
            path = git_repo / name
            if content is None:
                path.unlink()
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        _git(git_repo, "add", "-A")
        _git(git_repo, "commit", "-q", "--allow-empty", "-m", f"change {next(numbers)}")
        return _git(git_repo, "rev-parse", "HEAD")

    return write_and_commit
