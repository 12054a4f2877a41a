"""The remote governor: HUMMBL-GOVERNOR decisions over HTTP, failing closed on anything else.

The client sends ``POST <base>/v1/decisions`` with the request as JSON and accepts only HTTP
200 with one well-formed decision. Every other outcome becomes a DENY that this client makes
itself, citing one of the ``governor.*`` rules below, so a broken or unreachable governor
never lets a step run.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from rollback_coordinator.core.decisions import (
    Authorize,
    Decision,
    DecisionFormatError,
    Deny,
    GovernorRequest,
    decision_id,
    parse_decision,
)
from rollback_coordinator.core.errors import CoordinatorError
from rollback_coordinator.core.governance import RemoteGovernor

# requests is imported where it is used: every parse of the DAG file imports this module,
# and importing requests took about 50 ms there (python -X importtime).
if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

DECISIONS_PATH = "/v1/decisions"

# Printable ASCII without spaces: anything else cannot travel in an HTTP header unchanged.
_TOKEN = re.compile(r"[\x21-\x7e]+")

# A decision is a few hundred bytes, so a longer response body is rejected unread.
MAX_ANSWER_BYTES = 1024 * 1024

# No HTTP response (refused, reset, DNS failure, timeout) or HTTP 5xx, after every retry.
RULE_UNAVAILABLE = "governor.unavailable"
# An HTTP status other than 200 and 5xx, such as 401, 403, 404 or a redirect. Never retried.
RULE_HTTP_STATUS = "governor.http_status"
# HTTP 200 whose body is not one JSON object holding a well-formed, known decision.
RULE_MALFORMED = "governor.malformed_answer"
# A well-formed AUTHORIZE for another action or scope than the request's.
RULE_MISMATCHED = "governor.mismatched_answer"


class GovernorEndpointError(CoordinatorError):
    """The remote governor's endpoint is missing or cannot be used."""


def missing_endpoint_error(connection_id: str) -> GovernorEndpointError:
    variable = "AIRFLOW_CONN_" + connection_id.upper()
    return GovernorEndpointError(
        f"governance.yaml selects governor: remote, but the Airflow connection "
        f"'{connection_id}' (remote.connection_id) was not found; create it, for example "
        f"with the environment variable {variable}='https://:TOKEN@governor.example.com', "
        f"or set governor: embedded"
    )


@dataclass(frozen=True)
class GovernorEndpoint:
    """The base URL of the remote governor and the bearer token it expects, if any."""

    base_url: str
    token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise GovernorEndpointError(
                f"governor base URL {self.base_url!r} is invalid; use http:// or https:// "
                f"followed by a host, as in https://governor.example.com"
            )
        if parts.username is not None or parts.password is not None:
            raise GovernorEndpointError(
                "governor base URL contains credentials; remove them and put the token in "
                "the connection's password"
            )
        if parts.query or parts.fragment:
            raise GovernorEndpointError(
                f"governor base URL {self.base_url!r} has a query or fragment; remove it"
            )
        if self.token is not None and not _TOKEN.fullmatch(self.token):
            # The message leaves the token out because it ends up in logs.
            raise GovernorEndpointError(
                "the governor token contains spaces, control or non-ASCII characters; "
                "set the connection's password to the token exactly as the governor issued it"
            )
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))


def endpoint_from_connection(
    conn_type: str | None,
    host: str | None,
    schema: str | None = None,
    port: int | None = None,
    password: str | None = None,
) -> GovernorEndpoint:
    """Build the endpoint from the fields of an Airflow connection.

    The scheme comes from a protocol in ``host`` (``https://governor.example.com``), else
    from ``schema`` when it is ``http`` or ``https`` (the convention of Airflow's HTTP
    connections), else from ``conn_type``, defaulting to http. Any other ``schema`` is a
    path prefix in front of /v1/decisions. The password is the bearer token and the login
    is not used.
    """
    kind = (conn_type or "http").lower()
    if kind not in ("http", "https", "generic"):
        raise GovernorEndpointError(
            f"connection type '{conn_type}' cannot reach an HTTP governor; use http or https"
        )
    if not host:
        raise GovernorEndpointError(
            "the governor connection has no host; set it, as in governor.example.com"
        )
    scheme = "https" if kind == "https" else "http"
    path = schema or ""
    if "://" in host:
        scheme, _, host = host.partition("://")
    elif path in ("http", "https"):
        scheme, path = path, ""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    address = host if port is None else f"{host}:{port}"
    base = f"{scheme}://{address}" + (f"/{path.strip('/')}" if path.strip("/") else "")
    return GovernorEndpoint(base_url=base, token=password or None)


def endpoint_from_uri(uri: str) -> GovernorEndpoint:
    """Build the endpoint from a connection URI as Airflow writes it.

    For example ``https://:TOKEN@governor.example.com:8443/hummbl``, the form that
    ``AIRFLOW_CONN_HUMMBL_GOVERNOR_DEFAULT`` takes. Percent-encoded characters in the
    token are decoded.
    """
    conn_type, separator, rest = uri.partition("://")
    if not separator:
        raise GovernorEndpointError(
            "governor connection URI has no scheme; write it as https://:TOKEN@host[:port][/path]"
        )
    protocol = None
    if "://" in rest:
        # Airflow's form for a host that carries its own protocol: http://https://host
        protocol, _, rest = rest.partition("://")
    parts = urlsplit("//" + rest)
    try:
        port = parts.port
    except ValueError:
        raise GovernorEndpointError("governor connection URI has an invalid port") from None
    host = unquote(parts.hostname or "")
    return endpoint_from_connection(
        conn_type=conn_type.replace("-", "_"),
        host=f"{protocol}://{host}" if protocol and host else host,
        schema=unquote(parts.path[1:]),
        port=port,
        password=unquote(parts.password) if parts.password else None,
    )


class _NoAnswer(Exception):
    """One attempt that did not produce a usable decision."""

    def __init__(self, rule: str, reason: str, *, retriable: bool) -> None:
        super().__init__(reason)
        self.rule = rule
        self.reason = reason
        self.retriable = retriable


class RemoteGovernorClient:
    """Ask a HUMMBL-GOVERNOR over HTTP, with a timeout and bounded retries.

    ``timeout_s`` bounds the connection and each wait for data, as ``requests`` applies
    it, so one attempt can take longer when a server sends its answer slowly. ``retries``
    is the number of attempts after the first. Only connection errors, timeouts and 5xx
    answers are retried, after ``backoff_s``, then twice that, and so on.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None,
        timeout_s: float,
        retries: int,
        *,
        backoff_s: float = 0.5,
    ) -> None:
        self.endpoint = GovernorEndpoint(base_url=base_url, token=token)
        self.url = self.endpoint.base_url + DECISIONS_PATH
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s

    @classmethod
    def from_settings(
        cls, settings: RemoteGovernor, endpoint: GovernorEndpoint
    ) -> RemoteGovernorClient:
        """Build the client from governance.yaml's ``remote`` section and the endpoint."""
        if endpoint.token and urlsplit(endpoint.base_url).scheme == "http":
            log.warning(
                "the governor at %s is reached over plain http, so its bearer token travels "
                "unencrypted; use https outside a trusted network",
                endpoint.base_url,
            )
        return cls(endpoint.base_url, endpoint.token, settings.timeout_s, settings.retries)

    def __repr__(self) -> str:
        return f"RemoteGovernorClient(url={self.url!r}, timeout_s={self.timeout_s})"

    def decide(self, request: GovernorRequest) -> Decision:
        """Return the governor's decision, or a DENY citing why there was none."""
        try:
            answer = self._post_with_retries(request)
            decision = _read_decision(answer)
            _check_matches(decision, request)
        except _NoAnswer as failure:
            log.error(
                "no valid decision from the governor at %s for request %s: %s",
                self.url,
                request.request_id,
                failure.reason,
            )
            return _deny(request, failure)
        return decision

    def _post_with_retries(self, request: GovernorRequest) -> bytes:
        body = request.model_dump_json().encode("utf-8")
        attempts = self.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return self._post(body)
            except _NoAnswer as failure:
                if not failure.retriable or attempt == attempts:
                    if attempts > 1 and failure.retriable:
                        failure.reason += f" (gave up after {attempts} attempts)"
                    raise
                delay = self.backoff_s * 2 ** (attempt - 1)
                log.warning(
                    "governor at %s gave no answer to request %s (attempt %d of %d): %s; "
                    "retrying in %.1f s",
                    self.url,
                    request.request_id,
                    attempt,
                    attempts,
                    failure.reason,
                    delay,
                )
                time.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _post(self, body: bytes) -> bytes:
        """Send one request and return the body of a 200 answer, raising _NoAnswer otherwise."""
        import requests

        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.endpoint.token:
            headers["Authorization"] = f"Bearer {self.endpoint.token}"
        try:
            # Redirects are not followed: they would resend the token to another address.
            with requests.post(
                self.url,
                data=body,
                headers=headers,
                timeout=self.timeout_s,
                allow_redirects=False,
                stream=True,
            ) as response:
                return self._read_answer(response)
        except requests.Timeout:
            raise _NoAnswer(
                RULE_UNAVAILABLE, f"timed out after {self.timeout_s:g} s", retriable=True
            ) from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as error:
            raise _NoAnswer(
                RULE_UNAVAILABLE,
                f"connection failed: {self._hide_token(_first_line(error))}",
                retriable=True,
            ) from None
        except requests.RequestException as error:
            raise _NoAnswer(
                RULE_UNAVAILABLE,
                f"request failed: {self._hide_token(_first_line(error))}",
                retriable=False,
            ) from None

    def _read_answer(self, response: requests.Response) -> bytes:
        status = response.status_code
        if status >= 500:
            raise _NoAnswer(RULE_UNAVAILABLE, f"HTTP {status} {response.reason}", retriable=True)
        if status != 200:
            detail = self._hide_token(_read_limited(response)[:200].decode("utf-8", "replace"))
            raise _NoAnswer(
                RULE_HTTP_STATUS,
                f"HTTP {status} {response.reason}: {' '.join(detail.split()) or 'empty body'}",
                retriable=False,
            )
        body = _read_limited(response)
        if len(body) > MAX_ANSWER_BYTES:
            raise _NoAnswer(
                RULE_MALFORMED,
                f"the answer is larger than {MAX_ANSWER_BYTES} bytes",
                retriable=False,
            )
        return body

    def _hide_token(self, text: str) -> str:
        token = self.endpoint.token
        return text.replace(token, "***") if token else text


def _read_limited(response: requests.Response) -> bytes:
    """Return the body, stopping one byte past MAX_ANSWER_BYTES."""
    body = bytearray()
    for chunk in response.iter_content(chunk_size=65536):
        body.extend(chunk)
        if len(body) > MAX_ANSWER_BYTES:
            break
    return bytes(body[: MAX_ANSWER_BYTES + 1])


def _read_decision(body: bytes) -> Decision:
    try:
        data = json.loads(body, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as error:
        raise _NoAnswer(
            RULE_MALFORMED, f"the answer is not JSON: {_first_line(error)}", retriable=False
        ) from None
    try:
        return parse_decision(data)
    except DecisionFormatError as error:
        raise _NoAnswer(RULE_MALFORMED, str(error), retriable=False) from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of two equal keys; a decision that says two things is invalid.
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise ValueError(f"duplicate key {key!r}")
        data[key] = value
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _check_matches(decision: Decision, request: GovernorRequest) -> None:
    """Reject an AUTHORIZE for something other than what was requested."""
    if not isinstance(decision, Authorize):
        return
    if decision.action != request.action:
        raise _NoAnswer(
            RULE_MISMATCHED,
            f"AUTHORIZE {decision.decision_id} is for action '{decision.action}', "
            f"the request was for '{request.action}'",
            retriable=False,
        )
    expected = request.scope.model_dump(exclude_none=True)
    granted = {key: value for key, value in decision.scope.items() if value is not None}
    if granted != expected:
        raise _NoAnswer(
            RULE_MISMATCHED,
            f"AUTHORIZE {decision.decision_id} is for scope {granted}, "
            f"the request was for {expected}",
            retriable=False,
        )


def _deny(request: GovernorRequest, failure: _NoAnswer) -> Deny:
    return Deny(
        decision="DENY",
        decision_id=decision_id(request, "DENY", failure.rule),
        rule=failure.rule,
        action=request.action,
        reason=f"no valid decision from the governor: {failure.reason}",
        violated_rule=failure.rule,
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
