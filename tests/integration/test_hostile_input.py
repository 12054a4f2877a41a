"""Crafted batch ids, commit messages and form values execute nothing and stay inert text."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.airflow

HOSTILE_IDS = [
    "REL-1;touch pwned",
    "$(touch pwned)",
    "`touch pwned`",
    "{{ 7*7 }}",
    "REL-1\ntouch pwned",
    "../REL-1",
    "REL-1 && touch pwned",
]


@pytest.mark.parametrize("batch_id", HOSTILE_IDS)
def test_hostile_batch_id_rejected_by_cli(deployment, batch_id):
    out = deployment.root / "plan.json"

    result = deployment.cli("plan", batch_id, "--repo", str(deployment.repo), "--out", str(out), check=False)

    assert result.returncode == 3
    assert "invalid batch id" in result.stderr
    assert not out.exists()
    assert not list(deployment.root.rglob("pwned"))


def test_hostile_ids_in_commits_never_become_batches(deployment):
    deployment.commit("[$(touch pwned)-1] sneaky", {"services/api/VERSION": "9\n"})
    deployment.commit("x\n\nDeploy-Batch: {{ 7*7 }}-2", {"services/worker/VERSION": "9\n"})

    deployment.plan("REL-1", "--cascade")

    registry = json.loads((deployment.data_dir / "registry" / "batches.json").read_text())
    assert set(registry["batches"]) == {"REL-1"}
    assert not list(deployment.root.rglob("pwned"))


def test_hostile_subject_and_reason_run_as_inert_text(deployment):
    deployment.commit(
        "REL-2: $(touch pwned) `touch pwned` {{ 7777*1111 }}; touch pwned",
        {"services/worker/VERSION": "3\n"},
    )
    reason = "$(touch pwned) `touch pwned` {{ 7777*1111 }}; touch pwned\n| fake | row |"
    deployment.plan("REL-2", "--reason", reason)

    result = deployment.cli("execute", str(deployment.plan_file("REL-2")), "--json")

    assert json.loads(result.stdout)["state"] == "success"
    assert deployment.script_runs() == ["worker"]
    assert not list(deployment.root.rglob("pwned"))
    memory = next((deployment.data_dir / "audit" / "memory").glob("*.md")).read_text()
    # 7777*1111 rendered by Jinja would read 8640247.
    assert "7777" in memory
    assert "8640247" not in memory
    run_log = (deployment.data_dir / "audit" / "RUN_LOG.md").read_text()
    assert len([line for line in run_log.splitlines() if line.startswith("| 20")]) == 1
