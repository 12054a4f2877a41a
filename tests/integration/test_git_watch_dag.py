"""The git_watch DAG through Airflow: its shape from DagBag, and runs that start rollbacks once."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.models.dagrun import DagRun
from airflow.sdk.definitions.taskgroup import MappedTaskGroup
from airflow.utils.session import create_session
from sqlalchemy import select

from rollback_coordinator.core.batches import BatchConventions
from rollback_coordinator.core.registry import BatchRegistry
from rollback_coordinator.core.watch import watch_once
from tests_support import git

CHECKOUT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

WATCH_YAML = """\
watch:
  repository: {repo}
  interval_minutes: 7
  dag_poke_interval_s: 5
  dag_wait_timeout_s: 120
"""


@pytest.fixture
def watched(deployment, monkeypatch):
    """The deployment with a watch.yaml that follows its repository in place."""
    (deployment.config_dir / "watch.yaml").write_text(WATCH_YAML.format(repo=deployment.repo))
    monkeypatch.setenv("ROLLBACK_CONFIG_DIR", str(deployment.config_dir))
    monkeypatch.setenv("ROLLBACK_DATA_DIR", str(deployment.data_dir))
    return deployment


def load_bag() -> DagBag:
    return DagBag(dag_folder=str(CHECKOUT / "dags"))


def registry_of(deployment) -> BatchRegistry:
    return BatchRegistry(deployment.data_dir / "registry" / "batches.json")


def first_pass(deployment) -> None:
    """Run the watcher's first pass, which registers the batches and takes git as history."""
    watch_once(
        deployment.repo,
        registry_of(deployment),
        BatchConventions(),
        fetch=False,
        remote=None,
        retention=None,
    )


def request_rollback(deployment) -> str:
    """Tag a commit unique to this test for rollback of REL-1 and return its sha.

    Tests share one metadata database, so the commit, and with it the run id, must differ.
    """
    sha = deployment.commit("REL-1: record the test", {"services/api/TEST": str(deployment.root)})
    first_pass(deployment)
    git(deployment.repo, "tag", "rollback/REL-1")
    return sha


def rollback_runs(dag_id: str = "rollback_REL-1") -> list[DagRun]:
    """Return every run of ``dag_id`` in the metadata database, oldest first."""
    with create_session() as session:
        query = select(DagRun).where(DagRun.dag_id == dag_id).order_by(DagRun.id)
        runs = session.scalars(query).all()
        session.expunge_all()
    return list(runs)


def parse_when_registered(deployment, batch_id: str) -> None:
    """Act as the dag-processor: parse the DAG folder once the scan has registered a batch."""
    for _ in range(600):
        if batch_id in registry_of(deployment).load().batches:
            break
        time.sleep(0.2)
    subprocess.run([str(BIN / "airflow"), "dags", "reserialize"], check=True, capture_output=True)


def test_git_watch_loads_without_errors(watched):
    bag = load_bag()

    assert bag.import_errors == {}
    assert "git_watch" in bag.dags


def test_no_watch_file_means_no_dag(deployment, monkeypatch):
    monkeypatch.setenv("ROLLBACK_CONFIG_DIR", str(deployment.config_dir))
    monkeypatch.setenv("ROLLBACK_DATA_DIR", str(deployment.data_dir))

    bag = load_bag()

    assert bag.import_errors == {}
    assert "git_watch" not in bag.dags


def test_invalid_watch_file_is_one_import_error(watched):
    watch_file = watched.config_dir / "watch.yaml"
    watch_file.write_text(watch_file.read_text() + "  interval_minutes_typo: 3\n")

    bag = load_bag()

    [(path, message)] = bag.import_errors.items()
    assert path.endswith("git_watch.py")
    assert f"{watch_file}:" in message
    assert "watch.interval_minutes_typo" in message


def test_schedule_follows_watch_file(watched):
    dag = load_bag().dags["git_watch"]

    assert dag.schedule == timedelta(minutes=7)


def test_runs_one_at_a_time_unpaused(watched):
    dag = load_bag().dags["git_watch"]

    assert dag.max_active_runs == 1
    assert dag.catchup is False
    assert dag.is_paused_upon_creation is False


def test_start_group_waits_then_triggers(watched):
    tasks = load_bag().dags["git_watch"].task_dict

    assert tasks["start_rollback.wait_for_dag"].upstream_task_ids == {"scan"}
    assert "start_rollback.wait_for_dag" in tasks["start_rollback.trigger"].upstream_task_ids
    assert "start_rollback.trigger" in tasks["start_rollback.record"].upstream_task_ids
    assert isinstance(tasks["start_rollback.trigger"].task_group, MappedTaskGroup)


def test_dag_wait_holds_no_worker_slot(watched):
    sensor = load_bag().dags["git_watch"].task_dict["start_rollback.wait_for_dag"]

    assert sensor.mode == "reschedule"
    assert sensor.timeout == 120


def test_skipped_trigger_still_records(watched):
    record = load_bag().dags["git_watch"].task_dict["start_rollback.record"]

    assert record.trigger_rule == "none_failed"


def test_two_watch_runs_start_one_rollback(watched):
    sha = request_rollback(watched)
    dag = load_bag().dags["git_watch"]
    earlier = len(rollback_runs())

    first = dag.test()
    second = dag.test()

    runs = rollback_runs()[earlier:]
    assert str(first.state) == "success"
    assert str(second.state) == "success"
    assert [run.run_id for run in runs] == [f"git_tag__REL-1__{sha}"]
    assert runs[0].conf == {"reason": "rollback requested by tag rollback/REL-1"}
    assert f"tag:REL-1@{sha}" in registry_of(watched).load().requests


def test_crash_before_recording_starts_no_second_run(watched):
    sha = request_rollback(watched)
    registry = registry_of(watched)
    dag = load_bag().dags["git_watch"]
    earlier = len(rollback_runs())
    dag.test()
    data = json.loads(registry.path.read_text())
    key = f"tag:REL-1@{sha}"
    del data["requests"][key]
    data["pending_requests"][key] = {
        "batch": "REL-1",
        "source": "tag",
        "ref": "rollback/REL-1",
        "sha": sha,
        "found_at": "2025-01-01T00:00:00+00:00",
    }
    registry.path.write_text(json.dumps(data))

    dag.test()

    assert len(rollback_runs()) - earlier == 1
    assert key in registry.load().requests
    assert registry.load().pending == {}


def test_request_in_same_scan_waits_for_dag(watched):
    first_pass(watched)
    watched.commit("REL-2: tune the worker", {"services/worker/VERSION": str(watched.root)})
    trailer = watched.commit("Roll back the worker\n\nRollback: REL-2\n", {})
    dag = load_bag().dags["git_watch"]
    parser = threading.Thread(target=parse_when_registered, args=(watched, "REL-2"))
    parser.start()

    run = dag.test()

    parser.join()
    runs = [item for item in rollback_runs("rollback_REL-2") if item.run_id.endswith(trailer)]
    assert str(run.state) == "success"
    assert len(runs) == 1
