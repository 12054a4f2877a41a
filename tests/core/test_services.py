"""Tests for loading services.yaml, the path globs and the generated JSON schema."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path

import pydantic
import pytest
import yaml

from rollback_coordinator.core.errors import ConfigError
from rollback_coordinator.core.services import (
    GlobError,
    compile_globs,
    load_services,
    services_json_schema,
)

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = REPOSITORY_ROOT / "config" / "services.schema.json"
GENERATOR = REPOSITORY_ROOT / "tools" / "generate_schema.py"

FULL_EXAMPLE = """
services:
  db:
    description: Primary PostgreSQL schema
    paths: ["db/**", "schema/*.sql"]
    rollback_script: scripts/rollback_db.sh
    approvals: [dba]
    environment: [staging, prod]
    timeout: 300
    retries: 2
    supports_dry_run: true
    env: {PGDATABASE: app, PGPORT: 5432}
    health_check:
      tcp: 127.0.0.1:5432
      timeout: 2.5
    migrations:
      tool: prisma
      directory: db/migrations/
      state_command: scripts/db_state.sh --json "two words"
      lock_file: db/migration.lock
      connection_id: app_db
  api:
    paths: ["services/api/**", "libs/[a-c]*/**"]
    rollback_script: scripts/rollback_api.sh
    depends_on: [db]
    health_check:
      http: http://127.0.0.1:8081/health
      expect_status: 204
  worker:
    paths: ["services/worker/**"]
    rollback_script: /usr/bin/true
    depends_on: [db, api]
    health_check:
      command: [pg_isready, -h, 127.0.0.1]
"""

FULL_EXAMPLE_SCRIPTS = (
    "scripts/rollback_db.sh",
    "scripts/rollback_api.sh",
    "scripts/db_state.sh",
)


def write_services(
    folder: Path, text: str, scripts: Iterable[str] = ("scripts/rollback_db.sh",)
) -> Path:
    """Write services.yaml (line 1 is the first line of ``text``) and executable scripts."""
    for script in scripts:
        path = folder / script
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
        path.chmod(0o755)
    services_file = folder / "services.yaml"
    services_file.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return services_file


def load_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_services(path)
    return caught.value


def expected_prefix(path: Path, line: int | None, service: str | None, field: str | None) -> str:
    parts = [str(path) if line is None else f"{path}:{line}"]
    if service is not None:
        parts.append(f"service '{service}'")
    if field is not None:
        parts.append(f"field '{field}'")
    return ", ".join(parts) + ": "


def test_full_example_loads(tmp_path: Path) -> None:
    services_map = load_services(write_services(tmp_path, FULL_EXAMPLE, FULL_EXAMPLE_SCRIPTS))

    assert list(services_map.services) == ["db", "api", "worker"]
    db = services_map.services["db"]
    assert db.name == "db"
    assert db.description == "Primary PostgreSQL schema"
    assert db.approvals == ["dba"]
    assert db.environment == ["staging", "prod"]
    assert db.timeout == 300
    assert db.retries == 2
    assert db.supports_dry_run is True
    assert db.env == {"PGDATABASE": "app", "PGPORT": "5432"}
    assert db.health_check is not None
    assert db.health_check.kind == "tcp"
    assert db.health_check.target == "127.0.0.1:5432"
    assert db.health_check.tcp_address == ("127.0.0.1", 5432)
    assert db.health_check.timeout == 2.5
    assert db.migrations is not None
    assert db.migrations.tool == "prisma"
    assert db.migrations.directory == "db/migrations"
    assert db.migrations.state_command == ["scripts/db_state.sh", "--json", "two words"]
    assert db.migrations.connection_id == "app_db"


def test_defaults_fill_optional_fields(tmp_path: Path) -> None:
    text = """
    services:
      db:
        rollback_script: scripts/rollback_db.sh
    """
    db = load_services(write_services(tmp_path, text)).services["db"]

    assert db.paths == []
    assert db.depends_on == []
    assert db.environment == []
    assert db.timeout == 600
    assert db.retries == 0
    assert db.supports_dry_run is False
    assert db.env == {}
    assert db.health_check is None
    assert db.migrations is None


def test_largest_limits_load(tmp_path: Path) -> None:
    text = """
    services:
      db:
        rollback_script: scripts/rollback_db.sh
        timeout: 604800
        retries: 10
        health_check: {tcp: 127.0.0.1:5432, timeout: 300}
    """
    db = load_services(write_services(tmp_path, text)).services["db"]

    assert db.timeout == 604800
    assert db.retries == 10
    assert db.health_check is not None
    assert db.health_check.timeout == 300


def test_retries_schema_requires_idempotent_scripts() -> None:
    retries = services_json_schema()["$defs"]["ServiceSettings"]["properties"]["retries"]

    assert "idempotent" in retries["description"]
    assert retries["maximum"] == 10


def test_health_check_kinds_and_targets(tmp_path: Path) -> None:
    services_map = load_services(write_services(tmp_path, FULL_EXAMPLE, FULL_EXAMPLE_SCRIPTS))
    api_check = services_map.services["api"].health_check
    worker_check = services_map.services["worker"].health_check

    assert api_check is not None
    assert api_check.kind == "http"
    assert api_check.target == "http://127.0.0.1:8081/health"
    assert api_check.expect_status == 204
    assert worker_check is not None
    assert worker_check.kind == "command"
    assert worker_check.target == "pg_isready -h 127.0.0.1"
    assert worker_check.tcp_address is None


def test_relative_paths_resolve_against_yaml_folder(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    services_map = load_services(write_services(config, FULL_EXAMPLE, FULL_EXAMPLE_SCRIPTS))

    assert services_map.source == config / "services.yaml"
    assert services_map.base_dir == config
    assert services_map.script_path("db") == config / "scripts" / "rollback_db.sh"
    assert services_map.script_path("worker") == Path("/usr/bin/true")
    assert services_map.resolve("db/migration.lock") == config / "db" / "migration.lock"
    assert services_map.resolve(Path("/etc/hosts")) == Path("/etc/hosts")


def test_relative_load_path_gives_absolute_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_services(tmp_path, FULL_EXAMPLE, FULL_EXAMPLE_SCRIPTS)
    monkeypatch.chdir(tmp_path)

    services_map = load_services("services.yaml")

    assert services_map.source == tmp_path / "services.yaml"
    assert services_map.script_path("db") == tmp_path / "scripts" / "rollback_db.sh"


def test_command_argv_resolves_only_relative_programs(tmp_path: Path) -> None:
    services_map = load_services(write_services(tmp_path, FULL_EXAMPLE, FULL_EXAMPLE_SCRIPTS))

    relative = services_map.command_argv(["scripts/db_state.sh", "--json"])
    on_path = services_map.command_argv(["pg_isready", "-h", "db"])
    absolute = services_map.command_argv(["/usr/bin/env", "true"])

    assert relative == [str(tmp_path / "scripts" / "db_state.sh"), "--json"]
    assert on_path == ["pg_isready", "-h", "db"]
    assert absolute == ["/usr/bin/env", "true"]


def test_dependencies_and_dependents(tmp_path: Path) -> None:
    services_map = load_services(write_services(tmp_path, FULL_EXAMPLE, FULL_EXAMPLE_SCRIPTS))

    assert services_map.dependencies("worker") == ["db", "api"]
    assert services_map.dependencies("db") == []
    assert services_map.dependents("db") == ["api", "worker"]
    assert services_map.dependents("worker") == []
    with pytest.raises(KeyError, match="unknown service 'cache'"):
        services_map.dependents("cache")


def test_touched_services_follow_globs(tmp_path: Path) -> None:
    services_map = load_services(write_services(tmp_path, FULL_EXAMPLE, FULL_EXAMPLE_SCRIPTS))

    assert services_map.touched_services(["db/migrations/2024/001.sql"]) == ["db"]
    assert services_map.touched_services(["schema/tables.sql"]) == ["db"]
    assert services_map.touched_services(["schema/nested/tables.sql"]) == []
    assert services_map.touched_services(["libs/auth/token.py"]) == ["api"]
    assert services_map.touched_services(["libs/data/x.py"]) == []
    assert services_map.touched_services(["README.md"]) == []


def test_touched_services_keep_file_order(tmp_path: Path) -> None:
    services_map = load_services(write_services(tmp_path, FULL_EXAMPLE, FULL_EXAMPLE_SCRIPTS))
    files = iter(["services/worker/main.py", "services/api/app.py", "db/schema.prisma"])

    assert services_map.touched_services(files) == ["db", "api", "worker"]


@pytest.mark.parametrize(
    ("glob", "matching", "not_matching"),
    [
        ("db/**", ["db/a.sql", "db/x/y/z.sql"], ["db", "dbx/a.sql", "app/db/a.sql"]),
        ("**/*.sql", ["a.sql", "x/a.sql", "x/y/a.sql"], ["a.sqlx", "x/a.py"]),
        ("src/**/test_*.py", ["src/test_a.py", "src/x/y/test_b.py"], ["src/x/a.py", "test_a.py"]),
        ("*.md", ["README.md"], ["docs/guide.md"]),
        ("src/*/main.go", ["src/api/main.go"], ["src/main.go", "src/a/b/main.go"]),
        ("file?.txt", ["file1.txt"], ["file.txt", "file12.txt", "file/.txt"]),
        ("v[0-9].sql", ["v1.sql"], ["va.sql", "v10.sql"]),
        ("[!a]*.py", ["b.py", "_x.py"], ["a.py", "x/b.py"]),
        ("[^a]*.py", ["b.py"], ["a.py"]),
        ("x[]]y", ["x]y"], ["xy"]),
        ("a-[-z]", ["a--", "a-z"], ["a-b"]),
        ("lit\\*.txt", ["lit*.txt"], ["litx.txt"]),
        ("a+b(c).txt", ["a+b(c).txt"], ["aab(c).txt"]),
        ("**", ["a", "a/b/c"], []),
    ],
)
def test_glob_semantics(glob: str, matching: list[str], not_matching: list[str]) -> None:
    pattern = compile_globs((glob,))
    assert pattern is not None

    for path in matching:
        assert pattern.fullmatch(path), f"{glob!r} should match {path!r}"
    for path in not_matching:
        assert not pattern.fullmatch(path), f"{glob!r} should not match {path!r}"


@pytest.mark.parametrize(
    ("glob", "fragment"),
    [
        ("", "empty glob"),
        ("/db/**", "is absolute"),
        ("db/../x", "'..' segment"),
        ("db//x", "empty, '.' or '..' segment"),
        ("db/[a-", "unclosed '['"),
        ("db/[]", "unclosed '['"),
        ("db/[z-a]", "is invalid"),
        ("db/[[:alpha:]]", "POSIX class"),
        ("db\\", "lone backslash"),
    ],
)
def test_bad_globs_raise(glob: str, fragment: str) -> None:
    with pytest.raises(GlobError) as caught:
        compile_globs((glob,))

    assert fragment in str(caught.value)


def test_models_are_frozen(tmp_path: Path) -> None:
    services_map = load_services(write_services(tmp_path, FULL_EXAMPLE, FULL_EXAMPLE_SCRIPTS))

    with pytest.raises(pydantic.ValidationError):
        services_map.services["db"].timeout = 1  # type: ignore[misc]


def test_missing_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "services.yaml"
    error = load_error(path)

    assert error.file == str(path)
    assert error.service is None
    assert error.field is None
    assert str(error).startswith(f"{path}: file not found; create it")


def test_unreadable_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "services.yaml"
    path.mkdir()
    error = load_error(path)

    assert error.file == str(path)
    assert "cannot read the file" in str(error)


def test_invalid_utf8_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "services.yaml"
    path.write_bytes(b"services:\n  db: \xff\n")
    error = load_error(path)

    assert error.file == str(path)
    assert "readable UTF-8 text file" in str(error)


def test_invalid_yaml_names_line(tmp_path: Path) -> None:
    text = """
    services:
      db:
        rollback_script: scripts/rollback_db.sh
        paths: [db/**
        timeout: 5
    """
    path = write_services(tmp_path, text)
    error = load_error(path)

    assert error.file == str(path)
    assert error.line == 5
    assert error.service is None
    assert str(error).startswith(f"{path}:5: invalid YAML: ")
    assert "\n" not in str(error)


def test_cycle_message_lists_cycle(tmp_path: Path) -> None:
    text = """
    services:
      db:
        rollback_script: scripts/rollback_db.sh
      api:
        rollback_script: scripts/rollback_db.sh
        depends_on: [db, worker]
      worker:
        rollback_script: scripts/rollback_db.sh
        depends_on: [api]
    """
    path = write_services(tmp_path, text)
    error = load_error(path)

    assert error.service == "api"
    assert error.field == "depends_on"
    assert error.line == 6
    assert str(error) == (
        f"{path}:6, service 'api', field 'depends_on': dependency cycle: api -> worker -> api; "
        f"remove one of these dependencies"
    )


def test_longer_cycle_lists_every_service(tmp_path: Path) -> None:
    text = """
    services:
      a:
        rollback_script: scripts/rollback_db.sh
        depends_on: [b]
      b:
        rollback_script: scripts/rollback_db.sh
        depends_on: [c]
      c:
        rollback_script: scripts/rollback_db.sh
        depends_on: [a]
    """
    error = load_error(write_services(tmp_path, text))

    assert error.service == "a"
    assert "dependency cycle: a -> b -> c -> a;" in str(error)


def test_rollback_script_missing(tmp_path: Path) -> None:
    text = """
    services:
      db:
        rollback_script: scripts/missing.sh
    """
    path = write_services(tmp_path, text)
    error = load_error(path)

    assert error.file == str(path)
    assert error.service == "db"
    assert error.field == "rollback_script"
    assert error.line == 3
    assert str(error).startswith(
        f"{path}:3, service 'db', field 'rollback_script': "
        f"{tmp_path / 'scripts' / 'missing.sh'} not found"
    )


def test_rollback_script_directory(tmp_path: Path) -> None:
    text = """
    services:
      db:
        rollback_script: scripts
    """
    path = write_services(tmp_path, text)
    error = load_error(path)

    assert error.service == "db"
    assert error.field == "rollback_script"
    assert "is not a regular file" in str(error)


def test_rollback_script_not_executable(tmp_path: Path) -> None:
    text = """
    services:
      db:
        rollback_script: scripts/rollback_db.sh
    """
    path = write_services(tmp_path, text)
    (tmp_path / "scripts" / "rollback_db.sh").chmod(0o644)
    error = load_error(path)

    assert error.service == "db"
    assert error.field == "rollback_script"
    assert "is not executable; run chmod +x" in str(error)


def test_command_without_slash_is_not_checked(tmp_path: Path) -> None:
    text = """
    services:
      db:
        rollback_script: scripts/rollback_db.sh
        health_check: {command: "no-such-program --flag"}
    """
    services_map = load_services(write_services(tmp_path, text))
    health_check = services_map.services["db"].health_check

    assert health_check is not None
    assert health_check.command == ["no-such-program", "--flag"]


def test_yaml_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    text = """
    services:
      db: &defaults
        rollback_script: scripts/rollback_db.sh
        timeout: 100
      api:
        <<: *defaults
        timeout: 200
    """
    services_map = load_services(write_services(tmp_path, text))

    assert services_map.services["api"].timeout == 200
    assert services_map.services["api"].rollback_script == "scripts/rollback_db.sh"


def test_first_service_error_wins(tmp_path: Path) -> None:
    text = """
    services:
      db:
        rollback_script: scripts/rollback_db.sh
        depends_on: [cache]
      api:
        rollback_script: scripts/rollback_db.sh
        timeout: -1
    """
    error = load_error(write_services(tmp_path, text))

    assert error.service == "db"
    assert error.field == "depends_on"


def test_first_error_within_service_wins(tmp_path: Path) -> None:
    text = """
    services:
      db:
        rollback_script: scripts/rollback_db.sh
        retries: 99
        timeout: 0
    """
    error = load_error(write_services(tmp_path, text))

    assert error.field == "retries"
    assert error.line == 4


BASE = """
services:
  db:
    rollback_script: scripts/rollback_db.sh
"""

# Each case: YAML text, expected service, field and line, and a fragment of the message.
INVALID_FILES = {
    "empty file": ("", None, None, None, "the file is empty"),
    "top level list": ("- db\n", None, None, 1, "the top level is a list"),
    "no services key": ("other: 1\n", None, "other", 1, "unknown key 'other'"),
    "services key missing": ("{}\n", None, "services", None, "no 'services' key"),
    "services empty": ("services: {}\n", None, "services", 1, "no services defined"),
    "services null": ("services:\n", None, "services", 1, "no services defined"),
    "services list": ("services: [db]\n", None, "services", 1, "'services' is a list"),
    "duplicate service": (
        BASE + "  db:\n    rollback_script: scripts/rollback_db.sh\n",
        "db",
        None,
        4,
        "duplicate key 'db' on lines 2 and 4",
    ),
    "duplicate nested key": (
        BASE + "    health_check:\n      tcp: db:5432\n      tcp: db:5433\n",
        "db",
        "health_check.tcp",
        6,
        "duplicate key 'tcp' on lines 5 and 6",
    ),
    "duplicate top-level key": (
        BASE + "services: {}\n",
        None,
        "services",
        4,
        "duplicate key 'services' on lines 1 and 4",
    ),
    "unknown service key": (
        BASE + "    rollback: x\n",
        "db",
        "rollback",
        4,
        "unknown key 'rollback'; remove it or fix its spelling (allowed keys: description, paths,",
    ),
    "unknown nested key": (
        BASE + "    health_check:\n      tcp: db:5432\n      interval: 5\n",
        "db",
        "health_check.interval",
        6,
        "allowed keys: http, expect_status, tcp, command, timeout)",
    ),
    "name key": (BASE + "    name: db\n", "db", "name", 4, "unknown key 'name'"),
    "service not mapping": ("services:\n  db: scripts/x.sh\n", "db", None, 2, "expected a mapping"),
    "service null": ("services:\n  db:\n", "db", None, 2, "the service has no settings"),
    "rollback_script missing": (
        "services:\n  db:\n    timeout: 5\n",
        "db",
        "rollback_script",
        2,
        "required key 'rollback_script' is missing; add it",
    ),
    "timeout wrong type": (
        BASE + "    timeout: soon\n",
        "db",
        "timeout",
        4,
        "invalid value 'soon': input should be a valid integer",
    ),
    "timeout quoted number": (
        BASE + "    timeout: '600'\n",
        "db",
        "timeout",
        4,
        "valid integer; write the number without quotes",
    ),
    "timeout zero": (BASE + "    timeout: 0\n", "db", "timeout", 4, "greater than 0"),
    "retries too high": (BASE + "    retries: 11\n", "db", "retries", 4, "less than or equal"),
    "retries boolean": (BASE + "    retries: true\n", "db", "retries", 4, "valid integer"),
    "dry run not boolean": (
        BASE + "    supports_dry_run: maybe\n",
        "db",
        "supports_dry_run",
        4,
        "valid boolean; write true or false",
    ),
    "health timeout zero": (
        BASE + "    health_check:\n      tcp: db:5432\n      timeout: 0\n",
        "db",
        "health_check.timeout",
        6,
        "greater than 0",
    ),
    "health check not mapping": (
        BASE + "    health_check: http://x\n",
        "db",
        "health_check",
        4,
        "expected a mapping, got a string",
    ),
    "paths not list": (BASE + "    paths: db/**\n", "db", "paths", 4, "valid list"),
    "invalid service name": (
        "services:\n  Bad_Name:\n    rollback_script: x\n",
        "Bad_Name",
        None,
        2,
        "invalid service name 'Bad_Name'",
    ),
    "service name too long": (
        f"services:\n  {'a' * 64}:\n    rollback_script: x\n",
        "a" * 64,
        None,
        2,
        "1 to 63 lowercase letters",
    ),
    "numeric service name": (
        "services:\n  1:\n    rollback_script: x\n",
        "1",
        None,
        2,
        "invalid service name 1",
    ),
    "unknown dependency": (
        BASE + "    depends_on: [cache]\n",
        "db",
        "depends_on",
        4,
        "unknown dependency 'cache'; use one of the services in this file: db",
    ),
    "self dependency": (
        BASE + "    depends_on:\n      - db\n",
        "db",
        "depends_on",
        5,
        "service depends on itself; remove 'db' from depends_on",
    ),
    "repeated dependency": (
        BASE + "  api:\n    rollback_script: scripts/rollback_db.sh\n    depends_on: [db, db]\n",
        "api",
        "depends_on",
        6,
        "'db' is listed twice",
    ),
    "bad approval role": (BASE + "    approvals: [DBA]\n", "db", "approvals", 4, "should match"),
    "bad environment name": (
        BASE + "    environment: [Prod]\n",
        "db",
        "environment",
        4,
        "should match",
    ),
    "unbalanced glob bracket": (
        BASE + "    paths: ['db/**', 'db/[ab']\n",
        "db",
        "paths",
        4,
        "glob 'db/[ab' has an unclosed '['",
    ),
    "empty glob": (BASE + "    paths: ['']\n", "db", "paths", 4, "empty glob"),
    "absolute glob": (BASE + "    paths: ['/db/**']\n", "db", "paths", 4, "is absolute"),
    "parent glob": (BASE + "    paths: ['../db/**']\n", "db", "paths", 4, "'..' segment"),
    "two health kinds": (
        BASE + "    health_check:\n      tcp: db:5432\n      http: http://db/health\n",
        "db",
        "health_check",
        4,
        "exactly one of http, tcp or command (found: http, tcp)",
    ),
    "no health kind": (
        BASE + "    health_check:\n      timeout: 3\n",
        "db",
        "health_check",
        4,
        "(found: none)",
    ),
    "bad url scheme": (
        BASE + "    health_check:\n      http: ftp://db/health\n",
        "db",
        "health_check.http",
        5,
        "has scheme 'ftp'",
    ),
    "url without host": (
        BASE + "    health_check:\n      http: 'http:///health'\n",
        "db",
        "health_check.http",
        5,
        "is invalid",
    ),
    "tcp without port": (
        BASE + "    health_check:\n      tcp: db\n",
        "db",
        "health_check.tcp",
        5,
        "tcp address 'db' is invalid",
    ),
    "tcp port out of range": (
        BASE + "    health_check:\n      tcp: db:70000\n",
        "db",
        "health_check.tcp",
        5,
        "port from 1 to 65535",
    ),
    "expect_status on tcp": (
        BASE + "    health_check:\n      tcp: db:5432\n      expect_status: 200\n",
        "db",
        "health_check",
        4,
        "expect_status applies only to http checks",
    ),
    "empty command": (
        BASE + "    health_check:\n      command: []\n",
        "db",
        "health_check.command",
        5,
        "the command is empty",
    ),
    "unsplittable command": (
        BASE + "    health_check:\n      command: \"check 'db\"\n",
        "db",
        "health_check.command",
        5,
        "fix the quoting",
    ),
    "health command missing": (
        BASE + "    health_check:\n      command: scripts/check_db.sh\n",
        "db",
        "health_check.command",
        5,
        "scripts/check_db.sh not found",
    ),
    "migrations without state": (
        BASE + "    migrations:\n      tool: alembic\n      directory: db/migrations\n",
        "db",
        "migrations",
        4,
        "need a state_command or a connection_id",
    ),
    "migrations unknown tool": (
        BASE + "    migrations:\n      tool: sqitch\n      directory: db\n      connection_id: x\n",
        "db",
        "migrations.tool",
        5,
        "'prisma', 'alembic'",
    ),
    "migrations absolute directory": (
        BASE + "    migrations:\n      tool: other\n      directory: /db\n      connection_id: x\n",
        "db",
        "migrations.directory",
        6,
        "relative to the repository root",
    ),
    "migrations missing directory": (
        BASE + "    migrations:\n      tool: other\n      connection_id: x\n",
        "db",
        "migrations.directory",
        4,
        "required key 'directory' is missing",
    ),
    "state command missing": (
        BASE + "    migrations:\n      tool: atlas\n      directory: db\n"
        "      state_command: [scripts/state.sh, --json]\n",
        "db",
        "migrations.state_command",
        7,
        "scripts/state.sh not found",
    ),
    "bad connection id": (
        BASE + "    migrations:\n      tool: other\n      directory: db\n"
        "      connection_id: a b\n",
        "db",
        "migrations.connection_id",
        7,
        "should match pattern",
    ),
    "reserved env key": (
        BASE + "    env:\n      ROLLBACK_BATCH: x\n",
        "db",
        "env",
        5,
        "uses the reserved prefix ROLLBACK_",
    ),
    "lowercase env key": (
        BASE + "    env:\n      A: x\n      path: x\n",
        "db",
        "env",
        6,
        "environment key 'path' is invalid",
    ),
    "boolean env value": (
        BASE + "    env:\n      DEBUG: true\n",
        "db",
        "env",
        5,
        "invalid value True: input should be a valid string; put the value in quotes",
    ),
    "not-a-number env value": (
        BASE + "    env:\n      RATIO: .nan\n",
        "db",
        "env",
        5,
        "nan is not a finite number; put the value in quotes if you mean the text",
    ),
    "timeout over a week": (
        BASE + "    timeout: 604801\n",
        "db",
        "timeout",
        4,
        "invalid value 604801: input should be less than or equal to 604800",
    ),
    "retries over ten": (
        BASE + "    retries: 11\n",
        "db",
        "retries",
        4,
        "invalid value 11: input should be less than or equal to 10",
    ),
    "health check timeout over 300": (
        BASE + "    health_check:\n      tcp: 127.0.0.1:5432\n      timeout: 301\n",
        "db",
        "health_check.timeout",
        6,
        "input should be less than or equal to 300",
    ),
    "infinite health check timeout": (
        BASE + "    health_check:\n      tcp: 127.0.0.1:5432\n      timeout: .inf\n",
        "db",
        "health_check.timeout",
        6,
        "invalid value inf: input should be a finite number; .inf and .nan are not allowed",
    ),
    "not-a-number health check timeout": (
        BASE + "    health_check:\n      tcp: 127.0.0.1:5432\n      timeout: .nan\n",
        "db",
        "health_check.timeout",
        6,
        "invalid value nan: input should be a finite number",
    ),
    "script name too long": (
        "services:\n  db:\n    rollback_script: scripts/" + "a" * 300 + "\n",
        "db",
        "rollback_script",
        3,
        "(File name too long); fix the path",
    ),
}


@pytest.mark.parametrize(
    ("text", "service", "field", "line", "fragment"),
    list(INVALID_FILES.values()),
    ids=list(INVALID_FILES),
)
def test_invalid_file_is_reported(
    tmp_path: Path,
    text: str,
    service: str | None,
    field: str | None,
    line: int | None,
    fragment: str,
) -> None:
    path = write_services(tmp_path, text)
    error = load_error(path)
    message = str(error)

    assert error.file == str(path)
    assert error.service == service
    assert error.field == field
    assert error.line == line
    assert message.startswith(expected_prefix(path, line, service, field))
    assert fragment in message
    assert "\n" not in message


def test_committed_schema_matches_models() -> None:
    committed = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))

    assert committed == services_json_schema()


def test_schema_declares_dialect_and_title() -> None:
    schema = services_json_schema()

    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "Rollback coordinator services.yaml"
    assert schema["required"] == ["services"]


def test_generator_check_passes_committed_schema() -> None:
    result = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stderr


def test_generator_check_fails_stale_schema(tmp_path: Path) -> None:
    stale = tmp_path / "services.schema.json"
    stale.write_text("{}\n", encoding="utf-8")

    check = [sys.executable, str(GENERATOR), "--check", "--output", str(stale)]
    stale_result = subprocess.run(check, capture_output=True, text=True, check=False)
    write = [sys.executable, str(GENERATOR), "--output", str(stale)]
    subprocess.run(write, capture_output=True, text=True, check=True)
    fresh_result = subprocess.run(check, capture_output=True, text=True, check=False)

    assert stale_result.returncode == 1
    assert "is stale or missing" in stale_result.stderr
    assert fresh_result.returncode == 0
    assert stale.read_text(encoding="utf-8") == SCHEMA_FILE.read_text(encoding="utf-8")


def test_full_example_validates_against_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    document = yaml.safe_load(textwrap.dedent(FULL_EXAMPLE))

    jsonschema.Draft202012Validator(services_json_schema()).validate(document)
