"""Tests for hostile or broken YAML in the configuration files: alias bombs, control characters,
deep nesting, huge values. Each must end in a one-line ConfigError from the reader, quickly and
in bounded memory."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rollback_coordinator.core.errors import ConfigError
from rollback_coordinator.core.governance import load_governance
from rollback_coordinator.core.services import load_services
from rollback_coordinator.core.watch_config import load_watch_config
from rollback_coordinator.core.yaml_lines import MAX_NESTING_DEPTH, MAX_YAML_VALUES, short_repr

# Lines 1 to 3: a valid service, so that what follows is the only problem.
SERVICE = "services:\n  db:\n    rollback_script: scripts/rollback_db.sh\n"
GOVERNANCE = "default_environment: staging\nenvironments:\n  staging:\n    minimum_profile: flow\n"
BOMB_DEPTH = 10
BOMB_MESSAGE = f"too many YAML aliases expand this file to more than {MAX_YAML_VALUES:,} values"
# Address space for a child process that loads a bomb: enough for Python, PyYAML and pydantic,
# far too little for an expanded bomb.
CHILD_MEMORY_BYTES = 1024**3


def alias_bomb(depth: int, indent: str) -> str:
    """Return YAML lines where anchor N is a list of ten aliases of anchor N-1.

    The last anchor expands to 10**depth values.
    """
    lines = [f"{indent}x0: &a0 [" + ", ".join(["lol"] * 10) + "]\n"]
    for level in range(1, depth):
        aliases = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"{indent}x{level}: &a{level} [{aliases}]\n")
    return "".join(lines)


# Line 4 is the unknown key, and the anchors follow on lines 5 to 14.
BOMB_UNDER_UNKNOWN_KEY = SERVICE + "    x-anchors:\n" + alias_bomb(BOMB_DEPTH, "      ")
BOMB_IN_PATHS = BOMB_UNDER_UNKNOWN_KEY + f"    paths: *a{BOMB_DEPTH - 1}\n"
BOMB_LINES = range(5, 5 + BOMB_DEPTH)


def write_services(folder: Path, text: str) -> Path:
    script = folder / "scripts" / "rollback_db.sh"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    script.chmod(0o755)
    path = folder / "services.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def write_governance(folder: Path, text: str) -> Path:
    path = folder / "governance.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def services_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_services(path)
    return caught.value


def governance_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_governance(path)
    return caught.value


@pytest.mark.parametrize(
    "text", [BOMB_UNDER_UNKNOWN_KEY, BOMB_IN_PATHS], ids=["unknown key", "paths"]
)
def test_alias_bomb_rejected_by_reader(tmp_path: Path, text: str) -> None:
    path = write_services(tmp_path, text)

    error = services_error(path)

    assert error.file == str(path)
    assert BOMB_MESSAGE in str(error)
    assert "remove the anchors" in str(error)
    assert error.line in BOMB_LINES
    # The reader knows no service; an error from validation would name one.
    assert error.service is None
    assert "\n" not in str(error)


def test_alias_bomb_in_governance_rejected(tmp_path: Path) -> None:
    text = GOVERNANCE + "x-anchors:\n" + alias_bomb(BOMB_DEPTH, "  ")
    path = write_governance(tmp_path, text)

    error = governance_error(path)

    assert BOMB_MESSAGE in str(error)
    assert error.line in range(6, 6 + BOMB_DEPTH)
    assert error.field is None


CHILD_LOAD = """
import resource
import sys

resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))

from rollback_coordinator.core.errors import ConfigError
from rollback_coordinator.core.services import load_services

try:
    load_services(sys.argv[1])
except ConfigError as error:
    print(error)
    sys.exit(3)
"""


def test_alias_bomb_loads_in_bounded_memory(tmp_path: Path) -> None:
    path = write_services(tmp_path, BOMB_IN_PATHS)
    child = textwrap.dedent(CHILD_LOAD).format(limit=CHILD_MEMORY_BYTES)

    result = subprocess.run(
        [sys.executable, "-c", child, str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )

    assert result.returncode == 3, result.stderr[-2000:]
    assert BOMB_MESSAGE in result.stdout
    assert result.stderr == ""


def test_anchors_within_limit_still_load(tmp_path: Path) -> None:
    text = (
        "services:\n"
        "  db: {rollback_script: scripts/rollback_db.sh, paths: &shared [db/**, schema/**]}\n"
        "  api: {rollback_script: scripts/rollback_db.sh, paths: *shared}\n"
    )
    path = write_services(tmp_path, text)

    services = load_services(path)

    assert services.services["api"].paths == ["db/**", "schema/**"]


def test_recursive_alias_rejected(tmp_path: Path) -> None:
    path = write_services(tmp_path, SERVICE + "    x-loop: &loop [1, {again: *loop}]\n")

    error = services_error(path)

    assert "the YAML alias *loop refers to the value that contains it" in str(error)
    assert error.line == 4


def test_aliases_nesting_too_deep_rejected(tmp_path: Path) -> None:
    # Each anchor nests 40 lists and ends in an alias of the one before, so the text
    # stays shallow while the expanded value is 200 levels deep.
    chain = ["    x-chain:\n"]
    for level in range(5):
        inner = f"*c{level - 1}" if level else "1"
        chain.append(f"      c{level}: &c{level} " + "[" * 40 + inner + "]" * 40 + "\n")
    path = write_services(tmp_path, SERVICE + "".join(chain))

    error = services_error(path)

    assert f"YAML aliases nest this value more than {MAX_NESTING_DEPTH} levels deep" in str(error)
    assert error.line in range(6, 10)


def test_too_many_values_rejected(tmp_path: Path) -> None:
    items = ", ".join(["1"] * (MAX_YAML_VALUES + 1))
    path = write_services(tmp_path, SERVICE + f"    x-many: [{items}]\n")

    error = services_error(path)

    assert f"the file contains more than {MAX_YAML_VALUES:,} YAML values" in str(error)
    assert error.line == 4


CONTROL_CHARACTERS = {"NUL": "\x00", "BEL": "\x07", "ESC": "\x1b", "DEL": "\x7f"}


@pytest.mark.parametrize(
    "character", list(CONTROL_CHARACTERS.values()), ids=list(CONTROL_CHARACTERS)
)
def test_control_character_in_services_named(tmp_path: Path, character: str) -> None:
    path = write_services(tmp_path, SERVICE + f"    description: ab{character}cd\n")

    error = services_error(path)

    assert error.file == str(path)
    assert error.line == 4
    assert f"character {character!r} at column 20 is not allowed in YAML" in str(error)
    assert "\n" not in str(error)


def test_control_character_in_governance_named(tmp_path: Path) -> None:
    path = write_governance(tmp_path, GOVERNANCE + "roles:\n  dba: [al\x07ice]\n")

    error = governance_error(path)

    assert error.file == str(path)
    assert error.line == 6
    assert "character '\\x07' at column 11 is not allowed in YAML" in str(error)
    assert "<unicode string>" not in str(error)


def test_control_character_in_watch_named(tmp_path: Path) -> None:
    path = tmp_path / "watch.yaml"
    path.write_text("watch:\n  repository: /srv/re\x1bpo\n", encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        load_watch_config(path)

    assert caught.value.line == 2
    assert "character '\\x1b' at column 22 is not allowed in YAML" in str(caught.value)


def test_control_character_after_crlf_lines(tmp_path: Path) -> None:
    text = SERVICE.replace("\n", "\r\n") + "    description: \x00\r\n"
    path = tmp_path / "services.yaml"
    path.write_bytes(text.encode("utf-8"))

    error = services_error(path)

    assert error.line == 4
    assert "column 18" in str(error)


def test_deeply_nested_lists_rejected(tmp_path: Path) -> None:
    path = write_services(tmp_path, SERVICE + "    x-deep: " + "[" * 20_000 + "]" * 20_000 + "\n")

    error = services_error(path)

    assert "nesting too deep" in str(error)
    assert f"more than {MAX_NESTING_DEPTH} levels" in str(error)
    assert error.line == 4


CHILD_SHALLOW_STACK = """
import sys

from rollback_coordinator.core.errors import ConfigError
from rollback_coordinator.core.services import load_services

sys.setrecursionlimit(120)
try:
    load_services(sys.argv[1])
except ConfigError as error:
    print(error)
    sys.exit(3)
"""


def test_recursion_limit_reported_as_nesting(tmp_path: Path) -> None:
    # 80 levels are within MAX_NESTING_DEPTH but exceed a recursion limit of 120 frames,
    # which simulates a caller whose own stack is already deep.
    path = write_services(tmp_path, SERVICE + "    x-deep: " + "[" * 80 + "]" * 80 + "\n")

    result = subprocess.run(
        [sys.executable, "-c", CHILD_SHALLOW_STACK, str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )

    assert result.returncode == 3, result.stderr[-2000:]
    assert "nesting too deep for the YAML parser" in result.stdout


SCALARS = {
    "integer too long": ("9" * 5000, "as a YAML int", "Exceeds the limit (4300 digits)"),
    "impossible date": ("2025-13-01", "as a YAML timestamp", "month must be in 1..12"),
}


@pytest.mark.parametrize(("value", "kind", "reason"), list(SCALARS.values()), ids=list(SCALARS))
def test_unreadable_scalar_named(tmp_path: Path, value: str, kind: str, reason: str) -> None:
    path = write_services(tmp_path, SERVICE + f"    description: {value}\n")

    error = services_error(path)

    assert error.line == 4
    assert kind in str(error)
    assert reason in str(error)
    assert "set_int_max_str_digits" not in str(error)
    assert len(str(error)) < 300


def test_huge_value_quoted_briefly(tmp_path: Path) -> None:
    items = ", ".join(f"item{index}" for index in range(50_000))
    path = write_services(tmp_path, SERVICE + f"    description: [{items}]\n")

    error = services_error(path)

    assert error.field == "description"
    assert "invalid value ['item0', 'item1'," in str(error)
    assert len(str(error)) < 300


def test_huge_unknown_key_quoted_briefly(tmp_path: Path) -> None:
    # An explicit key ('? key'), because YAML limits implicit keys to 1024 characters.
    path = write_services(tmp_path, SERVICE + f"    ? {'k' * 100_000}\n    : 1\n")

    error = services_error(path)

    assert "unknown key 'kkk" in str(error)
    assert len(str(error)) < 600


def test_short_repr_of_shared_value_is_bounded() -> None:
    # Ten references to the same list at each of ten levels: a full repr would need 10**10
    # items, so this returns only if the repr stops early.
    value: list[object] = ["lol"] * 10
    for _ in range(9):
        value = [value] * 10

    text = short_repr(value)

    assert text.startswith("[[[")
    assert len(text) <= 60
