"""Decide whether a service's database can be rewound, by asking the service's state command.

A services.yaml entry may name ``migrations.state_command`` for migration tools that have no
built-in adapter. The coordinator runs that command before the rollback script and reads
its exit code and output as follows.

Environment: the command gets the same variables as the rollback script (ROLLBACK_BATCH,
ROLLBACK_SERVICE, ROLLBACK_PROFILE, ROLLBACK_RUN_ID, ROLLBACK_PLAN_DIGEST, ROLLBACK_DRY_RUN,
ROLLBACK_FROM_REF, ROLLBACK_TO_REF, ROLLBACK_REPO, ROLLBACK_CONFIG_DIR, ROLLBACK_DATA_DIR,
the service's ``env`` entries, and PATH, HOME, LANG, LC_ALL, TZ, TMPDIR, USER and LOGNAME
from the worker). Two more variables describe the check:

- ROLLBACK_MIGRATIONS: the names of the migrations the batch added, one per line. It is
  empty when the batch added none.
- ROLLBACK_MIGRATION_TOOL: the ``migrations.tool`` value from services.yaml.

Exit code:

- 0: the database is safe to rewind.
- 3: the database is not safe to rewind. The output should say why.
- Any other exit code, or running past the timeout: the verification failed, and the
  database is treated as not safe to rewind.

Report: the command may print one JSON object as its last non-empty output line::

    {"applied": ["0041_add_index"], "pending": [], "failed": [], "head": "0041_add_index",
     "safe": true, "reason": "all migrations of the batch are applied"}

Every key is optional. ``applied``, ``pending`` and ``failed`` are lists of migration names,
``head`` is a name or null, ``safe`` is true or false and ``reason`` is text. Other keys are
kept in the record but otherwise ignored. A line that starts with "{" but is not valid JSON,
or a known key with the wrong type, makes the verification fail. When ``safe`` is present it
must agree with the exit code (true with 0, false with 3), or the verification fails.
When the command exits with 0 and prints a report, every migration in ROLLBACK_MIGRATIONS
must be listed in ``applied`` and none in ``failed``. Otherwise the database is not safe to
rewind.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rollback_coordinator.core.plan import canonical_json
from rollback_coordinator.core.scripts import ScriptResult, run_script

SAFE_EXIT_CODE = 0
NOT_SAFE_EXIT_CODE = 3

_NAME_LIST_KEYS = ("applied", "pending", "failed")
_NOT_SAFE = ", so the database is treated as not safe to rewind"


@dataclass(frozen=True)
class MigrationVerdict:
    """Whether a database can be rewound for one service, with the evidence behind it.

    ``expected`` lists the migrations the batch added. ``applied``, ``failed`` and ``head``
    come from the command's JSON report and are empty or None without one. ``report`` is that
    report as printed, unknown keys included. ``checked_at`` is an ISO 8601 UTC timestamp.
    """

    safe: bool
    tool: str
    source: str
    reason: str
    applied: tuple[str, ...]
    failed: tuple[str, ...]
    expected: tuple[str, ...]
    head: str | None
    output_sha256: str
    checked_at: str
    report: dict[str, Any] | None = field(default=None, hash=False)

    def to_record(self) -> dict[str, Any]:
        """Return the verdict as JSON-ready data for the audit record."""
        record = asdict(self)
        for key in ("applied", "failed", "expected"):
            record[key] = list(record[key])
        return record

    @property
    def sha256(self) -> str:
        """SHA-256 of the canonical JSON of ``to_record()``."""
        return hashlib.sha256(canonical_json(self.to_record())).hexdigest()


class _ReportError(ValueError):
    """A JSON report line that is malformed or has a known key of the wrong type."""


def verify_with_state_command(
    argv: list[str],
    *,
    tool: str,
    expected: list[str],
    context_env: dict[str, str],
    extra_env: dict[str, str],
    cwd: Path,
    timeout_s: float,
    on_line: Callable[[str], None] | None = None,
) -> MigrationVerdict:
    """Run the state command and turn its exit code and report into a verdict.

    Every failure, including a command that cannot start, gives a verdict with safe=False.
    """
    checked_at = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    unchecked = MigrationVerdict(
        safe=False,
        tool=tool,
        source="state_command",
        reason="",
        applied=(),
        failed=(),
        expected=tuple(expected),
        head=None,
        output_sha256="",
        checked_at=checked_at,
    )
    broken_names = [name for name in expected if "\n" in name or "\r" in name]
    if broken_names:
        reason = (
            f"migration name {broken_names[0]!r} contains a line break, which ROLLBACK_MIGRATIONS "
            "cannot carry, so the database is treated as not safe to rewind"
        )
        return replace(unchecked, reason=reason)
    environment = {
        **context_env,
        "ROLLBACK_MIGRATIONS": "\n".join(expected),
        "ROLLBACK_MIGRATION_TOOL": tool,
    }
    result = run_script(
        argv,
        context_env=environment,
        extra_env=extra_env,
        cwd=cwd,
        timeout_s=timeout_s,
        on_line=on_line,
        label="state command",
    )
    return _judge_result(result, replace(unchecked, output_sha256=result.output_sha256), timeout_s)


def _judge_result(
    result: ScriptResult, unchecked: MigrationVerdict, timeout_s: float
) -> MigrationVerdict:
    if result.timed_out:
        reason = f"state command timed out after {timeout_s:g} s{_NOT_SAFE}"
        return replace(unchecked, reason=reason)
    if result.returncode is None:
        return replace(unchecked, reason=f"{result.output}{_NOT_SAFE}")
    try:
        report = _parse_report(result.output)
    except _ReportError as error:
        reason = f"state command printed an invalid report: {error}{_NOT_SAFE}"
        return replace(unchecked, reason=reason)
    if report is None:
        return _judge_exit_code(result.returncode, _last_line(result.output), None, unchecked)
    reported = replace(
        unchecked,
        report=report,
        applied=tuple(report.get("applied", ())),
        failed=tuple(report.get("failed", ())),
        head=report.get("head"),
    )
    message = _last_line(result.output, skip_report=True)
    return _judge_exit_code(result.returncode, message, report, reported)


def _judge_exit_code(
    returncode: int,
    message: str,
    report: dict[str, Any] | None,
    verdict: MigrationVerdict,
) -> MigrationVerdict:
    """Combine the exit code, the last plain output line and the report into the verdict."""
    if returncode not in (SAFE_EXIT_CODE, NOT_SAFE_EXIT_CODE):
        detail = f": {message}" if message else ""
        reason = f"state command failed with exit code {returncode}{detail}{_NOT_SAFE}"
        return replace(verdict, reason=reason)
    claimed_safe = report.get("safe") if report is not None else None
    if claimed_safe is not None and claimed_safe != (returncode == SAFE_EXIT_CODE):
        reason = (
            f"state command exited with {returncode} but its report says "
            f"safe={json.dumps(claimed_safe)}, and the two must agree{_NOT_SAFE}"
        )
        return replace(verdict, reason=reason)
    stated_reason = (report or {}).get("reason") or message
    if returncode == NOT_SAFE_EXIT_CODE:
        explanation = stated_reason or "it gave no reason"
        reason = f"state command reports the database is not safe to rewind: {explanation}"
        return replace(verdict, reason=reason)
    if report is not None:
        problem = _expected_migration_problem(verdict)
        if problem is not None:
            return replace(verdict, reason=problem)
    reason = "state command reports the database is safe to rewind"
    if stated_reason:
        reason += f": {stated_reason}"
    return replace(verdict, safe=True, reason=reason)


def _expected_migration_problem(verdict: MigrationVerdict) -> str | None:
    for name in verdict.expected:
        if name in verdict.failed:
            return (
                f"migration {name} of the batch is listed as failed by the state command"
                f"{_NOT_SAFE}"
            )
        if name not in verdict.applied:
            return (
                f"migration {name} of the batch is missing from the state command's "
                f"'applied' list{_NOT_SAFE}"
            )
    return None


def _parse_report(output: str) -> dict[str, Any] | None:
    """Return the JSON report on the last non-empty output line, or None when there is none.

    Raise _ReportError when that line starts with "{" but is not a valid report.
    """
    line = _last_line(output)
    if not line.startswith("{"):
        return None
    try:
        report = json.loads(line)
    except json.JSONDecodeError as error:
        raise _ReportError(
            f"the last output line is not valid JSON ({error.msg} at column {error.colno})"
        ) from error
    if not isinstance(report, dict):
        raise _ReportError("the last output line must be one JSON object")
    _check_report_types(report)
    return report


def _check_report_types(report: dict[str, Any]) -> None:
    for key in _NAME_LIST_KEYS:
        value = report.get(key, [])
        if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
            raise _ReportError(f"'{key}' must be a list of migration names (strings)")
    if not isinstance(report.get("head"), str | None):
        raise _ReportError("'head' must be a migration name (a string) or null")
    if not isinstance(report.get("safe"), bool | None):
        raise _ReportError("'safe' must be true or false")
    if not isinstance(report.get("reason"), str | None):
        raise _ReportError("'reason' must be a string")


def _last_line(output: str, *, skip_report: bool = False) -> str:
    """Return the last non-empty output line, or the one before it when ``skip_report`` is set
    because the last line is the JSON report."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if skip_report:
        lines = lines[:-1]
    return lines[-1] if lines else ""
