"""The notification bus: run events sent to named channels, as webhooks or log lines.

Channels and routes come from the ``notifications`` section of governance.yaml. Without it,
three log channels exist (whisper, nexus, chronos) and every event goes to all of them.

A notification must not fail a rollback, so NotificationBus.notify catches every error and
returns delivery problems as DeliveryResult records, which the caller writes to the audit
trail.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rollback_coordinator.core.redaction import Redactor
from rollback_coordinator.core.yaml_lines import FieldValueError

# requests is imported where it is used: every parse of the DAG file imports this module,
# and importing requests took about 50 ms there (python -X importtime).
if TYPE_CHECKING:
    import requests

EVENTS = (
    "run_started",
    "approval_needed",
    "step_failed",
    "rollback_succeeded",
    "rollback_failed",
)
EventName = Literal[
    "run_started", "approval_needed", "step_failed", "rollback_succeeded", "rollback_failed"
]
CHANNEL_NAME_PATTERN = r"^[a-z][a-z0-9_-]*$"

# A webhook response worth another attempt: the receiver is overloaded, restarting or slow.
# Any other 4xx means the request itself is wrong, and sending it again cannot help.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})

_DETAIL_LIMIT = 2000
_LOG_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}

logger = logging.getLogger(__name__)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class LogChannel(_Model):
    """A channel that writes each notification as one log line, at ``level``."""

    kind: Literal["log"]
    level: Literal["info", "warning", "error"] = "info"


class WebhookChannel(_Model):
    """A channel that POSTs each notification as JSON to ``url``.

    ``timeout_s`` bounds the connect and the wait for the response, each. A failed attempt is
    repeated up to ``retries`` times, after ``backoff_s``, doubling each time up to
    ``max_backoff_s``. The worst case for one notification is about
    ``(retries + 1) * 2 * timeout_s`` plus the backoff waits.
    """

    kind: Literal["webhook"]
    url: str
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    retries: int = Field(default=3, ge=0, le=10)
    backoff_s: float = Field(default=0.5, ge=0, le=60)
    max_backoff_s: float = Field(default=8.0, ge=0, le=300)
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _url_is_http(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"'{url}' is not an http or https URL; write it in full, such as "
                f"https://hooks.example.com/rollback"
            )
        return url


Channel = Annotated[LogChannel | WebhookChannel, Field(discriminator="kind")]


def _default_channels() -> dict[str, LogChannel]:
    return {name: LogChannel(kind="log") for name in ("whisper", "nexus", "chronos")}


class NotificationSettings(_Model):
    """The ``notifications`` section of governance.yaml.

    ``routes`` maps an event to the channels that receive it. When ``routes`` is left out,
    every event goes to every channel. When it is given, an event it does not list is sent
    nowhere.
    """

    channels: dict[Annotated[str, Field(pattern=CHANNEL_NAME_PATTERN)], Channel] = Field(
        default_factory=_default_channels
    )
    routes: dict[EventName, list[str]] | None = None

    @model_validator(mode="after")
    def _routes_name_known_channels(self) -> NotificationSettings:
        for event, names in (self.routes or {}).items():
            unknown = [name for name in names if name not in self.channels]
            if unknown:
                known = ", ".join(self.channels) or "none"
                raise FieldValueError(
                    "routes",
                    f"routes.{event} names unknown channel(s) {', '.join(unknown)}; "
                    f"define them under channels (defined: {known})"
                )
        return self

    def channels_for(self, event: str) -> list[str]:
        if self.routes is None:
            return list(self.channels)
        return list(self.routes.get(event, []))  # type: ignore[call-overload]


@dataclass(frozen=True)
class DeliveryResult:
    """What happened to one notification on one channel.

    ``status`` is the last HTTP status of a webhook, None when no response came. ``error`` is
    None when ``delivered``.
    """

    channel: str
    kind: str
    event: str
    delivered: bool
    attempts: int
    status: int | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class NotificationBus:
    """Send run events to the channels that ``settings`` routes them to.

    ``redactor`` masks secrets in the payload and in error texts. ``log`` receives the lines
    of log channels and the delivery warnings. It is a logging.Logger or any object with the
    same ``log``, ``warning`` and ``error`` methods: in Airflow, pass the task's ``self.log``.
    """

    def __init__(
        self,
        settings: NotificationSettings | None = None,
        *,
        redactor: Redactor | None = None,
        log: Any = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings or NotificationSettings()
        self.redactor = redactor or Redactor()
        self.log = log or logger
        if session is None:
            import requests

            session = requests.Session()
        self.session = session
        self.sleep = sleep

    def notify(
        self,
        event: str,
        *,
        batch: str,
        run_id: str,
        detail: str,
        service: str | None = None,
    ) -> list[DeliveryResult]:
        """Send one event to its channels and return one result per channel. Never raises."""
        try:
            return self._notify(event, batch, run_id, detail, service)
        except Exception as error:  # noqa: BLE001 - a notification must not fail the run
            self.log.error(
                "notification %s for batch %s run %s not sent: %s",
                event, batch, run_id, self._text(error),
            )
            return [DeliveryResult("-", "-", event, False, 0, error=self._text(error))]

    def _notify(
        self, event: str, batch: str, run_id: str, detail: str, service: str | None
    ) -> list[DeliveryResult]:
        if event not in EVENTS:
            self.log.error(
                "notification not sent: unknown event %r (known: %s)", event, ", ".join(EVENTS)
            )
            return [DeliveryResult("-", "-", event, False, 0, error=f"unknown event {event!r}")]
        payload = self._payload(event, batch, run_id, detail, service)
        results = []
        for name in self.settings.channels_for(event):
            try:
                result = self._deliver(name, payload)
            except Exception as error:  # noqa: BLE001 - a notification must not fail the run
                result = DeliveryResult(name, "?", event, False, 0, error=self._text(error))
            if not result.delivered:
                self.log.warning(
                    "notification %s for batch %s run %s not delivered to %s after %d "
                    "attempt(s): %s",
                    event, batch, run_id, name, result.attempts, result.error,
                )
            results.append(result)
        return results

    def _payload(
        self, event: str, batch: str, run_id: str, detail: str, service: str | None
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {"event": event, "batch": batch, "run_id": run_id}
        if service is not None:
            payload["service"] = service
        payload["detail"] = str(detail)[:_DETAIL_LIMIT]
        payload["at"] = utc_now()
        return self.redactor.redact(payload)

    def _deliver(self, name: str, payload: dict[str, Any]) -> DeliveryResult:
        channel = self.settings.channels[name]
        if isinstance(channel, LogChannel):
            line = json.dumps(payload, sort_keys=True)
            self.log.log(_LOG_LEVELS[channel.level], "notification to %s: %s", name, line)
            return DeliveryResult(name, "log", payload["event"], True, 1)
        return self._post(name, channel, payload)

    def _post(
        self, name: str, channel: WebhookChannel, payload: dict[str, Any]
    ) -> DeliveryResult:
        attempts = channel.retries + 1
        status: int | None = None
        error = ""
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                self.sleep(min(channel.backoff_s * 2 ** (attempt - 2), channel.max_backoff_s))
            status, error, retryable = self._attempt(channel, payload)
            if not error:
                return DeliveryResult(name, "webhook", payload["event"], True, attempt, status)
            if not retryable:
                break
        return DeliveryResult(
            name, "webhook", payload["event"], False, attempt, status, self._text(error)
        )

    def _attempt(
        self, channel: WebhookChannel, payload: dict[str, Any]
    ) -> tuple[int | None, str, bool]:
        """Return (HTTP status, error text or "", whether another attempt could help)."""
        import requests

        try:
            response = self.session.post(
                channel.url,
                json=payload,
                headers=channel.headers,
                timeout=(channel.timeout_s, channel.timeout_s),
                allow_redirects=False,
            )
        except requests.Timeout:
            return None, f"timed out after {channel.timeout_s:g} s", True
        except requests.ConnectionError as error:
            return None, f"connection failed: {_connection_failure(error)}", True
        except requests.RequestException as error:
            return None, f"request failed: {error}", False
        response.close()
        if 200 <= response.status_code < 300:
            return response.status_code, "", False
        retryable = response.status_code in RETRYABLE_STATUSES
        return response.status_code, f"HTTP {response.status_code}", retryable

    def _text(self, error: object) -> str:
        return self.redactor.redact_text(str(error))[:_DETAIL_LIMIT]


def _connection_failure(error: requests.ConnectionError) -> str:
    # requests wraps urllib3's retry error, whose ``reason`` is the short, useful part.
    wrapped = error.args[0] if error.args else None
    return str(getattr(wrapped, "reason", None) or error)
