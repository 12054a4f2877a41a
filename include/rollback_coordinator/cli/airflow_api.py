"""A small client for the REST API of a running Airflow: token, trigger, list runs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import requests

from rollback_coordinator.core.errors import CoordinatorError

TIMEOUT_S = 30


class AirflowApiError(CoordinatorError):
    exit_code = 1


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
                f"Airflow API {method.upper()} {path} returned HTTP {response.status_code}: {detail}"
            )
        return response.json()

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> dict[str, Any]:
        token = self._token()
        return self._call(
            "post", f"/api/v2/dags/{dag_id}/dagRuns", token, json={"logical_date": None, "conf": conf}
        )

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        token = self._token()
        return self._call("get", f"/api/v2/dags/{dag_id}/dagRuns", token)["dag_runs"]

    def answer_approval(self, dag_id: str, run_id: str, task_id: str, approve: bool) -> dict[str, Any]:
        """Answer a waiting approval step as this API user, who Airflow records as the approver."""
        token = self._token()
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/-1/hitlDetails"
        option = "Approve" if approve else "Reject"
        return self._call("patch", path, token, json={"chosen_options": [option], "params_input": {}})
