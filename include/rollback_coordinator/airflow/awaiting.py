"""Waiting for people inside a task: Airflow's human-in-the-loop request and its response.

A step that needs an approval publishes a request for its own task instance and parks the
task in Airflow's AWAITING_INPUT state, which holds no worker slot. People respond in the
UI's required actions view or through the REST API, and Airflow records who responded from
their login, so the approver is an authenticated user, never a name typed into a form.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from airflow.sdk.exceptions import AirflowFailException, TaskAwaitingInput

from rollback_coordinator.airflow.steps import StepEnvironment
from rollback_coordinator.core.approvals import (
    Approval,
    ApprovalError,
    ApprovalStore,
    check_approval,
)

APPROVE = "Approve"
REJECT = "Reject"
RESUME_METHOD = "resume_with_response"


@dataclass(frozen=True)
class Response:
    user: str
    approved: bool
    timed_out: bool


def park_for_roles(
    env: StepEnvironment, context: Any, roles: list[str], why: str, timeout_s: float
) -> None:
    """Publish the approval request and park the task until someone responds to it."""
    from airflow.sdk.execution_time.hitl import upsert_hitl_detail

    ti = context["ti"]
    ApprovalStore(env.ctx.places.approvals_dir).request(
        env.plan.batch, env.digest, env.step.group_id, roles, why,
        run_id=env.ctx.run_id, task_id=ti.task_id, dag_id=ti.dag_id,
    )
    env.trail.notify(
        "approval_needed",
        f"{env.step.service} waits for approval by {', '.join(roles)} on plan {env.digest[:12]}",
        service=env.step.service,
    )
    # Publishing again clears a response that was already used, so the next approver can respond.
    upsert_hitl_detail(
        ti_id=ti.id,
        options=[APPROVE, REJECT],
        subject=f"Approve the rollback of {env.step.service} (batch {env.plan.batch})",
        body=_request_body(env, roles, why),
        defaults=None,
        multiple=False,
        params={},
    )
    raise TaskAwaitingInput(method_name=RESUME_METHOD, timeout=timedelta(seconds=timeout_s))


def response_from_event(event: dict[str, Any]) -> Response:
    user = event.get("responded_by_user") or {}
    name = user.get("name") if isinstance(user, dict) else getattr(user, "name", None)
    return Response(
        user=str(name or ""),
        approved=APPROVE in (event.get("chosen_options") or []),
        timed_out=bool(event.get("timedout")) or "error" in event,
    )


def record_response(
    env: StepEnvironment, task_id: str, response: Response, roles: list[str], log: Any
) -> bool:
    """Record a response given in Airflow as an approval; return False when it does not count.

    Only a holder of one of the awaited roles can approve or reject. A rejection by such a
    holder fails the step.
    """
    if response.timed_out:
        env.record(task_id, "approval", "failed", timed_out=True, roles=roles)
        raise AirflowFailException(
            f"batch {env.step.batch}: no approval of {env.step.service} by "
            f"{', '.join(roles)} before the timeout; nothing was executed for it"
        )

    governance = env.ctx.governance
    role = next((name for name in roles if governance.holds_role(response.user, name)), None)
    if role is None:
        log.warning(
            "batch %s, service %s: response by %s ignored: they hold none of the roles %s",
            env.step.batch, env.step.service, response.user or "(unknown)", ", ".join(roles),
        )
        return False
    if not response.approved:
        env.record(task_id, "approval", "failed", rejected_by=response.user, role=role)
        raise AirflowFailException(
            f"batch {env.step.batch}: rollback of {env.step.service} rejected by "
            f"{response.user} ({role}) in Airflow; nothing was executed for it"
        )

    approval = Approval.now(
        batch=env.plan.batch, service=env.step.service, role=role, user=response.user,
        plan_sha256=env.digest, via="airflow",
    )
    escalation = [name for name in roles if name not in env.step.approvals]
    try:
        check_approval(approval, env.plan, env.step.group_id, governance, env.ctx.runner, escalation)
    except ApprovalError as error:
        log.warning("batch %s: approval by %s rejected: %s", env.step.batch, response.user, error)
        return False
    ApprovalStore(env.ctx.places.approvals_dir).record(approval, env.step.group_id)
    log.info(
        "batch %s, service %s approved by %s as %s in Airflow",
        env.step.batch, env.step.service, response.user, role,
    )
    return True


def _request_body(env: StepEnvironment, roles: list[str], why: str) -> str:
    return (
        f"Plan `{env.digest[:12]}` by {env.plan.author} rolls **{env.step.service}** of batch "
        f"{env.plan.batch} back from `{env.phase.from_ref[:12]}` to "
        f"`{(env.phase.to_ref or 'root')[:12]}` in {env.plan.environment} "
        f"({env.plan.profile} profile), because: {why}.\n\n"
        f"Waiting for: {', '.join(roles)}. Responses by anyone else are ignored."
    )
