"""Rollback runs decided by a real remote governor on 127.0.0.1, one answer per case.

Whatever the governor answers, the scripts' own records show whether anything ran: after a
DENY, a TERMINATE_RUN or any failure to get a well-formed answer, no rollback script runs.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests_support import free_port

pytestmark = pytest.mark.airflow

SLOW_ANSWER_S = 4


def _decision(mode: str, request: dict) -> tuple[int, bytes]:
    base = {"decision_id": f"remote-{request['request_id'][:8]}", "rule": f"remote.{mode}"}
    answers = {
        "authorize": {"decision": "AUTHORIZE", "action": request["action"],
                      "scope": request["scope"], "constraints": {}},
        "deny": {"decision": "DENY", "action": request["action"], "reason": "change freeze",
                 "violated_rule": "freeze.friday"},
        "clarify": {"decision": "REQUEST_CLARIFICATION", "missing_artifact": "incident ticket"},
        "terminate": {"decision": "TERMINATE_RUN", "reason": "incident commander stopped it"},
        "unknown": {"decision": "MAYBE"},
    }
    if mode == "malformed":
        return 200, b"{not json"
    if mode == "slow":
        time.sleep(SLOW_ANSWER_S)
        return 200, json.dumps({**base, **answers["authorize"]}).encode()
    return 200, json.dumps({**base, **answers[mode]}).encode()


class GovernorServer:
    """An HTTP governor that answers every request the same way, and keeps what it was sent."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the name http.server dispatches to
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                outer.headers.append(dict(self.headers))
                status, payload = _decision(outer.mode, body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def use_remote_governor(deployment, port: int) -> None:
    governance = deployment.config_dir / "governance.yaml"
    text = governance.read_text().replace("governor: embedded", "governor: remote")
    governance.write_text(text + "remote:\n  timeout_s: 2\n  retries: 1\n")
    deployment.env["AIRFLOW_CONN_HUMMBL_GOVERNOR_DEFAULT"] = (
        f"http://:s3cret-token@127.0.0.1:{port}"
    )


@pytest.fixture
def governor():
    servers = []

    def start(mode: str) -> GovernorServer:
        server = GovernorServer(mode)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def test_authorize_runs_every_script(deployment, governor):
    server = governor("authorize")
    use_remote_governor(deployment, server.port)
    deployment.plan("REL-1")

    result = deployment.cli("execute", str(deployment.plan_file("REL-1")), check=False)

    assert result.returncode == 0
    assert sorted(deployment.script_runs()) == ["api", "automations", "db", "worker"]
    first = server.requests[0]
    assert first["contract"] == "hummbl-governor/v1"
    assert first["action"] == "rollback.plan"
    assert first["scope"]["batch"] == "REL-1"
    assert first["artifacts"][0]["kind"] == "plan"
    assert {"intent", "repo", "freeze_acknowledged", "profile", "actors"} <= set(first)
    assert server.headers[0]["Authorization"] == "Bearer s3cret-token"
    assert {request["action"] for request in server.requests} == {"rollback.plan", "rollback.service"}


@pytest.mark.parametrize("mode", ["deny", "clarify", "terminate", "malformed", "unknown", "slow"])
def test_no_script_runs_without_authorization(deployment, governor, mode):
    server = governor(mode)
    use_remote_governor(deployment, server.port)
    deployment.plan("REL-1")

    result = deployment.cli("execute", str(deployment.plan_file("REL-1")), check=False)

    assert result.returncode == 1
    assert deployment.script_runs() == []
    status = json.loads(deployment.cli("status", "REL-1", "--json").stdout)
    [plan_step] = [step for step in status["runs"][0]["steps"] if step["task_id"] == "authorize_plan"]
    assert plan_step["outcome"] == "failed"


def test_unreachable_governor_denies(deployment):
    use_remote_governor(deployment, free_port())
    deployment.plan("REL-1")

    result = deployment.cli("execute", str(deployment.plan_file("REL-1")), check=False)

    assert result.returncode == 1
    assert deployment.script_runs() == []
    status = json.loads(deployment.cli("status", "REL-1", "--json").stdout)
    decision = status["runs"][0]["steps"][0]["decision"]
    assert decision["decision"] == "DENY"
    assert decision["rule"] == "governor.unavailable"


def test_token_never_reaches_logs_or_audit(deployment, governor):
    server = governor("deny")
    use_remote_governor(deployment, server.port)
    deployment.plan("REL-1")

    result = deployment.cli("execute", str(deployment.plan_file("REL-1")), check=False)

    assert "s3cret-token" not in result.stdout + result.stderr
    for path in deployment.data_dir.rglob("*"):
        if path.is_file():
            assert b"s3cret-token" not in path.read_bytes(), path
