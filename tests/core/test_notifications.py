"""Tests of the notification bus against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import ValidationError

from rollback_coordinator.core.notifications import (
    EVENTS,
    DeliveryResult,
    NotificationBus,
    NotificationSettings,
)
from rollback_coordinator.core.redaction import Redactor

BATCH = "REL-3"
RUN_ID = "manual__2025-03-06T08:00:00+00:00"


class Receiver:
    """A webhook receiver that records each request and responds with scripted statuses.

    After the scripted statuses run out it responds 200. ``delay_s`` delays every response.
    """

    def __init__(self, statuses: list[int] | None = None, delay_s: float = 0.0) -> None:
        self.statuses = list(statuses or [])
        self.delay_s = delay_s
        self.requests: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body}
                )
                time.sleep(receiver.delay_s)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/rollback"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(request["body"]) for request in self.requests]

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections: bound, so no one else takes it, but
    not listening."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    yield holder.getsockname()[1]
    holder.close()


def webhook_settings(url: str, **options: Any) -> NotificationSettings:
    channel = {"kind": "webhook", "url": url, "timeout_s": 2, "retries": 3, "backoff_s": 0.01}
    channel.update(options)
    return NotificationSettings.model_validate(
        {
            "channels": {"whisper": {"kind": "log"}, "nexus": channel},
            "routes": {"rollback_failed": ["nexus", "whisper"], "run_started": ["whisper"]},
        },
        strict=True,
    )


def notify_failure(bus: NotificationBus, **changes: Any) -> list[DeliveryResult]:
    fields: dict[str, Any] = {
        "batch": BATCH,
        "run_id": RUN_ID,
        "service": "api",
        "detail": "rollback script exited 1",
    }
    fields.update(changes)
    return bus.notify("rollback_failed", **fields)


def result_for(results: list[DeliveryResult], channel: str) -> DeliveryResult:
    return next(result for result in results if result.channel == channel)


def test_webhook_receives_json_payload() -> None:
    with Receiver() as receiver:
        results = notify_failure(NotificationBus(webhook_settings(receiver.url)))

    assert result_for(results, "nexus").delivered
    assert receiver.requests[0]["path"] == "/hooks/rollback"
    assert receiver.requests[0]["headers"]["Content-Type"] == "application/json"
    payload = receiver.payloads()[0]
    assert set(payload) == {"event", "batch", "run_id", "service", "detail", "at"}
    assert payload["event"] == "rollback_failed"
    assert payload["batch"] == BATCH
    assert payload["run_id"] == RUN_ID
    assert payload["service"] == "api"
    assert payload["detail"] == "rollback script exited 1"


def test_payload_without_service_leaves_it_out() -> None:
    with Receiver() as receiver:
        notify_failure(NotificationBus(webhook_settings(receiver.url)), service=None)

    assert "service" not in receiver.payloads()[0]


def test_configured_headers_are_sent() -> None:
    with Receiver() as receiver:
        bus = NotificationBus(webhook_settings(receiver.url, headers={"X-Team": "release"}))
        notify_failure(bus)

    assert receiver.requests[0]["headers"]["X-Team"] == "release"


def test_webhook_failing_twice_then_succeeding_is_delivered() -> None:
    sleeps: list[float] = []
    with Receiver(statuses=[503, 500]) as receiver:
        bus = NotificationBus(webhook_settings(receiver.url, backoff_s=0.5), sleep=sleeps.append)
        result = result_for(notify_failure(bus), "nexus")

    assert result.delivered
    assert result.attempts == 3
    assert result.status == 200
    assert result.error is None
    assert len(receiver.requests) == 3
    assert sleeps == [0.5, 1.0]


def test_down_webhook_reports_failure_without_raising(closed_port: int) -> None:
    sleeps: list[float] = []
    url = f"http://127.0.0.1:{closed_port}/hooks/rollback"
    bus = NotificationBus(webhook_settings(url, backoff_s=1, max_backoff_s=3), sleep=sleeps.append)

    results = notify_failure(bus)

    nexus = result_for(results, "nexus")
    assert not nexus.delivered
    assert nexus.attempts == 4
    assert nexus.status is None
    assert nexus.error is not None
    assert "connection failed" in nexus.error
    assert "refused" in nexus.error.lower()
    assert sleeps == [1, 2, 3]
    assert result_for(results, "whisper").delivered


def test_down_webhook_with_real_backoff_returns(closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}/hooks/rollback"
    bus = NotificationBus(webhook_settings(url, retries=2, backoff_s=0.05))

    result = result_for(notify_failure(bus), "nexus")

    assert not result.delivered
    assert result.attempts == 3


def test_client_error_is_not_retried() -> None:
    with Receiver(statuses=[400]) as receiver:
        bus = NotificationBus(webhook_settings(receiver.url))
        result = result_for(notify_failure(bus), "nexus")

    assert not result.delivered
    assert result.attempts == 1
    assert result.status == 400
    assert result.error == "HTTP 400"
    assert len(receiver.requests) == 1


def test_server_error_retries_until_limit() -> None:
    with Receiver(statuses=[503] * 10) as receiver:
        bus = NotificationBus(webhook_settings(receiver.url, retries=2), sleep=lambda _: None)
        result = result_for(notify_failure(bus), "nexus")

    assert not result.delivered
    assert result.attempts == 3
    assert result.status == 503
    assert len(receiver.requests) == 3


def test_slow_webhook_times_out() -> None:
    with Receiver(delay_s=1.5) as receiver:
        bus = NotificationBus(webhook_settings(receiver.url, timeout_s=0.2, retries=0))
        result = result_for(notify_failure(bus), "nexus")

    assert not result.delivered
    assert result.attempts == 1
    assert result.error == "timed out after 0.2 s"


def test_log_channel_writes_one_line(caplog: pytest.LogCaptureFixture) -> None:
    bus = NotificationBus()

    with caplog.at_level(logging.INFO, logger="rollback_coordinator.core.notifications"):
        results = bus.notify("run_started", batch=BATCH, run_id=RUN_ID, detail="profile strict")

    whisper = [record for record in caplog.records if "to whisper" in record.getMessage()]
    assert len(whisper) == 1
    assert f'"batch": "{BATCH}"' in whisper[0].getMessage()
    assert all(result.delivered for result in results)


def test_defaults_are_three_log_channels() -> None:
    settings = NotificationSettings()

    assert sorted(settings.channels) == ["chronos", "nexus", "whisper"]
    assert {channel.kind for channel in settings.channels.values()} == {"log"}


def test_every_event_reaches_every_default_channel() -> None:
    bus = NotificationBus()

    for event in EVENTS:
        results = bus.notify(event, batch=BATCH, run_id=RUN_ID, detail="-")
        assert sorted(result.channel for result in results) == ["chronos", "nexus", "whisper"]


def test_routes_pick_channels_per_event() -> None:
    with Receiver() as receiver:
        bus = NotificationBus(webhook_settings(receiver.url))
        started = bus.notify("run_started", batch=BATCH, run_id=RUN_ID, detail="-")
        unrouted = bus.notify("approval_needed", batch=BATCH, run_id=RUN_ID, detail="-")

    assert [result.channel for result in started] == ["whisper"]
    assert unrouted == []
    assert receiver.requests == []


def test_route_to_unknown_channel_is_rejected() -> None:
    with pytest.raises(ValidationError, match="unknown channel.*pager"):
        NotificationSettings.model_validate({"routes": {"step_failed": ["pager"]}}, strict=True)


def test_webhook_without_url_scheme_is_rejected() -> None:
    with pytest.raises(ValidationError, match="not an http or https URL"):
        NotificationSettings.model_validate(
            {"channels": {"nexus": {"kind": "webhook", "url": "127.0.0.1/hook"}}}, strict=True
        )


def test_unknown_channel_option_is_rejected() -> None:
    with pytest.raises(ValidationError, match="retry"):
        NotificationSettings.model_validate(
            {"channels": {"nexus": {"kind": "log", "retry": 3}}}, strict=True
        )


def test_unknown_event_returns_failure() -> None:
    results = NotificationBus().notify("rollback_exploded", batch=BATCH, run_id=RUN_ID, detail="-")

    assert len(results) == 1
    assert not results[0].delivered
    assert results[0].error == "unknown event 'rollback_exploded'"


def test_secret_never_reaches_webhook_or_result(closed_port: int) -> None:
    secret = "hook-token-5f4e3d2c"
    with Receiver() as receiver:
        bus = NotificationBus(webhook_settings(receiver.url), redactor=Redactor([secret]))
        notify_failure(bus, detail=f"psql: password {secret} rejected")
    down = NotificationBus(
        webhook_settings(f"http://127.0.0.1:{closed_port}/{secret}", retries=0),
        redactor=Redactor([secret]),
    )
    failed = result_for(notify_failure(down), "nexus")

    assert secret not in receiver.requests[0]["body"].decode()
    assert failed.error is not None
    assert secret not in failed.error


def test_result_converts_to_audit_data() -> None:
    result = DeliveryResult("nexus", "webhook", "rollback_failed", False, 4, None, "timed out")

    assert result.as_dict() == {
        "channel": "nexus",
        "kind": "webhook",
        "event": "rollback_failed",
        "delivered": False,
        "attempts": 4,
        "status": None,
        "error": "timed out",
    }
