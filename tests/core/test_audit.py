"""Tests of the audit repository against real git repositories in tmp_path."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from rollback_coordinator.core.audit import (
    AuditError,
    AuditRepository,
    DecisionEntry,
    RunSummary,
    ServiceOutcome,
)
from rollback_coordinator.core.errors import CoordinatorError

DIGEST = "ab12cd34ef56" + "0" * 52
RUN_LOG_COLUMNS = 10


def make_summary(**changes: object) -> RunSummary:
    summary = RunSummary(
        batch="B-20250304-01",
        run_id="manual__2025-03-04T10:00:00+00:00",
        dag_id="rollback_B-20250304-01",
        environment="staging",
        profile="balanced",
        outcome="succeeded",
        runner="alice",
        planner="bob",
        approvers=("carol", "dave"),
        reason="checkout errors after deploy",
        plan_digest=DIGEST,
        from_ref="v2.4.0",
        to_ref="v2.3.9",
        started_at="2025-03-04T10:00:00Z",
        ended_at="2025-03-04T10:05:00Z",
        services=(
            ServiceOutcome(
                "web", "B-20250304-01", "rolled back", "healthy (HTTP 200)", "healthy (HTTP 200)"
            ),
            ServiceOutcome("api", "B-20250304-01", "rolled back"),
        ),
        decisions=(
            DecisionEntry("plan", "AUTHORIZE", "d-1", "profile.balanced"),
            DecisionEntry("service web", "AUTHORIZE", "d-2", "profile.balanced"),
            DecisionEntry("service api", "AUTHORIZE", "d-3", "profile.balanced"),
        ),
    )
    return dataclasses.replace(summary, **changes)


def git_output(repo: Path, *args: str) -> str:
    completed = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    )
    return completed.stdout


def commit_subjects(repo: Path) -> list[str]:
    return git_output(repo, "log", "--format=%s").splitlines()


def table_cells(row: str) -> list[str]:
    """Split a markdown table row on its unescaped pipes, as GitHub's renderer does."""
    cells: list[str] = []
    current = ""
    index = 1  # skip the leading pipe
    while index < len(row):
        character = row[index]
        if character == "\\":
            current += row[index : index + 2]
            index += 2
            continue
        if character == "|":
            cells.append(current.strip())
            current = ""
        else:
            current += character
        index += 1
    return cells


def count_unescaped(text: str, character: str) -> int:
    """Count occurrences of ``character`` that no markdown backslash escape covers."""
    count = 0
    index = 0
    while index < len(text):
        if text[index] == "\\":
            index += 2
            continue
        count += text[index] == character
        index += 1
    return count


def data_rows(repo: Path) -> list[str]:
    lines = (repo / "RUN_LOG.md").read_text(encoding="utf-8").splitlines()
    table = [line for line in lines if line.startswith("|")]
    return table[2:]  # after the column names and the separator line


def memory_headings(memory_file: Path) -> list[str]:
    lines = memory_file.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.startswith("## ")]


def record_five_runs(path: str, worker: int, barrier: object) -> None:
    """Record five runs, starting only when every worker process is ready."""
    audit = AuditRepository(Path(path))
    barrier.wait()  # type: ignore[attr-defined]
    for number in range(5):
        audit.record_run(make_summary(run_id=f"worker-{worker}-run-{number}"))


def test_first_run_creates_repository(tmp_path: Path) -> None:
    repo = tmp_path / "audit"

    sha = AuditRepository(repo).record_run(make_summary())

    assert (repo / ".git" / "HEAD").is_file()
    assert "Rollback audit repository" in (repo / "README.md").read_text(encoding="utf-8")
    run_log = (repo / "RUN_LOG.md").read_text(encoding="utf-8")
    assert run_log.startswith("# Rollback run log\n")
    assert "| UTC time | batch | run id |" in run_log
    assert len(data_rows(repo)) == 1
    memory_file = repo / "memory" / "2025-03-04.md"
    assert memory_file.read_text(encoding="utf-8").startswith("# 2025-03-04\n")
    assert memory_headings(memory_file) == [
        "## B-20250304-01 · manual__2025-03-04T10:00:00+00:00 · succeeded"
    ]
    assert commit_subjects(repo) == [
        "rollback B-20250304-01 succeeded: run manual__2025-03-04T10:00:00+00:00"
    ]
    assert git_output(repo, "rev-parse", "HEAD").strip() == sha


def test_ensure_creates_repository_without_commit(tmp_path: Path) -> None:
    repo = tmp_path / "audit"
    audit = AuditRepository(repo)

    audit.ensure()
    audit.ensure()

    assert (repo / ".git" / "HEAD").is_file()
    assert (repo / "README.md").is_file()
    assert git_output(repo, "rev-list", "--all") == ""


def test_first_commit_contains_readme_and_both_logs(tmp_path: Path) -> None:
    repo = tmp_path / "audit"

    AuditRepository(repo).record_run(make_summary())

    committed = git_output(repo, "ls-tree", "-r", "--name-only", "HEAD").splitlines()
    assert committed == ["README.md", "RUN_LOG.md", "memory/2025-03-04.md"]
    assert git_output(repo, "status", "--porcelain") == ""


def test_run_log_row_contents(tmp_path: Path) -> None:
    repo = tmp_path / "audit"
    summary = make_summary(
        services=(
            ServiceOutcome("db", "B-20250304-01", "rolled back"),
            ServiceOutcome("web", "B-20250301-02", "rolled back"),
            ServiceOutcome("api", "B-20250304-01", "failed"),
        ),
        decisions=(
            DecisionEntry("plan", "AUTHORIZE", "d-1", "r"),
            DecisionEntry("service db", "AUTHORIZE", "d-2", "r"),
            DecisionEntry("service api", "ESCALATE", "d-3", "r"),
        ),
    )

    AuditRepository(repo).record_run(summary)

    cells = table_cells(data_rows(repo)[0])
    assert cells == [
        "2025-03-04 10:05:00Z",
        "B-20250304-01",
        "manual__2025-03-04T10:00:00+00:00",
        "staging",
        "balanced",
        "succeeded",
        "alice",
        "ab12cd34ef56",
        "db, web (batch B-20250301-02), api (failed)",
        "2 AUTHORIZE, 0 DENY, 1 ESCALATE",
    ]


def test_memory_entry_lists_people_services_and_decisions(tmp_path: Path) -> None:
    repo = tmp_path / "audit"

    AuditRepository(repo).record_run(make_summary())

    memory = (repo / "memory" / "2025-03-04.md").read_text(encoding="utf-8")
    assert "- started: 2025-03-04T10:00:00Z\n" in memory
    assert "- ended: 2025-03-04T10:05:00Z\n" in memory
    assert "- runner: alice\n" in memory
    assert "- planner: bob\n" in memory
    assert "- approvers: carol, dave\n" in memory
    assert "- profile: balanced\n" in memory
    assert "- environment: staging\n" in memory
    assert "- reason: checkout errors after deploy\n" in memory
    assert f"- plan digest: {DIGEST}\n" in memory
    assert "- refs: v2.4.0 -> v2.3.9\n" in memory
    assert (
        "- service web (batch B-20250304-01): rolled back; "
        "health before: healthy (HTTP 200); health after: healthy (HTTP 200)\n"
    ) in memory
    assert (
        "- service api (batch B-20250304-01): rolled back; "
        "health before: not checked; health after: not checked\n"
    ) in memory
    assert "- decision d-2 for step service web: AUTHORIZE (rule: profile.balanced)\n" in memory


def test_commit_body_lists_services_and_digest(tmp_path: Path) -> None:
    repo = tmp_path / "audit"

    AuditRepository(repo).record_run(make_summary(outcome="dry run"))

    body = git_output(repo, "log", "-1", "--format=%b")
    assert "- web (batch B-20250304-01): rolled back\n" in body
    assert "- api (batch B-20250304-01): rolled back\n" in body
    assert f"Plan digest: {DIGEST}\n" in body
    assert commit_subjects(repo)[0].startswith("rollback B-20250304-01 dry run: run ")


def test_second_run_adds_row_and_commit(tmp_path: Path) -> None:
    repo = tmp_path / "audit"
    audit = AuditRepository(repo)

    audit.record_run(make_summary(run_id="run-1"))
    audit.record_run(make_summary(run_id="run-2", outcome="failed"))

    rows = data_rows(repo)
    assert len(rows) == 2
    assert table_cells(rows[1])[2] == "run-2"
    assert commit_subjects(repo) == [
        "rollback B-20250304-01 failed: run run-2",
        "rollback B-20250304-01 succeeded: run run-1",
    ]
    assert len(memory_headings(repo / "memory" / "2025-03-04.md")) == 2


def test_memory_file_uses_utc_date_of_run_end(tmp_path: Path) -> None:
    repo = tmp_path / "audit"
    summary = make_summary(
        started_at="2025-03-04T23:50:00-05:00", ended_at="2025-03-04T23:59:00-05:00"
    )

    AuditRepository(repo).record_run(summary)

    assert (repo / "memory" / "2025-03-05.md").is_file()
    assert table_cells(data_rows(repo)[0])[0] == "2025-03-05 04:59:00Z"


def test_hostile_text_stays_inside_cells_and_bullets(tmp_path: Path) -> None:
    repo = tmp_path / "audit"
    audit = AuditRepository(repo)
    hostile = "ok\n## fake heading\n| forged | row |\r\n<script>alert(1)</script>\u2028x\\"
    runs = 3

    for number in range(runs):
        audit.record_run(
            make_summary(
                batch="# B|1\n## fake",
                run_id=f"run-{number}\n| 2025 | forged |",
                reason=hostile,
                runner="<img src=x>",
                services=(ServiceOutcome("web|db", "B-1", "failed", hostile, hostile),),
                decisions=(DecisionEntry("plan", "DENY\n## x", "d|1", "# rule", hostile),),
            )
        )

    rows = data_rows(repo)
    assert len(rows) == runs
    for row in rows:
        assert len(table_cells(row)) == RUN_LOG_COLUMNS
    memory_file = repo / "memory" / "2025-03-04.md"
    assert len(memory_headings(memory_file)) == runs
    memory_lines = memory_file.read_text(encoding="utf-8").splitlines()
    for line in memory_lines[1:]:
        assert line == "" or line.startswith(("## ", "- ")), line
    assert count_unescaped(memory_file.read_text(encoding="utf-8"), "<") == 0
    assert count_unescaped((repo / "RUN_LOG.md").read_text(encoding="utf-8"), "<") == 0
    assert len(commit_subjects(repo)) == runs


def test_heading_and_cells_escape_leading_hash(tmp_path: Path) -> None:
    repo = tmp_path / "audit"

    AuditRepository(repo).record_run(make_summary(batch="# B", reason="# not a heading"))

    memory = (repo / "memory" / "2025-03-04.md").read_text(encoding="utf-8")
    assert "## \\# B · " in memory
    assert "- reason: \\# not a heading\n" in memory
    assert table_cells(data_rows(repo)[0])[1] == "\\# B"


def test_reason_is_capped_at_500_characters(tmp_path: Path) -> None:
    repo = tmp_path / "audit"

    AuditRepository(repo).record_run(make_summary(reason="x" * 2000))

    memory = (repo / "memory" / "2025-03-04.md").read_text(encoding="utf-8")
    reason_line = next(line for line in memory.splitlines() if line.startswith("- reason: "))
    assert reason_line == "- reason: " + "x" * 499 + "…"


def test_concurrent_processes_lose_no_runs(tmp_path: Path) -> None:
    repo = tmp_path / "audit"
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    workers = [
        context.Process(target=record_five_runs, args=(str(repo), worker, barrier))
        for worker in range(2)
    ]

    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)

    assert [process.exitcode for process in workers] == [0, 0]
    run_ids = sorted(table_cells(row)[2] for row in data_rows(repo))
    expected = sorted(f"worker-{worker}-run-{number}" for worker in range(2) for number in range(5))
    assert run_ids == expected
    assert len(commit_subjects(repo)) == 10
    assert len(memory_headings(repo / "memory" / "2025-03-04.md")) == 10
    assert git_output(repo, "status", "--porcelain") == ""


def test_failed_commit_is_included_in_next_commit(tmp_path: Path) -> None:
    repo = tmp_path / "audit"
    audit = AuditRepository(repo)
    audit.ensure()
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho 'audit commits are frozen' >&2\nexit 1\n")
    hook.chmod(0o755)

    with pytest.raises(AuditError, match="audit commits are frozen"):
        audit.record_run(make_summary(run_id="run-1"))
    hook.unlink()
    audit.record_run(make_summary(run_id="run-2"))

    committed_log = git_output(repo, "show", "HEAD:RUN_LOG.md")
    assert "| run-1 |" in committed_log
    assert "| run-2 |" in committed_log
    assert commit_subjects(repo) == ["rollback B-20250304-01 succeeded: run run-2"]
    assert git_output(repo, "status", "--porcelain") == ""


def test_global_gpgsign_does_not_block_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    global_config = tmp_path / "gitconfig"
    global_config.write_text("[commit]\n\tgpgsign = true\n[gpg]\n\tprogram = /bin/false\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(global_config))
    repo = tmp_path / "audit"

    AuditRepository(repo).record_run(make_summary())

    assert len(commit_subjects(repo)) == 1


def test_commits_use_default_author(tmp_path: Path) -> None:
    repo = tmp_path / "audit"

    AuditRepository(repo).record_run(make_summary())

    identities = git_output(repo, "log", "-1", "--format=%an <%ae>%n%cn <%ce>").splitlines()
    assert identities == [
        "rollback-coordinator <rollback-coordinator@localhost>",
        "rollback-coordinator <rollback-coordinator@localhost>",
    ]


def test_commits_use_given_author(tmp_path: Path) -> None:
    repo = tmp_path / "audit"
    audit = AuditRepository(repo, author_name="Ops Bot", author_email="ops@example.test")

    audit.record_run(make_summary())

    identity = git_output(repo, "log", "-1", "--format=%an <%ae>").strip()
    assert identity == "Ops Bot <ops@example.test>"


def test_extra_files_are_committed(tmp_path: Path) -> None:
    repo = tmp_path / "audit"
    record = b'{"step": "plan", "decision": "AUTHORIZE"}\n'

    AuditRepository(repo).record_run(make_summary(), {"records/run-1.jsonl": record})

    assert git_output(repo, "show", "HEAD:records/run-1.jsonl").encode() == record


@pytest.mark.parametrize(
    "name", ["../outside.txt", "/tmp/absolute.txt", ".git/config", "RUN_LOG.md", "memory/x.md"]
)
def test_unsafe_extra_file_name_is_rejected(tmp_path: Path, name: str) -> None:
    repo = tmp_path / "audit"

    with pytest.raises(AuditError, match="invalid extra file name"):
        AuditRepository(repo).record_run(make_summary(), {name: b"x"})

    assert not (repo / "RUN_LOG.md").exists()


def test_unterminated_last_line_is_not_joined(tmp_path: Path) -> None:
    repo = tmp_path / "audit"
    audit = AuditRepository(repo)
    audit.record_run(make_summary(run_id="run-1"))
    run_log = repo / "RUN_LOG.md"
    run_log.write_text(run_log.read_text(encoding="utf-8").rstrip("\n"), encoding="utf-8")

    audit.record_run(make_summary(run_id="run-2"))

    rows = data_rows(repo)
    assert [table_cells(row)[2] for row in rows] == ["run-1", "run-2"]


def test_path_under_regular_file_raises_audit_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    repo = blocker / "audit"

    with pytest.raises(AuditError) as raised:
        AuditRepository(repo).record_run(make_summary())

    assert str(repo) in str(raised.value)
    assert isinstance(raised.value, CoordinatorError)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to a read-only folder")
def test_read_only_folder_raises_audit_error(tmp_path: Path) -> None:
    repo = tmp_path / "audit"
    repo.mkdir()
    repo.chmod(stat.S_IRUSR | stat.S_IXUSR)

    try:
        with pytest.raises(AuditError) as raised:
            AuditRepository(repo).record_run(make_summary())
    finally:
        repo.chmod(stat.S_IRWXU)

    assert str(repo) in str(raised.value)


def test_missing_git_raises_audit_error(tmp_path: Path) -> None:
    repo = tmp_path / "audit"
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from rollback_coordinator.core.audit import AuditError, AuditRepository\n"
        "try:\n"
        "    AuditRepository(Path(sys.argv[1])).ensure()\n"
        "except AuditError as error:\n"
        "    print(error)\n"
        "    sys.exit(3)\n"
    )
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("GIT_PYTHON")
    }
    environment["PATH"] = str(tmp_path / "empty-bin")

    completed = subprocess.run(
        [sys.executable, "-c", script, str(repo)],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )

    assert completed.returncode == 3, completed.stderr
    assert str(repo) in completed.stdout
    assert "Install git" in completed.stdout
