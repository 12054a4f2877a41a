"""The run context every task of a rollback works from: folders, configuration, plan, runner."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from rollback_coordinator.core.batch_id import batch_id_from_dag_id
from rollback_coordinator.core.consistency import check_services_against_governance
from rollback_coordinator.core.errors import CoordinatorError
from rollback_coordinator.core.governance import Governance, load_governance
from rollback_coordinator.core.plan import Plan, plan_path, read_plan
from rollback_coordinator.core.run_records import RunRecords
from rollback_coordinator.core.services import ServiceMap, load_services
from rollback_coordinator.core.settings import Locations, locations

PLAN_TASK_ID = "authorize_plan"
AUDIT_TASK_ID = "audit"
TERMINATED_RECORD = "run_terminated"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def runner_of(dag_run: Any) -> str:
    """Return who runs this rollback, as Airflow recorded it; never a value typed into a form."""
    user = getattr(dag_run, "triggering_user_name", None)
    if user:
        return str(user)
    return f"airflow:{getattr(dag_run, 'run_type', 'unknown')}"


@dataclass
class RunContext:
    """The view of one rollback run that a task works from."""

    batch_id: str
    run_id: str
    runner: str
    places: Locations = field(default_factory=locations)

    @cached_property
    def records(self) -> RunRecords:
        return RunRecords(self.places.runs_dir, self.batch_id, self.run_id)

    @cached_property
    def services(self) -> ServiceMap:
        return _fail_on_config_error(lambda: load_services(self.places.services_file))

    @cached_property
    def governance(self) -> Governance:
        governance = _fail_on_config_error(lambda: load_governance(self.places.governance_file))
        _fail_on_config_error(lambda: check_services_against_governance(self.services, governance))
        return governance

    def authorization(self, ti: Any) -> dict[str, Any]:
        """Return what the plan authorization step handed on: the plan digest and who approved it."""
        authorized = ti.xcom_pull(task_ids=PLAN_TASK_ID)
        if not isinstance(authorized, dict) or "sha256" not in authorized:
            raise AirflowFailException(
                f"batch {self.batch_id}: no authorized plan for run {self.run_id}; "
                f"the '{PLAN_TASK_ID}' step must succeed first"
            )
        return authorized

    def plan(self, ti: Any, authorization: dict[str, Any] | None = None) -> tuple[Plan, str]:
        """Load the plan that the plan authorization step approved for this run.

        ``authorization`` is what ``authorization(ti)`` returned, when the caller has it.
        """
        digest = (authorization or self.authorization(ti))["sha256"]
        path = plan_path(self.places.plans_dir, self.batch_id, digest)
        try:
            return read_plan(path, expected_sha256=digest)
        except CoordinatorError as error:
            raise AirflowFailException(str(error)) from None

    def terminated(self) -> dict[str, Any] | None:
        path = self.records.folder / f"{TERMINATED_RECORD}.json"
        if not path.exists():
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def terminate(self, reason: dict[str, Any]) -> None:
        self.records.folder.mkdir(parents=True, exist_ok=True)
        path = self.records.folder / f"{TERMINATED_RECORD}.json"
        path.write_text(json.dumps(reason, indent=2, sort_keys=True) + "\n", encoding="utf-8")


class RollbackTask:
    """Mixin of the coordinator's operators: the batch and the service group of a task.

    Both are read from the DAG id and the task id, not passed to the constructor. Airflow
    deep-copies the DAG's params once for every ``__init__`` in an operator's class chain,
    so these operators define none, and a DAG file with thousands of tasks copies them once
    per task, as for any plain operator.
    """

    dag_id: str
    task_id: str

    @property
    def batch_id(self) -> str:
        batch_id = batch_id_from_dag_id(self.dag_id, pattern=None)
        if batch_id is None:
            raise AirflowFailException(
                f"task {self.task_id} is in DAG {self.dag_id}, which is not a rollback DAG"
            )
        return batch_id

    @property
    def group_id(self) -> str:
        """Return the id of the task group of this service step ("" outside a group)."""
        return self.task_id.rpartition(".")[0]

    @property
    def step_name(self) -> str:
        """Return the task id within its group, such as health_before or rollback."""
        return self.task_id.rpartition(".")[2]


def run_context(context: Any, batch_id: str) -> RunContext:
    dag_run = context["dag_run"]
    return RunContext(batch_id=batch_id, run_id=dag_run.run_id, runner=runner_of(dag_run))


def _fail_on_config_error(load: Any) -> Any:
    try:
        return load()
    except CoordinatorError as error:
        raise AirflowFailException(str(error)) from None
