"""Tests for running rollback scripts: environment, injection, timeouts, output and errors."""

from __future__ import annotations

import hashlib
import os
import stat
import time
from pathlib import Path

import pytest

from rollback_coordinator.core import scripts
from rollback_coordinator.core.scripts import ScriptContext, run_script, script_environment

CONTEXT = ScriptContext(
    batch="2024-05-01-checkout",
    service="payments",
    profile="balanced",
    run_id="manual__2024-05-01T10:00:00",
    plan_digest="ab" * 32,
    dry_run=True,
    from_ref="deadbeef",
    to_ref=None,
    repo="/srv/repo",
    config_dir="/etc/rollback",
    data_dir="/var/lib/rollback",
)

# The script saves its environment NUL-separated, so values with line breaks survive intact.
RECORD_ENVIRONMENT = 'env -0 > environment.bin\n'


def write_script(folder: Path, body: str, name: str = "rollback.sh") -> Path:
    script = folder / name
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


def recorded_environment(folder: Path) -> dict[str, str]:
    entries = (folder / "environment.bin").read_bytes().decode().split("\0")
    return dict(entry.split("=", 1) for entry in entries if entry)


def run_in(folder: Path, script: Path, **options: object) -> scripts.ScriptResult:
    settings: dict[str, object] = {
        "context_env": CONTEXT.environment(),
        "extra_env": {},
        "cwd": folder,
        "timeout_s": 30.0,
    }
    settings.update(options)
    return run_script([str(script)], **settings)  # type: ignore[arg-type]


def process_running(pid: int) -> bool:
    """Return whether ``pid`` is alive. A zombie counts as gone, because a container's init
    process may never reap it."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    state = stat_line.rpartition(")")[2].split()[0]
    return state not in ("Z", "X")


def wait_until_gone(pid: int, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while process_running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_context_environment_values() -> None:
    environment = CONTEXT.environment()

    assert environment["ROLLBACK_DRY_RUN"] == "1"
    assert environment["ROLLBACK_TO_REF"] == ""
    assert environment["ROLLBACK_PLAN_DIGEST"] == "ab" * 32
    assert environment["ROLLBACK_ENVIRONMENT"] == ""
    assert len(environment) == 12


def test_context_reaches_script(tmp_path: Path) -> None:
    script = write_script(tmp_path, RECORD_ENVIRONMENT)

    result = run_in(tmp_path, script)

    assert result.ok
    seen = recorded_environment(tmp_path)
    for name, value in CONTEXT.environment().items():
        assert seen[name] == value, name


def test_worker_secrets_not_passed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SECRET", "postgres://admin:hunter2@db/prod")
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", "not-for-scripts")
    monkeypatch.setenv("PATH", "/usr/local/bin:/usr/bin:/bin")
    script = write_script(tmp_path, RECORD_ENVIRONMENT)

    run_in(tmp_path, script)

    seen = recorded_environment(tmp_path)
    assert "AIRFLOW_CONN_SECRET" not in seen
    assert "AIRFLOW__CORE__FERNET_KEY" not in seen
    assert seen["PATH"] == "/usr/local/bin:/usr/bin:/bin"


def test_extra_env_cannot_override_context(tmp_path: Path) -> None:
    script = write_script(tmp_path, RECORD_ENVIRONMENT)
    extra = {"ROLLBACK_BATCH": "someone-elses-batch", "PAYMENTS_URL": "http://127.0.0.1:9"}

    run_in(tmp_path, script, extra_env=extra)

    seen = recorded_environment(tmp_path)
    assert seen["ROLLBACK_BATCH"] == CONTEXT.batch
    assert seen["PAYMENTS_URL"] == "http://127.0.0.1:9"


def test_script_environment_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")

    environment = script_environment(
        {"ROLLBACK_SERVICE": "payments"}, {"ROLLBACK_SERVICE": "other", "LANG": "de_DE.UTF-8"}
    )

    assert environment["ROLLBACK_SERVICE"] == "payments"
    assert environment["LANG"] == "de_DE.UTF-8"
    assert "AWS_SECRET_ACCESS_KEY" not in environment


INJECTION_VALUES = [
    "$(touch pwned)",
    "`touch pwned`",
    "x; touch pwned",
    "x\ntouch pwned",
    "x && touch pwned #",
    "{{ 7*7 }}",
    "'; touch pwned; echo '",
]


@pytest.mark.parametrize("value", INJECTION_VALUES)
def test_injection_values_stay_text(tmp_path: Path, value: str) -> None:
    # The script expands the values unquoted, as a careless script would, and echoes them.
    script = write_script(
        tmp_path, RECORD_ENVIRONMENT + 'echo $ROLLBACK_BATCH $ROLLBACK_TO_REF\necho "$1"\n'
    )
    context = ScriptContext(**{**CONTEXT.__dict__, "batch": value, "to_ref": value})

    result = run_script(
        [str(script), value],
        context_env=context.environment(),
        extra_env={"SERVICE_NOTE": value},
        cwd=tmp_path,
        timeout_s=30.0,
    )

    assert result.ok
    assert not (tmp_path / "pwned").exists()
    seen = recorded_environment(tmp_path)
    assert seen["ROLLBACK_BATCH"] == value
    assert seen["ROLLBACK_TO_REF"] == value
    assert seen["SERVICE_NOTE"] == value
    assert result.output.splitlines()[-1] == value.splitlines()[-1]
    assert "49" not in result.output


def test_timeout_kills_script_and_child(tmp_path: Path) -> None:
    script = write_script(tmp_path, "sleep 60 &\necho $! > child.pid\nsleep 60\n")

    started = time.monotonic()
    result = run_in(tmp_path, script, timeout_s=1.0)
    elapsed = time.monotonic() - started

    assert result.timed_out
    assert result.returncode is None
    assert not result.ok
    assert elapsed < 3.0
    child = int((tmp_path / "child.pid").read_text())
    assert wait_until_gone(child)


def test_timeout_kills_script_ignoring_sigterm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scripts, "KILL_GRACE_S", 0.5)
    script = write_script(tmp_path, "trap '' TERM\nsleep 60 &\necho $! > child.pid\nwait\n")

    started = time.monotonic()
    result = run_in(tmp_path, script, timeout_s=0.5)
    elapsed = time.monotonic() - started

    assert result.timed_out
    assert elapsed < 5.0
    assert wait_until_gone(int((tmp_path / "child.pid").read_text()))


def test_background_child_holding_output(tmp_path: Path) -> None:
    script = write_script(tmp_path, "sleep 60 &\necho $! > child.pid\necho restarted\nexit 0\n")

    result = run_in(tmp_path, script, timeout_s=1.0)

    assert result.timed_out
    assert result.returncode == 0
    assert "background" in result.summary
    assert "restarted" in result.output
    assert wait_until_gone(int((tmp_path / "child.pid").read_text()))


def test_output_merged_and_streamed(tmp_path: Path) -> None:
    script = write_script(tmp_path, "echo one\necho two >&2\necho three\n")
    lines: list[str] = []

    result = run_in(tmp_path, script, on_line=lines.append)

    assert lines == ["one", "two", "three"]
    assert result.output == "one\ntwo\nthree\n"
    assert result.output_sha256 == hashlib.sha256(b"one\ntwo\nthree\n").hexdigest()
    assert not result.output_truncated


def test_output_streamed_while_running(tmp_path: Path) -> None:
    # The script waits for a file that only the line callback creates, so it finishes
    # only when lines reach the callback while the script still runs.
    script = write_script(
        tmp_path,
        "echo ready\ni=0\nwhile [ ! -e go ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done\n"
        "[ -e go ] && echo saw-go\n",
    )

    def on_line(line: str) -> None:
        if line == "ready":
            (tmp_path / "go").touch()

    result = run_in(tmp_path, script, on_line=on_line)

    assert "saw-go" in result.output


def test_truncated_output_keeps_full_digest(tmp_path: Path) -> None:
    script = write_script(tmp_path, "seq 1 20000\n")
    full_output = "".join(f"{number}\n" for number in range(1, 20001)).encode()

    result = run_in(tmp_path, script, max_output_bytes=1000)

    assert result.output_truncated
    assert result.output_sha256 == hashlib.sha256(full_output).hexdigest()
    assert result.output.startswith("1\n2\n3\n")
    assert result.output.endswith("19999\n20000\n")
    assert "bytes of output omitted" in result.output
    assert len(result.output) < 1200


def test_long_line_without_newline(tmp_path: Path) -> None:
    script = write_script(tmp_path, "head -c 300000 /dev/zero | tr '\\0' x\n")
    lines: list[str] = []

    result = run_in(tmp_path, script, on_line=lines.append, max_output_bytes=1000)

    assert result.output_sha256 == hashlib.sha256(b"x" * 300000).hexdigest()
    assert sum(len(line) for line in lines) == 300000


def test_exit_code_reported(tmp_path: Path) -> None:
    script = write_script(tmp_path, "echo failing >&2\nexit 7\n")

    result = run_in(tmp_path, script)

    assert result.returncode == 7
    assert not result.ok
    assert not result.timed_out
    assert result.summary.startswith("exited with code 7")


def test_non_executable_script(tmp_path: Path) -> None:
    script = tmp_path / "rollback.sh"
    script.write_text("#!/bin/sh\necho never\n")

    result = run_in(tmp_path, script)

    assert result.returncode is None
    assert not result.ok
    assert not result.timed_out
    assert result.output == f"rollback script {script} is not executable: chmod +x {script}"


def test_relative_script_resolved_in_cwd(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "rollback.sh").write_text("#!/bin/sh\n")

    result = run_script(
        ["bin/rollback.sh"], context_env={}, extra_env={}, cwd=tmp_path, timeout_s=5.0
    )

    assert "bin/rollback.sh is not executable: chmod +x" in result.output
    assert str(tmp_path / "bin" / "rollback.sh") in result.output


def test_missing_script(tmp_path: Path) -> None:
    result = run_in(tmp_path, tmp_path / "absent.sh")

    assert result.returncode is None
    assert result.output == f"rollback script {tmp_path / 'absent.sh'} was not found at " + str(
        tmp_path / "absent.sh"
    )


def test_command_not_on_path(tmp_path: Path) -> None:
    result = run_script(
        ["no-such-rollback-tool"], context_env={}, extra_env={}, cwd=tmp_path, timeout_s=5.0
    )

    assert result.returncode is None
    assert result.output == "rollback script no-such-rollback-tool was not found on PATH"


def test_missing_working_directory(tmp_path: Path) -> None:
    script = write_script(tmp_path, "exit 0\n")

    result = run_in(tmp_path, script, cwd=tmp_path / "gone")

    assert result.returncode is None
    assert "does not exist" in result.output


def test_script_without_interpreter_line(tmp_path: Path) -> None:
    script = tmp_path / "rollback.sh"
    script.write_bytes(b"\x7fELF-not-really\n")
    script.chmod(0o755)

    result = run_in(tmp_path, script)

    assert result.returncode is None
    assert "#!" in result.output


def test_empty_command(tmp_path: Path) -> None:
    result = run_script([], context_env={}, extra_env={}, cwd=tmp_path, timeout_s=5.0)

    assert result.returncode is None
    assert result.output == "no rollback script given: the command is empty"


def test_line_callback_error_reraised(tmp_path: Path) -> None:
    script = write_script(tmp_path, "echo first\nseq 1 50000\ntouch finished\n")

    def failing_callback(line: str) -> None:
        raise RuntimeError(f"log handler broke on {line}")

    with pytest.raises(RuntimeError, match="log handler broke on first"):
        run_in(tmp_path, script, on_line=failing_callback)
    assert (tmp_path / "finished").exists()
