"""Airflow's own DagBag loads the DAG folder: one DAG per batch, shaped by the plan."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

from rollback_coordinator.core.batches import scan_repository
from rollback_coordinator.core.registry import BatchRegistry

CHECKOUT = Path(__file__).resolve().parents[2]
PARAMS = ("profile", "environment", "reason", "dry_run", "cascade", "plan_sha256")


@pytest.fixture
def registered(deployment, monkeypatch):
    """The deployment's batches registered, and this process pointed at its folders."""
    monkeypatch.setenv("ROLLBACK_CONFIG_DIR", str(deployment.config_dir))
    monkeypatch.setenv("ROLLBACK_DATA_DIR", str(deployment.data_dir))
    registry = BatchRegistry(deployment.data_dir / "registry" / "batches.json")
    registry.register(scan_repository(deployment.repo), repo=str(deployment.repo))
    return deployment


def load_bag() -> DagBag:
    return DagBag(dag_folder=str(CHECKOUT / "dags"))


def test_dag_folder_loads_without_import_errors(registered):
    bag = load_bag()

    assert bag.import_errors == {}
    assert "rollback_REL-1" in bag.dags


def test_broken_services_yaml_is_one_import_error(registered):
    services = registered.config_dir / "services.yaml"
    services.write_text(services.read_text().replace("depends_on: [db]", "depends_on: [dbb]"))

    bag = load_bag()

    assert len(bag.import_errors) == 1
    [(path, message)] = bag.import_errors.items()
    assert path.endswith("rollback_batches.py")
    assert f"{services}:" in message
    assert "service 'api'" in message
    assert "field 'depends_on'" in message
    assert "unknown" in message


def test_dag_runs_unpaused_one_run_at_a_time(registered):
    dag = load_bag().dags["rollback_REL-1"]

    assert dag.is_paused_upon_creation is False
    assert dag.max_active_runs == 1
    assert dag.schedule is None


def test_trigger_form_params_have_descriptions(registered):
    params = load_bag().dags["rollback_REL-1"].params

    for name in PARAMS:
        assert params.get_param(name).description, name
    assert params["profile"] == "flow"
    assert params["dry_run"] is False


def test_dag_docs_show_the_plan(registered):
    doc = load_bag().dags["rollback_REL-1"].doc_md

    assert "Rollback of batch REL\\-1" in doc
    assert "ship orders" in doc
    assert doc.index("`worker`") < doc.index("`api`") < doc.index("`db`")


def test_task_groups_follow_reverse_dependencies(registered):
    tasks = load_bag().dags["rollback_REL-1"].task_dict

    assert tasks["worker.health_before"].upstream_task_ids == {"authorize_plan"}
    assert tasks["automations.health_before"].upstream_task_ids == {"authorize_plan"}
    assert tasks["api.authorize"].upstream_task_ids == {
        "worker.health_after",
        "automations.health_after",
    }
    assert tasks["db.authorize"].upstream_task_ids == {"api.rollback"}
    assert tasks["api.authorize"].trigger_rule == "none_failed"


def test_audit_task_always_runs_last(registered):
    dag = load_bag().dags["rollback_REL-1"]
    audit = dag.task_dict["audit"]

    assert audit.trigger_rule == "all_done"
    assert audit.downstream_task_ids == set()
    assert {"authorize_plan", "db.rollback", "worker.health_after"} <= audit.upstream_task_ids


def test_parsing_runs_no_git(registered, monkeypatch):
    subprocess.run(["rm", "-rf", str(registered.repo)], check=True)

    def refuse(*args, **kwargs):
        raise AssertionError(f"DAG parsing started a process: {args[0]!r}")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    bag = load_bag()

    assert bag.import_errors == {}
    assert "rollback_REL-1" in bag.dags


def test_parsing_context_builds_only_that_dag(registered, monkeypatch):
    registered.commit("REL-2: tune the worker", {"services/worker/VERSION": "3\n"})
    BatchRegistry(registered.data_dir / "registry" / "batches.json").register(
        scan_repository(registered.repo), repo=str(registered.repo)
    )
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "rollback_REL-2")

    bag = load_bag()

    assert set(bag.dags) == {"rollback_REL-2"}


def test_hostile_commit_subject_stays_inert_in_docs(registered):
    registered.commit(
        "REL-2: {{ 7777*1111 }} $(touch pwned) `id` <script>alert(1)</script> [x](http://evil)",
        {"services/worker/VERSION": "3\n"},
    )
    BatchRegistry(registered.data_dir / "registry" / "batches.json").register(
        scan_repository(registered.repo), repo=str(registered.repo)
    )

    doc = load_bag().dags["rollback_REL-2"].doc_md

    assert "<script>" not in doc
    assert "](http" not in doc
    assert "\\{\\{ 7777\\*1111 \\}\\}" in doc
    assert "8640247" not in doc
