"""The HUMMBL-GOVERNOR contract: the request a governor reads and the five decisions it returns."""

from __future__ import annotations

import hashlib
import uuid
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from rollback_coordinator.core.errors import CoordinatorError

CONTRACT = "hummbl-governor/v1"

Action = Literal["rollback.plan", "rollback.service", "migration.rewind"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Scope(_Model):
    batch: str
    service: str | None = None
    environment: str


class Artifact(_Model):
    kind: str
    ref: str
    sha256: str


class RepoContext(_Model):
    url: str
    ref: str


class Actors(_Model):
    planner: str | None = None
    runner: str | None = None
    approvers: list[str] = Field(default_factory=list)


class GovernorRequest(_Model):
    """One question to the governor: may this action run, here, by these people?"""

    contract: Literal["hummbl-governor/v1"] = CONTRACT
    request_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    intent: str
    action: Action
    scope: Scope
    artifacts: list[Artifact] = Field(default_factory=list)
    repo: RepoContext | None = None
    freeze_acknowledged: bool = False
    profile: str | None = None
    actors: Actors = Field(default_factory=Actors)

    def artifact(self, kind: str) -> Artifact | None:
        return next((item for item in self.artifacts if item.kind == kind), None)


class _Decision(_Model):
    # Remote governors may add fields of their own; they are kept, never trusted.
    model_config = ConfigDict(extra="allow", frozen=True)

    decision_id: str = Field(min_length=1)
    rule: str = ""


class Authorize(_Decision):
    decision: Literal["AUTHORIZE"]
    action: str
    scope: dict[str, Any]
    constraints: dict[str, Any] = Field(default_factory=dict)


class Deny(_Decision):
    decision: Literal["DENY"]
    action: str
    reason: str
    violated_rule: str


class RequestClarification(_Decision):
    decision: Literal["REQUEST_CLARIFICATION"]
    missing_artifact: str


class Escalate(_Decision):
    decision: Literal["ESCALATE"]
    human_review_required: str


class TerminateRun(_Decision):
    decision: Literal["TERMINATE_RUN"]
    reason: str


Decision = Annotated[
    Union[Authorize, Deny, RequestClarification, Escalate, TerminateRun],
    Field(discriminator="decision"),
]
_DECISION_ADAPTER: TypeAdapter[Decision] = TypeAdapter(Decision)


class DecisionFormatError(CoordinatorError):
    """A governor answer that is not a well-formed decision; callers treat it as DENY."""


def parse_decision(data: object) -> Decision:
    """Validate a decision from a governor, raising DecisionFormatError for anything else."""
    try:
        return _DECISION_ADAPTER.validate_python(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise DecisionFormatError(
            f"malformed governor decision at '{where}': {first['msg']}"
        ) from None


def decision_id(request: GovernorRequest, decision: str, rule: str) -> str:
    """Derive a stable id: the same request decided by the same rule gets the same id."""
    material = f"{request.model_dump_json()}|{decision}|{rule}".encode()
    return "dec-" + hashlib.sha256(material).hexdigest()[:24]


def describe(decision: Decision) -> str:
    """Return a one-line account of a decision for task logs and summaries."""
    if isinstance(decision, Authorize):
        detail = f"constraints {decision.constraints}" if decision.constraints else "no constraints"
    elif isinstance(decision, Deny):
        detail = f"{decision.reason} (violated {decision.violated_rule})"
    elif isinstance(decision, RequestClarification):
        detail = f"missing {decision.missing_artifact}"
    elif isinstance(decision, Escalate):
        detail = f"needs review by {decision.human_review_required}"
    else:
        detail = decision.reason
    return f"{decision.decision} {decision.decision_id} by rule '{decision.rule}': {detail}"
