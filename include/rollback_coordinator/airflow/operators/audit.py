"""The last step of every run: write the audit record, then report the run's true outcome."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk.observability.stats import Stats

from rollback_coordinator.airflow.runtime import PLAN_TASK_ID, RollbackTask, run_context, utc_now
from rollback_coordinator.airflow.trail import RunTrail
from rollback_coordinator.core.audit import (
    AuditRepository,
    DecisionEntry,
    RunSummary,
    ServiceOutcome,
)
from rollback_coordinator.core.errors import CoordinatorError
from rollback_coordinator.core.metrics import RollbackMetrics
from rollback_coordinator.core.plan import Plan, plan_path, read_plan
from rollback_coordinator.core.run_records import safe_name

_FAILED_STATES = {"failed", "upstream_failed"}


class AuditRunOperator(BaseOperator, RollbackTask):
    """Record the run in the audit repository; runs whatever happened before it.

    Because it is the DAG's only leaf, Airflow would mark the run successful when it succeeds.
    So after recording, it fails when any step of the rollback failed, and the run shows failed.
    """

    template_fields: Sequence[str] = ()
    ui_color = "#eceff1"

    def execute(self, context: Any) -> dict[str, Any]:
        ctx = run_context(context, self.batch_id)
        dag_run = context["dag_run"]
        records = ctx.records.steps()
        failed_tasks = self._failed_tasks(context, records)
        plan, digest = self._plan(context, ctx)

        summary = self._summary(ctx, dag_run, plan, digest, records, failed_tasks)
        trail = RunTrail(ctx, plan.profile) if plan else None
        extra_files = self._seal_chain(trail) if trail else {}
        try:
            commit = AuditRepository(ctx.places.audit_repo).record_run(summary, extra_files)
        except CoordinatorError as error:
            raise AirflowFailException(f"audit record of run {ctx.run_id} not written: {error}")
        if trail:
            self._report(trail, summary, records, dag_run)
        self.log.info(
            "batch %s, run %s: %s; audit record committed as %s in %s",
            self.batch_id, ctx.run_id, summary.outcome, commit[:12], ctx.places.audit_repo,
        )
        for service in summary.services:
            self.log.info(
                "  %s: %s (health before: %s, after: %s)",
                service.service, service.outcome, service.health_before or "-",
                service.health_after or "-",
            )
        if failed_tasks:
            raise AirflowFailException(
                f"batch {self.batch_id}: rollback failed at {', '.join(sorted(failed_tasks))}; "
                f"see those tasks' logs and the audit record {commit[:12]}"
            )
        return {"outcome": summary.outcome, "audit_commit": commit}

    def _seal_chain(self, trail: RunTrail) -> dict[str, bytes]:
        """Close the run's hash chain and return the files that join the audit repository."""
        chain = trail.chain()
        if chain is None:
            return {}
        seal = chain.seal(batch=self.batch_id, run_id=trail.ctx.run_id)
        self.log.info(
            "batch %s: audit chain %s sealed after %s records, head %s",
            self.batch_id, chain.path, seal.get("count"), seal.get("head_hash"),
        )
        files = {
            f"records/{self.batch_id}/{safe_name(trail.ctx.run_id)}.jsonl": chain.path.read_bytes()
        }
        if trail.signer is not None:
            files[f"keys/{trail.signer.key_id}.pub.pem"] = trail.signer.public_key_pem()
        return files

    def _report(
        self, trail: RunTrail, summary: RunSummary, records: list[dict[str, Any]], dag_run: Any
    ) -> None:
        """Notify the channels of the outcome and send the run's metrics."""
        event = "rollback_failed" if summary.outcome == "failed" else "rollback_succeeded"
        detail = f"rollback of {self.batch_id} {summary.outcome}, run by {summary.runner}"
        for result in trail.notify(event, detail):
            self.log.info("notification %s to %s: %s", event, result.get("channel"),
                          "delivered" if result.get("delivered") else result.get("error"))

        metrics = RollbackMetrics(Stats, log=self.log)
        started = getattr(dag_run, "start_date", None)
        if started is not None:
            duration = datetime.now(timezone.utc) - started
            metrics.run_finished(profile=summary.profile, outcome=summary.outcome, duration=duration)
        for record in records:
            if "health" in record and record.get("step") in ("health_before", "health_after"):
                metrics.service_health(
                    service=record["service"],
                    phase=record["step"].removeprefix("health_"),
                    healthy=bool(record["health"]["healthy"]),
                )

    def _failed_tasks(self, context: Any, records: list[dict[str, Any]]) -> set[str]:
        failed = {record["task_id"] for record in records if record.get("outcome") == "failed"}
        ti = context["ti"]
        try:
            states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id])
        except Exception as error:  # noqa: BLE001 - fall back to the step records
            self.log.warning("task states unavailable (%s); judging from step records", error)
            return failed
        for task_id, state in (states.get(ti.run_id) or {}).items():
            if task_id != self.task_id and str(state) in _FAILED_STATES:
                failed.add(task_id)
        return failed

    def _plan(self, context: Any, ctx: Any) -> tuple[Plan | None, str]:
        authorized = context["ti"].xcom_pull(task_ids=PLAN_TASK_ID) or {}
        digest = authorized.get("sha256", "")
        if not digest:
            return None, ""
        try:
            plan, _ = read_plan(plan_path(ctx.places.plans_dir, self.batch_id, digest), digest)
        except CoordinatorError as error:
            self.log.error("plan %s unreadable for the audit: %s", digest, error)
            return None, digest
        return plan, digest

    def _summary(
        self,
        ctx: Any,
        dag_run: Any,
        plan: Plan | None,
        digest: str,
        records: list[dict[str, Any]],
        failed_tasks: set[str],
    ) -> RunSummary:
        by_group: dict[str, dict[str, dict[str, Any]]] = {}
        for record in records:
            if "group_id" in record:
                by_group.setdefault(record["group_id"], {})[record["step"]] = record

        services = []
        # People whose approvals a governor counted (whole-plan approvals, reviews asked for
        # by an ESCALATE), and those who gave a service's own approvals.
        approvers: set[str] = set()
        for record in records:
            actors = (record.get("request") or {}).get("actors") or {}
            approvers.update(str(user) for user in actors.get("approvers") or [])
        for step in plan.service_steps() if plan else []:
            steps = by_group.get(step.group_id, {})
            for approval in steps.get("approval", {}).get("approvals", []):
                approvers.add(approval["user"])
            services.append(
                ServiceOutcome(
                    service=step.service,
                    batch=step.batch,
                    outcome=_service_outcome(steps, step.group_id, failed_tasks),
                    health_before=_health_text(steps.get("health_before")),
                    health_after=_health_text(steps.get("health_after")),
                )
            )

        if failed_tasks:
            outcome = "failed"
        elif plan is not None and plan.dry_run:
            outcome = "dry run"
        else:
            outcome = "succeeded"
        first_phase = plan.phases[0] if plan else None
        last_phase = plan.phases[-1] if plan else None
        return RunSummary(
            batch=self.batch_id,
            run_id=ctx.run_id,
            dag_id=dag_run.dag_id,
            environment=plan.environment if plan else "-",
            profile=plan.profile if plan else "-",
            outcome=outcome,
            runner=ctx.runner,
            planner=plan.author if plan else "-",
            approvers=tuple(sorted(approvers)),
            reason=plan.reason if plan else "",
            plan_digest=digest,
            from_ref=first_phase.from_ref if first_phase else "",
            to_ref=last_phase.to_ref if last_phase else None,
            started_at=str(getattr(dag_run, "start_date", None) or utc_now()),
            ended_at=utc_now(),
            services=tuple(services),
            decisions=tuple(_decisions(records)),
        )


def _service_outcome(steps: dict[str, dict[str, Any]], group_id: str, failed: set[str]) -> str:
    if any(task_id.startswith(f"{group_id}.") for task_id in failed):
        return "failed"
    rollback = steps.get("rollback")
    if rollback is None:
        return "not run"
    return {"succeeded": "rolled back"}.get(rollback["outcome"], rollback["outcome"])


def _health_text(record: dict[str, Any] | None) -> str | None:
    if not record or "health" not in record:
        return None
    health = record["health"]
    state = "healthy" if health["healthy"] else "unhealthy"
    return f"{state} ({health['detail']})"


def _overrides_text(constraints: dict[str, Any]) -> str:
    """Describe the freeze windows an AUTHORIZE overrode, for the audit's decision lines."""
    overrides = constraints.get("freeze_override")
    if not isinstance(overrides, list):
        return ""
    parts = [
        f"freeze window {item.get('window')} overridden by "
        f"{', '.join(map(str, item.get('by') or [])) or 'nobody'} ({item.get('role')})"
        for item in overrides
        if isinstance(item, dict)
    ]
    return "; ".join(parts)


def _decisions(records: list[dict[str, Any]]) -> list[DecisionEntry]:
    entries = []
    for record in records:
        decision = record.get("decision")
        if not decision:
            continue
        detail = (
            decision.get("reason")
            or decision.get("missing_artifact")
            or _overrides_text(decision.get("constraints") or {})
        )
        entries.append(
            DecisionEntry(
                step=record["task_id"],
                decision=decision["decision"],
                decision_id=decision["decision_id"],
                rule=decision.get("rule", ""),
                detail=str(detail),
            )
        )
    return entries
