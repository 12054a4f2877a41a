"""The first step of every run: settle the plan, check it still fits, and have it authorized."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from rollback_coordinator.airflow import governing
from rollback_coordinator.airflow.awaiting import (
    Awaited,
    escalation_reason,
    park_for_roles,
    record_response,
    response_from_event,
)
from rollback_coordinator.airflow.runtime import RollbackTask, RunContext, run_context, utc_now
from rollback_coordinator.airflow.trail import RunTrail
from rollback_coordinator.core.approvals import (
    PLAN_GROUP,
    ApprovalStore,
    plan_approvals,
    plan_roles,
)
from rollback_coordinator.core.batches import Batch
from rollback_coordinator.core.decisions import Escalate
from rollback_coordinator.core.errors import CoordinatorError
from rollback_coordinator.core.plan import (
    Plan,
    file_sha256,
    plan_digest,
    plan_path,
    read_plan,
    write_plan,
)
from rollback_coordinator.core.planner import PlanRequest, build_plan, rebuild_matches
from rollback_coordinator.core.registry import BatchRegistry
from rollback_coordinator.core.render import plan_lines


class AuthorizePlanOperator(BaseOperator, RollbackTask):
    """Build or load the run's plan, check it against the DAG and the files, then authorize it.

    A run started with ``plan_sha256`` executes exactly that plan file, made earlier with
    ``rollback-coordinator plan``. Without it, a fresh plan is built from the trigger form, and
    the user who triggered the run is its author. When the governor escalates the whole plan,
    as it does inside a freeze window, the step waits for an approval of the plan by the role
    it names, then requests a decision again with that approver.
    """

    template_fields: Sequence[str] = ()
    ui_color = "#ede7f6"

    def execute(self, context: Any) -> dict[str, Any]:
        started_at = utc_now()
        ctx = run_context(context, self.batch_id)
        try:
            plan, digest = self._settle_plan(ctx, context["params"])
        except CoordinatorError as error:
            self._record(ctx, started_at, "failed", error=str(error))
            raise AirflowFailException(str(error)) from None

        for line in plan_lines(plan, digest):
            self.log.info("%s", line)
        self._check_fits(ctx, plan, digest, context["dag"].task_ids)
        return self._decide(ctx, plan, digest, context, started_at)

    def resume_with_response(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        started_at = utc_now()
        ctx = run_context(context, self.batch_id)
        plan, digest = self._awaited_plan(ctx)
        awaited = self._awaited(ctx, plan, digest, started_at)
        roles = awaited.store().requested_roles(plan.batch, digest, PLAN_GROUP)
        record_response(awaited, self.task_id, response_from_event(event), roles, self.log)
        # Files may have changed while the run waited.
        self._check_fits(ctx, plan, digest, context["dag"].task_ids)
        return self._decide(ctx, plan, digest, context, started_at)

    def _decide(
        self, ctx: RunContext, plan: Plan, digest: str, context: Any, started_at: str
    ) -> dict[str, Any]:
        store = ApprovalStore(ctx.places.approvals_dir)
        valid = plan_approvals(store, plan, digest, ctx.governance, ctx.runner)
        approvers = sorted({approval.user for approval in valid})
        override_roles = plan_roles(plan, ctx.governance)
        acknowledged = any(approval.role in override_roles for approval in valid)
        request = governing.build_request(
            ctx, plan, digest,
            action="rollback.plan",
            service=None,
            approvers=approvers,
            repo_ref=plan.phases[0].from_ref,
            freeze_acknowledged=acknowledged,
        )
        decision = governing.ask(ctx, request, self.log)
        details = {"plan_sha256": digest, **governing.decision_record(request, decision)}
        trail = RunTrail(ctx, plan.profile)
        try:
            outcome = governing.enforce(ctx, decision, request)
        except AirflowFailException:
            self._record(ctx, started_at, "failed", trail=trail, **details)
            raise
        if isinstance(outcome, Escalate):
            role = outcome.human_review_required
            self._record(ctx, started_at, "waiting", trail=trail, **details)
            self.log.info(
                "batch %s: governor escalated plan %s to role %s (decision %s, rule %s); "
                "waiting for an approval of the whole plan: respond in Airflow's required "
                "actions, or run: rollback-coordinator approve %s --service %s --role %s "
                "--plan %s",
                plan.batch, digest[:12], role, decision.decision_id, decision.rule or "not given",
                plan.batch, PLAN_GROUP, role, digest,
            )
            park_for_roles(
                self._awaited(ctx, plan, digest, started_at), context, [role],
                escalation_reason(outcome), ctx.governance.approvals.timeout_s,
            )
        store.clear_request(plan.batch, digest, PLAN_GROUP)
        for approval in valid:
            self.log.info(
                "batch %s: plan %s approved by %s as %s at %s (via %s)",
                plan.batch, digest[:12], approval.user, approval.role, approval.approved_at,
                approval.via,
            )
        trail.check_ready()
        details["notifications"] = trail.notify(
            "run_started", f"rollback of {plan.batch} started by {ctx.runner} with plan {digest[:12]}"
        )
        details["approvals"] = [vars(approval) for approval in valid]
        self._record(ctx, started_at, "succeeded", trail=trail, **details)
        return {
            "sha256": digest,
            "path": str(plan_path(ctx.places.plans_dir, plan.batch, digest)),
            "approvers": approvers,
            "freeze_acknowledged": acknowledged,
        }

    def _awaited(self, ctx: RunContext, plan: Plan, digest: str, started_at: str) -> Awaited:
        def record(task_id: str, kind: str, outcome: str, **details: Any) -> None:
            del task_id, kind  # always this task's approval of the plan
            trail = RunTrail(ctx, plan.profile)
            self._record(ctx, started_at, outcome, trail=trail, plan_sha256=digest, **details)

        services = ", ".join(step.service for step in plan.service_steps())
        return Awaited(
            ctx=ctx,
            plan=plan,
            digest=digest,
            group_id=PLAN_GROUP,
            subject="the whole plan",
            service=None,
            own_roles=(),
            change=f"rolls back batch {plan.batch} ({services})",
            record=record,
        )

    def _awaited_plan(self, ctx: RunContext) -> tuple[Plan, str]:
        """Load the plan this run parked on, from the approval request it published."""
        store = ApprovalStore(ctx.places.approvals_dir)
        for request in store.requests(self.batch_id):
            if request.get("group_id") == PLAN_GROUP and request.get("run_id") == ctx.run_id:
                digest = str(request.get("plan_sha256"))
                try:
                    return read_plan(
                        plan_path(ctx.places.plans_dir, self.batch_id, digest),
                        expected_sha256=digest,
                    )
                except CoordinatorError as error:
                    raise AirflowFailException(str(error)) from None
        raise AirflowFailException(
            f"batch {self.batch_id}: run {ctx.run_id} has no approval request for its plan, "
            f"so the response cannot be matched to a plan; nothing was executed"
        )

    def _settle_plan(self, ctx: RunContext, params: Any) -> tuple[Plan, str]:
        requested = str(params.get("plan_sha256") or "").strip()
        if requested:
            path = plan_path(ctx.places.plans_dir, self.batch_id, requested)
            plan, digest = read_plan(path, expected_sha256=requested)
            if plan.batch != self.batch_id:
                raise CoordinatorError(
                    f"plan {requested[:12]} is for batch {plan.batch}, not {self.batch_id}"
                )
            registry = BatchRegistry(ctx.places.registry_file).load()
            batches = {key: item.batch for key, item in registry.batches.items()}
            rebuild_matches(plan, digest, batches, ctx.services)
            self._warn_ignored_form_values(plan, params)
            self.log.info("executing plan %s made by %s at %s", digest, plan.author, plan.created_at)
            return plan, digest

        registry = BatchRegistry(ctx.places.registry_file).load()
        batches: dict[str, Batch] = {key: item.batch for key, item in registry.batches.items()}
        if self.batch_id not in registry.batches:
            raise CoordinatorError(f"batch {self.batch_id} is no longer in the registry")
        request = PlanRequest(
            batch=self.batch_id,
            profile=str(params.get("profile") or "flow"),
            environment=str(params.get("environment") or ctx.governance.default_environment),
            author=ctx.runner,
            reason=str(params.get("reason") or ""),
            dry_run=bool(params.get("dry_run")),
            cascade=bool(params.get("cascade")),
        )
        plan = build_plan(request, batches, ctx.services, registry.batches[self.batch_id].repo)
        digest = plan_digest(plan)
        write_plan(plan, plan_path(ctx.places.plans_dir, plan.batch, digest))
        self.log.info("built plan %s for batch %s, authored by %s", digest, plan.batch, plan.author)
        return plan, digest

    def _warn_ignored_form_values(self, plan: Plan, params: Any) -> None:
        """Say which form values the plan overrides, since a plan is executed exactly."""
        planned = {"profile": plan.profile, "environment": plan.environment,
                   "dry_run": plan.dry_run, "cascade": plan.cascade}
        for name, value in planned.items():
            given = params.get(name)
            if given is not None and given != value:
                self.log.warning(
                    "form value %s=%r ignored: plan %s was made with %s=%r",
                    name, given, plan.batch, name, value,
                )

    def _check_fits(self, ctx: RunContext, plan: Plan, digest: str, task_ids: Any) -> None:
        """Refuse a plan whose services the DAG lacks or whose scripts changed since planning."""
        known = set(task_ids)
        for step in plan.service_steps():
            missing = [kind for kind in step.steps if f"{step.group_id}.{kind}" not in known]
            if missing:
                raise AirflowFailException(
                    f"plan {digest[:12]} needs steps {', '.join(missing)} of {step.group_id}, "
                    f"which this DAG lacks: the registry or services.yaml changed since the "
                    f"plan was made; plan again"
                )
            if _file_sha256_or_none(step.script) != step.script_sha256:
                raise AirflowFailException(
                    f"rollback script {step.script} of {step.group_id} changed after plan "
                    f"{digest[:12]} was made; plan again"
                )

    def _record(
        self,
        ctx: RunContext,
        started_at: str,
        outcome: str,
        trail: RunTrail | None = None,
        **details: Any,
    ) -> None:
        record = {
            "task_id": self.task_id,
            "batch": self.batch_id,
            "step": "authorize_plan",
            "outcome": outcome,
            "runner": ctx.runner,
            "started_at": started_at,
            "ended_at": utc_now(),
            **details,
        }
        ctx.records.write_step(self.task_id, record)
        if trail is not None:
            trail.append(record)


def _file_sha256_or_none(path: str) -> str | None:
    try:
        return file_sha256(Path(path))
    except OSError:
        return None
