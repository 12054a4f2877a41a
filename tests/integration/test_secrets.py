"""Secrets in the worker's environment stay out of scripts, task logs and audit files.

A connection password that a run uses (the remote governor's token) is covered in
test_remote_governor_runs.py.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.airflow

WORKER_SECRET = "worker-secret-5f2d9c"


def test_worker_secret_reaches_no_log(deployment):
    printer = deployment.config_dir / "scripts" / "print_env.sh"
    printer.write_text("#!/bin/sh\nenv\necho \"end $ROLLBACK_SERVICE\" >> \"$ROLLBACK_DATA_DIR/order.log\"\n")
    printer.chmod(0o755)
    services = deployment.config_dir / "services.yaml"
    services.write_text(services.read_text().replace(
        "depends_on: [db]\n    rollback_script: scripts/record.sh",
        "depends_on: [db]\n    rollback_script: scripts/print_env.sh",
    ))
    governance = deployment.config_dir / "governance.yaml"
    governance.write_text(governance.read_text().replace(
        "staging: {minimum_profile: flow}", "staging: {minimum_profile: balanced}"
    ))
    deployment.env["DEPLOY_TOKEN"] = WORKER_SECRET
    deployment.plan("REL-1", "--profile", "balanced")

    result = deployment.cli("execute", str(deployment.plan_file("REL-1")), actor="bob")

    assert "api" in deployment.script_runs()
    assert "ROLLBACK_SERVICE=api" in result.stderr
    assert WORKER_SECRET not in result.stdout + result.stderr
    for path in deployment.data_dir.rglob("*"):
        if path.is_file():
            assert WORKER_SECRET.encode() not in path.read_bytes(), path
