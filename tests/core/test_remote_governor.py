"""The remote governor client against a real HTTP server on 127.0.0.1, and its endpoint."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from builders import make_governance

from rollback_coordinator.core.decisions import (
    Actors,
    Artifact,
    Authorize,
    Deny,
    Escalate,
    GovernorRequest,
    RepoContext,
    RequestClarification,
    Scope,
    TerminateRun,
)
from rollback_coordinator.core.governance import RemoteGovernor
from rollback_coordinator.core.governor import EmbeddedGovernor
from rollback_coordinator.core.remote_governor import (
    GovernorEndpoint,
    GovernorEndpointError,
    RemoteGovernorClient,
    endpoint_from_connection,
    endpoint_from_uri,
)

TOKEN = "s3cret-Token.42"
WIRE_KEYS = [
    "contract",
    "request_id",
    "intent",
    "action",
    "scope",
    "artifacts",
    "repo",
    "freeze_acknowledged",
    "profile",
    "actors",
]


@dataclass
class Reply:
    """One scripted answer: a status, a body (JSON for dicts and lists) and a delay first."""

    status: int = 200
    body: Any = None
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if self.body is None:
            return b""
        return json.dumps(self.body).encode("utf-8")


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class GovernorServer:
    """An HTTP server on 127.0.0.1 that plays its replies in order, repeating the last one.

    A reply may also be a function of the request body, for a server that decides.
    """

    def __init__(self) -> None:
        self.replies: list[Reply | Callable[[dict[str, Any]], Reply]] = []
        self.received: list[Received] = []
        self.release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        # A short poll interval lets shutdown() return quickly after each test.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/hummbl"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def next_reply(self, body: bytes) -> Reply:
        index = min(len(self.received) - 1, len(self.replies) - 1)
        reply = self.replies[index]
        return reply(json.loads(body)) if callable(reply) else reply

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                headers = {key.lower(): value for key, value in self.headers.items()}
                server.received.append(Received("POST", self.path, headers, body))
                reply = server.next_reply(body)
                if reply.delay_s and server.release.wait(reply.delay_s):
                    return
                payload = reply.payload()
                try:
                    self.send_response(reply.status)
                    for key, value in {"Content-Type": "application/json", **reply.headers}.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting, as the timeout test intends

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def server() -> Iterator[GovernorServer]:
    running = GovernorServer()
    running.start()
    yield running
    running.stop()


def governor_request(**changes: Any) -> GovernorRequest:
    fields: dict[str, Any] = {
        "request_id": "req-remote-1",
        "intent": "roll back service api of batch REL-42",
        "action": "rollback.service",
        "scope": Scope(batch="REL-42", service="api", environment="prod"),
        "artifacts": [
            Artifact(kind="plan", ref="plans/REL-42/9f.json", sha256="9f" * 32),
            Artifact(kind="migration_state", ref="runs/REL-42/db/state", sha256="c4" * 32),
        ],
        "repo": RepoContext(url="https://git.example.com/shop.git", ref="a1" * 20),
        "freeze_acknowledged": True,
        "profile": "balanced",
        "actors": Actors(planner="alice", runner="bob", approvers=["carol"]),
    }
    fields.update(changes)
    return GovernorRequest(**fields)


def client_for(
    server: GovernorServer,
    *,
    retries: int = 0,
    timeout_s: float = 5.0,
    token: str | None = TOKEN,
) -> RemoteGovernorClient:
    return RemoteGovernorClient(server.base_url, token, timeout_s, retries, backoff_s=0.01)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


AUTHORIZE = {
    "decision": "AUTHORIZE",
    "decision_id": "gov-1",
    "rule": "change.approved",
    "action": "rollback.service",
    "scope": {"batch": "REL-42", "service": "api", "environment": "prod"},
    "constraints": {"timeout_s": 600},
}
DENY = {
    "decision": "DENY",
    "decision_id": "gov-2",
    "rule": "freeze.quarter-close",
    "action": "rollback.service",
    "reason": "quarter close in progress",
    "violated_rule": "freeze.quarter-close",
}
CLARIFY = {
    "decision": "REQUEST_CLARIFICATION",
    "decision_id": "gov-3",
    "rule": "input.complete",
    "missing_artifact": "migration_state",
}
ESCALATE = {
    "decision": "ESCALATE",
    "decision_id": "gov-4",
    "rule": "change.high_risk",
    "human_review_required": "dba",
}
TERMINATE = {
    "decision": "TERMINATE_RUN",
    "decision_id": "gov-5",
    "rule": "incident.declared",
    "reason": "incident INC-7 declared",
}


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (AUTHORIZE, Authorize),
        (DENY, Deny),
        (CLARIFY, RequestClarification),
        (ESCALATE, Escalate),
        (TERMINATE, TerminateRun),
    ],
    ids=["authorize", "deny", "clarification", "escalate", "terminate"],
)
def test_remote_decision_is_returned(server: GovernorServer, answer: dict, kind: type) -> None:
    server.replies = [Reply(body=answer)]

    decision = client_for(server).decide(governor_request())

    assert isinstance(decision, kind)
    assert decision.decision == answer["decision"]
    assert decision.decision_id == answer["decision_id"]
    assert decision.rule == answer["rule"]
    assert len(server.received) == 1


def test_remote_authorize_keeps_constraints(server: GovernorServer) -> None:
    server.replies = [Reply(body=AUTHORIZE)]

    decision = client_for(server).decide(governor_request())

    assert isinstance(decision, Authorize)
    assert decision.constraints == {"timeout_s": 600}


def test_request_body_follows_wire_format(server: GovernorServer) -> None:
    server.replies = [Reply(body=AUTHORIZE)]
    request = governor_request()

    client_for(server).decide(request)

    sent = server.received[0].json()
    assert list(sent) == WIRE_KEYS
    assert sent["contract"] == "hummbl-governor/v1"
    assert sent["request_id"] == "req-remote-1"
    assert sent["intent"] == "roll back service api of batch REL-42"
    assert sent["action"] == "rollback.service"
    assert sent["scope"] == {"batch": "REL-42", "service": "api", "environment": "prod"}
    assert sent["artifacts"] == [
        {"kind": "plan", "ref": "plans/REL-42/9f.json", "sha256": "9f" * 32},
        {"kind": "migration_state", "ref": "runs/REL-42/db/state", "sha256": "c4" * 32},
    ]
    assert sent["repo"] == {"url": "https://git.example.com/shop.git", "ref": "a1" * 20}
    assert sent["freeze_acknowledged"] is True
    assert sent["profile"] == "balanced"
    assert sent["actors"] == {"planner": "alice", "runner": "bob", "approvers": ["carol"]}


def test_request_goes_to_decisions_path(server: GovernorServer) -> None:
    server.replies = [Reply(body=AUTHORIZE)]

    client_for(server).decide(governor_request())

    assert server.received[0].method == "POST"
    assert server.received[0].path == "/hummbl/v1/decisions"


def test_request_headers_carry_token(server: GovernorServer) -> None:
    server.replies = [Reply(body=AUTHORIZE)]

    client_for(server).decide(governor_request())

    headers = server.received[0].headers
    assert headers["content-type"] == "application/json"
    assert headers["authorization"] == f"Bearer {TOKEN}"


def test_request_without_token_has_no_authorization(server: GovernorServer) -> None:
    server.replies = [Reply(body=AUTHORIZE)]

    client_for(server, token=None).decide(governor_request())

    assert "authorization" not in server.received[0].headers


def test_plan_request_sends_null_service(server: GovernorServer) -> None:
    scope = {"batch": "REL-42", "service": None, "environment": "prod"}
    server.replies = [Reply(body={**AUTHORIZE, "action": "rollback.plan", "scope": scope})]
    request = governor_request(
        action="rollback.plan", scope=Scope(batch="REL-42", environment="prod")
    )

    decision = client_for(server).decide(request)

    assert server.received[0].json()["scope"] == {
        "batch": "REL-42",
        "service": None,
        "environment": "prod",
    }
    assert isinstance(decision, Authorize)


def test_embedded_governor_behind_http(server: GovernorServer) -> None:
    embedded = EmbeddedGovernor(make_governance())

    def decide(body: dict[str, Any]) -> Reply:
        decision = embedded.decide(GovernorRequest.model_validate(body))
        return Reply(body=decision.model_dump(mode="json"))

    server.replies = [decide]
    request = governor_request(scope=Scope(batch="REL-42", service="api", environment="staging"))

    assert client_for(server).decide(request) == embedded.decide(request)


def assert_no_answer(decision: Any, rule: str, fragment: str) -> None:
    assert isinstance(decision, Deny)
    assert decision.rule == rule
    assert decision.violated_rule == rule
    assert decision.action == "rollback.service"
    assert decision.reason.startswith("no valid decision from the governor: ")
    assert fragment in decision.reason
    assert decision.decision_id.startswith("dec-")


def test_malformed_json_is_denied(server: GovernorServer) -> None:
    server.replies = [Reply(body=b'{"decision": "AUTHORIZE",')]

    decision = client_for(server, retries=2).decide(governor_request())

    assert_no_answer(decision, "governor.malformed_answer", "the answer is not JSON")
    assert len(server.received) == 1


def test_unknown_decision_is_denied(server: GovernorServer) -> None:
    server.replies = [Reply(body={"decision": "MAYBE", "decision_id": "gov-9"})]

    decision = client_for(server, retries=2).decide(governor_request())

    assert_no_answer(decision, "governor.malformed_answer", "malformed governor decision")
    assert len(server.received) == 1


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ([AUTHORIZE], "at 'body'"),
        ({k: v for k, v in DENY.items() if k != "reason"}, "DENY.reason"),
        (b'{"decision": "DENY", "decision": "AUTHORIZE"}', "duplicate key 'decision'"),
        (b'{"decision": NaN}', "NaN is not valid JSON"),
        (b"\xff\xfe", "the answer is not JSON"),
        (b"", "the answer is not JSON"),
    ],
    ids=["list", "deny without reason", "duplicate key", "nan", "not utf-8", "empty"],
)
def test_ill_formed_answer_is_denied(server: GovernorServer, body: Any, fragment: str) -> None:
    server.replies = [Reply(body=body)]

    decision = client_for(server).decide(governor_request())

    assert_no_answer(decision, "governor.malformed_answer", fragment)


def test_oversized_answer_is_denied(server: GovernorServer) -> None:
    server.replies = [Reply(body={**TERMINATE, "reason": "x" * (1024 * 1024)})]

    decision = client_for(server).decide(governor_request())

    assert_no_answer(decision, "governor.malformed_answer", "larger than 1048576 bytes")


def test_authorize_for_other_scope_is_denied(server: GovernorServer) -> None:
    scope = {**AUTHORIZE["scope"], "service": "worker"}
    server.replies = [Reply(body={**AUTHORIZE, "scope": scope})]

    decision = client_for(server).decide(governor_request())

    assert_no_answer(decision, "governor.mismatched_answer", "AUTHORIZE gov-1 is for scope")


def test_authorize_for_other_action_is_denied(server: GovernorServer) -> None:
    server.replies = [Reply(body={**AUTHORIZE, "action": "migration.rewind"})]

    decision = client_for(server).decide(governor_request())

    assert_no_answer(
        decision, "governor.mismatched_answer", "is for action 'migration.rewind', the request"
    )


def test_server_error_then_answer_is_retried(server: GovernorServer) -> None:
    server.replies = [Reply(status=500, body={"error": "warming up"}), Reply(body=AUTHORIZE)]

    decision = client_for(server, retries=2).decide(governor_request())

    assert isinstance(decision, Authorize)
    assert len(server.received) == 2


def test_retried_request_is_identical(server: GovernorServer) -> None:
    server.replies = [Reply(status=503), Reply(body=AUTHORIZE)]

    client_for(server, retries=1).decide(governor_request())

    assert server.received[0].body == server.received[1].body


def test_server_errors_exhaust_retries(server: GovernorServer) -> None:
    server.replies = [Reply(status=502)]

    decision = client_for(server, retries=2).decide(governor_request())

    assert_no_answer(decision, "governor.unavailable", "HTTP 502")
    assert "gave up after 3 attempts" in decision.reason
    assert len(server.received) == 3


def test_forbidden_is_not_retried(server: GovernorServer) -> None:
    server.replies = [Reply(status=403, body={"error": "token expired"})]

    decision = client_for(server, retries=3).decide(governor_request())

    assert_no_answer(
        decision, "governor.http_status", 'HTTP 403 Forbidden: {"error": "token expired"}'
    )
    assert len(server.received) == 1


def test_redirect_is_not_followed(server: GovernorServer) -> None:
    server.replies = [Reply(status=307, headers={"Location": "http://127.0.0.1:9/elsewhere"})]

    decision = client_for(server, retries=3).decide(governor_request())

    assert_no_answer(decision, "governor.http_status", "HTTP 307")
    assert len(server.received) == 1


def test_slow_answer_times_out(server: GovernorServer) -> None:
    server.replies = [Reply(body=AUTHORIZE, delay_s=30)]

    decision = client_for(server, timeout_s=0.3, retries=1).decide(governor_request())

    assert_no_answer(decision, "governor.unavailable", "timed out after 0.3 s")
    assert len(server.received) == 2


def test_closed_port_is_denied() -> None:
    client = RemoteGovernorClient(
        f"http://127.0.0.1:{closed_port()}", TOKEN, 2.0, 1, backoff_s=0.01
    )

    decision = client.decide(governor_request())

    assert_no_answer(decision, "governor.unavailable", "connection failed")
    assert "gave up after 2 attempts" in decision.reason


def test_same_failure_same_decision_id() -> None:
    client = RemoteGovernorClient(f"http://127.0.0.1:{closed_port()}", None, 2.0, 0)
    request = governor_request()

    assert client.decide(request).decision_id == client.decide(request).decision_id


def test_token_never_logged(server: GovernorServer, caplog: pytest.LogCaptureFixture) -> None:
    server.replies = [Reply(status=500), Reply(status=401, body=f"bad token {TOKEN}".encode())]
    caplog.set_level(logging.DEBUG)

    decision = client_for(server, retries=1).decide(governor_request())

    assert isinstance(decision, Deny)
    assert "bad token ***" in decision.reason
    assert TOKEN not in decision.reason
    assert TOKEN not in caplog.text
    assert "retrying" in caplog.text


def test_client_repr_hides_token() -> None:
    client = RemoteGovernorClient("https://governor.example.com", TOKEN, 1.0, 0)

    assert TOKEN not in repr(client)


def test_from_settings_uses_timeout_and_retries() -> None:
    endpoint = GovernorEndpoint("https://governor.example.com/", TOKEN)

    client = RemoteGovernorClient.from_settings(
        RemoteGovernor(timeout_s=3.5, retries=4), endpoint
    )

    assert client.url == "https://governor.example.com/v1/decisions"
    assert client.timeout_s == 3.5
    assert client.retries == 4


def test_plain_http_token_warns(caplog: pytest.LogCaptureFixture) -> None:
    endpoint = GovernorEndpoint("http://governor.example.com", TOKEN)

    RemoteGovernorClient.from_settings(RemoteGovernor(), endpoint)

    assert "plain http" in caplog.text
    assert TOKEN not in caplog.text


@pytest.mark.parametrize(
    ("uri", "base_url", "token"),
    [
        ("https://:s3cret@governor.example.com", "https://governor.example.com", "s3cret"),
        (
            "https://:s3cret@governor.example.com:8443/hummbl",
            "https://governor.example.com:8443/hummbl",
            "s3cret",
        ),
        ("http://127.0.0.1:9000", "http://127.0.0.1:9000", None),
        ("http://:a%2Fb%40c@governor.example.com", "http://governor.example.com", "a/b@c"),
        ("http://:tok@governor.example.com:443/https", "https://governor.example.com:443", "tok"),
        ("http://https://:tok@governor.example.com/api", "https://governor.example.com/api", "tok"),
        ("generic://user:tok@governor.example.com", "http://governor.example.com", "tok"),
        ("https://[::1]:8443", "https://[::1]:8443", None),
    ],
    ids=[
        "https",
        "port and path",
        "no token",
        "encoded token",
        "schema as scheme",
        "host with protocol",
        "generic with login",
        "ipv6",
    ],
)
def test_endpoint_from_uri(uri: str, base_url: str, token: str | None) -> None:
    endpoint = endpoint_from_uri(uri)

    assert endpoint.base_url == base_url
    assert endpoint.token == token


def test_endpoint_from_connection_fields() -> None:
    endpoint = endpoint_from_connection(
        conn_type="http",
        host="https://governor.example.com",
        schema="v2/hummbl",
        port=None,
        password="tok",
    )

    assert endpoint.base_url == "https://governor.example.com/v2/hummbl"
    assert endpoint.token == "tok"


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        ("governor.example.com", "has no scheme"),
        ("postgres://:tok@db.example.com", "connection type 'postgres' cannot reach"),
        ("https://:tok@", "has no host"),
        ("https://governor.example.com:99999", "invalid port"),
        ("https://:bad%20token@governor.example.com", "token contains spaces"),
    ],
    ids=["no scheme", "database type", "no host", "bad port", "token with space"],
)
def test_invalid_endpoint_uri_is_rejected(uri: str, fragment: str) -> None:
    with pytest.raises(GovernorEndpointError) as caught:
        endpoint_from_uri(uri)

    assert fragment in str(caught.value)
    assert "bad token" not in str(caught.value)


def test_endpoint_repr_hides_token() -> None:
    assert TOKEN not in repr(GovernorEndpoint("https://governor.example.com", TOKEN))


@pytest.mark.parametrize(
    "base_url",
    [
        "ftp://governor.example.com",
        "https://",
        "https://user:password@governor.example.com",
        "https://governor.example.com/?x=1",
    ],
    ids=["ftp", "no host", "credentials", "query"],
)
def test_invalid_base_url_is_rejected(base_url: str) -> None:
    with pytest.raises(GovernorEndpointError):
        GovernorEndpoint(base_url)
