"""Tests for loading governance.yaml: the example file, defaults, freeze windows, authority rules
and invalid files."""

from __future__ import annotations

from datetime import UTC, datetime, time
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
    assert governance.approvals.timeout_s == 86400


def commented_section(text: str, key: str) -> str:
    """Return the commented-out example section ``key`` of a file, without the comment marks."""
    lines = text.splitlines()
    start = lines.index(f"# {key}:")
    section = []
    for line in lines[start:]:
        if not line.startswith("#"):
            break
        section.append(line[2:])
    return "\n".join(section) + "\n"


def test_example_file_has_no_freeze_or_authority() -> None:
    governance = load_governance(EXAMPLE_FILE)

    assert governance.freeze_windows == []
    assert governance.authority == []


def test_commented_examples_load(tmp_path: Path) -> None:
    text = EXAMPLE_FILE.read_text(encoding="utf-8")
    examples = commented_section(text, "freeze_windows") + commented_section(text, "authority")

    governance = load_governance(write_governance(tmp_path, text + examples))

    assert [window.name for window in governance.freeze_windows] == [
        "friday-evenings",
        "year-end",
    ]
    assert governance.freeze_windows[0].override_role == "release-manager"
    assert governance.authority[0].held_by == ["approvers"]


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
        "  timeout_s: 600\n"
    )
    governance = load_governance(write_governance(tmp_path, text))

    assert governance.governor == "remote"
    assert governance.default_profile("prod") == "strict"
    assert governance.roles == {"dba": ["bob", "carol"], "release_manager": []}
    assert governance.remote.timeout_s == 2.5
    assert governance.approvals.timeout_s == 600


def test_longest_approval_timeout_loads(tmp_path: Path) -> None:
    text = BASE + "approvals:\n  timeout_s: 2592000\n"

    governance = load_governance(write_governance(tmp_path, text))

    assert governance.approvals.timeout_s == 2592000


def test_default_profile_equal_to_minimum_loads(tmp_path: Path) -> None:
    text = BASE + "    default_profile: balanced\n"

    governance = load_governance(write_governance(tmp_path, text))

    assert governance.default_profile("prod") == "balanced"


def test_freeze_windows_load(tmp_path: Path) -> None:
    text = BASE + ROLES + (
        "freeze_windows:\n"
        "  - name: weekend\n"
        "    weekdays: [Saturday, sun]\n"
        "    start: '00:00'\n"
        "    end: '00:00'\n"
        "    timezone: America/New_York\n"
        "    override_role: sre\n"
        "  - name: year-end\n"
        "    start: 2025-12-20T00:00:00+01:00\n"
        "    end: '2026-01-05T00:00Z'\n"
        "    environments: [prod]\n"
        "  - name: launch-day\n"
        "    start: '2025-09-01T08:00:00'\n"
        "    end: '2025-09-01T20:00:00'\n"
        "    timezone: Asia/Tokyo\n"
    )
    weekend, year_end, launch_day = load_governance(write_governance(tmp_path, text)).freeze_windows

    assert weekend.weekly
    assert weekend.weekdays == ["sat", "sun"]
    assert weekend.start == time(0, 0)
    assert weekend.override_role == "sre"
    assert not year_end.weekly
    assert year_end.start == datetime(2025, 12, 19, 23, 0, tzinfo=UTC)
    assert year_end.end == datetime(2026, 1, 5, 0, 0, tzinfo=UTC)
    assert year_end.environments == ["prod"]
    assert year_end.override_role is None
    assert launch_day.timezone == "Asia/Tokyo"


def test_authority_rules_load(tmp_path: Path) -> None:
    text = BASE + ROLES + (
        "authority:\n"
        "  - action: migration.rewind\n"
        "    environments: [prod]\n"
        "    roles: [sre]\n"
        "  - action: rollback.plan\n"
        "    roles: [sre]\n"
        "    held_by: [runner]\n"
    )
    governance = load_governance(write_governance(tmp_path, text))

    rewind, plan = governance.authority
    assert rewind.held_by == ["runner", "approvers"]
    assert plan.environments == []
    assert governance.authority_rules("migration.rewind", "prod") == [rewind]
    assert governance.authority_rules("migration.rewind", "staging") == []
    assert governance.authority_rules("rollback.plan", "staging") == [plan]


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


# Lines 7 and 8, declaring the role that freeze windows and authority rules refer to.
ROLES = "roles:\n  sre: [pat]\n"
# Lines 7 to 10: the start of a freeze window, whose next field is at line 11.
WINDOW_START = ROLES + "freeze_windows:\n  - name: friday\n"

# Each case: YAML text, expected field and line, and a fragment of the message.
INVALID_FILES = {
    "empty file": ("", None, None, "the file is empty"),
    "top level list": ("- staging\n", None, 1, "the top level is a list"),
    "unknown top-level key": (
        BASE + "approver: alice\n",
        "approver",
        7,
        "unknown key 'approver'; remove it or fix its spelling (allowed keys: governor, "
        "default_environment, environments, roles, remote, approvals, freeze_windows, "
        "authority, review_role, audit, notifications)",
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
    "approval timeout zero": (
        BASE + "approvals:\n  timeout_s: 0\n",
        "approvals.timeout_s",
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
    "unquoted window time": (
        BASE + WINDOW_START + "    start: 16:00\n    end: '23:00'\n    timezone: UTC\n",
        "freeze_windows",
        11,
        'YAML read an unquoted time as the number 960; write it in quotes, as "16:00"',
    ),
    "window time out of range": (
        BASE + WINDOW_START + "    start: '25:00'\n    end: '23:00'\n    timezone: UTC\n",
        "freeze_windows",
        11,
        "invalid window bound '25:00'",
    ),
    "weekly window without timezone": (
        BASE + WINDOW_START + "    start: '16:00'\n    end: '23:00'\n",
        "freeze_windows",
        10,
        "window 'friday' has times of day but no timezone; add an IANA name",
    ),
    "unknown time zone": (
        BASE + WINDOW_START + "    start: '16:00'\n    end: '23:00'\n    timezone: Europe/Berln\n",
        "freeze_windows",
        13,
        "time zone 'Europe/Berln' is unknown",
    ),
    "unknown weekday": (
        BASE + WINDOW_START
        + "    weekdays: [fri, fry]\n    start: '16:00'\n    end: '23:00'\n    timezone: UTC\n",
        "freeze_windows",
        11,
        "weekday 'fry' is invalid; use mon, tue, wed, thu, fri, sat, sun",
    ),
    "empty weekdays": (
        BASE + WINDOW_START
        + "    weekdays: []\n    start: '16:00'\n    end: '23:00'\n    timezone: UTC\n",
        "freeze_windows",
        11,
        "list should have at least 1 item",
    ),
    "fixed window without offset": (
        BASE + WINDOW_START
        + "    start: 2025-12-20T00:00:00\n    end: 2025-12-21T00:00:00+01:00\n",
        "freeze_windows",
        11,
        "window 'friday': start has no UTC offset; add one",
    ),
    "fixed window date only": (
        BASE + WINDOW_START + "    start: 2025-12-20\n    end: 2025-12-21T00:00:00+01:00\n",
        "freeze_windows",
        11,
        "2025-12-20 is a date without a time",
    ),
    "fixed window ends before start": (
        BASE + WINDOW_START
        + "    start: 2025-12-21T00:00:00+01:00\n    end: 2025-12-20T00:00:00+01:00\n",
        "freeze_windows",
        12,
        "window 'friday': end must be later than start",
    ),
    "fixed window with weekdays": (
        BASE + WINDOW_START + "    weekdays: [fri]\n"
        + "    start: 2025-12-20T00:00:00+01:00\n    end: 2025-12-21T00:00:00+01:00\n",
        "freeze_windows",
        11,
        "weekdays apply only to weekly windows",
    ),
    "mixed window bounds": (
        BASE + WINDOW_START + "    start: 2025-12-20T00:00:00+01:00\n    end: '16:00'\n",
        "freeze_windows",
        12,
        "start and end must both be times of day (a weekly window) or both be date-times",
    ),
    "invalid window name": (
        BASE + ROLES + "freeze_windows:\n  - name: Year End\n"
        + "    start: '16:00'\n    end: '23:00'\n    timezone: UTC\n",
        "freeze_windows",
        10,
        "window name 'Year End' is invalid",
    ),
    "unknown window key": (
        BASE + WINDOW_START + "    start: '16:00'\n    end: '23:00'\n    timezone: UTC\n"
        + "    reason: quarter close\n",
        "freeze_windows.reason",
        14,
        "unknown key 'reason'",
    ),
    "duplicate window name": (
        BASE + WINDOW_START + "    start: '16:00'\n    end: '23:00'\n    timezone: UTC\n"
        + "  - name: friday\n    start: '01:00'\n    end: '02:00'\n    timezone: UTC\n",
        "freeze_windows",
        9,
        "two windows are named 'friday'; rename one",
    ),
    "window in unknown environment": (
        BASE + WINDOW_START + "    start: '16:00'\n    end: '23:00'\n    timezone: UTC\n"
        + "    environments: [qa]\n",
        "freeze_windows",
        9,
        "window 'friday': environment 'qa' is not one of the environments (staging, prod)",
    ),
    "undeclared override role": (
        BASE + WINDOW_START + "    start: '16:00'\n    end: '23:00'\n    timezone: UTC\n"
        + "    override_role: release-manager\n",
        "freeze_windows",
        9,
        "window 'friday': role 'release-manager' is not declared under roles (sre)",
    ),
    "unknown authority action": (
        BASE + ROLES + "authority:\n  - action: migration.undo\n    roles: [sre]\n",
        "authority",
        10,
        "invalid value 'migration.undo': input should be 'rollback.plan', 'rollback.service' "
        "or 'migration.rewind'",
    ),
    "authority without roles": (
        BASE + ROLES + "authority:\n  - action: migration.rewind\n    roles: []\n",
        "authority",
        11,
        "list should have at least 1 item",
    ),
    "authority held by planner": (
        BASE + ROLES + "authority:\n  - action: migration.rewind\n    roles: [sre]\n"
        + "    held_by: [planner]\n",
        "authority",
        12,
        "input should be 'runner' or 'approvers'",
    ),
    "authority unknown environment": (
        BASE + ROLES + "authority:\n  - action: migration.rewind\n    roles: [sre]\n"
        + "    environments: [qa]\n",
        "authority",
        9,
        "rule 1 (migration.rewind): environment 'qa' is not one of the environments",
    ),
    "authority undeclared role": (
        BASE + ROLES + "authority:\n  - action: migration.rewind\n    roles: [dba]\n",
        "authority",
        9,
        "rule 1 (migration.rewind): role 'dba' is not declared under roles (sre)",
    ),
    "infinite approval timeout": (
        BASE + "approvals:\n  timeout_s: .inf\n",
        "approvals.timeout_s",
        8,
        "invalid value inf: input should be a finite number",
    ),
    "not-a-number approval timeout": (
        BASE + "approvals:\n  timeout_s: .nan\n",
        "approvals.timeout_s",
        8,
        "invalid value nan: input should be a finite number",
    ),
    "approval timeout over 30 days": (
        BASE + "approvals:\n  timeout_s: 2592001\n",
        "approvals.timeout_s",
        8,
        "input should be less than or equal to 2592000",
    ),
    "not-a-number remote timeout": (
        BASE + "remote:\n  timeout_s: .nan\n",
        "remote.timeout_s",
        8,
        "invalid value nan: input should be a finite number",
    ),
    "default profile below minimum": (
        BASE + "    default_profile: flow\n",
        "environments.prod.default_profile",
        7,
        "default profile 'flow' is weaker than the minimum profile 'balanced'",
    ),
    "environment name with shell syntax": (
        "default_environment: staging\nenvironments:\n  staging: {}\n  'prod; rm -rf /': {}\n",
        "environments",
        4,
        "environment name 'prod; rm -rf /' is invalid; use lowercase letters",
    ),
    "environment name with template syntax": (
        "default_environment: staging\nenvironments:\n  staging: {}\n  '{{ 7*7 }}': {}\n",
        "environments",
        4,
        "environment name '{{ 7*7 }}' is invalid",
    ),
    "uppercase environment name": (
        "default_environment: Prod\nenvironments:\n  Prod: {}\n",
        "default_environment",
        1,
        "environment name 'Prod' is invalid",
    ),
    "default environment with template syntax": (
        "default_environment: '{{ 7*7 }}'\nenvironments:\n  staging: {}\n",
        "default_environment",
        1,
        "environment name '{{ 7*7 }}' is invalid",
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
