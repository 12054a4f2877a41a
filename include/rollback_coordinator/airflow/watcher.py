"""The git watcher DAG: scan git on a schedule and start the rollback runs requested there.

``git_watch`` exists only when watch.yaml does. Each run scans the repository once, then
starts one mapped task group per pending rollback request: wait for the batch's DAG, trigger
its run under the run id derived from the request, record the request as started.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import DAG, TriggerRule, get_parsing_context, task, task_group

from rollback_coordinator.airflow.operators.watch import (
    RollbackDagSensor,
    ScanGitOperator,
    TriggerRollbackRunOperator,
    record_started,
)
from rollback_coordinator.core.errors import CoordinatorError
from rollback_coordinator.core.settings import Locations, locations
from rollback_coordinator.core.watch_config import WatchConfig, load_watch_config, watch_file

WATCH_DAG_ID = "git_watch"
SCAN_TASK_ID = "scan"
START_GROUP_ID = "start_rollback"
# Fixed so that the DAG's identity never depends on when it was parsed.
START_DATE = datetime(2024, 1, 1, tzinfo=timezone.utc)

DOC = """\
Scans the watched git repository every {interval} minutes from the registry's watermark,
registers new deployment batches and starts the rollback runs requested in git by a tag
`rollback/<batch>` or a commit trailer `Rollback: <batch>`.

Each requested run waits until the batch's DAG exists, which takes one more parse of the
factory file for a batch found in the same scan, and is then triggered once. The run's
conf contains only the reason, because Airflow records who started it.
"""


def build_watch_dags(places: Locations | None = None) -> dict[str, DAG]:
    """Return ``{"git_watch": dag}``, or nothing when watch.yaml does not exist.

    An invalid watch.yaml raises ConfigError, which Airflow shows as one import error.
    """
    requested_dag_id = get_parsing_context().dag_id
    if requested_dag_id and requested_dag_id != WATCH_DAG_ID:
        return {}
    places = places or locations()
    try:
        config = load_watch_config(watch_file(places))
    except CoordinatorError as error:
        # Drop the validator's frames so the UI shows the one-line message.
        raise error.with_traceback(None) from None
    if config is None:
        return {}
    return {WATCH_DAG_ID: build_watch_dag(config)}


def build_watch_dag(config: WatchConfig) -> DAG:
    """Build the scheduled git watcher DAG for ``config``."""
    with DAG(
        dag_id=WATCH_DAG_ID,
        dag_display_name="Git watcher",
        description="Register deployment batches from git and start requested rollbacks",
        schedule=timedelta(minutes=config.interval_minutes),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        is_paused_upon_creation=False,
        tags=["rollback", "git"],
        doc_md=DOC.format(interval=config.interval_minutes),
        default_args={"owner": "release-engineering", "retries": 0},
    ) as dag:
        scan = ScanGitOperator(
            task_id=SCAN_TASK_ID,
            task_display_name="Scan git",
            retries=2,
            retry_delay=timedelta(minutes=1),
        )
        _start_rollback_group(config).expand_kwargs(scan.output)
    return dag


def _start_rollback_group(config: WatchConfig) -> Any:
    @task(task_display_name="Record as started", trigger_rule=TriggerRule.NONE_FAILED)
    def record(key: str) -> str:
        return record_started(key)

    @task_group(group_id=START_GROUP_ID, tooltip="Start one requested rollback run")
    def start_rollback(dag_id: str, run_id: str, conf: dict[str, str], key: str) -> None:
        wait = RollbackDagSensor(
            task_id="wait_for_dag",
            task_display_name="Wait for the batch DAG",
            target_dag_id=dag_id,
            mode="reschedule",
            poke_interval=config.dag_poke_interval_s,
            timeout=config.dag_wait_timeout_s,
        )
        # After a crash between triggering and recording, the run exists already: this
        # task is then skipped and the request still recorded, so no second run starts.
        trigger = TriggerRollbackRunOperator(
            task_id="trigger",
            task_display_name="Trigger the rollback run",
            target_dag_id=dag_id,
            trigger_run_id=run_id,
            run_conf=conf,
            retries=1,
        )
        wait >> trigger >> record(key)

    return start_rollback
