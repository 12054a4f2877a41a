"""A real rollback run sends its metrics through Airflow's StatsD client to 127.0.0.1."""

from __future__ import annotations

import socket

import pytest

pytestmark = pytest.mark.airflow


def test_run_sends_statsd_metrics(deployment):
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(0.5)
    deployment.env.update(
        {
            "AIRFLOW__METRICS__STATSD_ON": "True",
            "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
            "AIRFLOW__METRICS__STATSD_PORT": str(listener.getsockname()[1]),
        }
    )
    deployment.plan("REL-1")

    deployment.cli("execute", str(deployment.plan_file("REL-1")))

    packets = []
    while True:
        try:
            packets.append(listener.recv(65535).decode())
        except TimeoutError:
            break
    listener.close()
    ours = [line for packet in packets for line in packet.splitlines() if "rollback_coordinator" in line]
    assert any(".runs.succeeded.flow:1|c" in line for line in ours), ours
    assert any(".runs.duration.flow:" in line and line.endswith("|ms") for line in ours), ours
    assert any(".service.worker.health_after:1|g" in line for line in ours), ours
