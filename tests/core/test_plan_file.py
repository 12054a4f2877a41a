"""Plan files: the JSON round trip and the SHA-256 digest that binds approvals and runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from builders import (
    REPO_URL,
    batch_touching,
    batches_of,
    example_services,
    make_plan,
    plan_request,
    write_services,
)

from rollback_coordinator.core.errors import InvalidPlanFileError, PlanError
from rollback_coordinator.core.plan import Plan, plan_digest, plan_path, read_plan, write_plan
from rollback_coordinator.core.planner import build_plan


@pytest.fixture
def plan(tmp_path: Path) -> Plan:
    return make_plan(tmp_path / "config", touched=("db", "api", "worker"))


def test_round_trip_returns_equal_plan(plan: Plan, tmp_path: Path) -> None:
    path = tmp_path / "plans" / "REL-1.json"

    written = write_plan(plan, path)
    loaded, digest = read_plan(path)

    assert loaded == plan
    assert digest == written


def test_write_returns_plan_digest(plan: Plan, tmp_path: Path) -> None:
    assert write_plan(plan, tmp_path / "plan.json") == plan_digest(plan)


def test_round_trip_with_expected_digest(plan: Plan, tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    digest = write_plan(plan, path)

    loaded, _ = read_plan(path, expected_sha256=digest)

    assert loaded == plan


def test_file_records_digest_and_plan(plan: Plan, tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    digest = write_plan(plan, path)

    document = json.loads(path.read_text(encoding="utf-8"))

    assert document["sha256"] == digest
    assert document["plan"]["batch"] == "REL-1"
    assert document["plan"]["format"] == 1


def test_write_leaves_no_temporary_file(plan: Plan, tmp_path: Path) -> None:
    folder = tmp_path / "plans" / "REL-1"

    write_plan(plan, folder / "plan.json")
    write_plan(plan, folder / "plan.json")

    assert [path.name for path in folder.iterdir()] == ["plan.json"]


def test_changed_reason_is_rejected(plan: Plan, tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    write_plan(plan, path)
    text = path.read_text(encoding="utf-8")
    # One byte: "deploy" becomes "deplox".
    path.write_text(text.replace("after deploy", "after deplox"), encoding="utf-8")

    with pytest.raises(PlanError) as caught:
        read_plan(path)

    assert str(path) in str(caught.value)
    assert "was changed after it was made" in str(caught.value)


def test_changed_step_order_is_rejected(plan: Plan, tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    write_plan(plan, path)
    document = json.loads(path.read_text(encoding="utf-8"))
    steps = document["plan"]["phases"][0]["services"]
    db_step = next(step for step in steps if step["group_id"] == "db")
    # db would no longer wait for api, so both would roll back at once.
    db_step["after"] = []
    path.write_text(json.dumps(document), encoding="utf-8")

    with pytest.raises(PlanError) as caught:
        read_plan(path)

    assert "was changed after it was made" in str(caught.value)


def test_changed_recorded_digest_is_rejected(plan: Plan, tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    digest = write_plan(plan, path)
    document = json.loads(path.read_text(encoding="utf-8"))
    document["sha256"] = "0" * 64
    path.write_text(json.dumps(document), encoding="utf-8")

    with pytest.raises(PlanError) as caught:
        read_plan(path)

    assert digest in str(caught.value)
    assert "0" * 64 in str(caught.value)


def test_expected_digest_mismatch_is_rejected(plan: Plan, tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    digest = write_plan(plan, path)
    authorized = "f" * 64

    with pytest.raises(PlanError) as caught:
        read_plan(path, expected_sha256=authorized)

    assert str(path) in str(caught.value)
    assert f"authorized for {authorized}" in str(caught.value)
    assert digest in str(caught.value)


def test_missing_file_raises_naming_path(tmp_path: Path) -> None:
    path = tmp_path / "plans" / "absent.json"

    with pytest.raises(InvalidPlanFileError) as caught:
        read_plan(path)

    assert str(caught.value) == f"plan file {path} not found"


def test_invalid_json_raises_naming_path(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text('{"sha256": "ab", "plan": {', encoding="utf-8")

    with pytest.raises(InvalidPlanFileError) as caught:
        read_plan(path)

    assert str(path) in str(caught.value)
    assert "not readable JSON" in str(caught.value)


def test_binary_file_raises_naming_path(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_bytes(b"\xff\xfe\x00garbage")

    with pytest.raises(InvalidPlanFileError) as caught:
        read_plan(path)

    assert str(path) in str(caught.value)


def test_json_without_plan_keys_raises(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text('["not", "a", "plan"]', encoding="utf-8")

    with pytest.raises(InvalidPlanFileError) as caught:
        read_plan(path)

    assert str(path) in str(caught.value)
    assert "lacks the 'plan' and 'sha256' keys" in str(caught.value)


def test_invalid_plan_field_raises_naming_field(plan: Plan, tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    write_plan(plan, path)
    document = json.loads(path.read_text(encoding="utf-8"))
    document["plan"]["profile"] = "relaxed"
    path.write_text(json.dumps(document), encoding="utf-8")

    with pytest.raises(InvalidPlanFileError) as caught:
        read_plan(path)

    assert str(path) in str(caught.value)
    assert "field 'profile'" in str(caught.value)


def test_unknown_plan_field_is_rejected(plan: Plan, tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    write_plan(plan, path)
    document = json.loads(path.read_text(encoding="utf-8"))
    document["plan"]["skip_approvals"] = True
    path.write_text(json.dumps(document), encoding="utf-8")

    with pytest.raises(InvalidPlanFileError) as caught:
        read_plan(path)

    assert "field 'skip_approvals'" in str(caught.value)


def test_digest_is_stable_for_same_input(tmp_path: Path) -> None:
    first = make_plan(tmp_path / "config", touched=("db", "api"))
    second = make_plan(tmp_path / "config", touched=("db", "api"))

    assert plan_digest(first) == plan_digest(second)


def test_digest_changes_with_script_content(tmp_path: Path) -> None:
    services = write_services(tmp_path, example_services())
    batches = batches_of(batch_touching("REL-1", 1, "api"))
    before = build_plan(plan_request("REL-1"), batches, services, REPO_URL)

    services.script_path("api").write_text("#!/bin/sh\nexit 1\n", encoding="utf-8")
    after = build_plan(plan_request("REL-1"), batches, services, REPO_URL)

    assert before.service_steps()[0].script_sha256 != after.service_steps()[0].script_sha256
    assert plan_digest(before) != plan_digest(after)


def test_digest_changes_with_author(tmp_path: Path) -> None:
    by_pat = make_plan(tmp_path / "config", author="pat")
    by_rita = make_plan(tmp_path / "config", author="rita")

    assert plan_digest(by_pat) != plan_digest(by_rita)


def test_digest_changes_with_dry_run(tmp_path: Path) -> None:
    real = make_plan(tmp_path / "config", dry_run=False)
    rehearsal = make_plan(tmp_path / "config", dry_run=True)

    assert plan_digest(real) != plan_digest(rehearsal)


def test_digest_changes_with_services_file(tmp_path: Path) -> None:
    before = make_plan(tmp_path / "config")
    after = make_plan(tmp_path / "config", example_services(api={"description": "REST API"}))

    assert before.services_sha256 != after.services_sha256
    assert plan_digest(before) != plan_digest(after)


def test_digest_is_hex_sha256(plan: Plan) -> None:
    digest = plan_digest(plan)

    assert len(digest) == 64
    assert set(digest) <= set("0123456789abcdef")


def test_plan_path_per_batch_and_digest(tmp_path: Path) -> None:
    digest = "ab" * 32

    assert plan_path(tmp_path, "REL-1", digest) == tmp_path / "REL-1" / f"{digest}.json"


def test_find_and_phase_of_group(plan: Plan) -> None:
    step = plan.find("api")

    assert step is not None
    assert step.service == "api"
    assert plan.find("REL-2__api") is None
    assert plan.phase_of("api").batch == "REL-1"


def test_phase_of_unknown_group_raises(plan: Plan) -> None:
    with pytest.raises(PlanError) as caught:
        plan.phase_of("billing")

    assert "no service group 'billing'" in str(caught.value)
