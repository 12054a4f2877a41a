"""A database the verifier cannot read stops the rollback before the db script runs."""

from __future__ import annotations

import json

import pytest

from tests_support import free_port

pytestmark = pytest.mark.airflow


def read_history_through(deployment, uri: str) -> None:
    services = deployment.config_dir / "services.yaml"
    services.write_text(services.read_text().replace(
        '    paths: ["db/**"]\n    rollback_script: scripts/record.sh\n',
        '    paths: ["db/**"]\n    rollback_script: scripts/record.sh\n'
        "    migrations:\n      tool: prisma\n      directory: db/migrations\n"
        "      connection_id: app_db\n",
    ))
    deployment.env["AIRFLOW_CONN_APP_DB"] = uri


def verify_step(deployment) -> dict:
    status = json.loads(deployment.cli("status", "REL-1", "--json").stdout)
    return next(step for step in status["runs"][0]["steps"] if step["task_id"] == "db.verify_migrations")


def test_unreachable_database_stops_db_rollback(deployment):
    read_history_through(deployment, f"postgresql://app:secret@127.0.0.1:{free_port()}/orders")
    deployment.plan("REL-1")

    result = deployment.cli("execute", str(deployment.plan_file("REL-1")), check=False)

    assert result.returncode == 1
    assert "db" not in deployment.script_runs()
    step = verify_step(deployment)
    assert step["outcome"] == "failed"
    assert "'app_db'" in step["migration_state"][0]["reason"]


def test_wrong_password_stops_db_rollback(deployment, postgres_server):
    uri = f"postgresql://postgres:wrong-password@127.0.0.1:{postgres_server.port}/postgres"
    read_history_through(deployment, uri)
    deployment.plan("REL-1")

    result = deployment.cli("execute", str(deployment.plan_file("REL-1")), check=False)

    assert result.returncode == 1
    assert "db" not in deployment.script_runs()
    step = verify_step(deployment)
    reason = step["migration_state"][0]["reason"]
    assert "'app_db'" in reason
    assert "wrong-password" not in json.dumps(step)
