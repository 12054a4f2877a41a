"""A small client for the REST API of a running Airflow: token, trigger, list runs."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests

from rollback_coordinator.cli.output import EXIT_AIRFLOW_API
from rollback_coordinator.core.errors import CoordinatorError

TIMEOUT_S = 30
# How long to wait for a step to park, and how old its request must be before responding.
PARK_WAIT_S = 60
SETTLE_S = 15
TRIGGER_ATTEMPTS = 3


class AirflowApiError(CoordinatorError):
    exit_code = EXIT_AIRFLOW_API

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class AirflowApi:
    base_url: str
    username: str
    password: str

    @classmethod
    def from_environment(cls) -> "AirflowApi":
        url = os.environ.get("ROLLBACK_AIRFLOW_URL", "").rstrip("/")
        username = os.environ.get("ROLLBACK_AIRFLOW_USERNAME", "")
        password = os.environ.get("ROLLBACK_AIRFLOW_PASSWORD", "")
        if not username or not password:
            raise AirflowApiError(
                "ROLLBACK_AIRFLOW_URL is set but ROLLBACK_AIRFLOW_USERNAME or "
                "ROLLBACK_AIRFLOW_PASSWORD is not: set both to the Airflow user to act as"
            )
        return cls(url, username, password)

    def _token(self) -> str:
        response = self._call(
            "post", "/auth/token", json={"username": self.username, "password": self.password}
        )
        return response["access_token"]

    def _call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        url = f"{self.base_url}{path}"
        try:
            response = requests.request(method, url, headers=headers, timeout=TIMEOUT_S, **kwargs)
        except requests.RequestException as error:
            raise AirflowApiError(f"Airflow API at {self.base_url} unreachable: {error}") from None
        if response.status_code >= 400:
            detail = response.text[:300].replace("\n", " ")
            raise AirflowApiError(
                f"Airflow API {method.upper()} {path} returned HTTP {response.status_code}: {detail}",
                status=response.status_code,
            )
        return response.json()

    def trigger(self, dag_id: str, conf: dict[str, Any], run_id: str) -> dict[str, Any]:
        """Start a run under ``run_id``, retrying a server error without starting it twice.

        The run id is chosen here, so a retry after a failed response either creates the run
        or finds it already created (HTTP 409).
        """
        token = self._token()
        path = f"/api/v2/dags/{dag_id}/dagRuns"
        body = {"dag_run_id": run_id, "logical_date": None, "conf": conf}
        attempt = 1
        while True:
            try:
                return self._call("post", path, token, json=body)
            except AirflowApiError as error:
                if attempt > 1 and error.status == 409:
                    return self._call("get", f"{path}/{run_id}", token)
                retryable = error.status is None or error.status >= 500
                if not retryable or attempt == TRIGGER_ATTEMPTS:
                    raise
            # A metadata database on SQLite returns HTTP 500 while it is locked, so wait and retry.
            time.sleep(2 * attempt)
            attempt += 1

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        token = self._token()
        return self._call("get", f"/api/v2/dags/{dag_id}/dagRuns", token)["dag_runs"]

    def respond_to_approval(
        self, dag_id: str, run_id: str, task_id: str, approve: bool, requested_at: str
    ) -> dict[str, Any]:
        """Respond to a waiting approval step as this API user, whom Airflow records as approver."""
        token = self._token()
        self._wait_until_parked(token, dag_id, run_id, task_id, requested_at)
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/-1/hitlDetails"
        option = "Approve" if approve else "Reject"
        return self._call("patch", path, token, json={"chosen_options": [option], "params_input": {}})

    def _wait_until_parked(
        self, token: str, dag_id: str, run_id: str, task_id: str, requested_at: str
    ) -> None:
        # NOTE: Airflow 3.3.2 fails a task whose response arrives in the second after it parks,
        # before the scheduler has processed the executor's event for the parked attempt
        # ("finished with state success, but the task instance's state attribute is queued").
        # The executor event came 6 s after parking in our tests, so respond only once the task is
        # parked and its request is SETTLE_S old.
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
        deadline = time.monotonic() + PARK_WAIT_S
        while True:
            state = self._call("get", path, token).get("state")
            age = time.time() - datetime.fromisoformat(requested_at).timestamp()
            if state == "awaiting_input" and age >= SETTLE_S:
                return
            if time.monotonic() > deadline:
                raise AirflowApiError(
                    f"task {task_id} of run {run_id} is {state}, not waiting for an approval"
                )
            time.sleep(1)
