"""Governors: the single authority on whether an action may run. They never execute anything."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from rollback_coordinator.core.decisions import (
    Actors,
    Artifact,
    Authorize,
    Decision,
    Deny,
    Escalate,
    GovernorRequest,
    RepoContext,
    RequestClarification,
    Scope,
    decision_id,
)
from rollback_coordinator.core.freeze import ActiveFreeze, active_freezes
from rollback_coordinator.core.governance import PROFILE_RANK, PROFILES, AuthorityRule, Governance
from rollback_coordinator.core.plan import Plan

if TYPE_CHECKING:
    from rollback_coordinator.core.remote_governor import GovernorEndpoint

# A function that returns the current timezone-aware time. Tests pass one with a fixed time.
Clock = Callable[[], datetime]

_SHA256 = re.compile(r"[0-9a-f]{64}")


class Governor(Protocol):
    def decide(self, request: GovernorRequest) -> Decision: ...


def utc_now() -> datetime:
    return datetime.now(UTC)


def plan_request(
    plan: Plan,
    digest: str,
    *,
    action: str,
    service: str | None,
    runner: str,
    approvers: list[str],
    repo_ref: str,
    extra_artifacts: list[Artifact] | None = None,
    freeze_acknowledged: bool = False,
) -> GovernorRequest:
    """Build the governor request for one action of a plan, run by ``runner``."""
    subject = f"service {service} of batch {plan.batch}" if service else f"batch {plan.batch}"
    return GovernorRequest(
        intent=f"roll back {subject}" + (f": {plan.reason}" if plan.reason else ""),
        action=action,
        scope=Scope(batch=plan.batch, service=service, environment=plan.environment),
        artifacts=[
            Artifact(kind="plan", ref=f"plans/{plan.batch}/{digest}.json", sha256=digest),
            *(extra_artifacts or []),
        ],
        repo=RepoContext(url=plan.repo, ref=repo_ref),
        freeze_acknowledged=freeze_acknowledged,
        profile=plan.profile,
        actors=Actors(planner=plan.author, runner=runner, approvers=sorted(set(approvers))),
    )


class EmbeddedGovernor:
    """A local policy engine reading governance.yaml.

    Rules apply in priority order and the first that decides wins: freeze windows, missing
    input, the authority matrix, the environment's minimum profile, separation of duties,
    then policy artifacts (digests, approvals). A request that passes them all is
    authorized, and the AUTHORIZE cites every freeze window that approvers overrode.
    """

    def __init__(self, governance: Governance, now: Clock | None = None) -> None:
        self.governance = governance
        self.now = now or utc_now

    def decide(self, request: GovernorRequest) -> Decision:
        instant = self.now()
        if instant.tzinfo is None:
            raise ValueError(
                "the governor's clock returned a naive datetime; pass a clock that returns "
                "timezone-aware times, such as utc_now"
            )
        freezes = active_freezes(
            self.governance.freeze_windows, request.scope.environment, instant
        )
        blocked = self._freeze(request, freezes)
        if blocked is not None:
            return blocked
        for rule in (
            self._missing_input,
            self._authority,
            self._minimum_profile,
            self._separation,
            self._artifacts,
        ):
            decision = rule(request)
            if decision is not None:
                return decision
        overrides = [self._override_record(request, freeze) for freeze in freezes]
        constraints = {"freeze_override": overrides} if overrides else {}
        return self._authorize(request, "default.authorize", constraints)

    def _freeze(self, request: GovernorRequest, freezes: list[ActiveFreeze]) -> Decision | None:
        """Stop a request inside a freeze unless an approver holds each window's override role.

        A window without an override role cannot be broken, so it denies. A window whose
        role no approver holds escalates to that role, so the run can wait for one.
        """
        for freeze in freezes:
            window = freeze.window
            rule = f"freeze.{window.name}"
            role = window.override_role
            if role is None:
                return self._deny(
                    request,
                    rule,
                    f"{freeze.describe()} in environment '{request.scope.environment}' and "
                    f"names no override_role, so nothing may run before it ends",
                )
            if not self._overriders(request, role):
                return Escalate(
                    decision="ESCALATE",
                    decision_id=decision_id(request, "ESCALATE", rule),
                    rule=rule,
                    human_review_required=role,
                )
        return None

    def _overriders(self, request: GovernorRequest, role: str) -> list[str]:
        approvers = sorted(set(request.actors.approvers))
        return [user for user in approvers if self.governance.holds_role(user, role)]

    def _override_record(self, request: GovernorRequest, freeze: ActiveFreeze) -> dict[str, Any]:
        role = freeze.window.override_role
        assert role is not None
        return {
            "window": freeze.window.name,
            "role": role,
            "by": self._overriders(request, role),
            "until": freeze.window.local(freeze.occurrence.end).isoformat(),
            "acknowledged": request.freeze_acknowledged,
        }

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

    def _authority(self, request: GovernorRequest) -> Decision | None:
        """Deny unless each matching rule has a runner or approver who holds one of its roles."""
        environment = request.scope.environment
        for rule in self.governance.authority_rules(request.action, environment):
            candidates = _authority_candidates(request, rule)
            if any(self._holds_any(user, rule.roles) for user in candidates):
                continue
            who = " or ".join(
                "the runner" if kind == "runner" else "an approver" for kind in rule.held_by
            )
            return self._deny(
                request,
                f"authority.{request.action}",
                f"{request.action} in environment '{environment}' needs {who} holding one "
                f"of the roles {', '.join(rule.roles)}, and {_none_of(candidates)}",
            )
        return None

    def _holds_any(self, user: str, roles: list[str]) -> bool:
        return any(self.governance.holds_role(user, role) for role in roles)

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
            return self._deny(
                request, "repository.profile_known", f"unknown profile '{request.profile}'"
            )
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
        for artifact in request.artifacts:
            if not _SHA256.fullmatch(artifact.sha256):
                return self._deny(
                    request,
                    "artifacts.digest",
                    f"the {artifact.kind} artifact '{artifact.ref}' has sha256 "
                    f"'{artifact.sha256[:80]}', which is not 64 lowercase hex digits",
                )
        profile = PROFILES[request.profile]
        if request.action == "rollback.plan" or profile.min_approvers == 0:
            return None
        distinct = set(request.actors.approvers)
        if len(distinct) >= profile.min_approvers:
            return None
        rule = "artifacts.approvals"
        role = self.governance.review_role
        if role is not None:
            # Waiting for another reviewer is the remedy, so the step waits instead of failing.
            return Escalate(
                decision="ESCALATE",
                decision_id=decision_id(request, "ESCALATE", rule),
                rule=rule,
                human_review_required=role,
            )
        return self._deny(
            request,
            rule,
            f"the {profile.name} profile needs {profile.min_approvers} distinct approvers, "
            f"found {len(distinct)}; set review_role in governance.yaml to let the step wait "
            f"for reviewers",
        )

    def _authorize(
        self, request: GovernorRequest, rule: str, constraints: dict[str, Any]
    ) -> Authorize:
        return Authorize(
            decision="AUTHORIZE",
            decision_id=decision_id(request, "AUTHORIZE", rule),
            rule=rule,
            action=request.action,
            scope=request.scope.model_dump(exclude_none=True),
            constraints=constraints,
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


def _authority_candidates(request: GovernorRequest, rule: AuthorityRule) -> list[str]:
    """Return the people a rule counts, the runner first, then approvers in name order."""
    candidates: list[str] = []
    if "runner" in rule.held_by and request.actors.runner is not None:
        candidates.append(request.actors.runner)
    if "approvers" in rule.held_by:
        candidates.extend(sorted(set(request.actors.approvers) - set(candidates)))
    return candidates


def _none_of(users: list[str]) -> str:
    if not users:
        return "there is nobody to hold one"
    if len(users) == 1:
        return f"'{users[0]}' does not"
    return "none of " + ", ".join(f"'{user}'" for user in users) + " does"


def governor_for(
    governance: Governance,
    endpoint: GovernorEndpoint | None = None,
    *,
    now: Clock | None = None,
) -> Governor:
    """Return the governor governance.yaml selects.

    ``endpoint`` is the address and token of the remote governor, which the caller resolves
    from the Airflow connection named in ``remote.connection_id``. ``now`` is the embedded
    governor's clock. Raise GovernorEndpointError when governance.yaml selects the remote
    governor and no endpoint is given, so the caller fails closed.
    """
    if governance.governor == "embedded":
        return EmbeddedGovernor(governance, now)
    # Imported here so the embedded default never needs an HTTP client.
    from rollback_coordinator.core.remote_governor import (
        RemoteGovernorClient,
        missing_endpoint_error,
    )

    if endpoint is None:
        raise missing_endpoint_error(governance.remote.connection_id)
    return RemoteGovernorClient.from_settings(governance.remote, endpoint)
