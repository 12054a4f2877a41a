"""`approve`: record an approval by the person running the command, bound to a plan digest."""

from __future__ import annotations

import argparse

from rollback_coordinator.cli.output import EXIT_OK, EXIT_REFUSED, Printer, current_actor
from rollback_coordinator.core.approvals import Approval, ApprovalError, ApprovalStore, check_approval
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
            "the plan's digest. Without --plan, the plan of the newest run waiting for this "
            "approval is used. You are identified by ROLLBACK_ACTOR or your login name."
        ),
    )
    parser.add_argument("batch", help="batch id, for example REL-42")
    parser.add_argument("--service", required=True, help="service (task group) to approve")
    parser.add_argument("--role", required=True, help="role you approve in, from governance.yaml")
    parser.add_argument("--plan", metavar="SHA256", help="digest of the plan to approve")
    return parser


def run(args: argparse.Namespace, printer: Printer) -> int:
    batch_id = validate_batch_id(args.batch)
    places = locations()
    governance = load_governance(places.governance_file)
    store = ApprovalStore(places.approvals_dir)
    digest = args.plan or _waiting_plan(store, batch_id, args.service)
    plan, digest = read_plan(plan_path(places.plans_dir, batch_id, digest), expected_sha256=digest)

    approval = Approval.now(
        batch=batch_id,
        service=args.service,
        role=args.role,
        user=current_actor(),
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
        raise ApprovalRefused(f"approval refused: {error}") from None

    path = store.record(approval, group_id=args.service)
    printer.result(
        {"approval": vars(approval), "record": str(path)},
        [
            f"approved {args.service} of batch {batch_id} as {args.role} by {approval.user} "
            f"for plan {digest[:12]}",
        ],
    )
    return EXIT_OK


def _waiting_plan(store: ApprovalStore, batch_id: str, group_id: str) -> str:
    for request in store.requests(batch_id):
        if request.get("group_id") == group_id:
            return str(request["plan_sha256"])
    raise ApprovalRefused(
        f"no run of batch {batch_id} waits for an approval of '{group_id}'; "
        f"pass --plan SHA256 to approve a plan before its run starts"
    )
