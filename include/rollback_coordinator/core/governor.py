"""Governors: the single authority on whether an action may run. They never execute anything."""

from __future__ import annotations

from typing import Protocol

from rollback_coordinator.core.decisions import (
    Authorize,
    Decision,
    Deny,
    GovernorRequest,
    RequestClarification,
    decision_id,
)
from rollback_coordinator.core.governance import PROFILE_RANK, PROFILES, Governance


class Governor(Protocol):
    def decide(self, request: GovernorRequest) -> Decision: ...


class EmbeddedGovernor:
    """A local policy engine reading governance.yaml.

    Rules apply in priority order and the first that decides wins: missing input, the
    environment's minimum profile, separation of duties, policy artifacts. A request that
    passes them all is authorized.
    """

    def __init__(self, governance: Governance) -> None:
        self.governance = governance

    def decide(self, request: GovernorRequest) -> Decision:
        for rule in (
            self._missing_input,
            self._minimum_profile,
            self._separation,
            self._artifacts,
        ):
            decision = rule(request)
            if decision is not None:
                return decision
        return self._authorize(request, "default.authorize")

    def _missing_input(self, request: GovernorRequest) -> Decision | None:
        missing = None
        if request.artifact("plan") is None:
            missing = "plan"
        elif request.profile is None:
            missing = "profile"
        elif request.actors.runner is None:
            missing = "actors.runner"
        elif request.actors.planner is None:
            missing = "actors.planner"
        elif request.action != "rollback.plan" and request.scope.service is None:
            missing = "scope.service"
        elif request.action == "migration.rewind" and request.artifact("migration_state") is None:
            missing = "migration_state"
        if missing is None:
            return None
        rule = "input.complete"
        return RequestClarification(
            decision="REQUEST_CLARIFICATION",
            decision_id=decision_id(request, "REQUEST_CLARIFICATION", rule),
            rule=rule,
            missing_artifact=missing,
        )

    def _minimum_profile(self, request: GovernorRequest) -> Decision | None:
        environment = request.scope.environment
        if environment not in self.governance.environments:
            known = ", ".join(self.governance.environments)
            return self._deny(
                request,
                "repository.environment_known",
                f"environment '{environment}' is not declared in governance.yaml (known: {known})",
            )
        if request.profile not in PROFILE_RANK:
            return self._deny(request, "repository.profile_known", f"unknown profile '{request.profile}'")
        minimum = self.governance.minimum_profile(environment)
        if PROFILE_RANK[request.profile] < PROFILE_RANK[minimum]:
            return self._deny(
                request,
                "repository.minimum_profile",
                f"environment '{environment}' requires at least the {minimum} profile, "
                f"the run asked for {request.profile}",
            )
        return None

    def _separation(self, request: GovernorRequest) -> Decision | None:
        profile = PROFILES[request.profile]
        actors = request.actors
        if profile.separation == "none":
            return None
        if actors.planner == actors.runner:
            return self._deny(
                request,
                f"separation.{profile.separation}",
                f"the {profile.name} profile needs the planner and the runner to be different "
                f"people; '{actors.runner}' is both",
            )
        if profile.separation == "full_split":
            for approver in actors.approvers:
                if approver in (actors.planner, actors.runner):
                    return self._deny(
                        request,
                        "separation.full_split",
                        f"the strict profile needs approvers other than the planner and the "
                        f"runner; '{approver}' approved and also planned or runs",
                    )
        return None

    def _artifacts(self, request: GovernorRequest) -> Decision | None:
        profile = PROFILES[request.profile]
        if request.action == "rollback.plan" or profile.min_approvers == 0:
            return None
        distinct = set(request.actors.approvers)
        if len(distinct) < profile.min_approvers:
            return self._deny(
                request,
                "artifacts.approvals",
                f"the {profile.name} profile needs {profile.min_approvers} distinct approvers, "
                f"found {len(distinct)}",
            )
        return None

    def _authorize(self, request: GovernorRequest, rule: str) -> Authorize:
        return Authorize(
            decision="AUTHORIZE",
            decision_id=decision_id(request, "AUTHORIZE", rule),
            rule=rule,
            action=request.action,
            scope=request.scope.model_dump(exclude_none=True),
            constraints={},
        )

    def _deny(self, request: GovernorRequest, rule: str, reason: str) -> Deny:
        return Deny(
            decision="DENY",
            decision_id=decision_id(request, "DENY", rule),
            rule=rule,
            action=request.action,
            reason=reason,
            violated_rule=rule,
        )


def governor_for(governance: Governance) -> Governor:
    """Return the governor governance.yaml selects."""
    if governance.governor == "embedded":
        return EmbeddedGovernor(governance)
    # Imported here so the embedded default never needs an HTTP client.
    from rollback_coordinator.core.remote_governor import RemoteGovernorClient

    return RemoteGovernorClient.from_settings(governance.remote)
