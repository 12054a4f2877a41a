"""Builders shared by the integration tests: recording scripts, services.yaml, governance.yaml."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


RECORDING_SCRIPT = """\
#!/bin/sh
# Records when this service's rollback starts and ends, and what it was told.
set -eu
if [ "${1:-}" = "health" ]; then
    echo "health $ROLLBACK_SERVICE" >> "$ROLLBACK_DATA_DIR/order.log"
    exit 0
fi
echo "start $ROLLBACK_SERVICE" >> "$ROLLBACK_DATA_DIR/order.log"
env | grep '^ROLLBACK_' | sort > "$ROLLBACK_DATA_DIR/env-$ROLLBACK_SERVICE.txt"
sleep "${SLEEP_S:-0}"
echo "end $ROLLBACK_SERVICE $ROLLBACK_BATCH $ROLLBACK_TO_REF" >> "$ROLLBACK_DATA_DIR/order.log"
echo "rolled back $ROLLBACK_SERVICE to $ROLLBACK_TO_REF"
"""


def services_yaml(approvals: bool = False) -> str:
    api_approvals = "\n            approvals: [guardian]" if approvals else ""
    return textwrap.dedent(
        f"""\
        services:
          db:
            paths: ["db/**"]
            rollback_script: scripts/record.sh
          api:
            paths: ["services/api/**"]
            depends_on: [db]
            rollback_script: scripts/record.sh{api_approvals}
          worker:
            paths: ["services/worker/**"]
            depends_on: [api]
            rollback_script: scripts/record.sh
            health_check: {{command: ["scripts/record.sh", "health"]}}
          automations:
            paths: ["automations/**"]
            depends_on: [api]
            rollback_script: scripts/record.sh
            health_check: {{command: ["scripts/record.sh", "health"]}}
        """
    )


GOVERNANCE_YAML = """\
governor: embedded
default_environment: staging
environments:
  staging: {minimum_profile: flow}
  prod: {minimum_profile: balanced}
roles:
  guardian: [guardian, gina]
  reviewer: [gina, rita]
review_role: reviewer
approvals:
  timeout_s: 300
"""
