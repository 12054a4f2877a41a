"""Run one rollback script as a child process with a minimal environment and a hard timeout.

The script gets an argument list, never a shell command line, so values such as the batch id
or a git ref reach it only as environment variables and are never parsed by a shell.
"""

from __future__ import annotations

import codecs
import errno
import hashlib
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

# The only variables copied from the worker's environment. The worker's environment may
# contain secrets (AIRFLOW__* settings, AIRFLOW_CONN_* connection URIs) that a script
# must not see.
INHERITED_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "LOGNAME")

# Seconds between SIGTERM and SIGKILL when a script is stopped on timeout.
KILL_GRACE_S = 5.0

# Maximum bytes per read, so one very long line cannot grow memory past the output limit.
_READ_CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class ScriptContext:
    """Run details passed to a rollback script as environment variables, never as text in a
    command line."""

    batch: str
    service: str
    profile: str
    run_id: str
    plan_digest: str
    dry_run: bool
    from_ref: str
    to_ref: str | None
    repo: str
    config_dir: str
    data_dir: str
    environment_name: str = ""

    def environment(self) -> dict[str, str]:
        """Return the ROLLBACK_* variables for this context."""
        return {
            "ROLLBACK_BATCH": self.batch,
            "ROLLBACK_SERVICE": self.service,
            "ROLLBACK_PROFILE": self.profile,
            "ROLLBACK_RUN_ID": self.run_id,
            "ROLLBACK_PLAN_DIGEST": self.plan_digest,
            "ROLLBACK_DRY_RUN": "1" if self.dry_run else "0",
            "ROLLBACK_FROM_REF": self.from_ref,
            "ROLLBACK_TO_REF": self.to_ref if self.to_ref is not None else "",
            "ROLLBACK_REPO": self.repo,
            "ROLLBACK_CONFIG_DIR": self.config_dir,
            "ROLLBACK_DATA_DIR": self.data_dir,
            "ROLLBACK_ENVIRONMENT": self.environment_name,
        }


@dataclass(frozen=True)
class ScriptResult:
    """The outcome of one script run.

    ``returncode`` is None when the script could not be started, and then ``output`` explains
    why. It is also None when the script was stopped on timeout. ``output`` is stdout and
    stderr merged, decoded as UTF-8 with invalid bytes replaced.
    When ``output_truncated`` is true, ``output`` keeps only the head and the tail, but
    ``output_sha256`` is still the digest of the full byte stream.
    """

    argv: tuple[str, ...]
    returncode: int | None
    output: str
    output_sha256: str
    output_truncated: bool
    duration_s: float
    timed_out: bool

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    @property
    def summary(self) -> str:
        """One line for the task log: how the run ended and how long it took."""
        if self.timed_out and self.returncode is not None:
            return (
                f"exited with code {self.returncode}, but processes it started in the background "
                f"kept its output open until the timeout after {self.duration_s:.1f} s and were "
                f"stopped. Redirect their output (>/dev/null 2>&1) so the script can finish."
            )
        if self.timed_out:
            return f"timed out after {self.duration_s:.1f} s and was stopped"
        if self.returncode is None:
            return self.output
        return f"exited with code {self.returncode} in {self.duration_s:.2f} s"


def script_environment(context_env: dict[str, str], extra_env: dict[str, str]) -> dict[str, str]:
    """Build the child's environment from a few inherited variables, then ``extra_env``, then
    ``context_env``, so that a service's own variables cannot override ROLLBACK_* values."""
    environment = {name: os.environ[name] for name in INHERITED_VARIABLES if name in os.environ}
    environment.update(extra_env)
    environment.update(context_env)
    return environment


class _OutputBuffer:
    """Output kept in memory, with head and tail bounded, and a digest over every byte."""

    def __init__(self, max_bytes: int) -> None:
        self._head_limit = max_bytes // 2
        self._tail_limit = max_bytes - self._head_limit
        self._head = bytearray()
        self._tail = bytearray()
        self._digest = hashlib.sha256()
        self.total_bytes = 0

    def add(self, chunk: bytes) -> None:
        self._digest.update(chunk)
        self.total_bytes += len(chunk)
        room = self._head_limit - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
        self._tail += chunk
        excess = len(self._tail) - self._tail_limit
        if excess > 0:
            del self._tail[:excess]

    @property
    def truncated(self) -> bool:
        return self.total_bytes > len(self._head) + len(self._tail)

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    def text(self) -> str:
        head = self._head.decode("utf-8", errors="replace")
        tail = self._tail.decode("utf-8", errors="replace")
        if not self.truncated:
            return head + tail
        omitted = self.total_bytes - len(self._head) - len(self._tail)
        marker = f"\n[... {omitted} bytes of output omitted; output_sha256 covers all of it ...]\n"
        return head + marker + tail


class _OutputReader(threading.Thread):
    """Drains the child's pipe into an _OutputBuffer and passes each line to ``on_line``.

    Reading happens in this thread so that the main thread can enforce the timeout even
    when the script prints nothing.
    """

    def __init__(
        self, stream: IO[bytes], buffer: _OutputBuffer, on_line: Callable[[str], None] | None
    ) -> None:
        super().__init__(name="rollback-script-output", daemon=True)
        self._stream = stream
        self._buffer = buffer
        self._on_line = on_line
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.callback_error: BaseException | None = None

    def run(self) -> None:
        while chunk := self._stream.readline(_READ_CHUNK_BYTES):
            self._buffer.add(chunk)
            self._report(self._decoder.decode(chunk))
        self._report(self._decoder.decode(b"", final=True))

    def _report(self, text: str) -> None:
        if not text or self._on_line is None or self.callback_error is not None:
            return
        try:
            self._on_line(text.rstrip("\r\n"))
        except Exception as error:  # noqa: BLE001 - re-raised in the caller's thread
            # The pipe must keep draining, or the script blocks once the pipe buffer fills.
            self.callback_error = error


def run_script(
    argv: list[str],
    *,
    context_env: dict[str, str],
    extra_env: dict[str, str],
    cwd: Path,
    timeout_s: float,
    on_line: Callable[[str], None] | None = None,
    max_output_bytes: int = 1_000_000,
    label: str = "rollback script",
) -> ScriptResult:
    """Run ``argv`` in ``cwd`` and return its result. A script that fails, hangs or cannot be
    started gives a result, not an exception.

    The child runs in a session and process group of its own. On timeout the whole group gets
    SIGTERM and, after KILL_GRACE_S, SIGKILL, so processes the script started stop too.
    ``label`` names the program in messages. An exception raised by ``on_line`` stops further
    calls to it and is re-raised once the script has ended.
    """
    problem = _start_problem(argv, cwd, label)
    if problem is not None:
        return _not_started(argv, problem)
    buffer = _OutputBuffer(max_output_bytes)
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=script_environment(context_env, extra_env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except FileNotFoundError:
        return _not_started(argv, f"{label} {argv[0]} was not found on PATH")
    except (OSError, ValueError) as error:
        return _not_started(argv, f"could not start {label} {argv[0]}: {_start_hint(error)}")
    assert process.stdout is not None  # guaranteed by stdout=PIPE
    reader = _OutputReader(process.stdout, buffer, on_line)
    reader.start()
    timed_out, exited_in_time = _wait_or_stop(process, reader, started + timeout_s)
    process.stdout.close()
    if reader.callback_error is not None:
        raise reader.callback_error
    return ScriptResult(
        argv=tuple(argv),
        returncode=process.returncode if exited_in_time else None,
        output=buffer.text(),
        output_sha256=buffer.sha256,
        output_truncated=buffer.truncated,
        duration_s=time.monotonic() - started,
        timed_out=timed_out,
    )


def _start_problem(argv: list[str], cwd: Path, label: str) -> str | None:
    """Return why ``argv`` cannot run in ``cwd``, or None when it looks runnable."""
    if not argv:
        return f"no {label} given: the command is empty"
    if not cwd.is_dir():
        return f"working directory {cwd} for {label} {argv[0]} does not exist"
    program = argv[0]
    if os.sep not in program:
        return None  # Popen looks it up on PATH and a miss raises FileNotFoundError
    path = Path(program) if os.path.isabs(program) else cwd / program
    if not path.exists():
        return f"{label} {program} was not found at {path}"
    if path.is_dir() or not os.access(path, os.X_OK):
        return f"{label} {program} is not executable: chmod +x {shlex.quote(str(path))}"
    return None


def _start_hint(error: OSError | ValueError) -> str:
    if isinstance(error, OSError) and error.errno == errno.ENOEXEC:
        return f"{error}. Start the script with a '#!' line such as #!/bin/sh"
    return str(error)


def _not_started(argv: list[str], problem: str) -> ScriptResult:
    return ScriptResult(
        argv=tuple(argv),
        returncode=None,
        output=problem,
        output_sha256=hashlib.sha256(problem.encode()).hexdigest(),
        output_truncated=False,
        duration_s=0.0,
        timed_out=False,
    )


def _wait_or_stop(
    process: subprocess.Popen[bytes], reader: _OutputReader, deadline: float
) -> tuple[bool, bool]:
    """Wait until the output is closed and the script has exited, or stop the process group at
    the deadline. Return (timed out, script exited before the deadline)."""
    reader.join(max(0.0, deadline - time.monotonic()))
    if not reader.is_alive():
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
            return False, True
        except subprocess.TimeoutExpired:
            pass
    # The script may have exited while processes it started in the background keep the
    # output pipe open. Those are stopped too, but the script's own exit code is kept.
    exited_in_time = _has_exited(process)
    _stop_group(process)
    # NOTE: a process that left the group (setsid) and keeps the pipe open also keeps the
    # reader thread alive. The thread is a daemon, so the output read after this join is dropped.
    reader.join(KILL_GRACE_S)
    return True, exited_in_time


def _has_exited(process: subprocess.Popen[bytes]) -> bool:
    """Return whether the child has exited, without reaping it where the platform allows.

    An unreaped child keeps its pid, and so its process group id, from being reused, which
    makes it safe to signal the group afterwards.
    """
    if process.returncode is not None:
        return True
    if not hasattr(os, "waitid"):
        return process.poll() is not None
    try:
        status = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return status is not None


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """Send SIGTERM to the script's process group, then SIGKILL once the script has exited or
    KILL_GRACE_S has passed, and reap the script."""
    group = process.pid  # start_new_session=True makes the child the leader of its group
    _signal_group(group, signal.SIGTERM)
    grace_ends = time.monotonic() + KILL_GRACE_S
    while not _has_exited(process) and time.monotonic() < grace_ends:
        time.sleep(0.05)
    # The leader is not reaped yet, so the group id cannot belong to anyone else. SIGKILL
    # reaches children that outlived the script or ignored SIGTERM.
    _signal_group(group, signal.SIGKILL)
    process.wait()


def _signal_group(group: int, signal_number: signal.Signals) -> None:
    try:
        os.killpg(group, signal_number)
    except ProcessLookupError:
        pass  # every process in the group has already exited
