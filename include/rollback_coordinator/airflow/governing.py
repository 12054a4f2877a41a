"""Ask the governor from inside a task, and turn its decision into what happens to the run."""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import Connection
from airflow.sdk.exceptions import AirflowFailException

from rollback_coordinator.airflow.runtime import RunContext, utc_now
from rollback_coordinator.core.decisions import (
    Artifact,
    Authorize,
    Decision,
    Deny,
    Escalate,
    GovernorRequest,
    RequestClarification,
    TerminateRun,
    decision_id,
    describe,
)
from rollback_coordinator.core.errors import CoordinatorError
from rollback_coordinator.core.governor import governor_for, plan_request
from rollback_coordinator.core.remote_governor import GovernorEndpoint, endpoint_from_connection
from rollback_coordinator.core.plan import Plan


def build_request(
    ctx: RunContext,
    plan: Plan,
    digest: str,
    *,
    action: str,
    service: str | None,
    approvers: list[str],
    repo_ref: str,
    extra_artifacts: list[Artifact] | None = None,
    freeze_acknowledged: bool = False,
) -> GovernorRequest:
    """Build the request for a step of this run, with the runner Airflow recorded."""
    return plan_request(
        plan, digest,
        action=action,
        service=service,
        runner=ctx.runner,
        approvers=approvers,
        repo_ref=repo_ref,
        extra_artifacts=extra_artifacts,
        freeze_acknowledged=freeze_acknowledged,
    )


def ask(ctx: RunContext, request: GovernorRequest, log: logging.Logger) -> Decision:
    """Return the governor's decision; any failure to get one is a DENY (fail closed)."""
    try:
        decision = governor_for(ctx.governance, _remote_endpoint(ctx, log)).decide(request)
    except CoordinatorError as error:
        decision = _no_answer(request, str(error))
    except Exception as error:  # noqa: BLE001 - any governor fault must deny, never crash open
        log.exception("governor failed on request %s", request.request_id)
        decision = _no_answer(request, f"{type(error).__name__}: {error}")

    scope = request.scope
    log.info(
        "governor decision for %s on batch %s%s (%s): %s",
        request.action,
        scope.batch,
        f", service {scope.service}" if scope.service else "",
        scope.environment,
        describe(decision),
    )
    return decision


def _remote_endpoint(ctx: RunContext, log: logging.Logger) -> GovernorEndpoint | None:
    """Resolve the remote governor from its Airflow connection; None makes the step deny."""
    governance = ctx.governance
    if governance.governor != "remote":
        return None
    conn_id = governance.remote.connection_id
    try:
        conn = Connection.get(conn_id)
        return endpoint_from_connection(conn.conn_type, conn.host, conn.schema, conn.port, conn.password)
    except Exception as error:  # noqa: BLE001 - no endpoint means DENY, never an open door
        log.error("remote governor connection '%s' unusable: %s", conn_id, type(error).__name__)
        return None


def decision_record(request: GovernorRequest, decision: Decision) -> dict[str, Any]:
    return {
        "request": request.model_dump(mode="json"),
        "decision": decision.model_dump(mode="json"),
        "decided_at": utc_now(),
    }


def enforce(ctx: RunContext, decision: Decision, request: GovernorRequest) -> Authorize | Escalate:
    """Fail the step for every decision but AUTHORIZE and ESCALATE, which the caller handles."""
    where = f"{request.action} on batch {request.scope.batch}"
    if request.scope.service:
        where += f", service {request.scope.service}"

    if isinstance(decision, (Authorize, Escalate)):
        return decision
    if isinstance(decision, Deny):
        raise AirflowFailException(
            f"governor denied {where}: {decision.reason} (rule {decision.violated_rule}, "
            f"decision {decision.decision_id}); nothing was executed"
        )
    if isinstance(decision, RequestClarification):
        raise AirflowFailException(
            f"governor needs '{decision.missing_artifact}' before it can decide {where} "
            f"(decision {decision.decision_id}); nothing was executed"
        )
    if isinstance(decision, TerminateRun):
        ctx.terminate({"decision": decision.model_dump(mode="json"), "at": utc_now()})
        raise AirflowFailException(
            f"governor terminated the run at {where}: {decision.reason} "
            f"(decision {decision.decision_id}); no further step will run"
        )
    raise AirflowFailException(f"governor returned an unknown decision for {where}")


def _no_answer(request: GovernorRequest, why: str) -> Deny:
    rule = "governor.unavailable"
    return Deny(
        decision="DENY",
        decision_id=decision_id(request, "DENY", rule),
        rule=rule,
        action=request.action,
        reason=f"no valid decision from the governor: {why}",
        violated_rule=rule,
    )
