"""Health checks run before and after a rollback: an HTTP request, a TCP connect or a command.

An unhealthy target, an unreachable one and an invalid URL or address all give a result with
healthy=False and the reason in ``detail``, not an exception.
"""

from __future__ import annotations

import shlex
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from rollback_coordinator.core.scripts import run_script

# requests is imported where it is used: every parse of the DAG file imports this module,
# and importing requests took about 50 ms there (python -X importtime).
if TYPE_CHECKING:
    import requests

MAX_REDIRECTS = 5

# Maximum characters of a failing command's last output line quoted in the detail.
_QUOTED_OUTPUT_CHARS = 200


@dataclass(frozen=True)
class HealthResult:
    """The outcome of one health check. ``kind`` is "http", "tcp" or "command".

    ``status`` is the HTTP status code of an http check and the exit code of a command check.
    It is None when there is none, for example when the connection failed.
    """

    kind: str
    target: str
    healthy: bool
    detail: str
    duration_s: float
    status: int | None = None


def check_http(url: str, *, expect_status: int = 200, timeout_s: float) -> HealthResult:
    """Send a GET request to ``url`` and report healthy when the status is ``expect_status``.

    Redirects are followed only to the same host name, at most MAX_REDIRECTS times. The body
    is not read. Proxy variables and ~/.netrc are ignored, so the request goes straight to the
    service and never carries stored credentials. ``timeout_s`` applies to the connect and
    to the wait for the response headers separately.
    """
    import requests

    problem = _url_problem(url)
    if problem is not None:
        return HealthResult("http", url, False, problem, 0.0)
    started = time.monotonic()
    try:
        status, redirect_note = _fetch_status(url, expect_status, timeout_s)
    except requests.RequestException as error:
        detail = _describe_request_failure(error, timeout_s)
        return HealthResult("http", url, False, detail, time.monotonic() - started)
    except ValueError as error:
        # urllib3 and urllib.parse raise ValueError subclasses for hosts they cannot parse,
        # in the URL or in a redirect's Location header.
        detail = f"invalid URL: {error}"
        return HealthResult("http", url, False, detail, time.monotonic() - started)
    duration = time.monotonic() - started
    detail = f"HTTP {status} in {duration:.2f} s"
    if status != expect_status:
        detail += f", expected {expect_status}"
    if redirect_note is not None:
        detail += f"; {redirect_note}"
    return HealthResult("http", url, status == expect_status, detail, duration, status)


def check_tcp(address: str, *, timeout_s: float) -> HealthResult:
    """Open a TCP connection to ``address`` ("host:port" or "[IPv6]:port") and close it."""
    try:
        host, port = parse_tcp_address(address)
    except ValueError as error:
        return HealthResult("tcp", address, False, str(error), 0.0)
    started = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as error:
        detail = _describe_os_error(error, timeout_s)
        return HealthResult("tcp", address, False, detail, time.monotonic() - started)
    except UnicodeError as error:
        detail = f"invalid host name '{host}': {error}"
        return HealthResult("tcp", address, False, detail, time.monotonic() - started)
    duration = time.monotonic() - started
    return HealthResult("tcp", address, True, f"connected in {duration:.2f} s", duration)


def check_command(
    argv: list[str], *, timeout_s: float, cwd: Path, env: dict[str, str]
) -> HealthResult:
    """Run ``argv`` like a rollback script, with the same minimal environment plus ``env``,
    and report healthy when it exits with 0."""
    result = run_script(
        argv, context_env=env, extra_env={}, cwd=cwd, timeout_s=timeout_s, label="health command"
    )
    target = shlex.join(argv)
    if result.timed_out:
        detail = f"timed out after {timeout_s:g} s"
    elif result.returncode is None:
        detail = result.output
    else:
        detail = f"exit {result.returncode} in {result.duration_s:.2f} s"
        # The last line shows what the check found, such as the version a service reports.
        last_line = _last_line(result.output)
        if last_line:
            detail += f": {last_line[:_QUOTED_OUTPUT_CHARS]}"
    return HealthResult(
        "command", target, result.ok, detail, result.duration_s, result.returncode
    )


def parse_tcp_address(address: str) -> tuple[str, int]:
    """Split "host:port" or "[IPv6]:port" into host and port, raising ValueError naming the
    expected form."""
    usage = f"invalid TCP address '{address}': expected host:port, or [IPv6]:port such as [::1]:80"
    if address.startswith("["):
        host, separator, port_text = address[1:].partition("]:")
        if not separator:
            raise ValueError(usage)
    else:
        host, separator, port_text = address.rpartition(":")
        if not separator or ":" in host:
            raise ValueError(usage)
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(usage)
    return host, int(port_text)


def _url_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError as error:
        return f"invalid URL '{url}': {error}"
    if parts.scheme not in ("http", "https") or not hostname:
        return f"invalid URL '{url}': expected http:// or https:// followed by a host"
    return None


def _fetch_status(url: str, expect_status: int, timeout_s: float) -> tuple[int, str | None]:
    """Return the final status code and, when a redirect was not followed, the reason."""
    import requests

    with requests.Session() as session:
        session.trust_env = False
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            response = session.get(current, timeout=timeout_s, allow_redirects=False, stream=True)
            response.close()
            status = response.status_code
            location = response.headers.get("Location")
            if status == expect_status or not response.is_redirect or location is None:
                return status, None
            target = urljoin(current, location)
            if _host(target) != _host(current):
                return status, f"redirect to {target} not followed because it leaves {_host(url)}"
            current = target
        return status, f"stopped after {MAX_REDIRECTS} redirects"


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def _describe_request_failure(error: requests.RequestException, timeout_s: float) -> str:
    import requests

    if isinstance(error, requests.Timeout):
        return f"timed out after {timeout_s:g} s"
    if isinstance(error, (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema)):
        return f"invalid URL: {error}"
    for cause in _exception_chain(error):
        if type(cause).__module__ == "builtins" and isinstance(cause, OSError):
            return _describe_os_error(cause, timeout_s)
    return f"request failed: {error}"


def _exception_chain(error: BaseException) -> Iterator[BaseException]:
    """Yield ``error`` and every exception it wraps.

    requests and urllib3 wrap the socket error in their own exceptions, some through
    ``__cause__`` and some through a ``reason`` attribute or the exception arguments.
    """
    pending: list[BaseException] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        wrapped = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        wrapped.extend(current.args)
        pending.extend(item for item in wrapped if isinstance(item, BaseException))


def _describe_os_error(error: OSError, timeout_s: float) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, TimeoutError):
        return f"timed out after {timeout_s:g} s"
    if isinstance(error, socket.gaierror):
        return f"host name could not be resolved: {error.strerror}"
    return error.strerror or str(error)


def _last_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else ""
