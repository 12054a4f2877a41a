"""Runs inside a change freeze window, through Airflow in this process.

A window without an override role denies the run at its first step, citing the window.
Inside a window with one, `execute` rejects an in-process run until a holder of that role has
approved the whole plan. After that approval every script runs, and the audit names the
override.
"""

from __future__ import annotations

import json

import pytest

from rollback_coordinator.core.approvals import PLAN_GROUP, ApprovalStore

pytestmark = pytest.mark.airflow

WINDOW = "code-freeze"


def freeze(deployment, override_role: str | None) -> None:
    """Add a window in force from 2020 to 2100 for every environment, and a release manager."""
    governance = deployment.config_dir / "governance.yaml"
    text = governance.read_text().replace("roles:\n", "roles:\n  release-manager: [rosa]\n")
    text += (
        "freeze_windows:\n"
        f"  - name: {WINDOW}\n"
        "    start: 2020-01-01T00:00:00+00:00\n"
        "    end: 2100-01-01T00:00:00+00:00\n"
    )
    if override_role:
        text += f"    override_role: {override_role}\n"
    governance.write_text(text)


def plan_step(deployment, batch: str = "REL-1") -> dict:
    runs = json.loads(deployment.cli("status", batch, "--json").stdout)["runs"]
    steps = [step for run in runs for step in run["steps"] if step["task_id"] == "authorize_plan"]
    assert len(steps) == 1, steps
    return steps[0]


def approve_plan(deployment, actor: str, role: str = "release-manager", check: bool = True):
    return deployment.cli(
        "approve", "REL-1", "--service", "PLAN", "--role", role, actor=actor, check=check
    )


def test_window_without_override_role_denies_the_run(deployment):
    freeze(deployment, override_role=None)
    deployment.plan("REL-1")

    result = deployment.cli("execute", str(deployment.plan_file("REL-1")), check=False)

    assert result.returncode == 1
    assert deployment.script_runs() == []
    decision = plan_step(deployment)["decision"]
    assert decision["decision"] == "DENY"
    assert decision["violated_rule"] == f"freeze.{WINDOW}"


def test_override_window_rejects_unapproved_run(deployment):
    freeze(deployment, override_role="release-manager")
    plan = deployment.plan("REL-1")

    result = deployment.cli("execute", str(deployment.plan_file("REL-1")), check=False)

    assert result.returncode == 4
    assert f"freeze.{WINDOW}" in result.stderr
    assert (
        f"approve REL-1 --service PLAN --role release-manager --plan {plan['sha256']}"
        in result.stderr
    )
    assert deployment.script_runs() == []
    assert json.loads(deployment.cli("status", "REL-1", "--json").stdout)["runs"] == []


def test_release_manager_override_is_audited(deployment):
    freeze(deployment, override_role="release-manager")
    deployment.plan("REL-1")
    approve_plan(deployment, actor="rosa")

    result = deployment.cli("execute", str(deployment.plan_file("REL-1")), check=False)

    assert result.returncode == 0, result.stderr[-3000:]
    runs = deployment.script_runs()
    assert sorted(runs[:2]) == ["automations", "worker"]
    assert runs[2:] == ["api", "db"]
    record = plan_step(deployment)
    assert record["decision"]["decision"] == "AUTHORIZE"
    [override] = record["decision"]["constraints"]["freeze_override"]
    assert override["window"] == WINDOW
    assert override["by"] == ["rosa"]
    assert override["acknowledged"] is True
    assert record["request"]["actors"]["approvers"] == ["rosa"]
    memory = "".join(
        path.read_text() for path in (deployment.data_dir / "audit" / "memory").glob("*.md")
    )
    assert "- approvers: rosa" in memory
    assert f"freeze window {WINDOW} overridden by rosa (release-manager)" in memory


def test_service_steps_count_the_whole_plan_approval(deployment):
    freeze(deployment, override_role="release-manager")
    deployment.plan("REL-1")
    approve_plan(deployment, actor="rosa")

    deployment.cli("execute", str(deployment.plan_file("REL-1")))

    runs = json.loads(deployment.cli("status", "REL-1", "--json").stdout)["runs"]
    authorizations = [
        step for run in runs for step in run["steps"] if step["task_id"].endswith(".authorize")
    ]
    assert len(authorizations) == 4
    for step in authorizations:
        assert step["decision"]["decision"] == "AUTHORIZE"
        assert step["request"]["actors"]["approvers"] == ["rosa"]
        assert step["request"]["freeze_acknowledged"] is True


@pytest.mark.parametrize(
    ("actor", "role", "reason"),
    [
        ("bob", "release-manager", "does not hold role 'release-manager'"),
        ("guardian", "guardian", "takes approvals only from the override roles"),
    ],
)
def test_plan_approval_needs_override_role(deployment, actor, role, reason):
    freeze(deployment, override_role="release-manager")
    deployment.plan("REL-1")

    rejected = approve_plan(deployment, actor=actor, role=role, check=False)
    result = deployment.cli("execute", str(deployment.plan_file("REL-1")), check=False)

    assert rejected.returncode == 4
    assert reason in rejected.stderr
    assert result.returncode == 4
    assert deployment.script_runs() == []


def test_override_bound_to_plan_digest(deployment):
    freeze(deployment, override_role="release-manager")
    first = deployment.plan("REL-1")
    approve_plan(deployment, actor="rosa")
    deployment.plan("REL-1", "--reason", "a changed plan")

    result = deployment.cli("execute", str(deployment.plan_file("REL-1")), check=False)

    assert first["sha256"] != json.loads(deployment.plan_file("REL-1").read_text())["sha256"]
    assert result.returncode == 4
    assert deployment.script_runs() == []


def test_status_names_whole_plan_request(deployment):
    plan = deployment.plan("REL-1")
    ApprovalStore(deployment.data_dir / "approvals").request(
        "REL-1", plan["sha256"], PLAN_GROUP, ["release-manager"], "a freeze window",
        run_id="manual__1", task_id="authorize_plan", dag_id="rollback_REL-1",
    )

    output = deployment.cli("status", "REL-1").stdout

    assert (
        "waiting for approval: the whole plan (--service PLAN) by release-manager for plan "
        f"{plan['sha256'][:12]} (run manual__1" in output
    )
