"""The audit repository: a local git repository that stores a human summary of every run.

Each run appends one row to RUN_LOG.md and one section to memory/YYYY-MM-DD.md, then
commits both. Text from outside the coordinator (batch ids, run ids, reasons, service
output) is neutralised first, so that it stays inside its table cell or bullet and cannot
fake a row, a heading or an HTML block.
"""

from __future__ import annotations

import fcntl
import os
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import TYPE_CHECKING

from rollback_coordinator.core.errors import CoordinatorError

if TYPE_CHECKING:
    import git

RUN_LOG = "RUN_LOG.md"
README = "README.md"
MEMORY_DIR = "memory"
LOCK_FILE = "rollback-coordinator-audit.lock"

DEFAULT_AUTHOR_NAME = "rollback-coordinator"
DEFAULT_AUTHOR_EMAIL = "rollback-coordinator@localhost"

# Maximum characters kept from one piece of outside text, counted before escaping.
REASON_LIMIT = 500
DETAIL_LIMIT = 500
FIELD_LIMIT = 200
DIGEST_PREFIX_LENGTH = 12

# Decision kinds that the run log always counts, even at zero, so that "0 DENY" is explicit.
ALWAYS_COUNTED_DECISIONS = ("AUTHORIZE", "DENY")

# Control, format (bidi overrides, zero-width), surrogate and line/paragraph separator
# characters. They can break a line, reorder what a reader sees or fail UTF-8 encoding.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})

_RUN_LOG_COLUMNS = (
    "UTC time",
    "batch",
    "run id",
    "environment",
    "profile",
    "outcome",
    "runner",
    "plan digest",
    "services (in order)",
    "decisions",
)

_README_TEXT = """\
# Rollback audit repository

This repository is written by the rollback coordinator. Every rollback run, including
dry runs and failed runs, adds one commit containing:

- one row in `RUN_LOG.md`: when, which batch and run, where, under which governance
  profile, the outcome, who ran it, the plan digest, the services in order and a count
  of the governor's decisions;
- one section in `memory/YYYY-MM-DD.md` (the run's UTC date) with the people involved,
  the reason, the full plan digest, the refs, each service's outcome and health checks,
  and each governor decision with its rule.

The coordinator only appends to these files. Edit them by hand only to add notes,
because every run commits README.md, RUN_LOG.md and all of memory/, hand edits included.
"""


class AuditError(CoordinatorError):
    """An audit repository that cannot be created, written or committed to."""


@dataclass(frozen=True)
class ServiceOutcome:
    """The result of one service in a run.

    ``outcome`` is "rolled back", "failed", "skipped" or "dry run". The health fields are
    short texts such as "healthy (HTTP 200)", or None when no check ran.
    """

    service: str
    batch: str
    outcome: str
    health_before: str | None = None
    health_after: str | None = None


@dataclass(frozen=True)
class DecisionEntry:
    """One governor decision taken during a run, for the step it was asked about."""

    step: str
    decision: str
    decision_id: str
    rule: str
    detail: str = ""


@dataclass(frozen=True)
class RunSummary:
    """Everything the audit repository stores about one run.

    ``outcome`` is "succeeded", "failed" or "dry run". ``started_at`` and ``ended_at`` are
    ISO 8601 timestamps, and naive ones are read as UTC.
    """

    batch: str
    run_id: str
    dag_id: str
    environment: str
    profile: str
    outcome: str
    runner: str
    planner: str
    approvers: tuple[str, ...]
    reason: str
    plan_digest: str
    from_ref: str
    to_ref: str | None
    started_at: str
    ended_at: str
    services: tuple[ServiceOutcome, ...]
    decisions: tuple[DecisionEntry, ...]


def plain_text(value: object, limit: int = FIELD_LIMIT) -> str:
    """Return ``value`` as one line of at most ``limit`` characters.

    Control, format and line separator characters become spaces, and text over the limit
    ends in "…".
    """
    text = "" if value is None else str(value)
    characters = [
        " " if unicodedata.category(character) in _UNSAFE_CATEGORIES else character
        for character in text
    ]
    line = "".join(characters).strip()
    if len(line) > limit:
        line = line[: limit - 1].rstrip() + "…"
    return line


def markdown_text(value: object, limit: int = FIELD_LIMIT) -> str:
    """Return ``value`` as inline markdown that stays inside one table cell or bullet.

    Besides the clean-up of ``plain_text``, this escapes backslashes and ``|`` (a cell
    separator), every ``<`` (no HTML tag can open) and a leading ``#`` (no heading).
    Truncation happens before escaping, so that a cut never leaves a lone backslash that
    would escape the cell's closing ``|``.
    """
    text = plain_text(value, limit)
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "\\<")
    if text.startswith("#"):
        text = "\\" + text
    return text


def _cell(value: object, limit: int = FIELD_LIMIT) -> str:
    return markdown_text(value, limit) or "-"


def _run_moment(summary: RunSummary) -> datetime:
    """Return the run's end time in UTC, else its start time, else the current time.

    The end time is used because the entry is written when the run ends, so rows stay in
    time order. A run that started before midnight UTC goes into the next day's file.
    """
    for stamp in (summary.ended_at, summary.started_at):
        try:
            moment = datetime.fromisoformat(stamp.strip())
        except (AttributeError, ValueError):
            continue
        if moment.tzinfo is None:
            return moment.replace(tzinfo=timezone.utc)
        return moment.astimezone(timezone.utc)
    return datetime.now(timezone.utc)


def _service_label(service: ServiceOutcome, run_batch: str) -> str:
    notes = []
    if service.batch != run_batch:
        notes.append(f"batch {service.batch}")
    if service.outcome != "rolled back":
        notes.append(service.outcome)
    if not notes:
        return service.service
    return f"{service.service} ({', '.join(notes)})"


def decisions_summary(decisions: tuple[DecisionEntry, ...]) -> str:
    """Count decisions by kind, for example "6 AUTHORIZE, 0 DENY, 1 ESCALATE"."""
    counts = Counter(plain_text(entry.decision) for entry in decisions)
    kinds = list(ALWAYS_COUNTED_DECISIONS)
    kinds += [kind for kind in counts if kind not in ALWAYS_COUNTED_DECISIONS]
    return ", ".join(f"{counts[kind]} {kind}" for kind in kinds)


def run_log_header() -> str:
    names = " | ".join(_RUN_LOG_COLUMNS)
    separators = "|".join("---" for _ in _RUN_LOG_COLUMNS)
    return (
        "# Rollback run log\n\n"
        "One row per rollback run, in the order the runs ended. Times are UTC.\n\n"
        f"| {names} |\n|{separators}|\n"
    )


def run_log_row(summary: RunSummary) -> str:
    """Render the summary as one RUN_LOG.md table row, ending in a newline."""
    services = ", ".join(_service_label(item, summary.batch) for item in summary.services)
    cells = [
        _run_moment(summary).strftime("%Y-%m-%d %H:%M:%SZ"),
        _cell(summary.batch),
        _cell(summary.run_id),
        _cell(summary.environment),
        _cell(summary.profile),
        _cell(summary.outcome),
        _cell(summary.runner),
        _cell(summary.plan_digest[:DIGEST_PREFIX_LENGTH]),
        _cell(services or "none", limit=DETAIL_LIMIT),
        _cell(decisions_summary(summary.decisions)),
    ]
    return f"| {' | '.join(cells)} |\n"


def memory_heading(day: str) -> str:
    return f"# {day}\n"


def memory_entry(summary: RunSummary) -> str:
    """Render the summary as one memory file section, starting with a blank line."""
    approvers = ", ".join(summary.approvers) or "none"
    to_ref = summary.to_ref if summary.to_ref is not None else "(not set)"
    heading = " · ".join(
        markdown_text(value) for value in (summary.batch, summary.run_id, summary.outcome)
    )
    lines = [
        "",
        f"## {heading}",
        "",
        f"- started: {_cell(summary.started_at)}",
        f"- ended: {_cell(summary.ended_at)}",
        f"- DAG: {_cell(summary.dag_id)}",
        f"- runner: {_cell(summary.runner)}",
        f"- planner: {_cell(summary.planner)}",
        f"- approvers: {_cell(approvers, limit=DETAIL_LIMIT)}",
        f"- profile: {_cell(summary.profile)}",
        f"- environment: {_cell(summary.environment)}",
        f"- reason: {_cell(summary.reason, limit=REASON_LIMIT)}",
        f"- plan digest: {_cell(summary.plan_digest)}",
        f"- refs: {_cell(summary.from_ref)} -> {_cell(to_ref)}",
    ]
    lines += [_service_bullet(service) for service in summary.services]
    lines += [_decision_bullet(entry) for entry in summary.decisions]
    return "\n".join(lines) + "\n"


def _service_bullet(service: ServiceOutcome) -> str:
    before = service.health_before if service.health_before is not None else "not checked"
    after = service.health_after if service.health_after is not None else "not checked"
    return (
        f"- service {_cell(service.service)} (batch {_cell(service.batch)}): "
        f"{_cell(service.outcome)}; health before: {_cell(before)}; "
        f"health after: {_cell(after)}"
    )


def _decision_bullet(entry: DecisionEntry) -> str:
    bullet = (
        f"- decision {_cell(entry.decision_id)} for step {_cell(entry.step)}: "
        f"{_cell(entry.decision)} (rule: {_cell(entry.rule)})"
    )
    if entry.detail:
        bullet += f": {markdown_text(entry.detail, DETAIL_LIMIT)}"
    return bullet


def commit_message(summary: RunSummary) -> tuple[str, str]:
    """Return the commit subject and body for a run, as plain one-line-per-item text."""
    subject = (
        f"rollback {plain_text(summary.batch)} {plain_text(summary.outcome)}: "
        f"run {plain_text(summary.run_id)}"
    )
    lines = ["Services, in order:"]
    lines += [
        f"- {plain_text(item.service)} (batch {plain_text(item.batch)}): "
        f"{plain_text(item.outcome)}"
        for item in summary.services
    ]
    if not summary.services:
        lines.append("- none")
    lines += [
        "",
        f"Plan digest: {plain_text(summary.plan_digest)}",
        f"Environment: {plain_text(summary.environment)}, "
        f"profile: {plain_text(summary.profile)}",
        f"Decisions: {decisions_summary(summary.decisions)}",
    ]
    return subject, "\n".join(lines)


def _import_git() -> ModuleType:
    # Imported here because GitPython raises ImportError at import time when no git
    # executable is found, and that must surface as an AuditError naming the repository.
    import git

    return git


def _append(path: Path, text: str, header: str) -> None:
    """Append ``text`` to ``path``, writing ``header`` first when the file is new or empty.

    A file that does not end in a newline (a hand edit or an interrupted write) gets one
    first, so the new text never joins the last line.
    """
    with path.open("a+b") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            prefix = header
        else:
            handle.seek(size - 1)
            prefix = "" if handle.read(1) == b"\n" else "\n"
        # Append mode writes at the end of the file whatever the read position.
        handle.write((prefix + text).encode("utf-8"))


def _extra_file_path(name: str) -> PurePosixPath:
    relative = PurePosixPath(name)
    unsafe = (
        not relative.parts
        or relative.is_absolute()
        or ".." in relative.parts
        or relative.parts[0] in (".git", MEMORY_DIR)
        or str(relative) in (README, RUN_LOG)
    )
    if unsafe:
        raise AuditError(
            f"invalid extra file name {name!r} for the audit repository: use a relative path "
            f"without '..' that is outside .git and {MEMORY_DIR}/ and is not {README} or "
            f"{RUN_LOG}, such as 'records/run.jsonl'"
        )
    return relative


class AuditRepository:
    """A local git repository that stores one commit per rollback run.

    Writers in several processes are serialised by an exclusive ``flock`` on a lock file
    inside ``.git``, held from the first write to the end of the commit.
    """

    def __init__(
        self,
        path: Path,
        *,
        author_name: str = DEFAULT_AUTHOR_NAME,
        author_email: str = DEFAULT_AUTHOR_EMAIL,
    ) -> None:
        self.path = Path(path)
        self.author_name = author_name
        self.author_email = author_email

    def ensure(self) -> None:
        """Create the folder, the git repository and README.md where they are missing."""
        with self._failures_as_audit_error("create"):
            with self._locked():
                self._ensure_locked()

    def record_run(self, summary: RunSummary, extra_files: dict[str, bytes] | None = None) -> str:
        """Append the run to RUN_LOG.md and the day's memory file, commit, return the sha.

        ``extra_files`` maps paths relative to the repository to their full content, which
        replaces any earlier content. Files are written and staged before the commit, so
        if the commit fails they stay staged and the next run's commit includes them.
        """
        extras = {_extra_file_path(name): content for name, content in (extra_files or {}).items()}
        with self._failures_as_audit_error(f"record run {plain_text(summary.run_id)!r} in"):
            with self._locked():
                repo = self._ensure_locked()
                self._write_run(summary, extras)
                # Adding all of memory/ also stages an earlier day's file whose run failed
                # before its own `git add`.
                repo.git.add("--", README, RUN_LOG, MEMORY_DIR, *[str(path) for path in extras])
                return self._commit(repo, summary)

    def _write_run(self, summary: RunSummary, extras: dict[PurePosixPath, bytes]) -> None:
        day = _run_moment(summary).strftime("%Y-%m-%d")
        memory_dir = self.path / MEMORY_DIR
        memory_dir.mkdir(exist_ok=True)
        run_log = self.path / RUN_LOG
        memory_file = memory_dir / f"{day}.md"

        _append(run_log, run_log_row(summary), run_log_header())
        _append(memory_file, memory_entry(summary), memory_heading(day))

        for relative, content in extras.items():
            target = self.path / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)

    def _commit(self, repo: git.Repo, summary: RunSummary) -> str:
        subject, body = commit_message(summary)
        identity = {
            "GIT_AUTHOR_NAME": self.author_name,
            "GIT_AUTHOR_EMAIL": self.author_email,
            "GIT_COMMITTER_NAME": self.author_name,
            "GIT_COMMITTER_EMAIL": self.author_email,
        }
        # The -c applies to this command only, so a global commit.gpgsign=true without a
        # usable key cannot stop the audit record.
        repo.git(c="commit.gpgsign=false").commit("-m", subject, "-m", body, env=identity)
        return repo.head.commit.hexsha

    def _ensure_locked(self) -> git.Repo:
        git_module = _import_git()
        if (self.path / ".git" / "HEAD").exists():
            repo = git_module.Repo(self.path)
        else:
            repo = git_module.Repo.init(self.path, initial_branch="main")
        readme = self.path / README
        if not readme.exists():
            readme.write_text(_README_TEXT, encoding="utf-8")
        return repo

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # The lock file lives in .git, which may not exist yet, so create .git first. An
        # empty .git folder is fine because `git init` fills it in.
        git_dir = self.path / ".git"
        git_dir.mkdir(parents=True, exist_ok=True)
        with (git_dir / LOCK_FILE).open("a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    @contextmanager
    def _failures_as_audit_error(self, action: str) -> Iterator[None]:
        try:
            yield
        except AuditError:
            raise
        except ImportError as error:
            raise AuditError(
                f"failed to {action} the audit repository at {self.path}: git or GitPython is "
                f"missing ({plain_text(error)}). Install git and make sure it is on PATH."
            ) from error
        except OSError as error:
            raise AuditError(
                f"failed to {action} the audit repository at {self.path}: {plain_text(error)}. "
                "Make the folder writable by this user, or point the coordinator at another "
                "folder (ROLLBACK_AUDIT_REPO)."
            ) from error
        except Exception as error:
            # Only GitPython can raise a GitError, so it is already imported when one arrives.
            git_module = sys.modules.get("git")
            if git_module is None or not isinstance(error, git_module.exc.GitError):
                raise
            raise AuditError(
                f"failed to {action} the audit repository at {self.path}: git failed: "
                f"{plain_text(error, DETAIL_LIMIT)}"
            ) from error
