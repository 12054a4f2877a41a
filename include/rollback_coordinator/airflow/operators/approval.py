"""Steps that need people: role approvals, and the governor's authorization of a service."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from rollback_coordinator.airflow import governing
from rollback_coordinator.airflow.awaiting import (
    escalation_reason,
    park_for_roles,
    record_response,
    response_from_event,
)
from rollback_coordinator.airflow.runtime import RollbackTask
from rollback_coordinator.airflow.steps import StepEnvironment, load_step
from rollback_coordinator.core.approvals import Approval, ApprovalStore, satisfied_roles
from rollback_coordinator.core.decisions import Escalate


class _PeopleStepOperator(BaseOperator, RollbackTask):
    template_fields: Sequence[str] = ()

    def approvals(self, env: StepEnvironment, escalation: list[str] | None = None):
        store = ApprovalStore(env.ctx.places.approvals_dir)
        records = store.list(env.plan.batch, env.digest, self.group_id)
        return satisfied_roles(
            records, env.plan, self.group_id, env.ctx.governance, env.ctx.runner, escalation
        )


class RoleApprovalOperator(_PeopleStepOperator):
    """Wait until every role the service needs has approved this plan's digest.

    Approvals recorded beforehand with `rollback-coordinator approve` count at once; otherwise
    the task waits for a response in Airflow's required actions view or REST API.
    """

    ui_color = "#f3e5f5"

    def execute(self, context: Any) -> dict[str, list[str]]:
        env = load_step(context, self.batch_id, self.group_id)
        roles = list(env.step.approvals)
        if env.plan.dry_run:
            self.log.info(
                "batch %s, service %s: dry run, approvals by %s not awaited",
                env.step.batch, env.step.service, ", ".join(roles),
            )
            env.record(self.task_id, "approval", "dry run", roles=roles)
            return {"approvers": []}
        return self._finish_or_park(env, context)

    def resume_with_response(self, context: Any, event: dict[str, Any]) -> dict[str, list[str]]:
        env = load_step(context, self.batch_id, self.group_id)
        _, missing = self.approvals(env)
        record_response(env.awaited(), self.task_id, response_from_event(event), missing, self.log)
        return self._finish_or_park(env, context)

    def _finish_or_park(self, env: StepEnvironment, context: Any) -> dict[str, list[str]]:
        valid, missing = self.approvals(env)
        if missing:
            self.log.info(
                "batch %s, service %s waits for approval by %s on plan %s: respond in Airflow's "
                "required actions, or run: rollback-coordinator approve %s --service %s --role %s",
                env.step.batch, env.step.service, ", ".join(missing), env.digest[:12],
                env.plan.batch, self.group_id, missing[0],
            )
            park_for_roles(
                env.awaited(), context, missing, "the service needs these approvals",
                env.ctx.governance.approvals.timeout_s,
            )
        _log_approvals(self.log, env, valid)
        ApprovalStore(env.ctx.places.approvals_dir).clear_request(
            env.plan.batch, env.digest, self.group_id
        )
        env.record(self.task_id, "approval", "succeeded", approvals=[vars(item) for item in valid])
        return {"approvers": sorted({item.user for item in valid})}


class AuthorizeServiceOperator(_PeopleStepOperator):
    """Ask the governor to authorize a service's rollback; on ESCALATE, wait for the named role."""

    ui_color = "#e8f5e9"

    def execute(self, context: Any) -> dict[str, Any]:
        return self._decide(load_step(context, self.batch_id, self.group_id), context)

    def resume_with_response(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        env = load_step(context, self.batch_id, self.group_id)
        store = ApprovalStore(env.ctx.places.approvals_dir)
        awaited = store.requested_roles(env.plan.batch, env.digest, self.group_id)
        record_response(env.awaited(), self.task_id, response_from_event(event), awaited, self.log)
        return self._decide(env, context)

    def _decide(self, env: StepEnvironment, context: Any) -> dict[str, Any]:
        store = ApprovalStore(env.ctx.places.approvals_dir)
        escalation = [
            role
            for role in store.requested_roles(env.plan.batch, env.digest, self.group_id)
            if role not in env.step.approvals
        ]
        valid, _ = self.approvals(env, escalation)
        request = governing.build_request(
            env.ctx, env.plan, env.digest,
            action="rollback.service",
            service=env.step.service,
            approvers=env.approvers(approval.user for approval in valid),
            repo_ref=env.phase.from_ref,
            freeze_acknowledged=env.freeze_acknowledged,
        )
        decision = governing.ask(env.ctx, request, self.log)
        details = governing.decision_record(request, decision)
        try:
            outcome = governing.enforce(env.ctx, decision, request)
        except Exception:
            env.record(self.task_id, "authorize", "failed", **details)
            raise

        if isinstance(outcome, Escalate):
            # The governor authorizes once the review it wants is present, so an ESCALATE
            # always means one more approval by that role is needed.
            role = outcome.human_review_required
            env.record(self.task_id, "authorize", "waiting", **details)
            self.log.info(
                "batch %s, service %s: governor escalated to role %s (decision %s, rule %s); "
                "waiting for an approval by that role",
                env.step.batch, env.step.service, role, decision.decision_id, decision.rule,
            )
            park_for_roles(
                env.awaited(), context, [role], escalation_reason(outcome),
                env.ctx.governance.approvals.timeout_s,
            )
        store.clear_request(env.plan.batch, env.digest, self.group_id)
        env.record(self.task_id, "authorize", "succeeded", **details)
        return {"decision_id": decision.decision_id, "constraints": dict(outcome.constraints)}


def _log_approvals(log: Any, env: StepEnvironment, approvals: list[Approval]) -> None:
    for approval in approvals:
        log.info(
            "batch %s, service %s approved by %s as %s at %s (via %s)",
            env.step.batch, env.step.service, approval.user, approval.role,
            approval.approved_at, approval.via,
        )
