"""The production process layout on 127.0.0.1: PostgreSQL, Redis and two Celery workers.

alice plans with the CLI, bob starts the run through the REST API, and the batch's four
independent services spread over both workers.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from rollback_coordinator.demo.distributed import WORKERS, missing_binaries, start_distributed
from tests_support import (
    GOVERNANCE_YAML,
    admin_get,
    commit_all,
    free_port,
    init_repository,
    write_config,
)
from tests_support import wait_for_run as wait_for_stack_run

# Starting PostgreSQL, Redis and six Airflow processes takes a minute or two on two cores.
pytestmark = [pytest.mark.airflow, pytest.mark.timeout(900)]
BIN = Path(sys.executable).parent
RUN_TIMEOUT_S = 300
SERVICES = ("api", "worker", "automations", "reports")
# Without depends_on all four are ready at once. The sleep keeps a worker busy while the
# broker hands the next service to the other one.
SERVICES_YAML = "services:\n" + "".join(
    f"  {service}:\n"
    f'    paths: ["services/{service}/**"]\n'
    "    rollback_script: scripts/record.sh\n"
    '    env: {SLEEP_S: "3"}\n'
    for service in SERVICES
)


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    missing = missing_binaries()
    if missing:
        pytest.skip(f"server programs missing: {'; '.join(missing)}")
    root = tmp_path_factory.mktemp("layout")
    config, data, repo = root / "config", root / "data", root / "repo"
    data.mkdir()
    write_config(config, SERVICES_YAML, GOVERNANCE_YAML)
    init_repository(repo)
    commit_all(repo, "REL-9: ship four services",
               {f"services/{service}": "2\n" for service in SERVICES})

    env = {**os.environ, "ROLLBACK_CONFIG_DIR": str(config), "ROLLBACK_DATA_DIR": str(data)}
    # Planning registers the batch, so its DAG exists from the dag-processor's first parse.
    plan_file = root / "plan.json"
    planned = subprocess.run(
        [str(BIN / "rollback-coordinator"), "plan", "REL-9", "--repo", str(repo), "--profile",
         "balanced", "--out", str(plan_file)],
        env={**env, "ROLLBACK_ACTOR": "alice"}, capture_output=True, text=True, timeout=120,
    )
    if planned.returncode != 0:
        raise AssertionError(f"plan exited {planned.returncode}: {planned.stdout}{planned.stderr}")
    # With one slot and Airflow's Celery prefetch multiplier of 1, a busy worker reserves no
    # second task, so the other worker must take it.
    stack = start_distributed(root / "layout", data, config, free_port(), concurrency=1)
    yield {"stack": stack, "env": env, "plan_file": plan_file}
    stack.stop()


def execute_as(layout, user: str) -> str:
    stack = layout["stack"]
    env = {
        **layout["env"],
        "ROLLBACK_AIRFLOW_URL": stack.url,
        "ROLLBACK_AIRFLOW_USERNAME": user,
        "ROLLBACK_AIRFLOW_PASSWORD": stack.passwords[user],
    }
    result = subprocess.run(
        [str(BIN / "rollback-coordinator"), "execute", str(layout["plan_file"]), "--json"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    if result.returncode != 0:
        raise AssertionError(f"execute exited {result.returncode}: {result.stdout}{result.stderr}")
    return json.loads(result.stdout)["dag_run"]["dag_run_id"]


def api_get(stack, path: str):
    return admin_get(stack, path)


def wait_for_run(stack, dag_id: str, run_id: str) -> dict:
    return wait_for_stack_run(stack, dag_id, run_id, RUN_TIMEOUT_S)


def worker_that_ran(stack, task_instance_id: str) -> str | None:
    """Return the worker whose log records executing this task instance."""
    # Each worker logs "Executing workload in Celery: ... ti=TaskInstanceDTO(id=UUID('...')".
    for name in WORKERS:
        if task_instance_id in stack.component(name).log_path.read_text(errors="replace"):
            return name
    return None


def test_services_spread_over_both_workers(layout):
    stack = layout["stack"]

    run_id = execute_as(layout, "bob")
    run = wait_for_run(stack, "rollback_REL-9", run_id)
    instances = api_get(stack, f"/api/v2/dags/rollback_REL-9/dagRuns/{run_id}/taskInstances")
    rollbacks = {
        item["task_id"]: worker_that_ran(stack, item["id"])
        for item in instances["task_instances"]
        if item["task_id"].endswith(".rollback")
    }

    assert run["state"] == "success"
    assert run["triggering_user_name"] == "bob"
    assert sorted(rollbacks) == sorted(f"{service}.rollback" for service in SERVICES)
    assert set(rollbacks.values()) == set(WORKERS)


def process_group_alive(group_id: int) -> bool:
    try:
        os.killpg(group_id, 0)
    except ProcessLookupError:
        return False
    return True


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_stop_ends_every_process(layout):
    stack = layout["stack"]
    ports = {"postgres": stack.postgres.port, "redis": stack.redis.port,
             "api-server": int(stack.url.rsplit(":", 1)[1])}
    folders = [stack.postgres.folder, stack.redis.folder]

    stack.stop()

    for component in stack.components:
        # Each component leads its own process group, which also contains its children.
        assert not process_group_alive(component.process.pid), component.name
    for name, port in ports.items():
        assert not port_open(port), name
    for folder in folders:
        assert not folder.exists(), folder
