"""Tasks of the git watcher DAG: scan git, wait for a batch's DAG, start its run, record it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from airflow.sdk import BaseOperator, BaseSensorOperator
from airflow.sdk.api.client import ServerResponseError
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowRuntimeError,
    DagRunTriggerException,
)

from rollback_coordinator.core.batches import BatchConventions
from rollback_coordinator.core.errors import ConfigError, CoordinatorError
from rollback_coordinator.core.registry import BatchRegistry
from rollback_coordinator.core.services import load_services
from rollback_coordinator.core.settings import Locations, locations
from rollback_coordinator.core.watch import start_instruction, watch_once
from rollback_coordinator.core.watch_config import (
    WatchConfig,
    fetch_source,
    load_watch_config,
    scanned_repository,
    watch_file,
)

_NOT_FOUND = 404


class ScanGitOperator(BaseOperator):
    """Run one watcher pass and return what starts each pending rollback run.

    Reads watch.yaml and services.yaml when it runs, so the pass always uses the current
    files. Each returned item contains ``dag_id``, ``run_id``, ``conf`` and ``key``, for the
    mapped task group that starts the runs. A fetch that fails raises AirflowException,
    which Airflow retries; an invalid configuration fails without retry.
    """

    template_fields: Sequence[str] = ()
    ui_color = "#e3f2fd"

    def execute(self, context: Any) -> list[dict[str, Any]]:
        places = locations()
        config = _watch_config(places)
        try:
            services = load_services(places.services_file)
        except ConfigError as error:
            raise AirflowFailException(str(error)) from None
        repository = scanned_repository(config, places)
        try:
            with _git_remote(config, places) as (remote, git_env):
                report = watch_once(
                    repository,
                    BatchRegistry(places.registry_file),
                    BatchConventions(),
                    fetch=config.fetches,
                    remote=remote,
                    retention=config.retention,
                    rev=config.rev,
                    services=services,
                    start_runs=config.start_runs,
                    git_env=git_env,
                )
        except CoordinatorError as error:
            raise AirflowException(str(error)) from None

        for level, message in report.log_records():
            self.log.log(level, "%s", message)
        return [start_instruction(request) for request in report.pending_requests]


class RollbackDagSensor(BaseSensorOperator):
    """Wait until the rollback DAG ``target_dag_id`` exists in Airflow and is not paused.

    A batch registered by this run's scan gets its DAG only after the dag-processor parses
    the factory file again. Use reschedule mode, so that waiting occupies no worker slot.
    Asks the Task SDK (``ti.get_dag``), because tasks cannot use the metadata database.
    """

    template_fields: Sequence[str] = ("target_dag_id",)
    ui_color = "#fff8e1"

    def __init__(self, *, target_dag_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target_dag_id = target_dag_id

    def poke(self, context: Any) -> bool:
        try:
            dag = context["ti"].get_dag(self.target_dag_id)
        except (AirflowRuntimeError, ServerResponseError) as error:
            if _status_code(error) != _NOT_FOUND:
                raise
            self.log.info(
                "DAG %s does not exist yet; waiting for the dag-processor", self.target_dag_id
            )
            return False
        if dag.is_paused:
            self.log.warning(
                "DAG %s is paused; its rollback run starts once someone unpauses it",
                self.target_dag_id,
            )
            return False
        return True


class TriggerRollbackRunOperator(BaseOperator):
    """Start one rollback run under a fixed run id, or skip when a run with that id exists.

    Raises the Task SDK's DagRunTriggerException, the mechanism behind the standard
    provider's TriggerDagRunOperator, without waiting for the run to end. That operator is
    not used here because DAG serialization (Airflow 3.3) records the DAG it triggers at
    parse time, and in a mapped task group that id is only known when the task runs.
    """

    template_fields: Sequence[str] = ("target_dag_id", "trigger_run_id", "run_conf")
    ui_color = "#ffefeb"

    def __init__(
        self, *, target_dag_id: str, trigger_run_id: str, run_conf: dict[str, str], **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.target_dag_id = target_dag_id
        self.trigger_run_id = trigger_run_id
        self.run_conf = run_conf

    def execute(self, context: Any) -> None:
        reason = str(self.run_conf.get("reason", ""))
        self.log.info(
            "starting run %s of %s: %s", self.trigger_run_id, self.target_dag_id, reason
        )
        raise DagRunTriggerException(
            trigger_dag_id=self.target_dag_id,
            dag_run_id=self.trigger_run_id,
            conf=dict(self.run_conf),
            logical_date=None,
            reset_dag_run=False,
            skip_when_already_exists=True,
            wait_for_completion=False,
            allowed_states=[],
            failed_states=[],
            poke_interval=60,
            deferrable=False,
            note=f"started by {context['dag'].dag_id}: {reason}",
        )


def _status_code(error: AirflowRuntimeError | ServerResponseError) -> int | None:
    """Return the HTTP status of a failed Task SDK request.

    A worker's task receives AirflowRuntimeError with the status in its detail. Under
    ``dag.test()`` the in-process supervisor lets the API client's ServerResponseError through.
    """
    if isinstance(error, ServerResponseError):
        return error.response.status_code
    detail = getattr(error.error, "detail", None) or {}
    return detail.get("status_code")


def record_started(key: str) -> str:
    """Record the rollback request ``key`` as started, so no later pass starts it again."""
    first = BatchRegistry(locations().registry_file).record_request(key)
    return f"recorded {key} as started" if first else f"{key} was already recorded as started"


def _watch_config(places: Locations) -> WatchConfig:
    try:
        config = load_watch_config(watch_file(places))
    except ConfigError as error:
        raise AirflowFailException(str(error)) from None
    if config is None:
        raise AirflowFailException(
            f"{watch_file(places)}: file not found, so the git watcher has no configuration. "
            f"Restore the file; without it the git_watch DAG disappears at the next parse"
        )
    return config


@contextlib.contextmanager
def _git_remote(
    config: WatchConfig, places: Locations
) -> Iterator[tuple[str | None, dict[str, str]]]:
    """Yield the remote to fetch from and the environment git needs to authenticate.

    With ``connection_id``, Airflow's git provider reads the connection: a token reaches git
    through a credential helper, an SSH key through GIT_SSH_COMMAND. Neither appears in the
    URL or the logs.
    """
    if not config.fetches:
        yield None, {}
        return
    source = fetch_source(config, places)
    if config.connection_id is None:
        yield source, {}
        return
    from airflow.providers.git.hooks.git import GitHook

    hook = GitHook(git_conn_id=config.connection_id, repo_url=source)
    with hook.configure_hook_env():
        yield hook.repo_url, dict(hook.env)
