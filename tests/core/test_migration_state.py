"""Tests for the state command contract: exit codes, the JSON report and expected migrations."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from rollback_coordinator.core.migration_state import MigrationVerdict, verify_with_state_command
from rollback_coordinator.core.plan import canonical_json
from rollback_coordinator.core.scripts import ScriptContext

CONTEXT = ScriptContext(
    batch="2024-05-01-checkout",
    service="payments",
    profile="strict",
    run_id="manual__2024-05-01T10:00:00",
    plan_digest="cd" * 32,
    dry_run=False,
    from_ref="deadbeef",
    to_ref="cafebabe",
    repo="/srv/repo",
    config_dir="/etc/rollback",
    data_dir="/var/lib/rollback",
)

EXPECTED = ["0041_add_index", "0042_add_column"]

SAFE_REPORT = {
    "applied": ["0040_base", "0041_add_index", "0042_add_column"],
    "pending": [],
    "failed": [],
    "head": "0042_add_column",
    "safe": True,
    "reason": "both migrations have down steps",
    "tool_version": "3.1",
}


def write_command(folder: Path, body: str) -> Path:
    command = folder / "migration-state.sh"
    command.write_text("#!/bin/sh\nenv -0 > environment.bin\n" + body)
    command.chmod(0o755)
    return command


def report_line(report: dict[str, object]) -> str:
    """Return shell text that prints ``report`` as one JSON line."""
    return f"cat <<'REPORT'\n{json.dumps(report)}\nREPORT\n"


def verify(
    folder: Path,
    body: str,
    *,
    expected: list[str] | None = None,
    timeout_s: float = 30.0,
    extra_env: dict[str, str] | None = None,
) -> MigrationVerdict:
    command = write_command(folder, body)
    return verify_with_state_command(
        [str(command)],
        tool="flyway",
        expected=EXPECTED if expected is None else expected,
        context_env=CONTEXT.environment(),
        extra_env=extra_env or {},
        cwd=folder,
        timeout_s=timeout_s,
    )


def recorded_environment(folder: Path) -> dict[str, str]:
    entries = (folder / "environment.bin").read_bytes().decode().split("\0")
    return dict(entry.split("=", 1) for entry in entries if entry)


def test_exit_zero_with_report_safe(tmp_path: Path) -> None:
    verdict = verify(tmp_path, "echo checking flyway history\n" + report_line(SAFE_REPORT))

    assert verdict.safe
    assert verdict.source == "state_command"
    assert verdict.tool == "flyway"
    assert verdict.applied == tuple(SAFE_REPORT["applied"])  # type: ignore[arg-type]
    assert verdict.head == "0042_add_column"
    assert verdict.expected == tuple(EXPECTED)
    assert verdict.reason.endswith(": both migrations have down steps")
    assert verdict.report is not None
    assert verdict.report["tool_version"] == "3.1"


def test_command_environment(tmp_path: Path) -> None:
    verify(
        tmp_path,
        "exit 0\n",
        extra_env={"ROLLBACK_MIGRATIONS": "forged", "FLYWAY_URL": "jdbc:postgresql://127.0.0.1/x"},
    )

    seen = recorded_environment(tmp_path)
    assert seen["ROLLBACK_MIGRATIONS"] == "0041_add_index\n0042_add_column"
    assert seen["ROLLBACK_MIGRATION_TOOL"] == "flyway"
    assert seen["ROLLBACK_BATCH"] == CONTEXT.batch
    assert seen["FLYWAY_URL"] == "jdbc:postgresql://127.0.0.1/x"


def test_no_expected_migrations(tmp_path: Path) -> None:
    verdict = verify(tmp_path, "exit 0\n", expected=[])

    assert verdict.safe
    assert recorded_environment(tmp_path)["ROLLBACK_MIGRATIONS"] == ""


def test_exit_zero_without_report(tmp_path: Path) -> None:
    verdict = verify(tmp_path, "echo all clear\n")

    assert verdict.safe
    assert verdict.applied == ()
    assert verdict.report is None
    assert verdict.reason == "state command reports the database is safe to rewind: all clear"


def test_exit_three_not_safe(tmp_path: Path) -> None:
    body = "echo '0042_add_column dropped a column; data would be lost'\nexit 3\n"

    verdict = verify(tmp_path, body)

    assert not verdict.safe
    assert verdict.reason == (
        "state command reports the database is not safe to rewind: "
        "0042_add_column dropped a column; data would be lost"
    )


def test_exit_three_report_reason(tmp_path: Path) -> None:
    report = {**SAFE_REPORT, "safe": False, "reason": "0042_add_column has no down step"}

    verdict = verify(tmp_path, report_line(report) + "exit 3\n")

    assert not verdict.safe
    assert verdict.reason.endswith(": 0042_add_column has no down step")


def test_exit_zero_report_says_unsafe(tmp_path: Path) -> None:
    verdict = verify(tmp_path, report_line({**SAFE_REPORT, "safe": False}))

    assert not verdict.safe
    assert "exited with 0 but its report says safe=false" in verdict.reason


def test_exit_three_report_says_safe(tmp_path: Path) -> None:
    verdict = verify(tmp_path, report_line(SAFE_REPORT) + "exit 3\n")

    assert not verdict.safe
    assert "exited with 3 but its report says safe=true" in verdict.reason


def test_malformed_report_line(tmp_path: Path) -> None:
    verdict = verify(tmp_path, "echo '{\"applied\": [\"0041_add_index\",'\n")

    assert not verdict.safe
    assert "the last output line is not valid JSON" in verdict.reason


def test_report_wrong_types(tmp_path: Path) -> None:
    cases = {
        "applied": "0041_add_index",
        "failed": [41],
        "head": ["0042_add_column"],
        "safe": "yes",
        "reason": 3,
    }
    for key, value in cases.items():
        verdict = verify(tmp_path, report_line({**SAFE_REPORT, key: value}))

        assert not verdict.safe, key
        assert f"'{key}' must be" in verdict.reason, key


def test_expected_migration_not_applied(tmp_path: Path) -> None:
    report = {**SAFE_REPORT, "applied": ["0040_base", "0041_add_index"]}

    verdict = verify(tmp_path, report_line(report))

    assert not verdict.safe
    assert verdict.reason.startswith(
        "migration 0042_add_column of the batch is missing from the state command's 'applied' list"
    )


def test_expected_migration_failed(tmp_path: Path) -> None:
    report = {**SAFE_REPORT, "failed": ["0041_add_index"]}

    verdict = verify(tmp_path, report_line(report))

    assert not verdict.safe
    assert verdict.failed == ("0041_add_index",)
    assert "migration 0041_add_index of the batch is listed as failed" in verdict.reason


def test_other_exit_code_fails(tmp_path: Path) -> None:
    verdict = verify(tmp_path, "echo 'cannot reach database' >&2\nexit 1\n")

    assert not verdict.safe
    assert verdict.reason == (
        "state command failed with exit code 1: cannot reach database, "
        "so the database is treated as not safe to rewind"
    )


def test_timeout_not_safe(tmp_path: Path) -> None:
    verdict = verify(tmp_path, "sleep 60\n", timeout_s=0.5)

    assert not verdict.safe
    assert verdict.reason.startswith("state command timed out after 0.5 s")


def test_missing_command_not_safe(tmp_path: Path) -> None:
    verdict = verify_with_state_command(
        [str(tmp_path / "absent.sh")],
        tool="flyway",
        expected=EXPECTED,
        context_env=CONTEXT.environment(),
        extra_env={},
        cwd=tmp_path,
        timeout_s=5.0,
    )

    assert not verdict.safe
    assert verdict.reason.startswith(f"state command {tmp_path / 'absent.sh'} was not found")


def test_migration_name_with_line_break(tmp_path: Path) -> None:
    verdict = verify(tmp_path, "touch ran\nexit 0\n", expected=["0041\n0042"])

    assert not verdict.safe
    assert "contains a line break" in verdict.reason
    assert not (tmp_path / "ran").exists()


def test_record_and_digest(tmp_path: Path) -> None:
    lines: list[str] = []
    command = write_command(tmp_path, report_line(SAFE_REPORT))

    verdict = verify_with_state_command(
        [str(command)],
        tool="flyway",
        expected=EXPECTED,
        context_env=CONTEXT.environment(),
        extra_env={},
        cwd=tmp_path,
        timeout_s=30.0,
        on_line=lines.append,
    )

    record = verdict.to_record()
    output = (json.dumps(SAFE_REPORT) + "\n").encode()
    assert record["expected"] == EXPECTED
    assert record["output_sha256"] == hashlib.sha256(output).hexdigest()
    assert record["checked_at"].endswith("+00:00")
    assert verdict.sha256 == hashlib.sha256(canonical_json(record)).hexdigest()
    assert json.loads(json.dumps(record)) == record
    assert lines == [json.dumps(SAFE_REPORT)]
    assert hash(verdict) == hash(verdict)
