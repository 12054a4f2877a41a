"""Approval records bound to a plan digest, and the role and separation checks on them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from builders import example_services, make_governance, make_plan

from rollback_coordinator.core.approvals import (
    PLAN_GROUP,
    Approval,
    ApprovalError,
    ApprovalStore,
    check_approval,
    plan_roles,
    satisfied_roles,
)
from rollback_coordinator.core.governance import Governance
from rollback_coordinator.core.plan import Plan, plan_digest

DIGEST_A = "a" * 64
DIGEST_B = "b" * 64


@pytest.fixture
def store(tmp_path: Path) -> ApprovalStore:
    return ApprovalStore(tmp_path / "approvals")


@pytest.fixture
def governance() -> Governance:
    return make_governance()


def approval_plan(folder: Path, profile: str = "balanced") -> Plan:
    """Plan REL-1 by pat: db needs a dba approval, api needs dba and sre approvals."""
    services = example_services(db={"approvals": ["dba"]}, api={"approvals": ["dba", "sre"]})
    return make_plan(folder, services, touched=("db", "api"), profile=profile)


def approval(user: str = "dora", role: str = "dba", **changes: str) -> Approval:
    fields = {
        "batch": "REL-1",
        "service": "api",
        "role": role,
        "user": user,
        "plan_sha256": DIGEST_A,
        "approved_at": "2025-03-04T10:05:00+00:00",
        "via": "cli",
    }
    fields.update(changes)
    return Approval(**fields)


def test_recorded_approval_is_listed(store: ApprovalStore) -> None:
    recorded = approval()

    store.record(recorded, group_id="api")

    assert store.list("REL-1", DIGEST_A, "api") == [recorded]


def test_record_path_groups_by_digest(store: ApprovalStore) -> None:
    path = store.record(approval(), group_id="api")

    assert path.parent == store.root / "REL-1" / DIGEST_A / "api"
    assert path.name.startswith("dba--")


def test_record_path_omits_user_name(store: ApprovalStore) -> None:
    path = store.record(approval(user="../../etc/passwd"), group_id="api")

    assert path.parent == store.root / "REL-1" / DIGEST_A / "api"
    assert "passwd" not in path.name


def test_repeat_approval_replaces_record(store: ApprovalStore) -> None:
    store.record(approval(approved_at="2025-03-04T10:05:00+00:00"), group_id="api")
    store.record(approval(approved_at="2025-03-04T11:00:00+00:00"), group_id="api")

    listed = store.list("REL-1", DIGEST_A, "api")

    assert [item.approved_at for item in listed] == ["2025-03-04T11:00:00+00:00"]


def test_each_role_and_user_is_listed(store: ApprovalStore) -> None:
    store.record(approval(user="dora", role="dba"), group_id="api")
    store.record(approval(user="dan", role="dba"), group_id="api")
    store.record(approval(user="pat", role="sre"), group_id="api")

    listed = store.list("REL-1", DIGEST_A, "api")

    assert sorted((item.role, item.user) for item in listed) == [
        ("dba", "dan"),
        ("dba", "dora"),
        ("sre", "pat"),
    ]


def test_approval_not_listed_for_other_digest(store: ApprovalStore) -> None:
    store.record(approval(plan_sha256=DIGEST_A), group_id="api")

    assert store.list("REL-1", DIGEST_B, "api") == []


def test_approval_not_listed_for_other_service(store: ApprovalStore) -> None:
    store.record(approval(), group_id="api")

    assert store.list("REL-1", DIGEST_A, "db") == []


def test_approval_not_listed_for_other_batch(store: ApprovalStore) -> None:
    store.record(approval(), group_id="api")

    assert store.list("REL-2", DIGEST_A, "api") == []


def test_list_without_folder_is_empty(store: ApprovalStore) -> None:
    assert store.list("REL-1", DIGEST_A, "api") == []


def test_corrupt_approval_file_is_ignored(store: ApprovalStore) -> None:
    valid = approval()
    path = store.record(valid, group_id="api")
    (path.parent / "dba--0000000000000000.json").write_text("{not json", encoding="utf-8")

    assert store.list("REL-1", DIGEST_A, "api") == [valid]


def test_approval_missing_keys_ignored(store: ApprovalStore) -> None:
    valid = approval()
    path = store.record(valid, group_id="api")
    forged = {"user": "mallory", "role": "dba"}
    (path.parent / "dba--1111111111111111.json").write_text(json.dumps(forged), encoding="utf-8")

    assert store.list("REL-1", DIGEST_A, "api") == [valid]


def test_approval_file_holding_list_is_ignored(store: ApprovalStore) -> None:
    folder = store.root / "REL-1" / DIGEST_A / "api"
    folder.mkdir(parents=True)
    (folder / "dba--2222222222222222.json").write_text('["dora"]', encoding="utf-8")

    assert store.list("REL-1", DIGEST_A, "api") == []


def test_request_is_not_an_approval(store: ApprovalStore) -> None:
    store.request("REL-1", DIGEST_A, "api", ["dba"], "service approvals")

    assert store.list("REL-1", DIGEST_A, "api") == []


def test_requested_roles_are_sorted_once(store: ApprovalStore) -> None:
    store.request("REL-1", DIGEST_A, "api", ["sre", "dba", "sre"], "service approvals")

    assert store.requested_roles("REL-1", DIGEST_A, "api") == ["dba", "sre"]


def test_requested_roles_without_request_empty(store: ApprovalStore) -> None:
    assert store.requested_roles("REL-1", DIGEST_A, "api") == []


def test_requested_roles_bound_to_digest(store: ApprovalStore) -> None:
    store.request("REL-1", DIGEST_A, "api", ["dba"], "service approvals")

    assert store.requested_roles("REL-1", DIGEST_B, "api") == []


def test_request_lists_batch_digest_and_group(store: ApprovalStore) -> None:
    store.request("REL-1", DIGEST_A, "api", ["dba"], "service approvals")

    [request] = store.requests("REL-1")

    assert request["batch"] == "REL-1"
    assert request["plan_sha256"] == DIGEST_A
    assert request["group_id"] == "api"
    assert request["roles"] == ["dba"]
    assert request["why"] == "service approvals"


def test_request_again_names_latest_waiting_task(store: ApprovalStore) -> None:
    store.request("REL-1", DIGEST_A, "api", ["dba"], "service approvals", run_id="run-1")
    store.request("REL-1", DIGEST_A, "api", ["dba"], "asked again", run_id="run-2")

    [request] = store.requests("REL-1")
    assert request["why"] == "asked again"
    assert request["run_id"] == "run-2"


def test_cleared_request_is_not_listed(store: ApprovalStore) -> None:
    store.request("REL-1", DIGEST_A, "api", ["dba"], "service approvals")

    store.clear_request("REL-1", DIGEST_A, "api")

    assert store.requests("REL-1") == []
    assert store.requested_roles("REL-1", DIGEST_A, "api") == []


def test_request_with_new_roles_replaces(store: ApprovalStore) -> None:
    store.request("REL-1", DIGEST_A, "api", ["dba"], "service approvals")
    store.request("REL-1", DIGEST_A, "api", ["security"], "governor escalation")

    assert store.requested_roles("REL-1", DIGEST_A, "api") == ["security"]
    assert [request["why"] for request in store.requests("REL-1")] == ["governor escalation"]


def test_requests_newest_first(store: ApprovalStore) -> None:
    store.request("REL-1", DIGEST_A, "api", ["dba"], "older")
    store.request("REL-1", DIGEST_B, "db", ["dba"], "newer")
    older = store.root / "REL-1" / DIGEST_A / "api" / "REQUEST.json"
    document = json.loads(older.read_text(encoding="utf-8"))
    document["requested_at"] = "2000-01-01T00:00:00+00:00"
    older.write_text(json.dumps(document), encoding="utf-8")

    assert [request["why"] for request in store.requests("REL-1")] == ["newer", "older"]


def test_corrupt_request_file_is_skipped(store: ApprovalStore) -> None:
    store.request("REL-1", DIGEST_A, "api", ["dba"], "service approvals")
    broken = store.root / "REL-1" / DIGEST_B / "api" / "REQUEST.json"
    broken.parent.mkdir(parents=True)
    broken.write_text("", encoding="utf-8")

    assert [request["plan_sha256"] for request in store.requests("REL-1")] == [DIGEST_A]
    assert store.requested_roles("REL-1", DIGEST_B, "api") == []


def test_request_replaces_corrupt_request_file(store: ApprovalStore) -> None:
    broken = store.root / "REL-1" / DIGEST_A / "api" / "REQUEST.json"
    broken.parent.mkdir(parents=True)
    broken.write_text("", encoding="utf-8")

    store.request("REL-1", DIGEST_A, "api", ["dba"], "service approvals")

    assert store.requested_roles("REL-1", DIGEST_A, "api") == ["dba"]


def test_requests_skip_request_file_holding_list(store: ApprovalStore) -> None:
    store.request("REL-1", DIGEST_A, "api", ["dba"], "service approvals")
    broken = store.root / "REL-1" / DIGEST_B / "api" / "REQUEST.json"
    broken.parent.mkdir(parents=True)
    broken.write_text('["dba"]', encoding="utf-8")

    assert [request["plan_sha256"] for request in store.requests("REL-1")] == [DIGEST_A]


def test_requested_roles_of_list_file(store: ApprovalStore) -> None:
    broken = store.root / "REL-1" / DIGEST_A / "api" / "REQUEST.json"
    broken.parent.mkdir(parents=True)
    broken.write_text('["dba"]', encoding="utf-8")

    assert store.requested_roles("REL-1", DIGEST_A, "api") == []


def test_approval_now_stamps_utc_time() -> None:
    stamped = Approval.now(
        batch="REL-1", service="api", role="dba", user="dora", plan_sha256=DIGEST_A, via="cli"
    )

    assert stamped.approved_at.endswith("+00:00")


def test_check_accepts_holder_of_needed_role(tmp_path: Path, governance: Governance) -> None:
    plan = approval_plan(tmp_path)

    check_approval(approval(user="dora", role="dba"), plan, "api", governance, runner="rita")


def test_check_rejects_user_without_role(tmp_path: Path, governance: Governance) -> None:
    plan = approval_plan(tmp_path)

    with pytest.raises(ApprovalError) as caught:
        check_approval(approval(user="sam", role="dba"), plan, "api", governance, runner="rita")

    assert "user 'sam' does not hold role 'dba'" in str(caught.value)
    assert "holders: dora, dan" in str(caught.value)


def test_check_rejects_unneeded_role(
    tmp_path: Path, governance: Governance
) -> None:
    plan = approval_plan(tmp_path)

    with pytest.raises(ApprovalError) as caught:
        check_approval(approval(user="sam", role="security"), plan, "db", governance)

    assert "service 'db' does not need a 'security' approval" in str(caught.value)
    assert "roles needed: dba" in str(caught.value)


def test_check_rejects_service_without_approvals(
    tmp_path: Path, governance: Governance
) -> None:
    services = example_services(db={"approvals": ["dba"]})
    plan = make_plan(tmp_path, services, touched=("db", "worker"))

    with pytest.raises(ApprovalError) as caught:
        check_approval(approval(role="dba"), plan, "worker", governance)

    assert "roles needed: none" in str(caught.value)


def test_check_rejects_service_not_in_plan(tmp_path: Path, governance: Governance) -> None:
    plan = approval_plan(tmp_path)

    with pytest.raises(ApprovalError) as caught:
        check_approval(approval(), plan, "billing", governance)

    assert "has no service 'billing'" in str(caught.value)
    assert "services: api, db" in str(caught.value)


def test_strict_rejects_planner_as_approver(tmp_path: Path, governance: Governance) -> None:
    plan = approval_plan(tmp_path, profile="strict")

    with pytest.raises(ApprovalError) as caught:
        check_approval(approval(user="pat", role="sre"), plan, "api", governance, runner="rita")

    assert "'pat' planned or runs this rollback" in str(caught.value)


def test_strict_rejects_runner_as_approver(tmp_path: Path, governance: Governance) -> None:
    plan = approval_plan(tmp_path, profile="strict")

    with pytest.raises(ApprovalError) as caught:
        check_approval(approval(user="dora"), plan, "api", governance, runner="dora")

    assert "'dora' planned or runs this rollback" in str(caught.value)


def test_balanced_accepts_planner_as_approver(tmp_path: Path, governance: Governance) -> None:
    plan = approval_plan(tmp_path, profile="balanced")

    check_approval(approval(user="pat", role="sre"), plan, "api", governance, runner="rita")


def test_check_accepts_escalation_role(tmp_path: Path, governance: Governance) -> None:
    plan = approval_plan(tmp_path)

    check_approval(
        approval(user="sam", role="security"),
        plan,
        "db",
        governance,
        runner="rita",
        escalation_roles=["security"],
    )


def test_satisfied_lists_missing_roles(tmp_path: Path, governance: Governance) -> None:
    plan = approval_plan(tmp_path)
    approvals_given = [approval(user="dora", role="dba")]

    valid, missing = satisfied_roles(approvals_given, plan, "api", governance, runner="rita")

    assert valid == approvals_given
    assert missing == ["sre"]


def test_satisfied_ignores_invalid_approvals(tmp_path: Path, governance: Governance) -> None:
    plan = approval_plan(tmp_path, profile="strict")
    by_planner = approval(user="pat", role="sre")
    by_outsider = approval(user="sam", role="dba")

    valid, missing = satisfied_roles(
        [by_planner, by_outsider], plan, "api", governance, runner="rita"
    )

    assert valid == []
    assert missing == ["dba", "sre"]


def test_satisfied_when_every_role_approved(tmp_path: Path, governance: Governance) -> None:
    plan = approval_plan(tmp_path)
    approvals_given = [approval(user="dora", role="dba"), approval(user="pat", role="sre")]

    valid, missing = satisfied_roles(approvals_given, plan, "api", governance, runner="rita")

    assert valid == approvals_given
    assert missing == []


def test_satisfied_waits_for_escalation_role(tmp_path: Path, governance: Governance) -> None:
    plan = approval_plan(tmp_path)
    approvals_given = [approval(user="dora", role="dba", service="db")]

    _, missing = satisfied_roles(
        approvals_given, plan, "db", governance, runner="rita", escalation_roles=["security"]
    )

    assert missing == ["security"]


def test_corrupt_record_does_not_satisfy_role(
    tmp_path: Path, store: ApprovalStore, governance: Governance
) -> None:
    plan = approval_plan(tmp_path / "config")
    digest = plan_digest(plan)
    folder = store.root / "REL-1" / digest / "db"
    folder.mkdir(parents=True)
    (folder / "dba--3333333333333333.json").write_text('{"user": "dora"', encoding="utf-8")

    records = store.list("REL-1", digest, "db")
    _, missing = satisfied_roles(records, plan, "db", governance, runner="rita")

    assert missing == ["dba"]


def test_old_plan_approval_not_counted(
    tmp_path: Path, store: ApprovalStore, governance: Governance
) -> None:
    old_plan = approval_plan(tmp_path / "config", profile="balanced")
    new_plan = approval_plan(tmp_path / "config", profile="strict")
    old_digest = plan_digest(old_plan)
    store.record(
        approval(user="dora", service="db", plan_sha256=old_digest), group_id="db"
    )

    records = store.list("REL-1", plan_digest(new_plan), "db")
    _, missing = satisfied_roles(records, new_plan, "db", governance, runner="rita")

    assert records == []
    assert missing == ["dba"]


def frozen_governance(**window: Any) -> Governance:
    """Governance with a release-manager role and one freeze window."""
    fields = {"name": "year-end", "start": "2025-12-20T00:00:00+01:00",
              "end": "2026-01-05T00:00:00+01:00", "override_role": "release-manager", **window}
    roles = {"dba": ["dora", "dan"], "sre": ["pat"], "release-manager": ["rosa", "pat"]}
    return make_governance(roles=roles, freeze_windows=[fields])


def test_plan_roles_lists_override_roles(tmp_path: Path) -> None:
    plan = approval_plan(tmp_path)

    assert plan_roles(plan, frozen_governance()) == ["release-manager"]
    assert plan_roles(plan, frozen_governance(environments=["prod"])) == []
    assert plan_roles(plan, frozen_governance(override_role=None)) == []


def test_whole_plan_takes_override_role_of_holder(tmp_path: Path) -> None:
    plan = approval_plan(tmp_path)

    check_approval(
        approval(user="rosa", role="release-manager", service=PLAN_GROUP), plan, PLAN_GROUP,
        frozen_governance(), runner="rita",
    )


def test_whole_plan_refuses_role_no_window_overrides(tmp_path: Path) -> None:
    plan = approval_plan(tmp_path)

    with pytest.raises(ApprovalError) as caught:
        check_approval(
            approval(user="dora", role="dba", service=PLAN_GROUP), plan, PLAN_GROUP,
            frozen_governance(), runner="rita",
        )

    assert "takes approvals only from the override roles" in str(caught.value)
    assert "(roles: release-manager)" in str(caught.value)


def test_whole_plan_takes_role_a_governor_escalated_to(tmp_path: Path, governance: Governance) -> None:
    plan = approval_plan(tmp_path)

    check_approval(
        approval(user="dora", role="dba", service=PLAN_GROUP), plan, PLAN_GROUP, governance,
        runner="rita", escalation_roles=["dba"],
    )


def test_whole_plan_under_strict_refuses_the_planner(tmp_path: Path) -> None:
    plan = approval_plan(tmp_path, profile="strict")

    with pytest.raises(ApprovalError) as caught:
        check_approval(
            approval(user="pat", role="release-manager", service=PLAN_GROUP), plan, PLAN_GROUP,
            frozen_governance(), runner="rita",
        )

    assert "'pat' planned or runs this rollback" in str(caught.value)


def test_unknown_group_names_the_whole_plan_group(tmp_path: Path, governance: Governance) -> None:
    plan = approval_plan(tmp_path)

    with pytest.raises(ApprovalError) as caught:
        check_approval(approval(), plan, "billing", governance)

    assert f"{PLAN_GROUP} approves the whole plan" in str(caught.value)
