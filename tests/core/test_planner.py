"""Plans built from batches and a real services.yaml: order, overlap, cascades, environments."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from builders import (
    CREATED_AT,
    REPO_URL,
    batch_touching,
    batches_of,
    example_services,
    make_batch,
    plan_request,
    write_services,
)

from rollback_coordinator.core.errors import OverlapError, PlanError
from rollback_coordinator.core.plan import Plan, file_sha256
from rollback_coordinator.core.planner import (
    MAX_CASCADE_BATCHES,
    TouchedServices,
    build_plan,
    group_id_for,
    newer_overlapping,
    plan_shape,
)
from rollback_coordinator.core.services import ServiceMap


@pytest.fixture
def services(tmp_path: Path) -> ServiceMap:
    return write_services(tmp_path / "config", example_services())


def levels_of(plan: Plan) -> dict[str, int]:
    return {step.group_id: step.level for step in plan.service_steps()}


def waits_of(plan: Plan) -> dict[str, tuple[str, ...]]:
    return {step.group_id: step.after for step in plan.service_steps()}


def test_plan_orders_all_four_services(services: ServiceMap) -> None:
    batches = batches_of(batch_touching("REL-1", 1, "db", "api", "worker", "automations"))

    plan = build_plan(plan_request("REL-1"), batches, services, REPO_URL)

    assert levels_of(plan) == {"worker": 0, "automations": 0, "api": 1, "db": 2}
    assert waits_of(plan) == {
        "automations": (),
        "worker": (),
        "api": ("automations", "worker"),
        "db": ("api",),
    }


def test_plan_lists_steps_by_level(services: ServiceMap) -> None:
    batches = batches_of(batch_touching("REL-1", 1, "db", "api", "worker", "automations"))

    plan = build_plan(plan_request("REL-1"), batches, services, REPO_URL)

    assert [step.service for step in plan.service_steps()] == [
        "automations",
        "worker",
        "api",
        "db",
    ]


def test_plan_orders_through_untouched_api(services: ServiceMap) -> None:
    batches = batches_of(batch_touching("REL-1", 1, "worker", "db"))

    plan = build_plan(plan_request("REL-1"), batches, services, REPO_URL)

    assert levels_of(plan) == {"worker": 0, "db": 1}
    assert waits_of(plan) == {"worker": (), "db": ("worker",)}


def test_plan_copies_request_and_batch(services: ServiceMap) -> None:
    batch = batch_touching("REL-1", 1, "api")

    plan = build_plan(
        plan_request("REL-1", dry_run=True), batches_of(batch), services, REPO_URL
    )

    assert plan.batch == "REL-1"
    assert plan.repo == REPO_URL
    assert plan.environment == "staging"
    assert plan.profile == "flow"
    assert plan.author == "pat"
    assert plan.created_at == CREATED_AT
    assert plan.reason == "checkout errors after deploy"
    assert plan.dry_run is True
    assert plan.cascade is False
    assert plan.phases[0].from_ref == batch.from_ref
    assert plan.phases[0].to_ref == batch.to_ref


def test_plan_hashes_services_file_and_script(services: ServiceMap) -> None:
    batches = batches_of(batch_touching("REL-1", 1, "api"))

    plan = build_plan(plan_request("REL-1"), batches, services, REPO_URL)

    step = plan.service_steps()[0]
    assert plan.services_sha256 == file_sha256(services.source)
    assert step.script == str(services.script_path("api"))
    assert step.script_sha256 == file_sha256(services.script_path("api"))


def test_plan_without_created_at_stamps_now(services: ServiceMap) -> None:
    batches = batches_of(batch_touching("REL-1", 1, "api"))

    plan = build_plan(plan_request("REL-1", created_at=None), batches, services, REPO_URL)

    created = datetime.fromisoformat(plan.created_at)
    assert created.utcoffset() == timedelta(0)
    assert abs(datetime.now(timezone.utc) - created) < timedelta(minutes=1)


def test_plain_service_has_authorize_and_rollback(services: ServiceMap) -> None:
    batches = batches_of(batch_touching("REL-1", 1, "api"))

    plan = build_plan(plan_request("REL-1"), batches, services, REPO_URL)

    step = plan.service_steps()[0]
    assert step.steps == ("authorize", "rollback")
    assert step.approvals == ()
    assert step.has_migrations is False
    assert step.migration_tool is None


def test_full_service_has_every_step(tmp_path: Path) -> None:
    db = {
        "approvals": ["dba"],
        "health_check": {"tcp": "127.0.0.1:5432"},
        "migrations": {"tool": "alembic", "directory": "db/migrations", "connection_id": "app"},
    }
    services = write_services(tmp_path, example_services(db=db))
    batches = batches_of(batch_touching("REL-1", 1, "db"))

    plan = build_plan(plan_request("REL-1"), batches, services, REPO_URL)

    step = plan.service_steps()[0]
    assert step.steps == (
        "health_before",
        "approval",
        "authorize",
        "verify_migrations",
        "rollback",
        "health_after",
    )
    assert step.approvals == ("dba",)
    assert step.has_migrations is True
    assert step.migration_tool == "alembic"


def test_unknown_batch_raises_naming_known(services: ServiceMap) -> None:
    batches = batches_of(batch_touching("REL-1", 1, "api"))

    with pytest.raises(PlanError) as caught:
        build_plan(plan_request("REL-9"), batches, services, REPO_URL)

    assert "REL-9 is not registered" in str(caught.value)
    assert "known batches: REL-1" in str(caught.value)


def test_batch_touching_no_service_raises(services: ServiceMap) -> None:
    batches = batches_of(make_batch("REL-1", 1, ["README.md", "docs/guide.md"]))

    with pytest.raises(PlanError) as caught:
        build_plan(plan_request("REL-1"), batches, services, REPO_URL)

    assert "REL-1 touches no service" in str(caught.value)
    assert str(services.source) in str(caught.value)


def test_overlap_raises_naming_newer_batch(services: ServiceMap) -> None:
    batches = batches_of(batch_touching("REL-1", 1, "api"), batch_touching("REL-2", 2, "api"))

    with pytest.raises(OverlapError) as caught:
        build_plan(plan_request("REL-1"), batches, services, REPO_URL)

    assert caught.value.batch == "REL-1"
    assert caught.value.newer == [("REL-2", ["api"])]
    assert "REL-2 (touches api)" in str(caught.value)
    assert "--cascade" in str(caught.value)


def test_overlap_error_is_plan_error(services: ServiceMap) -> None:
    batches = batches_of(batch_touching("REL-1", 1, "api"), batch_touching("REL-2", 2, "api"))

    with pytest.raises(PlanError):
        build_plan(plan_request("REL-1"), batches, services, REPO_URL)


def test_newest_batch_has_no_overlap(services: ServiceMap) -> None:
    batches = batches_of(batch_touching("REL-1", 1, "api"), batch_touching("REL-2", 2, "api"))

    plan = build_plan(plan_request("REL-2"), batches, services, REPO_URL)

    assert [phase.batch for phase in plan.phases] == ["REL-2"]
    assert plan.cascade is False


def test_newer_batch_elsewhere_no_overlap(services: ServiceMap) -> None:
    batches = batches_of(
        batch_touching("REL-1", 1, "api"), batch_touching("REL-2", 2, "worker", "db")
    )

    plan = build_plan(plan_request("REL-1"), batches, services, REPO_URL)

    assert [phase.batch for phase in plan.phases] == ["REL-1"]
    assert plan.cascade is False


def test_overlap_uses_sequence_not_insertion_order(services: ServiceMap) -> None:
    batches = batches_of(batch_touching("REL-2", 2, "api"), batch_touching("REL-1", 7, "api"))

    with pytest.raises(OverlapError) as caught:
        build_plan(plan_request("REL-2"), batches, services, REPO_URL)

    assert caught.value.newer == [("REL-1", ["api"])]


def test_cascade_phases_newest_first(services: ServiceMap) -> None:
    batches = batches_of(batch_touching("REL-1", 1, "api"), batch_touching("REL-2", 2, "api"))

    plan = build_plan(plan_request("REL-1", cascade=True), batches, services, REPO_URL)

    assert [phase.batch for phase in plan.phases] == ["REL-2", "REL-1"]
    assert plan.cascade is True


def test_cascade_names_newer_groups_by_batch(services: ServiceMap) -> None:
    batches = batches_of(batch_touching("REL-1", 1, "api"), batch_touching("REL-2", 2, "api"))

    plan = build_plan(plan_request("REL-1", cascade=True), batches, services, REPO_URL)

    newer, own = plan.phases
    assert [step.group_id for step in newer.services] == ["REL-2__api"]
    assert [step.group_id for step in own.services] == ["api"]
    assert newer.services[0].batch == "REL-2"
    assert own.services[0].batch == "REL-1"


def test_cascade_own_service_waits_for_newer(services: ServiceMap) -> None:
    batches = batches_of(
        batch_touching("REL-1", 1, "api"), batch_touching("REL-2", 2, "api", "worker")
    )

    plan = build_plan(plan_request("REL-1", cascade=True), batches, services, REPO_URL)

    assert waits_of(plan) == {
        "REL-2__worker": (),
        "REL-2__api": ("REL-2__worker",),
        "api": ("REL-2__worker", "REL-2__api"),
    }


def test_cascade_levels_continue_across_phases(services: ServiceMap) -> None:
    batches = batches_of(
        batch_touching("REL-1", 1, "api"), batch_touching("REL-2", 2, "api", "worker")
    )

    plan = build_plan(plan_request("REL-1", cascade=True), batches, services, REPO_URL)

    assert levels_of(plan) == {"REL-2__worker": 0, "REL-2__api": 1, "api": 2}


def test_cascade_phases_keep_own_refs(services: ServiceMap) -> None:
    older = batch_touching("REL-1", 1, "api")
    newer = batch_touching("REL-2", 2, "api")

    plan = build_plan(
        plan_request("REL-1", cascade=True), batches_of(older, newer), services, REPO_URL
    )

    assert (plan.phases[0].from_ref, plan.phases[0].to_ref) == (newer.from_ref, newer.to_ref)
    assert (plan.phases[1].from_ref, plan.phases[1].to_ref) == (older.from_ref, older.to_ref)
    assert newer.from_ref != older.from_ref


def test_cascade_without_overlap_is_plain_plan(services: ServiceMap) -> None:
    batches = batches_of(batch_touching("REL-1", 1, "api"))

    plan = build_plan(plan_request("REL-1", cascade=True), batches, services, REPO_URL)

    assert [phase.batch for phase in plan.phases] == ["REL-1"]
    assert plan.cascade is False


def test_overlap_is_transitive(services: ServiceMap) -> None:
    batches = batches_of(
        batch_touching("REL-1", 1, "api"),
        batch_touching("REL-2", 2, "api", "worker"),
        batch_touching("REL-3", 3, "worker"),
    )

    with pytest.raises(OverlapError) as caught:
        build_plan(plan_request("REL-1"), batches, services, REPO_URL)

    assert caught.value.newer == [("REL-3", ["worker"]), ("REL-2", ["api"])]
    assert "REL-3 (touches worker)" in str(caught.value)


def test_transitive_cascade_has_three_phases(services: ServiceMap) -> None:
    batches = batches_of(
        batch_touching("REL-1", 1, "api"),
        batch_touching("REL-2", 2, "api", "worker"),
        batch_touching("REL-3", 3, "worker"),
    )

    plan = build_plan(plan_request("REL-1", cascade=True), batches, services, REPO_URL)

    assert [phase.batch for phase in plan.phases] == ["REL-3", "REL-2", "REL-1"]
    assert waits_of(plan)["REL-2__worker"] == ("REL-3__worker",)


def test_unrelated_newer_batch_no_overlap(services: ServiceMap) -> None:
    # REL-2 touches worker before REL-3 does, but REL-1's rollback leaves worker alone.
    batches = batches_of(
        batch_touching("REL-1", 1, "api"),
        batch_touching("REL-2", 2, "worker"),
        batch_touching("REL-3", 3, "api", "worker"),
    )

    assert newer_overlapping("REL-1", batches, services) == [("REL-3", ["api"])]


def test_newer_overlapping_lists_shared_services(services: ServiceMap) -> None:
    batches = batches_of(
        batch_touching("REL-1", 1, "db", "api", "worker"),
        batch_touching("REL-2", 2, "worker", "db", "automations"),
    )

    assert newer_overlapping("REL-1", batches, services) == [("REL-2", ["db", "worker"])]


def test_touched_services_in_file_order(services: ServiceMap) -> None:
    batches = batches_of(batch_touching("REL-1", 1, "worker", "db"))

    assert TouchedServices(batches, services).of("REL-1") == ["db", "worker"]


def test_service_outside_environment_is_skipped(tmp_path: Path) -> None:
    services = write_services(tmp_path, example_services(worker={"environment": ["prod"]}))
    batches = batches_of(batch_touching("REL-1", 1, "api", "worker"))

    plan = build_plan(plan_request("REL-1"), batches, services, REPO_URL)

    assert [step.service for step in plan.service_steps()] == ["api"]
    assert plan.skipped == (("worker", "not deployed in environment 'staging'"),)


def test_service_in_its_environment_is_planned(tmp_path: Path) -> None:
    services = write_services(tmp_path, example_services(worker={"environment": ["prod"]}))
    batches = batches_of(batch_touching("REL-1", 1, "api", "worker"))

    plan = build_plan(
        plan_request("REL-1", environment="prod", profile="strict"), batches, services, REPO_URL
    )

    assert [step.service for step in plan.service_steps()] == ["worker", "api"]
    assert plan.skipped == ()


def test_skipped_dependent_does_not_order_api(tmp_path: Path) -> None:
    services = write_services(tmp_path, example_services(worker={"environment": ["prod"]}))
    batches = batches_of(batch_touching("REL-1", 1, "api", "worker"))

    plan = build_plan(plan_request("REL-1"), batches, services, REPO_URL)

    assert waits_of(plan) == {"api": ()}
    assert levels_of(plan) == {"api": 0}


def test_only_skipped_services_raises(tmp_path: Path) -> None:
    services = write_services(tmp_path, example_services(worker={"environment": ["prod"]}))
    batches = batches_of(batch_touching("REL-1", 1, "worker"))

    with pytest.raises(PlanError) as caught:
        build_plan(plan_request("REL-1"), batches, services, REPO_URL)

    assert "no service deployed in environment 'staging'" in str(caught.value)


def test_cascade_without_own_services_raises(tmp_path: Path) -> None:
    services = write_services(tmp_path, example_services(api={"environment": ["prod"]}))
    batches = batches_of(
        batch_touching("REL-1", 1, "api"), batch_touching("REL-2", 2, "api", "worker")
    )

    # REL-1 changed nothing deployed in staging, so no one requested REL-2's worker rollback.
    with pytest.raises(PlanError):
        build_plan(plan_request("REL-1", cascade=True), batches, services, REPO_URL)


def test_cascade_false_after_skipped_phases(tmp_path: Path) -> None:
    services = write_services(tmp_path, example_services(worker={"environment": ["prod"]}))
    batches = batches_of(
        batch_touching("REL-1", 1, "api", "worker"), batch_touching("REL-2", 2, "worker")
    )

    plan = build_plan(plan_request("REL-1", cascade=True), batches, services, REPO_URL)

    assert [phase.batch for phase in plan.phases] == ["REL-1"]
    assert plan.cascade is False


def test_cascade_lists_skipped_service_once(tmp_path: Path) -> None:
    services = write_services(tmp_path, example_services(worker={"environment": ["prod"]}))
    batches = batches_of(
        batch_touching("REL-1", 1, "api", "worker"), batch_touching("REL-2", 2, "api", "worker")
    )

    plan = build_plan(plan_request("REL-1", cascade=True), batches, services, REPO_URL)

    assert plan.skipped == (("worker", "not deployed in environment 'staging'"),)


def test_shape_covers_every_environment(tmp_path: Path) -> None:
    services = write_services(tmp_path, example_services(worker={"environment": ["prod"]}))
    batches = batches_of(batch_touching("REL-1", 1, "api", "worker"))

    plan = plan_shape("REL-1", batches, services, TouchedServices(batches, services))

    assert plan.environment == "any"
    assert [step.service for step in plan.service_steps()] == ["worker", "api"]
    assert plan.skipped == ()


def test_shape_skips_hashing(services: ServiceMap) -> None:
    batches = batches_of(batch_touching("REL-1", 1, "api"))

    plan = plan_shape("REL-1", batches, services, TouchedServices(batches, services))

    assert plan.services_sha256 == ""
    assert plan.service_steps()[0].script_sha256 == ""


def test_shape_includes_cascade(services: ServiceMap) -> None:
    batches = batches_of(batch_touching("REL-1", 1, "api"), batch_touching("REL-2", 2, "api"))

    plan = plan_shape("REL-1", batches, services, TouchedServices(batches, services))

    assert [step.group_id for step in plan.service_steps()] == ["REL-2__api", "api"]


def test_group_id_for_own_and_cascaded() -> None:
    assert group_id_for("REL-1", "api", own=True) == "api"
    assert group_id_for("REL-2", "api", own=False) == "REL-2__api"


def many_newer_batches(count: int):
    return batches_of(
        batch_touching("REL-1", 1, "api"),
        *(batch_touching(f"REL-{number}", number, "api") for number in range(2, count + 2)),
    )


def test_cascade_beyond_limit_is_refused(services: ServiceMap) -> None:
    batches = many_newer_batches(MAX_CASCADE_BATCHES + 1)

    with pytest.raises(PlanError) as caught:
        build_plan(plan_request("REL-1", cascade=True), batches, services, REPO_URL)

    assert f"through {MAX_CASCADE_BATCHES + 1} newer batches" in str(caught.value)
    assert f"REL-{MAX_CASCADE_BATCHES + 2}" in str(caught.value)


def test_cascade_at_limit_is_planned(services: ServiceMap) -> None:
    batches = many_newer_batches(MAX_CASCADE_BATCHES)

    plan = build_plan(plan_request("REL-1", cascade=True), batches, services, REPO_URL)

    assert len(plan.phases) == MAX_CASCADE_BATCHES + 1


def test_shape_beyond_limit_keeps_own_phase(services: ServiceMap) -> None:
    batches = many_newer_batches(MAX_CASCADE_BATCHES + 1)

    plan = plan_shape("REL-1", batches, services, TouchedServices(batches, services))

    assert [phase.batch for phase in plan.phases] == ["REL-1"]


def test_run_beyond_limit_still_names_newer(services: ServiceMap) -> None:
    batches = many_newer_batches(MAX_CASCADE_BATCHES + 1)

    with pytest.raises(OverlapError) as caught:
        build_plan(plan_request("REL-1"), batches, services, REPO_URL)

    assert len(caught.value.newer) == MAX_CASCADE_BATCHES + 1
