"""A run's audit trail inside Airflow: chained records, signing, secrets, notifications, metrics.

The profile decides the depth: flow keeps the human summary only, balanced adds a hash-chained
JSON-lines record per step, strict also signs every record with Ed25519.
"""

from __future__ import annotations

import logging
from functools import cached_property
from pathlib import Path
from typing import Any

from airflow.sdk import Connection
from airflow.sdk.exceptions import AirflowFailException

from rollback_coordinator.airflow.runtime import RunContext
from rollback_coordinator.core.audit_chain import AuditChain, chain_path
from rollback_coordinator.core.errors import CoordinatorError
from rollback_coordinator.core.governance import PROFILES
from rollback_coordinator.core.notifications import NotificationBus
from rollback_coordinator.core.redaction import Redactor
from rollback_coordinator.core.signing import Signer

log = logging.getLogger(__name__)

# Step record fields left out of a chain record's inputs. The chain record already has
# its own fields for them.
_NOT_INPUTS = {"task_id", "batch", "service", "step", "started_at", "ended_at", "decision"}


class RunTrail:
    """The audit trail of one run, for one profile."""

    def __init__(self, ctx: RunContext, profile: str) -> None:
        self.ctx = ctx
        self.profile = PROFILES[profile]

    @property
    def chained(self) -> bool:
        return self.profile.audit in ("full", "signed")

    @cached_property
    def redactor(self) -> Redactor:
        """Mask the secrets this run can reach: connection passwords and the signing key."""
        secrets: list[str] = []
        for conn_id in self._connection_ids():
            password = _connection_password(conn_id)
            if password:
                secrets.append(password)
        return Redactor(secrets)

    @cached_property
    def signer(self) -> Signer | None:
        """Return the signing key under the strict profile; fail the step when there is none."""
        if self.profile.audit != "signed":
            return None
        settings = self.ctx.governance.audit
        try:
            if settings.signing_key_file:
                key_file = Path(settings.signing_key_file)
                if not key_file.is_absolute():
                    key_file = self.ctx.places.config_dir / key_file
                return Signer.from_file(key_file)
            password = _connection_password(settings.signing_connection_id)
            if password:
                return Signer.from_bytes(
                    password.encode(), source=f"connection {settings.signing_connection_id}"
                )
        except CoordinatorError as error:
            raise AirflowFailException(f"strict profile: signing key unusable: {error}") from None
        raise AirflowFailException(
            f"the strict profile signs every audit record, but no signing key is set: put the "
            f"key in the Airflow connection '{settings.signing_connection_id}' (password, "
            f"base64) or set audit.signing_key_file in governance.yaml"
        )

    def check_ready(self) -> None:
        """Fail before anything runs when the profile's audit cannot be written."""
        if self.profile.audit == "signed" and self.signer is None:
            raise AirflowFailException("the strict profile needs a signing key")

    def chain(self) -> AuditChain | None:
        if not self.chained:
            return None
        path = chain_path(self.ctx.places.runs_dir, self.ctx.batch_id, self.ctx.run_id)
        return AuditChain(path, signer=self.signer, redactor=self.redactor)

    def append(self, record: dict[str, Any]) -> None:
        """Add one step record to the chain, when the profile keeps one."""
        chain = self.chain()
        if chain is None:
            return
        result = record.get("result") or {}
        chain.append(
            {
                "batch": self.ctx.batch_id,
                "run_id": self.ctx.run_id,
                "step": record["task_id"],
                "service": record.get("service"),
                "inputs": {key: value for key, value in record.items() if key not in _NOT_INPUTS},
                "decision": record.get("decision"),
                "output_sha256": result.get("output_sha256") if isinstance(result, dict) else None,
                "started_at": record.get("started_at"),
                "ended_at": record.get("ended_at"),
            }
        )

    def notify(self, event: str, detail: str, service: str | None = None) -> list[dict[str, Any]]:
        """Send an event to its channels; return the delivery results for the audit."""
        bus = NotificationBus(self.ctx.governance.notifications, redactor=self.redactor, log=log)
        results = bus.notify(
            event, batch=self.ctx.batch_id, run_id=self.ctx.run_id, detail=detail, service=service
        )
        return [result.as_dict() for result in results]

    def _connection_ids(self) -> list[str]:
        ids = []
        if self.profile.audit == "signed":
            ids.append(self.ctx.governance.audit.signing_connection_id)
        if self.ctx.governance.governor == "remote":
            ids.append(self.ctx.governance.remote.connection_id)
        for service in self.ctx.services.services.values():
            if service.migrations and service.migrations.connection_id:
                ids.append(service.migrations.connection_id)
        return ids


def _connection_password(conn_id: str) -> str | None:
    try:
        return Connection.get(conn_id).password
    except Exception:  # noqa: BLE001 - an undefined connection simply has no secret to mask
        return None
