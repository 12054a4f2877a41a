"""Approval records: who approved which service of which plan, in which role.

Each record is bound to a plan digest, so an approval never carries over to a changed plan.
An approval of the whole plan, such as the override of a freeze window, is stored under the
group PLAN_GROUP, which no service can be named: service names are lowercase.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from rollback_coordinator.core.errors import CoordinatorError
from rollback_coordinator.core.files import atomic_write_text
from rollback_coordinator.core.governance import PROFILES, Governance
from rollback_coordinator.core.plan import Plan


PLAN_GROUP = "PLAN"


class ApprovalError(CoordinatorError):
    """An approval that the roles or the separation rules do not allow."""


@dataclass(frozen=True)
class Approval:
    batch: str
    service: str
    role: str
    user: str
    plan_sha256: str
    approved_at: str
    via: str

    @classmethod
    def now(cls, **fields: str) -> "Approval":
        stamp = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
        return cls(approved_at=stamp, **fields)


class ApprovalStore:
    """Approval records under one folder: <batch>/<plan digest>/<service group>/<role>--<user>.json."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def record(self, approval: Approval, group_id: str) -> Path:
        folder = self.root / approval.batch / approval.plan_sha256 / group_id
        folder.mkdir(parents=True, exist_ok=True)
        # A hash keeps user names, which come from outside, out of file names.
        user_key = hashlib.sha256(approval.user.encode()).hexdigest()[:16]
        path = folder / f"{approval.role}--{user_key}.json"
        atomic_write_text(path, json.dumps(asdict(approval), indent=2, sort_keys=True) + "\n")
        return path

    def request(
        self,
        batch: str,
        plan_sha256: str,
        group_id: str,
        roles: list[str],
        why: str,
        **where: str,
    ) -> None:
        """Record that a run waits for approvals, so `approve` and `status` can find it.

        ``where`` names the waiting task (dag_id, run_id, task_id), so `approve` can answer it
        through Airflow's REST API.
        """
        folder = self.root / batch / plan_sha256 / group_id
        folder.mkdir(parents=True, exist_ok=True)
        document = {
            "batch": batch,
            "plan_sha256": plan_sha256,
            "group_id": group_id,
            "roles": sorted(set(roles)),
            "why": why,
            "requested_at": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
            **where,
        }
        path = folder / "REQUEST.json"
        atomic_write_text(path, json.dumps(document, indent=2, sort_keys=True) + "\n")

    def clear_request(self, batch: str, plan_sha256: str, group_id: str) -> None:
        """Forget a request once the step it belongs to has its approvals."""
        (self.root / batch / plan_sha256 / group_id / "REQUEST.json").unlink(missing_ok=True)

    def requests(self, batch: str) -> list[dict]:
        """Return the approval requests of a batch, newest first."""
        found = []
        for path in (self.root / batch).glob("*/*/REQUEST.json"):
            try:
                request = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(request, dict):
                found.append(request)
        return sorted(found, key=lambda item: item.get("requested_at", ""), reverse=True)

    def requested_roles(self, batch: str, plan_sha256: str, group_id: str) -> list[str]:
        path = self.root / batch / plan_sha256 / group_id / "REQUEST.json"
        try:
            return list(json.loads(path.read_text(encoding="utf-8"))["roles"])
        except (OSError, ValueError, KeyError, TypeError):
            return []

    def list(self, batch: str, plan_sha256: str, group_id: str) -> list[Approval]:
        folder = self.root / batch / plan_sha256 / group_id
        if not folder.is_dir():
            return []
        approvals = []
        for path in sorted(folder.glob("*--*.json")):
            try:
                approval = Approval(**json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, TypeError):
                # An unreadable record never counts as an approval.
                continue
            # A record copied from another plan's folder must not count for this one.
            if approval.batch == batch and approval.plan_sha256 == plan_sha256:
                approvals.append(approval)
        return approvals


def plan_roles(plan: Plan, governance: Governance) -> list[str]:
    """Return the roles that may approve a whole plan in advance: its freeze override roles.

    Every window that applies to the plan's environment counts, in force or not, so the
    override can be recorded before a window starts.
    """
    roles = [
        window.override_role
        for window in governance.freeze_windows
        if window.override_role is not None and window.applies_to(plan.environment)
    ]
    return list(dict.fromkeys(roles))


def check_approval(
    approval: Approval,
    plan: Plan,
    group_id: str,
    governance: Governance,
    runner: str | None = None,
    escalation_roles: list[str] | None = None,
) -> None:
    """Raise ApprovalError unless this person may approve this group of this plan.

    ``group_id`` is a service's task group, or PLAN_GROUP for the whole plan. escalation_roles
    are roles a governor requested with ESCALATE, beyond the group's own. Under a profile that
    needs several approvers, a service also accepts governance.yaml's review_role.
    """
    if group_id == PLAN_GROUP:
        allowed = [*plan_roles(plan, governance), *(escalation_roles or [])]
        if approval.role not in allowed:
            raise ApprovalError(
                f"the whole plan of batch {plan.batch} takes approvals only from the override "
                f"roles of freeze windows in environment '{plan.environment}' or a role a "
                f"governor asked for (roles: {', '.join(allowed) or 'none'})"
            )
    else:
        step = plan.find(group_id)
        if step is None:
            services = ", ".join(item.group_id for item in plan.service_steps())
            raise ApprovalError(
                f"plan {approval.plan_sha256[:12]} of batch {plan.batch} has no service "
                f"'{group_id}' (services: {services}; {PLAN_GROUP} approves the whole plan)"
            )
        allowed = [*step.approvals, *(escalation_roles or [])]
        # Under strict, every service needs a second reviewer, so a review may come in advance.
        if PROFILES[plan.profile].min_approvers and governance.review_role:
            allowed.append(governance.review_role)
        if approval.role not in allowed:
            needed = ", ".join(allowed) or "none"
            raise ApprovalError(
                f"service '{group_id}' does not need a '{approval.role}' approval "
                f"(roles needed: {needed})"
            )
    if not governance.holds_role(approval.user, approval.role):
        raise ApprovalError(
            f"user '{approval.user}' does not hold role '{approval.role}' in governance.yaml "
            f"(holders: {', '.join(governance.roles.get(approval.role, [])) or 'none'})"
        )

    separation = PROFILES[plan.profile].separation
    if separation == "full_split" and approval.user in (plan.author, runner):
        raise ApprovalError(
            f"the strict profile needs approvers other than the planner and the runner; "
            f"'{approval.user}' planned or runs this rollback"
        )


def plan_approvals(
    store: ApprovalStore, plan: Plan, digest: str, governance: Governance, runner: str | None
) -> list[Approval]:
    """Return the valid approvals of the whole plan, in its override roles or requested ones."""
    requested = store.requested_roles(plan.batch, digest, PLAN_GROUP)
    records = store.list(plan.batch, digest, PLAN_GROUP)
    valid, _ = satisfied_roles(records, plan, PLAN_GROUP, governance, runner, requested)
    return valid


def satisfied_roles(
    approvals: list[Approval],
    plan: Plan,
    group_id: str,
    governance: Governance,
    runner: str | None,
    escalation_roles: list[str] | None = None,
) -> tuple[list[Approval], list[str]]:
    """Return the valid approvals and the roles still waiting for one."""
    step = plan.find(group_id)
    required = [*(step.approvals if step else ()), *(escalation_roles or [])]
    valid = []
    for approval in approvals:
        try:
            check_approval(approval, plan, group_id, governance, runner, escalation_roles)
        except ApprovalError:
            continue
        valid.append(approval)
    missing = [role for role in required if not any(item.role == role for item in valid)]
    return valid, missing
