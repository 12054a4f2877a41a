"""`approve`: record an approval by the person running the command, bound to a plan digest."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rollback_coordinator.cli.airflow_api import AirflowApi
from rollback_coordinator.cli.execute import AIRFLOW_URL_VARIABLE
from rollback_coordinator.cli.output import EXIT_OK, EXIT_REFUSED, Printer, current_actor
from rollback_coordinator.core.approvals import (
    PLAN_GROUP,
    Approval,
    ApprovalError,
    ApprovalStore,
    check_approval,
)
from rollback_coordinator.core.batch_id import validate_batch_id
from rollback_coordinator.core.errors import CoordinatorError
from rollback_coordinator.core.governance import load_governance
from rollback_coordinator.core.plan import plan_path, read_plan
from rollback_coordinator.core.settings import locations


class ApprovalRefused(CoordinatorError):
    exit_code = EXIT_REFUSED


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "approve",
        help="approve a service of a batch's plan in a role",
        description=(
            "Record your approval of one service of a batch's rollback, in one role, bound to "
            "the plan's digest. Without --plan, the plan of the run waiting for this approval "
            "is used, or the batch's only plan. With ROLLBACK_AIRFLOW_URL set, a run waiting "
            "in Airflow gets the response of ROLLBACK_AIRFLOW_USERNAME; otherwise you are "
            "identified by ROLLBACK_ACTOR or your login name."
        ),
    )
    parser.add_argument("batch", help="batch id, for example REL-42")
    parser.add_argument(
        "--service",
        required=True,
        help=f"service (task group) to approve, or {PLAN_GROUP} to approve the whole plan, "
        f"as a freeze window's override needs",
    )
    parser.add_argument("--role", required=True, help="role you approve in, from governance.yaml")
    parser.add_argument("--plan", metavar="SHA256", help="digest of the plan to approve")
    return parser


def run(args: argparse.Namespace, printer: Printer) -> int:
    batch_id = validate_batch_id(args.batch)
    places = locations()
    governance = load_governance(places.governance_file)
    store = ApprovalStore(places.approvals_dir)
    waiting = _waiting_request(store, batch_id, args.service, args.plan)
    digest = args.plan or (waiting or {}).get("plan_sha256") or _only_plan(places.plans_dir, batch_id)
    plan, digest = read_plan(plan_path(places.plans_dir, batch_id, digest), expected_sha256=digest)

    api = AirflowApi.from_environment() if os.environ.get(AIRFLOW_URL_VARIABLE) else None
    approval = Approval.now(
        batch=batch_id,
        service=args.service,
        role=args.role,
        user=api.username if api else current_actor(),
        plan_sha256=digest,
        via="cli",
    )
    escalation_roles = [
        role
        for role in store.requested_roles(batch_id, digest, args.service)
        if role not in (plan.find(args.service).approvals if plan.find(args.service) else ())
    ]
    try:
        check_approval(approval, plan, args.service, governance, None, escalation_roles)
    except ApprovalError as error:
        raise ApprovalRefused(f"approval rejected: {error}") from None

    if api and waiting and waiting.get("plan_sha256") == digest and waiting.get("task_id"):
        # The run is parked in Airflow: respond there, so Airflow records the approver.
        api.respond_to_approval(
            waiting["dag_id"], waiting["run_id"], waiting["task_id"], approve=True,
            requested_at=waiting["requested_at"],
        )
        printer.result(
            {"approval": vars(approval), "responded_to": waiting},
            [
                f"approved the waiting step of {_subject(args.service)} (batch {batch_id}, run "
                f"{waiting['run_id']}) as {api.username} in Airflow for plan {digest[:12]}",
            ],
        )
        return EXIT_OK

    path = store.record(approval, group_id=args.service)
    printer.result(
        {"approval": vars(approval), "record": str(path)},
        [
            f"approved {_subject(args.service)} of batch {batch_id} as {args.role} by "
            f"{approval.user} for plan {digest[:12]}",
        ],
    )
    return EXIT_OK


def _subject(group_id: str) -> str:
    return "the whole plan" if group_id == PLAN_GROUP else group_id


def _waiting_request(
    store: ApprovalStore, batch_id: str, group_id: str, digest: str | None
) -> dict | None:
    for request in store.requests(batch_id):
        if request.get("group_id") == group_id and digest in (None, request.get("plan_sha256")):
            return request
    return None


def _only_plan(plans_dir: Path, batch_id: str) -> str:
    """Return the digest of the batch's only plan; with several, the user must choose."""
    digests = sorted(path.stem for path in (plans_dir / batch_id).glob("*.json"))
    if len(digests) == 1:
        return digests[0]
    if not digests:
        raise ApprovalRefused(f"batch {batch_id} has no plan yet; make one with 'rollback-coordinator plan'")
    raise ApprovalRefused(
        f"batch {batch_id} has {len(digests)} plans and no run waits for this approval; "
        f"choose one with --plan: {', '.join(digests)}"
    )
