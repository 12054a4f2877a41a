"""The full Airflow stack on 127.0.0.1: api-server, scheduler, dag-processor and triggerer.

One user plans, another triggers through the REST API, a third approves while the run waits.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from rollback_coordinator.core.run_records import safe_name
from rollback_coordinator.core.signing import generate_keypair
from rollback_coordinator.demo.stack import stack_environment, start_stack
from tests_support import GOVERNANCE_YAML, RECORDING_SCRIPT, git, services_yaml

pytestmark = pytest.mark.airflow
BIN = Path(sys.executable).parent
RUN_TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("stack")
    config, data, repo = root / "config", root / "data", root / "repo"
    (config / "scripts").mkdir(parents=True)
    data.mkdir()
    script = config / "scripts" / "record.sh"
    script.write_text(RECORDING_SCRIPT)
    script.chmod(0o755)
    (config / "services.yaml").write_text(services_yaml(approvals=True))
    keys = generate_keypair(root / "keys")
    (config / "governance.yaml").write_text(
        GOVERNANCE_YAML + f"audit:\n  signing_key_file: {keys.private_key_path}\n"
    )
    repo.mkdir()
    git(repo, "init", "--quiet", "--initial-branch=main")
    git(repo, "config", "user.email", "dev@example.com")
    git(repo, "config", "user.name", "Dev")
    (repo / "README.md").write_text("app\n")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", "Initial release")
    (repo / "services").mkdir()
    for service in ("api", "worker"):
        (repo / "services" / service).mkdir()
        (repo / "services" / service / "VERSION").write_text("2\n")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", "REL-7: ship the api and the worker")
    (repo / "services" / "api" / "VERSION").write_text("3\n")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", "REL-8: tune the api")

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
    base = stack["stack"].url
    token = requests.post(f"{base}/auth/token", json={
        "username": "admin", "password": stack["stack"].passwords["admin"]}, timeout=30).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    return requests.get(f"{base}{path}", headers=headers, timeout=30).json()


def wait_for_run(stack, dag_id, run_id, states=("success", "failed")):
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        run = api_get(stack, f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        if run.get("state") in states:
            return run
        time.sleep(2)
    raise AssertionError(f"run {run_id} did not reach {states} within {RUN_TIMEOUT_S} s")


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

    refused = cli(stack, "approve", "REL-7", "--service", "api", "--role", "guardian",
                  user="bob", check=False)
    cli(stack, "approve", "REL-7", "--service", "api", "--role", "guardian", user="guardian")
    run = wait_for_run(stack, "rollback_REL-7", run_id)

    assert refused.returncode == 4
    assert run["state"] == "success"


def test_strict_waits_for_second_reviewer(stack):
    plan_file, digest = plan(stack, "alice", batch="REL-8", profile="strict")
    started = json.loads(cli(stack, "execute", str(plan_file), user="bob").stdout)
    run_id = started["dag_run"]["dag_run_id"]
    wait_for_request(stack, digest, batch="REL-8", task_id="api.approval")
    cli(stack, "approve", "REL-8", "--service", "api", "--role", "guardian", user="guardian")

    escalation = wait_for_request(stack, digest, batch="REL-8", task_id="api.authorize")
    waiting = api_get(stack, f"/api/v2/dags/rollback_REL-8/dagRuns/{run_id}")
    cli(stack, "approve", "REL-8", "--service", "api", "--role", "reviewer", user="gina")
    run = wait_for_run(stack, "rollback_REL-8", run_id)

    assert escalation["roles"] == ["reviewer"]
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
