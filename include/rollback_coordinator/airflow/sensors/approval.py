"""Sensors that wait for people: role approvals, and the governor's authorization of a service."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowFailException

from rollback_coordinator.airflow import governing
from rollback_coordinator.airflow.steps import StepEnvironment, load_step
from rollback_coordinator.core.approvals import ApprovalStore, satisfied_roles
from rollback_coordinator.core.decisions import Escalate


class _ServiceSensor(BaseSensorOperator):
    template_fields: Sequence[str] = ()

    def __init__(self, *, batch_id: str, group_id: str, **kwargs: Any) -> None:
        kwargs.setdefault("mode", "reschedule")
        super().__init__(**kwargs)
        self.batch_id = batch_id
        self.group_id = group_id

    def approvals(self, env: StepEnvironment, escalation_roles: list[str] | None = None):
        store = ApprovalStore(env.ctx.places.approvals_dir)
        records = store.list(env.plan.batch, env.digest, self.group_id)
        return satisfied_roles(
            records, env.plan, self.group_id, env.ctx.governance, env.ctx.runner, escalation_roles
        )


class ApprovalSensor(_ServiceSensor):
    """Wait until every role the service needs has approved this plan's digest."""

    ui_color = "#f3e5f5"

    def poke(self, context: Any) -> PokeReturnValue:
        env = load_step(context, self.batch_id, self.group_id)
        roles = list(env.step.approvals)
        if env.plan.dry_run:
            self.log.info(
                "batch %s, service %s: dry run, approvals by %s not awaited",
                env.step.batch, env.step.service, ", ".join(roles),
            )
            env.record(self.task_id, "approval", "dry run", roles=roles)
            return PokeReturnValue(is_done=True, xcom_value={"approvers": []})

        valid, missing = self.approvals(env)
        if missing:
            store = ApprovalStore(env.ctx.places.approvals_dir)
            store.request(env.plan.batch, env.digest, self.group_id, roles, "service approvals")
            self.log.info(
                "batch %s, service %s waits for approval by %s on plan %s. Approve in the "
                "Airflow UI or run: rollback-coordinator approve %s --service %s --role %s",
                env.step.batch, env.step.service, ", ".join(missing), env.digest[:12],
                env.plan.batch, self.group_id, missing[0],
            )
            return PokeReturnValue(is_done=False)

        approvers = sorted({approval.user for approval in valid})
        for approval in valid:
            self.log.info(
                "batch %s, service %s approved by %s as %s at %s (via %s)",
                env.step.batch, env.step.service, approval.user, approval.role,
                approval.approved_at, approval.via,
            )
        env.record(
            self.task_id, "approval", "succeeded",
            approvals=[vars(approval) for approval in valid],
        )
        return PokeReturnValue(is_done=True, xcom_value={"approvers": approvers})


class AuthorizeServiceSensor(_ServiceSensor):
    """Ask the governor to authorize a service's rollback; wait on ESCALATE for the named role."""

    ui_color = "#e8f5e9"

    def poke(self, context: Any) -> PokeReturnValue:
        env = load_step(context, self.batch_id, self.group_id)
        store = ApprovalStore(env.ctx.places.approvals_dir)
        escalation_roles = [
            role
            for role in store.requested_roles(env.plan.batch, env.digest, self.group_id)
            if role not in env.step.approvals
        ]
        valid, _ = self.approvals(env, escalation_roles)
        approvers = sorted({approval.user for approval in valid})

        request = governing.build_request(
            env.ctx, env.plan, env.digest,
            action="rollback.service",
            service=env.step.service,
            approvers=approvers,
            repo_ref=env.phase.from_ref,
        )
        decision = governing.ask(env.ctx, request, self.log)
        details = governing.decision_record(request, decision)
        try:
            outcome = governing.enforce(env.ctx, decision, request)
        except AirflowFailException:
            env.record(self.task_id, "authorize", "failed", **details)
            raise

        if isinstance(outcome, Escalate):
            role = outcome.human_review_required
            reviewed = [approval for approval in valid if approval.role == role]
            if not reviewed:
                store.request(
                    env.plan.batch, env.digest, self.group_id,
                    [*env.step.approvals, role], f"governor escalation {outcome.decision_id}",
                )
                self.log.info(
                    "batch %s, service %s: governor escalated to role %s; waiting. Run: "
                    "rollback-coordinator approve %s --service %s --role %s",
                    env.step.batch, env.step.service, role, env.plan.batch, self.group_id, role,
                )
                return PokeReturnValue(is_done=False)
            details["escalation_reviewed_by"] = [approval.user for approval in reviewed]
            self.log.info(
                "batch %s, service %s: escalation %s reviewed by %s",
                env.step.batch, env.step.service, outcome.decision_id,
                ", ".join(details["escalation_reviewed_by"]),
            )
            constraints: dict[str, Any] = {}
        else:
            constraints = dict(outcome.constraints)

        env.record(self.task_id, "authorize", "succeeded", **details)
        return PokeReturnValue(
            is_done=True,
            xcom_value={"decision_id": decision.decision_id, "constraints": constraints},
        )
