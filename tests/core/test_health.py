"""Tests for HTTP, TCP and command health checks against real local servers and scripts."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rollback_coordinator.core.health import (
    check_command,
    check_http,
    check_tcp,
    parse_tcp_address,
)

SLOW_RESPONSE_S = 2.0


class ServiceHandler(BaseHTTPRequestHandler):
    """A service with a healthy, an unhealthy, a slow and two redirecting endpoints."""

    def do_GET(self) -> None:  # noqa: N802 - name fixed by BaseHTTPRequestHandler
        if self.path == "/slow":
            time.sleep(SLOW_RESPONSE_S)
        routes = {
            "/healthz": (200, None),
            "/slow": (200, None),
            "/down": (503, None),
            "/moved": (302, "/healthz"),
            "/elsewhere": (302, "http://other.invalid/healthz"),
        }
        status, location = routes.get(self.path, (404, None))
        self.send_response(status)
        if location is not None:
            self.send_header("Location", location)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base signature
        pass


@pytest.fixture
def service_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), ServiceHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_script(folder: Path, body: str) -> Path:
    script = folder / "check.sh"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return script


def test_http_healthy(service_url: str) -> None:
    result = check_http(f"{service_url}/healthz", timeout_s=5.0)

    assert result.healthy
    assert result.kind == "http"
    assert result.status == 200
    assert result.detail.startswith("HTTP 200 in ")
    assert result.detail.endswith(" s")


def test_http_503_unhealthy(service_url: str) -> None:
    result = check_http(f"{service_url}/down", timeout_s=5.0)

    assert not result.healthy
    assert result.status == 503
    assert result.detail.endswith(", expected 200")


def test_http_expected_status(service_url: str) -> None:
    result = check_http(f"{service_url}/down", expect_status=503, timeout_s=5.0)

    assert result.healthy


def test_http_connection_refused(closed_port: int) -> None:
    result = check_http(f"http://127.0.0.1:{closed_port}/healthz", timeout_s=5.0)

    assert not result.healthy
    assert result.status is None
    assert result.detail == "connection refused"


def test_http_slow_handler_times_out(service_url: str) -> None:
    started = time.monotonic()
    result = check_http(f"{service_url}/slow", timeout_s=0.3)
    elapsed = time.monotonic() - started

    assert not result.healthy
    assert result.detail == "timed out after 0.3 s"
    assert elapsed < SLOW_RESPONSE_S


def test_http_same_host_redirect_followed(service_url: str) -> None:
    result = check_http(f"{service_url}/moved", timeout_s=5.0)

    assert result.healthy
    assert result.status == 200


def test_http_redirect_to_other_host(service_url: str) -> None:
    result = check_http(f"{service_url}/elsewhere", timeout_s=5.0)

    assert not result.healthy
    assert result.status == 302
    assert "redirect to http://other.invalid/healthz not followed" in result.detail


def test_http_ignores_proxy_variables(
    service_url: str, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port}")
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{closed_port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    result = check_http(f"{service_url}/healthz", timeout_s=5.0)

    assert result.healthy


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://127.0.0.1/", "127.0.0.1:80", "", "http://[::1"]
)
def test_http_invalid_url(url: str) -> None:
    result = check_http(url, timeout_s=1.0)

    assert not result.healthy
    assert result.detail.startswith(f"invalid URL '{url}'")


def test_http_unparsable_host() -> None:
    result = check_http(f"http://{'a' * 70}.invalid/", timeout_s=1.0)

    assert not result.healthy
    assert result.detail.startswith("invalid URL: ")


def test_tcp_listener_healthy() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        result = check_tcp(f"127.0.0.1:{port}", timeout_s=5.0)

    assert result.healthy
    assert result.kind == "tcp"
    assert result.detail.startswith("connected in ")


def test_tcp_ipv6_listener_healthy() -> None:
    try:
        listener = socket.socket(socket.AF_INET6)
        listener.bind(("::1", 0))
    except OSError:
        pytest.skip("IPv6 loopback is not available here")
    with listener:
        listener.listen()
        port = listener.getsockname()[1]

        result = check_tcp(f"[::1]:{port}", timeout_s=5.0)

    assert result.healthy


def test_tcp_connection_refused(closed_port: int) -> None:
    result = check_tcp(f"127.0.0.1:{closed_port}", timeout_s=5.0)

    assert not result.healthy
    assert result.detail == "connection refused"


@pytest.mark.parametrize(
    "address", ["localhost", "::1:80", "host:0", "host:65536", "[::1]80", ":80", "host:http"]
)
def test_tcp_invalid_address(address: str) -> None:
    result = check_tcp(address, timeout_s=1.0)

    assert not result.healthy
    assert result.detail.startswith(f"invalid TCP address '{address}'")


def test_tcp_unparsable_host() -> None:
    result = check_tcp(f"{'a' * 70}.invalid:80", timeout_s=1.0)

    assert not result.healthy
    assert result.detail.startswith("invalid host name ")


@pytest.mark.parametrize(
    ("address", "expected"),
    [("db.internal:5432", ("db.internal", 5432)), ("[::1]:80", ("::1", 80))],
)
def test_parse_tcp_address(address: str, expected: tuple[str, int]) -> None:
    assert parse_tcp_address(address) == expected


def test_command_exit_zero_healthy(tmp_path: Path) -> None:
    script = write_script(tmp_path, 'test "$SERVICE_URL" = "http://127.0.0.1:8080"\n')

    result = check_command(
        [str(script)], timeout_s=5.0, cwd=tmp_path, env={"SERVICE_URL": "http://127.0.0.1:8080"}
    )

    assert result.healthy
    assert result.kind == "command"
    assert result.status == 0
    assert result.target == str(script)


def test_command_exit_one_unhealthy(tmp_path: Path) -> None:
    script = write_script(tmp_path, "echo checking\necho 'database is read-only' >&2\nexit 1\n")

    result = check_command([str(script), "--strict"], timeout_s=5.0, cwd=tmp_path, env={})

    assert not result.healthy
    assert result.status == 1
    assert result.detail.startswith("exit 1 in ")
    assert result.detail.endswith(": database is read-only")
    assert result.target == f"{script} --strict"


def test_command_timeout(tmp_path: Path) -> None:
    script = write_script(tmp_path, "sleep 60\n")

    result = check_command([str(script)], timeout_s=0.5, cwd=tmp_path, env={})

    assert not result.healthy
    assert result.detail == "timed out after 0.5 s"


def test_command_not_executable(tmp_path: Path) -> None:
    script = tmp_path / "check.sh"
    script.write_text("#!/bin/sh\n")

    result = check_command([str(script)], timeout_s=5.0, cwd=tmp_path, env={})

    assert not result.healthy
    assert result.detail == f"health command {script} is not executable: chmod +x {script}"
