"""The rollback plan: plain data, written as a JSON plan file bound by its SHA-256 digest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from rollback_coordinator.core.batch_id import validate_batch_id
from rollback_coordinator.core.files import atomic_write_text
from rollback_coordinator.core.errors import BatchIdError, InvalidPlanFileError, PlanError

PLAN_FORMAT = 1

StepKind = Literal[
    "health_before", "approval", "authorize", "verify_migrations", "rollback", "health_after"
]

# The order of steps inside one service, as the DAG runs them.
STEP_ORDER: tuple[StepKind, ...] = (
    "health_before",
    "approval",
    "authorize",
    "verify_migrations",
    "rollback",
    "health_after",
)


def _checked_batch_id(value: str) -> str:
    # Batch ids become file names and DAG ids, so a plan file may not smuggle in another.
    try:
        return validate_batch_id(value, pattern=None)
    except BatchIdError as error:
        raise ValueError(str(error)) from None


BatchId = Annotated[str, AfterValidator(_checked_batch_id)]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServiceStep(_Frozen):
    """One service of one batch to roll back, with everything the run needs to do it."""

    service: str
    batch: BatchId
    group_id: str = Field(description="Airflow task group id of this service's steps")
    level: int
    after: tuple[str, ...] = Field(description="group ids that must finish rolling back first")
    steps: tuple[StepKind, ...]
    approvals: tuple[str, ...]
    script: str
    script_sha256: str
    has_migrations: bool
    migration_tool: str | None = None


class Phase(_Frozen):
    """The rollback of one batch. A cascading plan has several, newest batch first."""

    batch: BatchId
    from_ref: str
    to_ref: str | None
    services: tuple[ServiceStep, ...]


class Plan(_Frozen):
    """Everything that decides what a run does. Its digest is what approvals bind to."""

    format: int = PLAN_FORMAT
    batch: BatchId
    repo: str
    environment: str
    profile: Literal["flow", "balanced", "strict"]
    author: str
    created_at: str
    reason: str
    dry_run: bool
    cascade: bool
    services_sha256: str
    phases: tuple[Phase, ...]
    skipped: tuple[tuple[str, str], ...] = Field(
        default=(), description="(service, reason) pairs the batch touched but this run leaves alone"
    )

    def service_steps(self) -> list[ServiceStep]:
        return [step for phase in self.phases for step in phase.services]

    def find(self, group_id: str) -> ServiceStep | None:
        return next((step for step in self.service_steps() if step.group_id == group_id), None)

    def phase_of(self, group_id: str) -> Phase:
        for phase in self.phases:
            if any(step.group_id == group_id for step in phase.services):
                return phase
        raise PlanError(f"plan for batch {self.batch} has no service group '{group_id}'")


def canonical_json(data: object) -> bytes:
    """Serialise data the one way the digest is computed over."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def plan_digest(plan: Plan) -> str:
    return hashlib.sha256(canonical_json(plan.model_dump(mode="json"))).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_plan(plan: Plan, path: Path) -> str:
    """Write the plan file atomically and return its digest."""
    digest = plan_digest(plan)
    document = {"sha256": digest, "plan": plan.model_dump(mode="json")}
    text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    atomic_write_text(path, text)
    return digest


def read_plan(path: Path, expected_sha256: str | None = None) -> tuple[Plan, str]:
    """Load a plan file, refusing one whose content no longer matches its digest."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidPlanFileError(f"plan file {path} not found") from None
    except (OSError, ValueError) as error:
        raise InvalidPlanFileError(f"plan file {path} is not readable JSON: {error}") from None

    if not isinstance(document, dict) or "plan" not in document or "sha256" not in document:
        raise InvalidPlanFileError(
            f"plan file {path} lacks the 'plan' and 'sha256' keys of a plan file"
        )
    try:
        plan = Plan.model_validate(document["plan"])
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidPlanFileError(f"plan file {path}, field '{where}': {first['msg']}") from None

    digest = plan_digest(plan)
    if digest != document["sha256"]:
        raise PlanError(
            f"plan file {path} was changed after it was made: its content hashes to {digest}, "
            f"the file records {document['sha256']}. Make a new plan with 'rollback-coordinator plan'."
        )
    if expected_sha256 is not None and digest != expected_sha256:
        raise PlanError(
            f"plan file {path} has digest {digest}, but the run was authorized for "
            f"{expected_sha256}. Execute the plan that was authorized, or plan again."
        )
    return plan, digest


def plan_path(plans_dir: Path, batch: str, digest: str) -> Path:
    """Return where the data folder keeps a plan: one file per digest, per batch."""
    return plans_dir / batch / f"{digest}.json"
