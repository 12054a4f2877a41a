"""Waiting for people inside a task: Airflow's human-in-the-loop request and its response.

A step that needs an approval publishes a request for its own task instance and parks the
task in Airflow's AWAITING_INPUT state, which holds no worker slot. People respond in the
UI's required actions view or through the REST API, and Airflow records who responded from
their login, so the approver is an authenticated user, never a name typed into a form.

Service steps wait for approvals of their own service; the plan step waits for approvals of
the whole plan, stored under the reserved group PLAN_GROUP.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from airflow.sdk.exceptions import AirflowFailException, TaskAwaitingInput

from rollback_coordinator.airflow.runtime import RunContext
from rollback_coordinator.airflow.trail import RunTrail
from rollback_coordinator.core.approvals import (
    Approval,
    ApprovalError,
    ApprovalStore,
    check_approval,
)
from rollback_coordinator.core.decisions import Escalate
from rollback_coordinator.core.plan import Plan

APPROVE = "Approve"
REJECT = "Reject"
RESUME_METHOD = "resume_with_response"


@dataclass(frozen=True)
class Response:
    user: str
    approved: bool
    timed_out: bool


@dataclass(frozen=True)
class Awaited:
    """Approvals of one group of one plan that a parked task waits for.

    ``subject`` names the group for people ("service api", "the whole plan"), ``own_roles``
    are the roles the group needs in any case (a service's approvals), ``change`` describes
    what approving lets happen, and ``record`` writes the step's record.
    """

    ctx: RunContext
    plan: Plan
    digest: str
    group_id: str
    subject: str
    service: str | None
    own_roles: tuple[str, ...]
    change: str
    record: Callable[..., None]

    def store(self) -> ApprovalStore:
        return ApprovalStore(self.ctx.places.approvals_dir)


def park_for_roles(
    awaited: Awaited, context: Any, roles: list[str], reason: str, timeout_s: float
) -> None:
    """Publish the approval request and park the task until someone responds to it."""
    from airflow.sdk.execution_time.hitl import upsert_hitl_detail

    ti = context["ti"]
    plan = awaited.plan
    awaited.store().request(
        plan.batch, awaited.digest, awaited.group_id, roles, reason,
        run_id=awaited.ctx.run_id, task_id=ti.task_id, dag_id=ti.dag_id,
    )
    RunTrail(awaited.ctx, plan.profile).notify(
        "approval_needed",
        f"{awaited.subject} waits for approval by {', '.join(roles)} on plan {awaited.digest[:12]}",
        service=awaited.service,
    )
    # Publishing again clears a response that was already used, so the next approver can respond.
    upsert_hitl_detail(
        ti_id=ti.id,
        options=[APPROVE, REJECT],
        subject=f"Approve the rollback of {awaited.subject} (batch {plan.batch})",
        body=_request_body(awaited, roles, reason),
        defaults=None,
        multiple=False,
        params={},
    )
    raise TaskAwaitingInput(method_name=RESUME_METHOD, timeout=timedelta(seconds=timeout_s))


def escalation_reason(decision: Escalate) -> str:
    """Say why a step waits after an ESCALATE, citing the rule when the governor named one."""
    rule = f" under rule {decision.rule}" if decision.rule else ""
    return f"governor decision {decision.decision_id} escalated it{rule}"


def response_from_event(event: dict[str, Any]) -> Response:
    user = event.get("responded_by_user") or {}
    name = user.get("name") if isinstance(user, dict) else getattr(user, "name", None)
    return Response(
        user=str(name or ""),
        approved=APPROVE in (event.get("chosen_options") or []),
        timed_out=bool(event.get("timedout")) or "error" in event,
    )


def record_response(
    awaited: Awaited, task_id: str, response: Response, roles: list[str], log: Any
) -> bool:
    """Record a response given in Airflow as an approval; return False when it does not count.

    Only a holder of one of the awaited roles can approve or reject. A rejection by such a
    holder fails the step.
    """
    plan = awaited.plan
    if response.timed_out:
        awaited.record(task_id, "approval", "failed", timed_out=True, roles=roles)
        raise AirflowFailException(
            f"batch {plan.batch}: no approval of {awaited.subject} by {', '.join(roles)} "
            f"before the timeout; nothing was executed for it"
        )

    governance = awaited.ctx.governance
    role = next((name for name in roles if governance.holds_role(response.user, name)), None)
    if role is None:
        log.warning(
            "batch %s, %s: response by %s ignored: they hold none of the roles %s",
            plan.batch, awaited.subject, response.user or "(unknown)", ", ".join(roles),
        )
        return False
    if not response.approved:
        awaited.record(task_id, "approval", "failed", rejected_by=response.user, role=role)
        raise AirflowFailException(
            f"batch {plan.batch}: rollback of {awaited.subject} rejected by "
            f"{response.user} ({role}) in Airflow; nothing was executed for it"
        )

    approval = Approval.now(
        batch=plan.batch, service=awaited.group_id, role=role, user=response.user,
        plan_sha256=awaited.digest, via="airflow",
    )
    escalation = [name for name in roles if name not in awaited.own_roles]
    try:
        check_approval(
            approval, plan, awaited.group_id, governance, awaited.ctx.runner, escalation
        )
    except ApprovalError as error:
        log.warning("batch %s: approval by %s rejected: %s", plan.batch, response.user, error)
        return False
    awaited.store().record(approval, awaited.group_id)
    log.info(
        "batch %s, %s approved by %s as %s in Airflow",
        plan.batch, awaited.subject, response.user, role,
    )
    return True


def _request_body(awaited: Awaited, roles: list[str], reason: str) -> str:
    plan = awaited.plan
    return (
        f"Plan `{awaited.digest[:12]}` by {plan.author} {awaited.change} in "
        f"{plan.environment} ({plan.profile} profile), because: {reason}.\n\n"
        f"Waiting for: {', '.join(roles)}. Responses by anyone else are ignored."
    )
