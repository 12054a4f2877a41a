"""docker-compose.yaml: the production layout, checked without a container engine."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

CHECKOUT = Path(__file__).resolve().parents[1]
AIRFLOW_SERVICES = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((CHECKOUT / "docker-compose.yaml").read_text())


def test_compose_has_production_services(compose):
    services = set(compose["services"])

    assert {"postgres", "redis", "airflow-init", *AIRFLOW_SERVICES} <= services


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_airflow_services_share_rollback_folders(compose, name):
    service = compose["services"][name]

    assert service["environment"]["ROLLBACK_DATA_DIR"] == "/opt/airflow/rollback-data"
    assert service["environment"]["ROLLBACK_CONFIG_DIR"] == "/opt/airflow/rollback-config"
    assert "rollback-data:/opt/airflow/rollback-data" in service["volumes"]
    assert service["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"


def test_published_ports_bind_loopback_only(compose):
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), name


def test_worker_can_scale(compose):
    worker = compose["services"]["airflow-worker"]

    assert "container_name" not in worker
    assert "ports" not in worker


def test_every_variable_documented_in_env_example(compose):
    text = (CHECKOUT / "docker-compose.yaml").read_text()
    # "$${NAME}" is a variable of a container's shell, not one that Compose reads.
    used = set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)", text))
    documented = set(re.findall(r"^#?\s*([A-Z_][A-Z0-9_]*)=", (CHECKOUT / ".env.example").read_text(), re.M))

    assert used <= documented, sorted(used - documented)
