"""Tests for loading governance.yaml: the example file, defaults and invalid files."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollback_coordinator.core.errors import ConfigError
from rollback_coordinator.core.governance import load_governance

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_FILE = REPOSITORY_ROOT / "config" / "governance.yaml"

# Lines 1 to 6, so text appended to BASE starts at line 7.
BASE = """\
default_environment: staging
environments:
  staging:
    minimum_profile: flow
  prod:
    minimum_profile: balanced
"""


def write_governance(folder: Path, text: str) -> Path:
    path = folder / "governance.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_governance(path)
    return caught.value


def expected_prefix(path: Path, line: int | None, field: str | None) -> str:
    location = str(path) if line is None else f"{path}:{line}"
    return location if field is None else f"{location}, field '{field}'"


def test_example_file_loads() -> None:
    governance = load_governance(EXAMPLE_FILE)

    assert governance.governor == "embedded"
    assert governance.default_environment == "staging"
    assert governance.minimum_profile("prod") == "balanced"
    assert governance.holds_role("alice", "release-manager")
    assert governance.remote.connection_id == "hummbl_governor_default"
    assert governance.approvals.poke_interval_s == 10


def test_minimal_file_gets_defaults(tmp_path: Path) -> None:
    governance = load_governance(write_governance(tmp_path, BASE))

    assert governance.governor == "embedded"
    assert governance.roles == {}
    assert governance.default_profile("prod") == "balanced"
    assert governance.remote.retries == 2
    assert governance.approvals.timeout_s == 86400


def test_full_file_loads(tmp_path: Path) -> None:
    text = BASE + (
        "    default_profile: strict\n"
        "governor: remote\n"
        "roles:\n"
        "  dba: [bob, carol]\n"
        "  release_manager: []\n"
        "remote:\n"
        "  connection_id: governor.prod\n"
        "  timeout_s: 2.5\n"
        "  retries: 0\n"
        "approvals:\n"
        "  poke_interval_s: 5\n"
        "  timeout_s: 600\n"
    )
    governance = load_governance(write_governance(tmp_path, text))

    assert governance.governor == "remote"
    assert governance.default_profile("prod") == "strict"
    assert governance.roles == {"dba": ["bob", "carol"], "release_manager": []}
    assert governance.remote.timeout_s == 2.5
    assert governance.approvals.poke_interval_s == 5


def test_relative_path_gives_absolute_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_governance(tmp_path, "governor: embedded\n")
    monkeypatch.chdir(tmp_path)

    error = load_error(Path("governance.yaml"))

    assert error.file == str(tmp_path / "governance.yaml")


def test_missing_file_names_config_dir(tmp_path: Path) -> None:
    path = tmp_path / "governance.yaml"

    error = load_error(path)

    assert error.file == str(path)
    assert error.field is None
    assert error.line is None
    assert "file not found" in str(error)
    assert "ROLLBACK_CONFIG_DIR" in str(error)


def test_invalid_yaml_names_line(tmp_path: Path) -> None:
    path = write_governance(tmp_path, BASE + "roles:\n  dba: [bob\n")

    error = load_error(path)

    assert error.file == str(path)
    assert error.line == 9
    assert str(error).startswith(f"{path}:9: invalid YAML: ")
    assert "\n" not in str(error)


# Each case: YAML text, expected field and line, and a fragment of the message.
INVALID_FILES = {
    "empty file": ("", None, None, "the file is empty"),
    "top level list": ("- staging\n", None, 1, "the top level is a list"),
    "unknown top-level key": (
        BASE + "approver: alice\n",
        "approver",
        7,
        "unknown key 'approver'; remove it or fix its spelling (allowed keys: governor, "
        "default_environment, environments, roles, remote, approvals)",
    ),
    "unknown environment key": (
        BASE + "    approvers: 2\n",
        "environments.prod.approvers",
        7,
        "(allowed keys: minimum_profile, default_profile)",
    ),
    "unknown remote key": (
        BASE + "remote:\n  url: http://127.0.0.1:9000\n",
        "remote.url",
        8,
        "unknown key 'url'",
    ),
    "duplicate top-level key": (
        "governor: embedded\n" + BASE + "governor: remote\n",
        "governor",
        8,
        "duplicate key 'governor' on lines 1 and 8",
    ),
    "duplicate environment": (
        BASE + "  staging:\n    minimum_profile: strict\n",
        "environments.staging",
        7,
        "duplicate key 'staging' on lines 3 and 7",
    ),
    "duplicate nested key": (
        BASE + "    minimum_profile: strict\n",
        "environments.prod.minimum_profile",
        7,
        "duplicate key 'minimum_profile' on lines 6 and 7",
    ),
    "unknown minimum profile": (
        BASE.replace("minimum_profile: balanced", "minimum_profile: paranoid"),
        "environments.prod.minimum_profile",
        6,
        "invalid value 'paranoid': input should be 'flow', 'balanced' or 'strict'",
    ),
    "unknown default profile": (
        BASE + "    default_profile: relaxed\n",
        "environments.prod.default_profile",
        7,
        "invalid value 'relaxed'",
    ),
    "unknown default environment": (
        BASE.replace("default_environment: staging", "default_environment: qa"),
        "default_environment",
        1,
        "'qa' is not one of the environments (staging, prod)",
    ),
    "default environment missing": (
        BASE.replace("default_environment: staging\n", ""),
        "default_environment",
        None,
        "required key 'default_environment' is missing; add it",
    ),
    "environments missing": (
        "default_environment: staging\n",
        "environments",
        None,
        "required key 'environments' is missing",
    ),
    "environments list": (
        "default_environment: staging\nenvironments: [staging]\n",
        "environments",
        2,
        "expected a mapping, got a list",
    ),
    "environment not mapping": (
        BASE + "  qa: strict\n",
        "environments.qa",
        7,
        "expected a mapping, got a string ('strict')",
    ),
    "governor not embedded or remote": (
        BASE + "governor: cloud\n",
        "governor",
        7,
        "invalid value 'cloud': input should be 'embedded' or 'remote'",
    ),
    "default environment number": (
        BASE.replace("default_environment: staging", "default_environment: 1"),
        "default_environment",
        1,
        "invalid value 1: input should be a valid string",
    ),
    "retries quoted number": (
        BASE + "remote:\n  retries: '3'\n",
        "remote.retries",
        8,
        "valid integer; write the number without quotes",
    ),
    "retries too high": (BASE + "remote:\n  retries: 11\n", "remote.retries", 8, "less than"),
    "timeout not number": (
        BASE + "approvals:\n  timeout_s: tomorrow\n",
        "approvals.timeout_s",
        8,
        "invalid value 'tomorrow': input should be a valid number",
    ),
    "poke interval zero": (
        BASE + "approvals:\n  poke_interval_s: 0\n",
        "approvals.poke_interval_s",
        8,
        "greater than 0",
    ),
    "bad connection id": (
        BASE + "remote:\n  connection_id: a b\n",
        "remote.connection_id",
        8,
        "should match pattern",
    ),
    "roles list": (BASE + "roles: [dba]\n", "roles", 7, "expected a mapping, got a list"),
    "invalid role name": (
        BASE + "roles:\n  dba: [bob]\n  Release Manager: [alice]\n",
        "roles",
        9,
        "role name 'Release Manager' is invalid",
    ),
    "numeric role name": (
        BASE + "roles:\n  1: [alice]\n",
        "roles",
        8,
        "invalid value 1: input should be a valid string",
    ),
    "repeated user": (
        BASE + "roles:\n  dba:\n    - bob\n    - alice\n    - bob\n",
        "roles.dba",
        8,
        "'bob' is listed twice; remove the repeat",
    ),
    "user not string": (
        BASE + "roles:\n  dba:\n    - bob\n    - 42\n",
        "roles.dba",
        10,
        "invalid value 42: input should be a valid string",
    ),
    "user list not list": (
        BASE + "roles:\n  dba: bob\n",
        "roles.dba",
        8,
        "invalid value 'bob': input should be a valid list",
    ),
}


@pytest.mark.parametrize(
    ("text", "field", "line", "fragment"),
    list(INVALID_FILES.values()),
    ids=list(INVALID_FILES),
)
def test_invalid_file_is_reported(
    tmp_path: Path, text: str, field: str | None, line: int | None, fragment: str
) -> None:
    path = write_governance(tmp_path, text)
    error = load_error(path)
    message = str(error)

    assert error.file == str(path)
    assert error.service is None
    assert error.field == field
    assert error.line == line
    assert message.startswith(expected_prefix(path, line, field))
    assert fragment in message
    assert "\n" not in message


def test_first_error_in_file_wins(tmp_path: Path) -> None:
    text = BASE + "remote:\n  retries: 11\ngovernor: cloud\n"
    path = write_governance(tmp_path, text)

    error = load_error(path)

    assert error.field == "remote.retries"
    assert error.line == 8
