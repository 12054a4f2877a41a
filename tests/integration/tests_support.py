"""Helpers shared by the integration tests: config files, repositories, ports, REST polling."""

from __future__ import annotations

import socket
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import requests


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


RECORDING_SCRIPT = """\
#!/bin/sh
# Records when this service's rollback starts and ends, and what it was told.
set -eu
if [ "${1:-}" = "health" ]; then
    echo "health $ROLLBACK_SERVICE" >> "$ROLLBACK_DATA_DIR/order.log"
    exit 0
fi
echo "start $ROLLBACK_SERVICE" >> "$ROLLBACK_DATA_DIR/order.log"
env | grep '^ROLLBACK_' | sort > "$ROLLBACK_DATA_DIR/env-$ROLLBACK_SERVICE.txt"
sleep "${SLEEP_S:-0}"
echo "end $ROLLBACK_SERVICE $ROLLBACK_BATCH $ROLLBACK_TO_REF" >> "$ROLLBACK_DATA_DIR/order.log"
echo "rolled back $ROLLBACK_SERVICE to $ROLLBACK_TO_REF"
"""


def services_yaml(approvals: bool = False) -> str:
    api_approvals = "\n            approvals: [guardian]" if approvals else ""
    return textwrap.dedent(
        f"""\
        services:
          db:
            paths: ["db/**"]
            rollback_script: scripts/record.sh
          api:
            paths: ["services/api/**"]
            depends_on: [db]
            rollback_script: scripts/record.sh{api_approvals}
          worker:
            paths: ["services/worker/**"]
            depends_on: [api]
            rollback_script: scripts/record.sh
            health_check: {{command: ["scripts/record.sh", "health"]}}
          automations:
            paths: ["automations/**"]
            depends_on: [api]
            rollback_script: scripts/record.sh
            health_check: {{command: ["scripts/record.sh", "health"]}}
        """
    )


GOVERNANCE_YAML = """\
governor: embedded
default_environment: staging
environments:
  staging: {minimum_profile: flow}
  prod: {minimum_profile: balanced}
roles:
  guardian: [guardian, gina]
  reviewer: [gina, rita]
review_role: reviewer
approvals:
  timeout_s: 300
"""


def free_port() -> int:
    """Return a port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_config(config: Path, services: str, governance: str) -> None:
    """Write services.yaml, governance.yaml and the recording script into ``config``."""
    (config / "scripts").mkdir(parents=True)
    script = config / "scripts" / "record.sh"
    script.write_text(RECORDING_SCRIPT)
    script.chmod(0o755)
    (config / "services.yaml").write_text(services)
    (config / "governance.yaml").write_text(governance)


def init_repository(repo: Path) -> None:
    """Create a repository whose first commit is the initial release."""
    repo.mkdir()
    git(repo, "init", "--quiet", "--initial-branch=main")
    git(repo, "config", "user.email", "dev@example.com")
    git(repo, "config", "user.name", "Dev")
    git(repo, "config", "commit.gpgsign", "false")
    (repo / "README.md").write_text("app\n")
    commit_all(repo, "Initial release")


def commit_all(repo: Path, message: str, versions: dict[str, str] | None = None) -> None:
    """Write each ``versions`` path's VERSION file, then commit every change."""
    for folder, version in (versions or {}).items():
        (repo / folder).mkdir(parents=True, exist_ok=True)
        (repo / folder / "VERSION").write_text(version)
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", message)


def admin_get(stack: Any, path: str, check: bool = True) -> Any:
    """Return the JSON body of a GET on the stack's REST API, as its admin user.

    With ``check`` False, an error status returns its body too, as when a DAG is not parsed
    yet.
    """
    token = requests.post(f"{stack.url}/auth/token", json={
        "username": "admin", "password": stack.passwords["admin"]}, timeout=30).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    response = requests.get(f"{stack.url}{path}", headers=headers, timeout=30)
    if check:
        response.raise_for_status()
    return response.json()


def wait_for_run(
    stack: Any, dag_id: str, run_id: str, timeout_s: float, states=("success", "failed")
) -> dict:
    """Return the run once it reaches one of ``states``, polling the REST API."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            run = admin_get(stack, f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        except requests.HTTPError:
            # airflow standalone on SQLite returns HTTP 500 now and then while it is busy.
            run = {}
        if run.get("state") in states:
            return run
        time.sleep(2)
    raise AssertionError(f"run {run_id} did not reach {', '.join(states)} within {timeout_s} s")
