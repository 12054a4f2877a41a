"""Tests of the coordinator's metrics, with a recording emitter and through Airflow's StatsD."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from rollback_coordinator.core.metrics import (
    RollbackMetrics,
    name_segment,
    run_duration_metric,
    run_outcome_metric,
    service_health_metric,
)


class RecordingEmitter:
    """Test double of a StatsD client: remembers each call as (method, name, value)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    def incr(self, stat: str, count: int = 1, rate: float = 1) -> None:
        self.calls.append(("incr", stat, count))

    def timing(self, stat: str, dt: Any) -> None:
        self.calls.append(("timing", stat, dt))

    def gauge(self, stat: str, value: float) -> None:
        self.calls.append(("gauge", stat, value))


class BrokenEmitter:
    def incr(self, stat: str, *args: Any) -> None:
        raise OSError("statsd socket closed")

    timing = gauge = incr


def test_succeeded_run_is_counted_and_timed() -> None:
    emitter = RecordingEmitter()

    RollbackMetrics(emitter).run_finished(
        profile="strict", outcome="succeeded", duration=timedelta(seconds=42)
    )

    assert emitter.calls == [
        ("incr", "rollback_coordinator.runs.succeeded.strict", 1),
        ("timing", "rollback_coordinator.runs.duration.strict", timedelta(seconds=42)),
    ]


def test_failed_run_is_counted_by_profile() -> None:
    emitter = RecordingEmitter()

    RollbackMetrics(emitter).run_finished(
        profile="balanced", outcome="failed", duration=timedelta(seconds=3)
    )

    assert emitter.calls[0] == ("incr", "rollback_coordinator.runs.failed.balanced", 1)


def test_dry_run_is_counted_but_not_timed() -> None:
    emitter = RecordingEmitter()

    RollbackMetrics(emitter).run_finished(
        profile="flow", outcome="dry run", duration=timedelta(seconds=1)
    )

    assert emitter.calls == [("incr", "rollback_coordinator.runs.dry_run.flow", 1)]


def test_unknown_outcome_sends_nothing() -> None:
    emitter = RecordingEmitter()

    RollbackMetrics(emitter).run_finished(
        profile="flow", outcome="exploded", duration=timedelta(seconds=1)
    )

    assert emitter.calls == []


def test_service_health_is_gauge_of_one_or_zero() -> None:
    emitter = RecordingEmitter()
    metrics = RollbackMetrics(emitter)

    metrics.service_health(service="api", phase="before", healthy=False)
    metrics.service_health(service="api", phase="after", healthy=True)

    assert emitter.calls == [
        ("gauge", "rollback_coordinator.service.api.health_before", 0),
        ("gauge", "rollback_coordinator.service.api.health_after", 1),
    ]


def test_broken_emitter_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    metrics = RollbackMetrics(BrokenEmitter())

    metrics.run_finished(profile="flow", outcome="succeeded", duration=timedelta(seconds=1))
    metrics.service_health(service="db", phase="after", healthy=True)

    assert "statsd socket closed" in caplog.text


def test_name_segment_keeps_hierarchy() -> None:
    assert name_segment("eu.prod/api") == "eu_prod_api"
    assert name_segment("") == "_"


def test_metric_names() -> None:
    assert run_outcome_metric("failed", "strict") == "rollback_coordinator.runs.failed.strict"
    assert run_duration_metric("flow") == "rollback_coordinator.runs.duration.flow"
    assert service_health_metric("db", "before") == "rollback_coordinator.service.db.health_before"


@pytest.fixture
def statsd_listener() -> Iterator[socket.socket]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(30)
    yield listener
    listener.close()


# Runs in a fresh process, because Airflow reads [metrics] once, when its stats backend is
# first built. The backend is set up the way the task runner does it at task start
# (airflow.sdk.execution_time.task_runner.main in Airflow 3.3).
_EMIT_THROUGH_AIRFLOW = textwrap.dedent(
    """
    from datetime import timedelta

    # Airflow's StatsD backend needs the statsd package (the apache-airflow[statsd] extra);
    # without it Airflow logs an error and silently drops every metric.
    import statsd

    from airflow.sdk.configuration import conf
    from airflow.sdk.observability.metrics import stats_utils
    from airflow.sdk.observability.stats import Stats, initialize

    from rollback_coordinator.core.metrics import RollbackMetrics

    initialize(
        factory=stats_utils.get_stats_factory(),
        export_legacy_names=conf.getboolean("metrics", "legacy_names_on"),
    )
    metrics = RollbackMetrics(Stats)
    metrics.run_finished(profile="strict", outcome="succeeded", duration=timedelta(seconds=2))
    metrics.run_finished(profile="balanced", outcome="failed", duration=timedelta(seconds=1))
    metrics.service_health(service="api", phase="before", healthy=False)
    metrics.service_health(service="api", phase="after", healthy=True)
    """
)


def receive_packets(listener: socket.socket, expected: set[str]) -> set[str]:
    """Collect StatsD lines until every expected name arrived or the socket times out."""
    lines: set[str] = set()
    while not expected <= {line.split(":")[0] for line in lines}:
        try:
            packet = listener.recv(65535)
        except TimeoutError:
            break
        lines.update(packet.decode().splitlines())
    return lines


def test_metrics_reach_statsd_through_airflow(
    statsd_listener: socket.socket, tmp_path: Path
) -> None:
    port = statsd_listener.getsockname()[1]
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(port),
        "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
    }

    completed = subprocess.run(
        [sys.executable, "-c", _EMIT_THROUGH_AIRFLOW],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    expected = {
        "airflow.rollback_coordinator.runs.succeeded.strict",
        "airflow.rollback_coordinator.runs.duration.strict",
        "airflow.rollback_coordinator.runs.failed.balanced",
        "airflow.rollback_coordinator.service.api.health_before",
        "airflow.rollback_coordinator.service.api.health_after",
    }
    lines = receive_packets(statsd_listener, expected)

    assert "Could not configure StatsClient" not in completed.stderr
    assert "airflow.rollback_coordinator.runs.succeeded.strict:1|c" in lines
    assert "airflow.rollback_coordinator.runs.duration.strict:2000.000000|ms" in lines
    assert "airflow.rollback_coordinator.runs.failed.balanced:1|c" in lines
    assert "airflow.rollback_coordinator.service.api.health_before:0|g" in lines
    assert "airflow.rollback_coordinator.service.api.health_after:1|g" in lines
