"""`status`: the runs of a batch, each step's outcome and each governor decision."""

from __future__ import annotations

import argparse
from typing import Any

from rollback_coordinator.cli.output import EXIT_OK, Printer
from rollback_coordinator.core.approvals import PLAN_GROUP, ApprovalStore
from rollback_coordinator.core.batch_id import validate_batch_id
from rollback_coordinator.core.run_records import RunRecords, list_runs
from rollback_coordinator.core.settings import locations


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "status",
        help="show the runs of a batch",
        description=(
            "Show each rollback run of a batch recorded in ROLLBACK_DATA_DIR: every step with "
            "its outcome, every governor decision, and approvals still awaited."
        ),
    )
    parser.add_argument("batch", help="batch id, for example REL-42")
    return parser


def run(args: argparse.Namespace, printer: Printer) -> int:
    batch_id = validate_batch_id(args.batch)
    places = locations()
    runs = []
    lines = []
    for folder in list_runs(places.runs_dir, batch_id):
        steps = RunRecords(places.runs_dir, batch_id, folder.name).steps()
        runs.append({"run": folder.name, "steps": steps})
        lines.append(f"run {folder.name}")
        lines.extend(f"  {_step_line(step)}" for step in steps)

    waiting = [
        request
        for request in ApprovalStore(places.approvals_dir).requests(batch_id)
        if isinstance(request.get("roles"), list) and request.get("group_id")
    ]
    for request in waiting:
        group = str(request["group_id"])
        if group == PLAN_GROUP:
            group = f"the whole plan (--service {PLAN_GROUP})"
        lines.append(
            f"waiting for approval: {group} by {', '.join(map(str, request['roles']))}"
            f" for plan {str(request.get('plan_sha256', '?'))[:12]} "
            f"(run {request.get('run_id', '?')}, since {request.get('requested_at', '?')})"
        )
    if not runs:
        lines.insert(0, f"batch {batch_id}: no runs recorded in {places.runs_dir}")
    printer.result({"batch": batch_id, "runs": runs, "approval_requests": waiting}, lines)
    return EXIT_OK


def _step_line(step: dict[str, Any]) -> str:
    line = f"{step.get('task_id', '?'):<32} {step.get('outcome', '?'):<10}"
    decision = step.get("decision")
    if decision:
        line += f" {decision['decision']} {decision['decision_id']} ({decision.get('rule', '')})"
    health = step.get("health")
    if health:
        line += f" {'healthy' if health['healthy'] else 'unhealthy'}: {health['detail']}"
    return line
