"""Turn a batch, the service map and a governance profile into a rollback plan."""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from rollback_coordinator.core.batches import Batch
from rollback_coordinator.core.errors import OverlapError, PlanError
from rollback_coordinator.core.ordering import rollback_order
from rollback_coordinator.core.plan import (
    Phase,
    Plan,
    ServiceStep,
    StepKind,
    file_sha256,
    plan_digest,
)
from rollback_coordinator.core.services import ServiceMap


# Newer batches one plan may roll back first. Each one adds a copy of its services' task
# groups to the DAG of every older batch, so without a bound DAG size grows with the square
# of the number of overlapping batches.
MAX_CASCADE_BATCHES = 3


@dataclass(frozen=True)
class PlanRequest:
    """The parameters a person requests. The batch data and the service map supply the rest."""

    batch: str
    profile: str
    # None builds the shape of every environment at once, which is what the DAG factory needs.
    environment: str | None
    author: str
    reason: str = ""
    dry_run: bool = False
    cascade: bool = False
    created_at: str | None = None
    # The DAG factory needs only the steps and their order, at every parse: hashing every
    # script of every batch there would slow parsing down for nothing.
    shape_only: bool = False


def plan_shape(
    batch_id: str, batches: Mapping[str, Batch], services: ServiceMap, touched: TouchedServices
) -> Plan:
    """Build the steps and order of a batch's DAG, cascades included, for every environment."""
    request = PlanRequest(
        batch=batch_id,
        profile="flow",
        environment=None,
        author="",
        cascade=True,
        created_at="",
        shape_only=True,
    )
    return build_plan(request, batches, services, repo="", touched=touched)


class TouchedServices:
    """Touched services per batch, matched once and reused across every plan of a parse."""

    def __init__(self, batches: Mapping[str, Batch], services: ServiceMap) -> None:
        self._batches = batches
        self._services = services
        self._cache: dict[str, list[str]] = {}
        self._by_sequence = sorted(batches.values(), key=lambda batch: batch.sequence)
        self._sequences = [batch.sequence for batch in self._by_sequence]

    def of(self, batch_id: str) -> list[str]:
        if batch_id not in self._cache:
            self._cache[batch_id] = self._services.touched_services(self._batches[batch_id].files)
        return self._cache[batch_id]

    def newer_overlapping(
        self, batch_id: str, limit: int | None = None
    ) -> list[tuple[str, list[str]]]:
        """Return the newer batches whose rollback must come first, newest first.

        Overlap is transitive: a batch that touches what an overlapping batch touched must be
        rolled back too, or that rollback would undo it silently. With ``limit``, the search
        stops once it has found that many, and returns the oldest of them.
        """
        target = self._batches[batch_id]
        at_risk = set(self.of(batch_id))
        found: list[tuple[str, list[str]]] = []
        start = bisect.bisect_right(self._sequences, target.sequence)
        for batch in self._by_sequence[start:]:
            touched = self.of(batch.id)
            shared = sorted(at_risk.intersection(touched))
            if shared:
                found.append((batch.id, shared))
                at_risk.update(touched)
                if limit is not None and len(found) >= limit:
                    break
        return list(reversed(found))


def newer_overlapping(
    batch_id: str, batches: Mapping[str, Batch], services: ServiceMap
) -> list[tuple[str, list[str]]]:
    """Return the newer batches that overlap batch_id, newest first."""
    return TouchedServices(batches, services).newer_overlapping(batch_id)


def build_plan(
    request: PlanRequest,
    batches: Mapping[str, Batch],
    services: ServiceMap,
    repo: str,
    touched: TouchedServices | None = None,
) -> Plan:
    """Build the plan for one batch, refusing one that would undo newer batches unasked."""
    if request.batch not in batches:
        known = ", ".join(sorted(batches)) or "none"
        raise PlanError(f"batch {request.batch} is not registered (known batches: {known})")

    touched = touched or TouchedServices(batches, services)
    # A DAG shape needs to know only whether the cascade exceeds the cap, not how far.
    limit = MAX_CASCADE_BATCHES + 1 if request.shape_only else None
    overlaps = touched.newer_overlapping(request.batch, limit)
    if overlaps and not request.cascade:
        raise OverlapError(request.batch, overlaps)
    if len(overlaps) > MAX_CASCADE_BATCHES:
        if not request.shape_only:
            newer = ", ".join(batch_id for batch_id, _ in overlaps)
            raise PlanError(
                f"rolling back batch {request.batch} would cascade through {len(overlaps)} "
                f"newer batches ({newer}), more than the {MAX_CASCADE_BATCHES} a plan may "
                f"take; roll back the newest of them first, then plan again"
            )
        # The DAG keeps only the batch's own phase, so its size stays bounded; a run then
        # refuses the cascade with the newer batches named.
        overlaps = []

    order = [batch_id for batch_id, _ in overlaps] + [request.batch]
    phases: list[Phase] = []
    skipped: list[tuple[str, str]] = []
    for batch_id in order:
        phase, phase_skipped = _build_phase(
            batches[batch_id],
            touched.of(batch_id),
            services,
            request,
            own=batch_id == request.batch,
            previous=phases,
        )
        skipped.extend(item for item in phase_skipped if item not in skipped)
        if phase.services:
            phases.append(phase)

    if not phases or phases[-1].batch != request.batch:
        raise PlanError(
            f"batch {request.batch} touches no service deployed in environment "
            f"'{request.environment}': nothing to roll back (check 'paths' and 'environment' "
            f"in {services.source})"
        )

    return Plan(
        batch=request.batch,
        repo=repo,
        environment=request.environment or "any",
        profile=request.profile,
        author=request.author,
        created_at=request.created_at or _now(),
        reason=request.reason,
        dry_run=request.dry_run,
        cascade=len(phases) > 1,
        services_sha256=file_sha256(services.source) if not request.shape_only else "",
        phases=tuple(phases),
        skipped=tuple(skipped),
    )


def rebuild_matches(
    plan: Plan, digest: str, batches: Mapping[str, Batch], services: ServiceMap
) -> None:
    """Raise PlanError unless this deployment's configuration yields exactly this plan.

    A plan file carries its own digest, which anyone who can write the file can recompute.
    So what a plan runs (scripts, approvals, steps, order) is trusted only when the
    registry and services.yaml that execute it produce the same plan from its parameters.
    """
    request = PlanRequest(
        batch=plan.batch,
        profile=plan.profile,
        environment=plan.environment,
        author=plan.author,
        reason=plan.reason,
        dry_run=plan.dry_run,
        cascade=plan.cascade,
        created_at=plan.created_at,
    )
    try:
        rebuilt = build_plan(request, batches, services, plan.repo)
    except PlanError as error:
        raise PlanError(f"plan {digest[:12]} no longer applies: {error}") from None
    if plan_digest(rebuilt) != digest:
        raise PlanError(
            f"plan {digest[:12]} does not match what {services.source} and the batch registry "
            f"give for batch {plan.batch}: its scripts, approvals or steps differ. Make the "
            f"plan again with this deployment's configuration."
        )


def group_id_for(batch_id: str, service: str, own: bool) -> str:
    """Name a service's task group; services of cascaded batches carry their batch id."""
    return service if own else f"{batch_id}__{service}"


def _build_phase(
    batch: Batch,
    touched: list[str],
    services: ServiceMap,
    request: PlanRequest,
    *,
    own: bool,
    previous: list[Phase],
) -> tuple[Phase, list[tuple[str, str]]]:
    skipped = []
    deployed = []
    for name in touched:
        if _deployed_in(services, name, request.environment):
            deployed.append(name)
        else:
            skipped.append((name, f"not deployed in environment '{request.environment}'"))

    dependencies = {name: services.dependencies(name) for name in services.services}
    levels, waits = rollback_order(deployed, dependencies)
    level_offset = 1 + max(
        (step.level for phase in previous for step in phase.services), default=-1
    )
    previous_groups = tuple(step.group_id for step in previous[-1].services) if previous else ()

    steps = []
    for name in sorted(deployed, key=lambda service: (levels[service], service)):
        after = tuple(group_id_for(batch.id, other, own) for other in waits[name])
        steps.append(
            _service_step(
                batch,
                name,
                services,
                own=own,
                level=levels[name] + level_offset,
                after=after or previous_groups,
                hash_scripts=not request.shape_only,
            )
        )

    phase = Phase(
        batch=batch.id, from_ref=batch.from_ref, to_ref=batch.to_ref, services=tuple(steps)
    )
    return phase, skipped


def _deployed_in(services: ServiceMap, name: str, environment: str | None) -> bool:
    environments = services.services[name].environment
    return environment is None or not environments or environment in environments


def _service_step(
    batch: Batch,
    name: str,
    services: ServiceMap,
    *,
    own: bool,
    level: int,
    after: tuple[str, ...],
    hash_scripts: bool,
) -> ServiceStep:
    service = services.services[name]
    kinds: list[StepKind] = []
    if service.health_check is not None:
        kinds.append("health_before")
    if service.approvals:
        kinds.append("approval")
    kinds.append("authorize")
    if service.migrations is not None:
        kinds.append("verify_migrations")
    kinds.append("rollback")
    if service.health_check is not None:
        kinds.append("health_after")

    script = services.script_path(name)
    return ServiceStep(
        service=name,
        batch=batch.id,
        group_id=group_id_for(batch.id, name, own),
        level=level,
        after=after,
        steps=tuple(kinds),
        approvals=tuple(service.approvals),
        script=str(script),
        script_sha256=file_sha256(script) if hash_scripts else "",
        has_migrations=service.migrations is not None,
        migration_tool=service.migrations.tool if service.migrations else None,
    )


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()
