"""A batch in git becomes a rollback DAG, and Airflow runs it in reverse dependency order."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.airflow


def test_scripts_run_in_reverse_dependency_order(deployment):
    plan = deployment.plan("REL-1")

    result = deployment.cli("execute", str(deployment.plan_file("REL-1")), "--json")

    assert json.loads(result.stdout)["state"] == "success"
    runs = deployment.script_runs()
    assert sorted(runs[:2]) == ["automations", "worker"]
    assert runs[2:] == ["api", "db"]
    levels = {service["group_id"]: service["level"] for service in plan["plan"]["phases"][0]["services"]}
    assert levels == {"automations": 0, "worker": 0, "api": 1, "db": 2}


def test_independent_services_share_a_level(deployment):
    deployment.plan("REL-1")

    deployment.cli("execute", str(deployment.plan_file("REL-1")))

    # dag.test() runs one task at a time, so sharing a level shows as interleaving: both
    # services start (health check) before either finishes its rollback.
    events = deployment.order_log.read_text().splitlines()
    first_end = next(index for index, line in enumerate(events) if line.startswith("end "))
    begun = {line.split()[1] for line in events[:first_end] if line.startswith("health ")}
    assert begun == {"worker", "automations"}
    assert not any(line.endswith((" api", " db")) for line in events[:first_end])


def test_scripts_get_their_context_from_the_environment(deployment):
    plan = deployment.plan("REL-1", "--reason", "orders broke checkout")

    deployment.cli("execute", str(deployment.plan_file("REL-1")))

    seen = dict(
        line.split("=", 1) for line in (deployment.data_dir / "env-api.txt").read_text().splitlines()
    )
    phase = plan["plan"]["phases"][0]
    assert seen["ROLLBACK_BATCH"] == "REL-1"
    assert seen["ROLLBACK_SERVICE"] == "api"
    assert seen["ROLLBACK_PROFILE"] == "flow"
    assert seen["ROLLBACK_PLAN_DIGEST"] == plan["sha256"]
    assert seen["ROLLBACK_DRY_RUN"] == "0"
    assert seen["ROLLBACK_FROM_REF"] == phase["from_ref"]
    assert seen["ROLLBACK_TO_REF"] == phase["to_ref"]
    assert seen["ROLLBACK_RUN_ID"].startswith("manual__")


def test_run_is_recorded_in_the_audit_repository(deployment):
    deployment.plan("REL-1")

    deployment.cli("execute", str(deployment.plan_file("REL-1")))

    run_log = (deployment.data_dir / "audit" / "RUN_LOG.md").read_text()
    rows = [line for line in run_log.splitlines() if line.startswith("| 20")]
    assert len(rows) == 1
    assert "| REL-1 |" in rows[0]
    assert "| succeeded |" in rows[0]
    memory = list((deployment.data_dir / "audit" / "memory").glob("*.md"))
    assert len(memory) == 1
    log = deployment.cli("status", "REL-1", "--json")
    assert len(json.loads(log.stdout)["runs"]) == 1


def test_changed_plan_file_is_refused(deployment):
    deployment.plan("REL-1")
    path = deployment.plan_file("REL-1")
    document = json.loads(path.read_text())
    document["plan"]["reason"] = "edited after approval"
    path.write_text(json.dumps(document))

    result = deployment.cli("execute", str(path), check=False)

    assert result.returncode == 4
    assert "was changed after it was made" in result.stderr
    assert deployment.script_runs() == []


def test_failed_script_stops_dependencies_and_fails_run(deployment):
    broken = deployment.config_dir / "scripts" / "broken.sh"
    broken.write_text("#!/bin/sh\necho 'cannot reach the api hosts' >&2\nexit 7\n")
    broken.chmod(0o755)
    services = deployment.config_dir / "services.yaml"
    services.write_text(services.read_text().replace(
        "depends_on: [db]\n    rollback_script: scripts/record.sh",
        "depends_on: [db]\n    rollback_script: scripts/broken.sh",
    ))
    deployment.plan("REL-1")

    result = deployment.cli("execute", str(deployment.plan_file("REL-1")), check=False)

    assert result.returncode == 1
    assert "db" not in deployment.script_runs()
    assert sorted(deployment.script_runs()) == ["automations", "worker"]
    run_log = (deployment.data_dir / "audit" / "RUN_LOG.md").read_text()
    assert "| failed |" in run_log
