"""A throwaway PostgreSQL server for the tests that need a real database.

The PostgreSQL server is started once per test session with the machine's own initdb and
pg_ctl, in a temporary folder, listening only on 127.0.0.1 with password authentication.
Each test gets a fresh database on it. The tests skip only when the server binaries are
not installed; every other problem starting the server fails them.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import psycopg2
import pytest

from rollback_coordinator.core.migrations import DatabaseTarget

# initdb refuses to run as root, so as root the server runs as this Debian package user.
POSTGRES_OS_USER = "postgres"
SUPERUSER = "postgres"
CONNECTION_ID = "orders_db"
# Debian installs the server binaries outside PATH, in one folder per major version.
DEBIAN_BINARY_GLOB = "/usr/lib/postgresql/*/bin"
START_ATTEMPTS = 3

RunSql = Callable[[DatabaseTarget, str], None]
Commit = Callable[[Mapping[str, str | bytes | None]], str]


@dataclass(frozen=True)
class PostgresServer:
    """A running server: where it listens and the superuser's password."""

    port: int
    password: str
    host: str = "127.0.0.1"

    def target(self, dbname: str) -> DatabaseTarget:
        return DatabaseTarget(
            kind="postgres",
            name=CONNECTION_ID,
            host=self.host,
            port=self.port,
            dbname=dbname,
            user=SUPERUSER,
            password=self.password,
        )


def _server_binaries() -> tuple[str, str] | None:
    """Return the paths of initdb and pg_ctl, preferring PATH, then Debian's newest version."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return initdb, pg_ctl
    folders = sorted(glob.glob(DEBIAN_BINARY_GLOB), key=_major_version)
    for folder in reversed(folders):
        initdb, pg_ctl = f"{folder}/initdb", f"{folder}/pg_ctl"
        if os.access(initdb, os.X_OK) and os.access(pg_ctl, os.X_OK):
            return initdb, pg_ctl
    return None


def _major_version(folder: str) -> int:
    version = Path(folder).parent.name.split(".")[0]
    return int(version) if version.isdigit() else -1


def _run_as_owner_prefix(folder: Path) -> list[str]:
    """Hand ``folder`` to the postgres user when running as root, and return the command
    prefix that runs a program as that user."""
    if os.geteuid() != 0:
        return []
    try:
        account = pwd.getpwnam(POSTGRES_OS_USER)
    except KeyError:
        raise RuntimeError(
            f"running as root, the test server needs the '{POSTGRES_OS_USER}' system user, "
            "which the postgresql package creates; install it or run the tests as another user"
        ) from None
    for path in (folder, *folder.rglob("*")):
        os.chown(path, account.pw_uid, account.pw_gid)
    return [runuser_path(), "-u", POSTGRES_OS_USER, "--"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run(command: list[str]) -> None:
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if completed.returncode != 0:
        raise RuntimeError(
            f"{shlex.join(command)} failed with exit code {completed.returncode}: "
            f"{completed.stderr.strip() or completed.stdout.strip()}"
        )


def _start(pg_ctl: str, prefix: list[str], folder: Path) -> int:
    """Start the server on a free port and return the port; retry when another process took
    the port between the probe and the start."""
    last_error: RuntimeError | None = None
    for _ in range(START_ATTEMPTS):
        port = _free_port()
        options = shlex.join(
            ["-h", "127.0.0.1", "-p", str(port), "-k", str(folder), "-c", "fsync=off"]
        )
        command = [pg_ctl, "-D", str(folder / "data"), "-l", str(folder / "server.log")]
        try:
            _run([*prefix, *command, "-w", "-t", "60", "-o", options, "start"])
            return port
        except RuntimeError as error:
            last_error = error
    log = (folder / "server.log").read_text(errors="replace")[-2000:]
    raise RuntimeError(f"PostgreSQL did not start: {last_error}\nserver log:\n{log}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole test session, stopped and deleted at its end."""
    binaries = _server_binaries()
    if binaries is None:
        pytest.skip(
            "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in "
            f"{DEBIAN_BINARY_GLOB}; install the postgresql package to run these tests"
        )
    initdb, pg_ctl = binaries
    folder = Path(tempfile.mkdtemp(prefix="rollback-postgres-"))
    password = secrets.token_hex(16)
    (folder / "password").write_text(password + "\n")
    prefix = _run_as_owner_prefix(folder)
    data = str(folder / "data")
    try:
        _run(
            [
                *prefix,
                initdb,
                "-D",
                data,
                "-U",
                SUPERUSER,
                "--pwfile",
                str(folder / "password"),
                "--auth",
                "scram-sha-256",
                "-E",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",
            ]
        )
        port = _start(pg_ctl, prefix, folder)
        try:
            yield PostgresServer(port=port, password=password)
        finally:
            _run([*prefix, pg_ctl, "-D", data, "-m", "fast", "-w", "stop"])
    finally:
        shutil.rmtree(folder, ignore_errors=True)


_database_numbers = count(1)


@pytest.fixture
def postgres_target(postgres_server: PostgresServer) -> Iterator[DatabaseTarget]:
    """A fresh, empty database on the session's server, dropped after the test."""
    dbname = f"verify_{next(_database_numbers)}"
    admin = psycopg2.connect(**_admin_arguments(postgres_server))
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{dbname}"')
        yield postgres_server.target(dbname)
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE "{dbname}" WITH (FORCE)')
    finally:
        admin.close()


def _admin_arguments(server: PostgresServer) -> dict[str, object]:
    return {
        "host": server.host,
        "port": server.port,
        "dbname": "postgres",
        "user": SUPERUSER,
        "password": server.password,
        "connect_timeout": 10,
    }


def runuser_path() -> str:
    """Return runuser, which lives in /usr/sbin, a folder a plain user's PATH often lacks."""
    found = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")
    if found is None:
        raise RuntimeError("runuser not found; install util-linux to run PostgreSQL as its user")
    return found
