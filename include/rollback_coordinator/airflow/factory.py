"""Build one rollback DAG per registered batch from the registry, services.yaml and governance.yaml.

Parsing reads three files and nothing else: no git, no network. When Airflow parses the file
to run one task, only that task's DAG is built, so task start-up does not grow with the
number of batches.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from airflow.sdk import DAG, Param, TaskGroup, TriggerRule, chain, get_parsing_context

from rollback_coordinator.airflow.operators.approval import (
    AuthorizeServiceOperator,
    RoleApprovalOperator,
)
from rollback_coordinator.airflow.operators.audit import AuditRunOperator
from rollback_coordinator.airflow.operators.plan import AuthorizePlanOperator
from rollback_coordinator.airflow.operators.migrations import VerifyMigrationsOperator
from rollback_coordinator.airflow.operators.service import (
    HealthCheckOperator,
    RollbackScriptOperator,
)
from rollback_coordinator.airflow.runtime import AUDIT_TASK_ID, PLAN_TASK_ID
from rollback_coordinator.core.batch_id import dag_id_for
from rollback_coordinator.core.batches import Batch
from rollback_coordinator.core.consistency import check_services_against_governance
from rollback_coordinator.core.errors import CoordinatorError, PlanError
from rollback_coordinator.core.governance import PROFILES, Governance, load_governance
from rollback_coordinator.core.plan import Plan, ServiceStep
from rollback_coordinator.core.planner import TouchedServices, plan_shape
from rollback_coordinator.core.registry import BatchRegistry, active_batches
from rollback_coordinator.core.render import dag_doc
from rollback_coordinator.core.services import ServiceMap, load_services
from rollback_coordinator.core.settings import Locations, locations

log = logging.getLogger(__name__)

# Fixed so that a DAG's identity never depends on when it was parsed.
START_DATE = datetime(2024, 1, 1, tzinfo=timezone.utc)

STEP_NAMES = {
    "health_before": "Health before",
    "approval": "Approval",
    "authorize": "Governor authorization",
    "verify_migrations": "Verify migrations",
    "rollback": "Run rollback script",
    "health_after": "Health after",
}


def build_dags(places: Locations | None = None) -> dict[str, DAG]:
    """Return the rollback DAGs by DAG id; a bad config file raises ConfigError."""
    places = places or locations()
    try:
        services = load_services(places.services_file)
        governance = load_governance(places.governance_file)
        check_services_against_governance(services, governance)
        registry = BatchRegistry(places.registry_file).load()
    except CoordinatorError as error:
        # Airflow shows the last frames of an import error. Dropping the validator's frames
        # leaves this call and the one-line message that names the file and the field.
        raise error.with_traceback(None) from None
    batches: dict[str, Batch] = {key: item.batch for key, item in registry.batches.items()}

    wanted = get_parsing_context().dag_id
    touched = TouchedServices(batches, services)
    dags: dict[str, DAG] = {}
    # Retired batches keep their audit history but get no DAG; planning still sees all
    # batches, so a cascade through a retired batch keeps its task groups.
    for batch_id in sorted(active_batches(registry)):
        dag_id = dag_id_for(batch_id)
        if wanted and wanted != dag_id:
            continue
        try:
            shape = plan_shape(batch_id, batches, services, touched)
        except PlanError as error:
            log.info("no rollback DAG for batch %s: %s", batch_id, error)
            continue
        dags[dag_id] = build_rollback_dag(shape, batches, governance, services)
    return dags


def trigger_params(governance: Governance) -> dict[str, Param]:
    environment = governance.default_environment
    return {
        "profile": Param(
            governance.default_profile(environment),
            type="string",
            enum=list(PROFILES),
            title="Governance profile",
            description=(
                "flow: one person may plan and run. balanced: planner and runner must differ. "
                "strict: planner, approvers and runner all differ, two approvers, signed audit. "
                "A profile weaker than the environment's minimum is denied."
            ),
        ),
        "environment": Param(
            environment,
            type="string",
            enum=list(governance.environments),
            title="Environment",
            description="Where to roll back. Services not deployed there are skipped.",
        ),
        # Nullable, because the UI marks a plain string parameter as required.
        "reason": Param(
            None,
            type=["null", "string"],
            maxLength=500,
            title="Reason",
            description="Why this batch is rolled back. Goes into the plan and the audit trail.",
        ),
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description=(
                "Rehearse: health checks, migration checks and governor decisions run; rollback "
                "scripts run only where services.yaml sets supports_dry_run, with "
                "ROLLBACK_DRY_RUN=1."
            ),
        ),
        "cascade": Param(
            False,
            type="boolean",
            title="Cascade newer batches",
            description=(
                "Also roll back newer batches that touched the same services, newest first. "
                "Without it, a rollback that would undo newer batches is refused."
            ),
        ),
        "plan_sha256": Param(
            None,
            type=["null", "string"],
            pattern=r"^([0-9a-f]{64})?$",
            title="Plan digest",
            description=(
                "Run exactly the plan file with this SHA-256, made with 'rollback-coordinator "
                "plan'; the plan's own profile, environment, reason, dry run and cascade then "
                "apply. Leave empty to build a fresh plan authored by you."
            ),
        ),
    }


def build_rollback_dag(
    shape: Plan, batches: dict[str, Batch], governance: Governance, services: ServiceMap
) -> DAG:
    """Render a plan's shape as a DAG: plan authorization, one task group per service, audit."""
    batch_id = shape.batch
    with DAG(
        dag_id=dag_id_for(batch_id),
        dag_display_name=f"Rollback {batch_id}",
        description=f"Roll back deployment batch {batch_id} in reverse dependency order",
        schedule=None,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        is_paused_upon_creation=False,
        tags=["rollback"],
        doc_md=dag_doc(shape, batches),
        params=trigger_params(governance),
        default_args={"owner": "release-engineering", "retries": 0},
    ) as dag:
        plan_task = AuthorizePlanOperator(task_id=PLAN_TASK_ID, task_display_name="Authorize plan")
        audit_task = AuditRunOperator(
            task_id=AUDIT_TASK_ID, task_display_name="Audit", trigger_rule=TriggerRule.ALL_DONE
        )

        ends = {}
        for step in shape.service_steps():
            retries = services.services[step.service].retries
            first, last = _service_group(step, batch_id, retries)
            ends[step.group_id] = (first, last)

        # Each call hashes the DAG, task ids included, for the calling task and every task it
        # names, so one call per task with all its relatives hashes it least often.
        starts = []
        for step in shape.service_steps():
            first = ends[step.group_id][0]
            if step.after:
                first.set_upstream([ends[group_id][1] for group_id in step.after])
            else:
                starts.append(first)
        plan_task.set_downstream(starts)
        audit_task.set_upstream([plan_task, *(last for _, last in ends.values())])
    return dag


_OPERATORS = {
    "health_before": HealthCheckOperator,
    "approval": RoleApprovalOperator,
    "authorize": AuthorizeServiceOperator,
    "verify_migrations": VerifyMigrationsOperator,
    "rollback": RollbackScriptOperator,
    "health_after": HealthCheckOperator,
}


def _service_group(step: ServiceStep, batch_id: str, retries: int):
    """Add the task group of one service's steps; return its first and last task."""
    label = step.service if step.batch == batch_id else f"{step.service} (batch {step.batch})"
    with TaskGroup(step.group_id, tooltip=f"Roll back {label}"):
        tasks = []
        for kind in step.steps:
            name = STEP_NAMES[kind]
            if kind == "approval":
                name = f"Approval by {', '.join(step.approvals)}"
            options: dict[str, Any] = {"task_id": kind, "task_display_name": name}
            if not tasks:
                # A service the run's plan leaves out is skipped; the services after it must
                # still run.
                options["trigger_rule"] = TriggerRule.NONE_FAILED
            if kind == "rollback":
                options["retries"] = retries
            tasks.append(_OPERATORS[kind](**options))
        chain(*tasks)
    return tasks[0], tasks[-1]
