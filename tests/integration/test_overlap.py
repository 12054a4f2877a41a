"""A batch overlapped by a newer batch is refused, or rolled back after it when cascading."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.airflow


@pytest.fixture
def overlapped(deployment):
    """REL-1 touches all four services; the newer REL-2 touches the worker again."""
    deployment.rel1_to = deployment.commit("Unrelated docs change", {"docs.md": "x\n"})
    deployment.rel2_to = deployment.commit("REL-2: worker batching", {"services/worker/VERSION": "3\n"})
    return deployment


def test_plan_refused_naming_newer_batch(overlapped):
    result = overlapped.cli("plan", "REL-1", "--repo", str(overlapped.repo), "--out",
                            str(overlapped.plan_file("REL-1")), check=False)

    assert result.returncode == 4
    assert "REL-2 (touches worker)" in result.stderr
    assert "--cascade" in result.stderr
    assert not overlapped.plan_file("REL-1").exists()


def test_cascading_plan_rolls_newer_batch_back_first(overlapped):
    plan = overlapped.plan("REL-1", "--cascade")

    phases = plan["plan"]["phases"]
    assert plan["plan"]["cascade"] is True
    assert [phase["batch"] for phase in phases] == ["REL-2", "REL-1"]
    assert [service["group_id"] for service in phases[0]["services"]] == ["REL-2__worker"]


def test_cascading_run_executes_newer_batch_first(overlapped):
    plan = overlapped.plan("REL-1", "--cascade")

    result = overlapped.cli("execute", str(overlapped.plan_file("REL-1")), "--json")

    assert json.loads(result.stdout)["state"] == "success"
    ends = [line.split() for line in overlapped.order_log.read_text().splitlines() if line.startswith("end ")]
    assert ends[0][1:3] == ["worker", "REL-2"]
    assert ends[0][3] == plan["plan"]["phases"][0]["to_ref"]
    assert [end[2] for end in ends[1:]] == ["REL-1"] * 4
    assert [end[1] for end in ends[-2:]] == ["api", "db"]


def test_run_without_cascade_fails_before_any_script(overlapped):
    """A run started from the UI without the cascade parameter stops at the plan step."""
    overlapped.cli("plan", "REL-2", "--repo", str(overlapped.repo), "--out",
                   str(overlapped.plan_file("REL-2")))
    code = (
        "import sys; from airflow.dag_processing.dagbag import DagBag; "
        "dag = DagBag().dags['rollback_REL-1']; "
        "run = dag.test(run_conf={'reason': 'from the form'}); "
        "sys.exit(0 if str(run.state) == 'failed' else 1)"
    )
    result = subprocess.run([sys.executable, "-c", code], env=overlapped.env, capture_output=True, text=True)

    assert result.returncode == 0, result.stderr[-2000:]
    assert "overlapped by newer batches: REL-2" in result.stdout + result.stderr
    assert overlapped.script_runs() == []
