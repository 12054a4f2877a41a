"""Loading the current service step of a run, and recording what a step did."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from rollback_coordinator.airflow.awaiting import Awaited
from rollback_coordinator.airflow.runtime import RunContext, run_context, utc_now
from rollback_coordinator.airflow.trail import RunTrail
from rollback_coordinator.core.plan import Phase, Plan, ServiceStep


@dataclass
class StepEnvironment:
    """A service step as one task sees it: the run, its plan, and this service's entry in it."""

    ctx: RunContext
    plan: Plan
    digest: str
    step: ServiceStep
    phase: Phase
    started_at: str
    # Approvers of the whole plan, counted by the plan step; they approve every service too.
    plan_approvers: tuple[str, ...] = ()
    freeze_acknowledged: bool = False

    def approvers(self, own: Any) -> list[str]:
        """Return the people a governor request of this step names: own and whole-plan approvers."""
        return sorted({*own, *self.plan_approvers})

    @property
    def trail(self) -> RunTrail:
        return RunTrail(self.ctx, self.plan.profile)

    def awaited(self) -> Awaited:
        """Describe this service's step for a task that waits for approvals of it."""
        phase = self.phase
        return Awaited(
            ctx=self.ctx,
            plan=self.plan,
            digest=self.digest,
            group_id=self.step.group_id,
            subject=f"service {self.step.service}",
            service=self.step.service,
            own_roles=tuple(self.step.approvals),
            change=(
                f"rolls **{self.step.service}** of batch {self.plan.batch} back from "
                f"`{phase.from_ref[:12]}` to `{(phase.to_ref or 'root')[:12]}`"
            ),
            record=self.record,
        )

    def record(self, task_id: str, kind: str, outcome: str, **details: Any) -> None:
        """Write this step's record, which the audit step and `status` read back.

        A failed step also notifies the channels, and the profile decides whether the record
        joins the run's hash chain.
        """
        record = {
            "task_id": task_id,
            "batch": self.step.batch,
            "service": self.step.service,
            "group_id": self.step.group_id,
            "step": kind,
            "outcome": outcome,
            "started_at": self.started_at,
            "ended_at": utc_now(),
            "plan_sha256": self.digest,
            **details,
        }
        trail = self.trail
        if outcome == "failed":
            record["notifications"] = trail.notify(
                "step_failed", f"{task_id} failed", service=self.step.service
            )
        self.ctx.records.write_step(task_id, record)
        trail.append(record)


def load_step(context: Any, batch_id: str, group_id: str) -> StepEnvironment:
    """Return the step's view of the run, or stop the task if it must not run.

    A group the run's plan leaves out (not deployed in the run's environment, say) is skipped;
    a run the governor terminated fails every step that has not run yet.
    """
    started_at = utc_now()
    ctx = run_context(context, batch_id)
    terminated = ctx.terminated()
    if terminated:
        decision = terminated.get("decision", {})
        raise AirflowFailException(
            f"batch {batch_id}: run {ctx.run_id} was terminated by governor decision "
            f"{decision.get('decision_id', '?')} ({decision.get('reason', 'no reason given')}); "
            f"{group_id} not run"
        )

    authorization = ctx.authorization(context["ti"])
    plan, digest = ctx.plan(context["ti"], authorization)
    step = plan.find(group_id)
    if step is None:
        reasons = dict(plan.skipped)
        why = reasons.get(group_id, "not part of this run's plan")
        raise AirflowSkipException(f"batch {batch_id}: service {group_id} skipped: {why}")
    return StepEnvironment(
        ctx=ctx,
        plan=plan,
        digest=digest,
        step=step,
        phase=plan.phase_of(group_id),
        started_at=started_at,
        plan_approvers=tuple(authorization.get("approvers") or ()),
        freeze_acknowledged=bool(authorization.get("freeze_acknowledged")),
    )
