"""The full Airflow stack on 127.0.0.1: api-server, scheduler, dag-processor and triggerer.

One user plans, another triggers through the REST API, a third approves while the run waits.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from rollback_coordinator.core.run_records import safe_name
from rollback_coordinator.core.signing import generate_keypair
from rollback_coordinator.demo.stack import stack_environment, start_stack
from tests_support import (
    GOVERNANCE_YAML,
    admin_get,
    commit_all,
    free_port,
    git,
    init_repository,
    services_yaml,
    write_config,
)
from tests_support import wait_for_run as wait_for_stack_run

# Starting the stack takes about a minute and each approval waits for its step to settle.
pytestmark = [pytest.mark.airflow, pytest.mark.timeout(900)]
BIN = Path(sys.executable).parent
RUN_TIMEOUT_S = 180
FREEZE = "prod-freeze"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("stack")
    config, data, repo = root / "config", root / "data", root / "repo"
    data.mkdir()
    keys = generate_keypair(root / "keys")
    # Production is frozen for good; gina may break the freeze. Staging is not frozen.
    write_config(
        config,
        services_yaml(approvals=True),
        GOVERNANCE_YAML.replace("roles:\n", "roles:\n  release-manager: [gina]\n")
        + f"audit:\n  signing_key_file: {keys.private_key_path}\n"
        + "freeze_windows:\n"
        + f"  - name: {FREEZE}\n"
        + "    start: 2020-01-01T00:00:00+00:00\n"
        + "    end: 2100-01-01T00:00:00+00:00\n"
        + "    environments: [prod]\n"
        + "    override_role: release-manager\n",
    )
    init_repository(repo)
    commit_all(repo, "REL-7: ship the api and the worker",
               {"services/api": "2\n", "services/worker": "2\n"})
    commit_all(repo, "REL-8: tune the nightly automations", {"automations": "3\n"})

    (config / "watch.yaml").write_text(
        f"watch:\n  repository: {repo}\n  interval_minutes: 1\n  dag_poke_interval_s: 5\n"
    )
    env = stack_environment(root / "airflow", data, config, free_port())
    cli_env = {**env, "ROLLBACK_AIRFLOW_URL": env["AIRFLOW__API__BASE_URL"]}
    # Register the batch before the stack starts, so its DAG exists from the first parse.
    subprocess.run(
        [str(BIN / "rollback-coordinator"), "plan", "REL-7", "--repo", str(repo),
         "--out", str(root / "warmup.json")],
        env={**env, "ROLLBACK_ACTOR": "alice"}, check=True, capture_output=True,
    )
    running = start_stack(env, root / "standalone.log")
    yield {"root": root, "repo": repo, "data": data, "env": env, "cli_env": cli_env,
           "stack": running}
    running.stop()


def cli(stack, *args, user=None, actor=None, check=True):
    env = dict(stack["cli_env"])
    if user:
        env["ROLLBACK_AIRFLOW_USERNAME"] = user
        env["ROLLBACK_AIRFLOW_PASSWORD"] = stack["stack"].passwords[user]
    else:
        env.pop("ROLLBACK_AIRFLOW_URL")
    if actor:
        env["ROLLBACK_ACTOR"] = actor
    result = subprocess.run([str(BIN / "rollback-coordinator"), *args, "--json"], env=env,
                            capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} exited {result.returncode}: {result.stdout}{result.stderr}")
    return result


def api_get(stack, path):
    return admin_get(stack["stack"], path, check=False)


def wait_for_run(stack, dag_id, run_id, states=("success", "failed")):
    return wait_for_stack_run(stack["stack"], dag_id, run_id, RUN_TIMEOUT_S, states)


def wait_for_request(stack, digest, group="api", batch="REL-7", task_id=None):
    path = stack["data"] / "approvals" / batch / digest / group / "REQUEST.json"
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        if path.exists():
            request = json.loads(path.read_text())
            if task_id in (None, request.get("task_id")):
                return request
        time.sleep(1)
    raise AssertionError(f"no approval request of {task_id or 'any step'} at {path}")


def plan(stack, actor, *extra, batch="REL-7", profile="balanced"):
    out = stack["root"] / f"plan-{actor}-{time.monotonic_ns()}.json"
    cli(stack, "plan", batch, "--repo", str(stack["repo"]), "--out", str(out),
        "--profile", profile, *extra, actor=actor)
    return out, json.loads(out.read_text())["sha256"]


def test_three_people_roll_back_under_balanced(stack):
    plan_file, digest = plan(stack, "alice")

    started = json.loads(cli(stack, "execute", str(plan_file), user="bob").stdout)
    run_id = started["dag_run"]["dag_run_id"]
    request = wait_for_request(stack, digest)
    cli(stack, "approve", "REL-7", "--service", "api", "--role", "guardian", user="guardian")
    run = wait_for_run(stack, "rollback_REL-7", run_id)

    assert request["task_id"] == "api.approval"
    assert run["state"] == "success"
    assert run["triggering_user_name"] == "bob"
    memory = "".join(path.read_text() for path in (stack["data"] / "audit" / "memory").glob("*.md"))
    section = memory[memory.index(run_id):]
    assert "- runner: bob" in section
    assert "- planner: alice" in section
    assert "- approvers: guardian" in section


def test_planner_who_triggers_is_denied(stack):
    base = stack["stack"].url
    token = requests.post(f"{base}/auth/token", json={
        "username": "bob", "password": stack["stack"].passwords["bob"]}, timeout=30).json()
    response = requests.post(
        f"{base}/api/v2/dags/rollback_REL-7/dagRuns",
        headers={"Authorization": f"Bearer {token['access_token']}"},
        json={"logical_date": None, "conf": {"profile": "balanced"}}, timeout=30,
    )
    run_id = response.json()["dag_run_id"]

    run = wait_for_run(stack, "rollback_REL-7", run_id)

    assert run["state"] == "failed"
    steps = json.loads(cli(stack, "status", "REL-7").stdout)["runs"]
    record = next(step for entry in steps if entry["run"] == safe_name(run_id)
                  for step in entry["steps"] if step["task_id"] == "authorize_plan")
    assert record["decision"]["decision"] == "DENY"
    assert record["decision"]["violated_rule"] == "separation.propose_only"


def test_approval_by_user_without_role_does_not_count(stack):
    plan_file, digest = plan(stack, "alice", "--reason", "second run")
    started = json.loads(cli(stack, "execute", str(plan_file), user="bob").stdout)
    run_id = started["dag_run"]["dag_run_id"]
    wait_for_request(stack, digest)

    rejected = cli(stack, "approve", "REL-7", "--service", "api", "--role", "guardian",
                  user="bob", check=False)
    cli(stack, "approve", "REL-7", "--service", "api", "--role", "guardian", user="guardian")
    run = wait_for_run(stack, "rollback_REL-7", run_id)

    assert rejected.returncode == 4
    assert run["state"] == "success"


def test_strict_waits_for_second_reviewer(stack):
    plan_file, digest = plan(stack, "alice", batch="REL-8", profile="strict")
    started = json.loads(cli(stack, "execute", str(plan_file), user="bob").stdout)
    run_id = started["dag_run"]["dag_run_id"]
    first = wait_for_request(stack, digest, "automations", "REL-8", "automations.authorize")
    cli(stack, "approve", "REL-8", "--service", "automations", "--role", "reviewer", user="gina")

    second = wait_for_new_request(stack, digest, first)
    waiting = api_get(stack, f"/api/v2/dags/rollback_REL-8/dagRuns/{run_id}")
    cli(stack, "approve", "REL-8", "--service", "automations", "--role", "reviewer", user="rita")
    run = wait_for_run(stack, "rollback_REL-8", run_id)

    assert first["roles"] == ["reviewer"]
    assert second["roles"] == ["reviewer"]
    assert waiting["state"] == "running"
    assert run["state"] == "success"
    chain = stack["data"] / "audit" / "records" / "REL-8" / f"{safe_name(run_id)}.jsonl"
    verified = subprocess.run(
        [str(BIN / "rollback-coordinator"), "audit", "verify", str(chain), "--json"],
        capture_output=True, text=True,
    )
    report = json.loads(verified.stdout)
    assert verified.returncode == 0
    assert report["signed"] is True


def test_freeze_override_waits_for_release_manager(stack):
    plan_file, digest = plan(stack, "alice", "--environment", "prod", "--reason", "in the freeze")
    started = json.loads(cli(stack, "execute", str(plan_file), user="bob").stdout)
    run_id = started["dag_run"]["dag_run_id"]
    request = wait_for_request(stack, digest, "PLAN", task_id="authorize_plan")

    rejected = cli(stack, "approve", "REL-7", "--service", "PLAN", "--role", "release-manager",
                  user="guardian", check=False)
    cli(stack, "approve", "REL-7", "--service", "PLAN", "--role", "release-manager", user="gina")
    wait_for_request(stack, digest, "api", task_id="api.approval")
    cli(stack, "approve", "REL-7", "--service", "api", "--role", "guardian", user="guardian")
    run = wait_for_run(stack, "rollback_REL-7", run_id)

    assert request["roles"] == ["release-manager"]
    assert f"rule freeze.{FREEZE}" in request["why"]
    assert rejected.returncode == 4
    assert run["state"] == "success"
    chain = stack["data"] / "audit" / "records" / "REL-7" / f"{safe_name(run_id)}.jsonl"
    plan_records = [
        record for record in map(json.loads, chain.read_text().splitlines())
        if record.get("step") == "authorize_plan"
    ]
    assert [record["decision"]["decision"] for record in plan_records] == ["ESCALATE", "AUTHORIZE"]
    assert plan_records[0]["decision"]["rule"] == f"freeze.{FREEZE}"
    [override] = plan_records[1]["decision"]["constraints"]["freeze_override"]
    assert (override["window"], override["by"]) == (FREEZE, ["gina"])
    memory = "".join(path.read_text() for path in (stack["data"] / "audit" / "memory").glob("*.md"))
    section = memory[memory.index(run_id):]
    assert "- approvers: gina, guardian" in section
    assert f"freeze window {FREEZE} overridden by gina (release-manager)" in section


def wait_for_new_request(stack, digest, previous):
    """Wait until the step parks again, which rewrites its request."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        request = wait_for_request(stack, digest, "automations", "REL-8", "automations.authorize")
        if request["requested_at"] != previous["requested_at"]:
            return request
        time.sleep(1)
    raise AssertionError("the step did not wait again after the first review")


def test_watcher_starts_requested_rollback(stack):
    registry = stack["data"] / "registry" / "batches.json"
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not json.loads(registry.read_text()).get("watch_watermark"):
        assert time.monotonic() < deadline, "the git watcher never scanned"
        time.sleep(2)
    repo = stack["repo"]
    (repo / "db").mkdir(exist_ok=True)
    (repo / "db" / "002_index.sql").write_text("create index orders_total on orders (total);\n")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", "REL-9: index the orders")
    git(repo, "commit", "--quiet", "--allow-empty", "-m", "Undo the index\n\nRollback: REL-9")

    watched = wait_for_first_run(stack, "rollback_REL-9")
    plan_file, _ = plan(stack, "alice", batch="REL-9")
    started = json.loads(cli(stack, "execute", str(plan_file), user="bob").stdout)
    by_cli = wait_for_run(stack, "rollback_REL-9", started["dag_run"]["dag_run_id"])
    status = json.loads(cli(stack, "status", "REL-9").stdout)

    assert watched["state"] == "success"
    assert watched["dag_run_id"].startswith("git_trailer__REL-9__")
    assert by_cli["state"] == "success"
    assert by_cli["triggering_user_name"] == "bob"
    assert len(status["runs"]) == 2


def wait_for_first_run(stack, dag_id):
    deadline = time.monotonic() + RUN_TIMEOUT_S * 2
    while time.monotonic() < deadline:
        runs = api_get(stack, f"/api/v2/dags/{dag_id}/dagRuns").get("dag_runs") or []
        if runs and runs[0]["state"] in ("success", "failed"):
            return runs[0]
        time.sleep(3)
    raise AssertionError(f"the git watcher started no finished run of {dag_id}")
