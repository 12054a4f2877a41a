"""The embedded governor's rules (freeze windows and the authority matrix among them), its decision
ids, the choice of governor, and parsing of governor decisions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from builders import make_governance

from rollback_coordinator.core.decisions import (
    Actors,
    Artifact,
    Authorize,
    Deny,
    DecisionFormatError,
    Escalate,
    GovernorRequest,
    RequestClarification,
    Scope,
    TerminateRun,
    describe,
    parse_decision,
)
from rollback_coordinator.core.governor import EmbeddedGovernor, governor_for
from rollback_coordinator.core.remote_governor import (
    GovernorEndpoint,
    GovernorEndpointError,
    RemoteGovernorClient,
)

PLAN_ARTIFACT = Artifact(kind="plan", ref="plans/REL-1/ab.json", sha256="ab" * 32)
STATE_ARTIFACT = Artifact(kind="migration_state", ref="state/db.json", sha256="cd" * 32)


def governor_request(
    *,
    action: str = "rollback.service",
    environment: str = "staging",
    service: str | None = "api",
    profile: str | None = "balanced",
    planner: str | None = "pat",
    runner: str | None = "rita",
    approvers: tuple[str, ...] = (),
    artifacts: tuple[Artifact, ...] = (PLAN_ARTIFACT,),
    request_id: str = "req-1",
) -> GovernorRequest:
    """Build a request that the balanced profile authorizes unless a keyword changes it."""
    return GovernorRequest(
        request_id=request_id,
        intent="roll back REL-1 after checkout errors",
        action=action,
        scope=Scope(batch="REL-1", service=service, environment=environment),
        artifacts=list(artifacts),
        profile=profile,
        actors=Actors(planner=planner, runner=runner, approvers=list(approvers)),
    )


def decide(**changes: Any) -> Any:
    return EmbeddedGovernor(make_governance()).decide(governor_request(**changes))


def test_complete_request_is_authorized() -> None:
    decision = decide()

    assert isinstance(decision, Authorize)
    assert decision.decision == "AUTHORIZE"
    assert decision.rule == "default.authorize"
    assert decision.action == "rollback.service"
    assert decision.scope == {"batch": "REL-1", "service": "api", "environment": "staging"}
    assert decision.constraints == {}


def test_plan_action_scope_omits_service() -> None:
    decision = decide(action="rollback.plan", service=None)

    assert isinstance(decision, Authorize)
    assert decision.scope == {"batch": "REL-1", "environment": "staging"}


@pytest.mark.parametrize(
    ("changes", "missing"),
    [
        ({"artifacts": ()}, "plan"),
        ({"artifacts": (STATE_ARTIFACT,)}, "plan"),
        ({"profile": None}, "profile"),
        ({"runner": None}, "actors.runner"),
        ({"planner": None}, "actors.planner"),
        ({"service": None}, "scope.service"),
        ({"action": "migration.rewind"}, "migration_state"),
    ],
)
def test_missing_input_requests_clarification(changes: dict[str, Any], missing: str) -> None:
    decision = decide(**changes)

    assert isinstance(decision, RequestClarification)
    assert decision.decision == "REQUEST_CLARIFICATION"
    assert decision.rule == "input.complete"
    assert decision.missing_artifact == missing


def test_missing_input_checked_before_environment() -> None:
    decision = decide(environment="moon", profile=None)

    assert isinstance(decision, RequestClarification)
    assert decision.missing_artifact == "profile"


def test_rewind_with_migration_state_is_authorized() -> None:
    decision = decide(action="migration.rewind", artifacts=(PLAN_ARTIFACT, STATE_ARTIFACT))

    assert isinstance(decision, Authorize)
    assert decision.action == "migration.rewind"


def test_unknown_environment_is_denied() -> None:
    decision = decide(environment="moon")

    assert isinstance(decision, Deny)
    assert decision.rule == "repository.environment_known"
    assert decision.violated_rule == "repository.environment_known"
    assert "environment 'moon' is not declared" in decision.reason
    assert "staging, qa, prod" in decision.reason


def test_unknown_profile_is_denied() -> None:
    decision = decide(profile="relaxed")

    assert isinstance(decision, Deny)
    assert decision.rule == "repository.profile_known"
    assert "unknown profile 'relaxed'" in decision.reason


def test_profile_below_minimum_is_denied() -> None:
    decision = decide(environment="prod", profile="balanced")

    assert isinstance(decision, Deny)
    assert decision.rule == "repository.minimum_profile"
    assert decision.violated_rule == "repository.minimum_profile"
    assert "requires at least the strict profile" in decision.reason
    assert "asked for balanced" in decision.reason


def test_flow_below_balanced_minimum_is_denied() -> None:
    decision = decide(environment="qa", profile="flow")

    assert isinstance(decision, Deny)
    assert decision.rule == "repository.minimum_profile"


def test_profile_above_minimum_is_authorized() -> None:
    decision = decide(environment="staging", profile="balanced")

    assert isinstance(decision, Authorize)


def test_flow_allows_planner_as_runner() -> None:
    decision = decide(profile="flow", planner="pat", runner="pat")

    assert isinstance(decision, Authorize)
    assert decision.rule == "default.authorize"


def test_balanced_planner_as_runner_is_denied() -> None:
    decision = decide(profile="balanced", planner="pat", runner="pat")

    assert isinstance(decision, Deny)
    assert decision.rule == "separation.propose_only"
    assert decision.violated_rule == "separation.propose_only"
    assert "'pat' is both" in decision.reason


def test_balanced_allows_planner_as_approver() -> None:
    decision = decide(profile="balanced", approvers=("pat",))

    assert isinstance(decision, Authorize)


def test_strict_planner_as_runner_is_denied() -> None:
    decision = decide(profile="strict", planner="pat", runner="pat", approvers=("dora", "dan"))

    assert isinstance(decision, Deny)
    assert decision.rule == "separation.full_split"


@pytest.mark.parametrize("approver", ["pat", "rita"])
def test_strict_approver_planner_or_runner_denied(approver: str) -> None:
    decision = decide(profile="strict", approvers=("dora", approver))

    assert isinstance(decision, Deny)
    assert decision.rule == "separation.full_split"
    assert f"'{approver}' approved" in decision.reason


def test_strict_one_approver_is_denied() -> None:
    decision = decide(profile="strict", approvers=("dora",))

    assert isinstance(decision, Deny)
    assert decision.rule == "artifacts.approvals"
    assert decision.violated_rule == "artifacts.approvals"
    assert "needs 2 distinct approvers, found 1" in decision.reason


def test_strict_repeated_approver_counts_once() -> None:
    decision = decide(profile="strict", approvers=("dora", "dora"))

    assert isinstance(decision, Deny)
    assert decision.rule == "artifacts.approvals"


def test_strict_two_approvers_are_authorized() -> None:
    decision = decide(profile="strict", environment="prod", approvers=("dora", "dan"))

    assert isinstance(decision, Authorize)
    assert decision.rule == "default.authorize"


def test_strict_plan_needs_no_approvers() -> None:
    decision = decide(profile="strict", action="rollback.plan", service=None)

    assert isinstance(decision, Authorize)


def test_strict_rewind_needs_approvers() -> None:
    decision = decide(
        profile="strict", action="migration.rewind", artifacts=(PLAN_ARTIFACT, STATE_ARTIFACT)
    )

    assert isinstance(decision, Deny)
    assert decision.rule == "artifacts.approvals"


def test_separation_checked_before_approvals() -> None:
    decision = decide(profile="strict", planner="pat", runner="pat")

    assert isinstance(decision, Deny)
    assert decision.rule == "separation.full_split"


def test_same_request_gets_same_decision_id() -> None:
    governor = EmbeddedGovernor(make_governance())
    request = governor_request()

    first = governor.decide(request)
    second = governor.decide(request)

    assert first.decision_id == second.decision_id
    assert first.decision_id.startswith("dec-")


def test_equal_requests_get_same_decision_id() -> None:
    assert decide(request_id="req-7").decision_id == decide(request_id="req-7").decision_id


def test_other_request_other_decision_id() -> None:
    assert decide(request_id="req-1").decision_id != decide(request_id="req-2").decision_id


def test_other_rule_gets_other_decision_id() -> None:
    authorized = decide(profile="balanced", planner="pat", runner="rita")
    denied = decide(profile="balanced", planner="rita", runner="rita")

    assert authorized.decision_id != denied.decision_id


def test_embedded_governor_is_default() -> None:
    governor = governor_for(make_governance())

    assert isinstance(governor, EmbeddedGovernor)


VALID_DECISIONS: list[tuple[dict[str, Any], type]] = [
    (
        {
            "decision": "AUTHORIZE",
            "decision_id": "dec-1",
            "rule": "default.authorize",
            "action": "rollback.service",
            "scope": {"batch": "REL-1", "service": "api"},
            "constraints": {"window": "22:00-23:00"},
        },
        Authorize,
    ),
    (
        {
            "decision": "DENY",
            "decision_id": "dec-2",
            "action": "rollback.service",
            "reason": "change freeze",
            "violated_rule": "freeze.active",
        },
        Deny,
    ),
    (
        {
            "decision": "REQUEST_CLARIFICATION",
            "decision_id": "dec-3",
            "missing_artifact": "migration_state",
        },
        RequestClarification,
    ),
    (
        {"decision": "ESCALATE", "decision_id": "dec-4", "human_review_required": "security"},
        Escalate,
    ),
    (
        {"decision": "TERMINATE_RUN", "decision_id": "dec-5", "reason": "incident declared"},
        TerminateRun,
    ),
]


@pytest.mark.parametrize(("data", "model"), VALID_DECISIONS)
def test_parse_valid_decision(data: dict[str, Any], model: type) -> None:
    decision = parse_decision(data)

    assert isinstance(decision, model)
    assert decision.decision == data["decision"]
    assert decision.decision_id == data["decision_id"]


def test_parse_authorize_keeps_fields() -> None:
    decision = parse_decision(VALID_DECISIONS[0][0])

    assert isinstance(decision, Authorize)
    assert decision.rule == "default.authorize"
    assert decision.scope == {"batch": "REL-1", "service": "api"}
    assert decision.constraints == {"window": "22:00-23:00"}


def test_parse_keeps_unknown_extra_fields() -> None:
    data = {**VALID_DECISIONS[4][0], "ticket": "INC-77"}

    decision = parse_decision(data)

    assert decision.model_extra == {"ticket": "INC-77"}


def test_parse_round_trips_embedded_decision() -> None:
    decision = decide(profile="strict", approvers=("dora",))

    assert parse_decision(decision.model_dump()) == decision


MALFORMED_DECISIONS: list[tuple[str, object, str]] = [
    (
        "missing decision_id",
        {"decision": "TERMINATE_RUN", "reason": "r"},
        "TERMINATE_RUN.decision_id",
    ),
    (
        "empty decision_id",
        {"decision": "TERMINATE_RUN", "decision_id": "", "reason": "r"},
        "TERMINATE_RUN.decision_id",
    ),
    ("unknown decision", {"decision": "MAYBE", "decision_id": "d"}, "MAYBE"),
    ("lowercase decision", {"decision": "authorize", "decision_id": "d"}, "authorize"),
    (
        "missing decision",
        {"decision_id": "d", "reason": "r"},
        "discriminator 'decision'",
    ),
    (
        "number as action",
        {"decision": "DENY", "decision_id": "d", "action": 7, "reason": "r", "violated_rule": "v"},
        "DENY.action",
    ),
    (
        "list as scope",
        {"decision": "AUTHORIZE", "decision_id": "d", "action": "a", "scope": ["api"]},
        "AUTHORIZE.scope",
    ),
    (
        "number as decision_id",
        {"decision": "ESCALATE", "decision_id": 4, "human_review_required": "dba"},
        "ESCALATE.decision_id",
    ),
    (
        "deny without violated_rule",
        {"decision": "DENY", "decision_id": "d", "action": "a", "reason": "r"},
        "DENY.violated_rule",
    ),
    (
        "escalate without role",
        {"decision": "ESCALATE", "decision_id": "d"},
        "ESCALATE.human_review_required",
    ),
    ("list", ["AUTHORIZE"], "body"),
    ("string", "AUTHORIZE", "body"),
    ("none", None, "body"),
]


@pytest.mark.parametrize(
    ("data", "expected"),
    [(data, expected) for _, data, expected in MALFORMED_DECISIONS],
    ids=[case for case, _, _ in MALFORMED_DECISIONS],
)
def test_parse_malformed_decision_raises(data: object, expected: str) -> None:
    with pytest.raises(DecisionFormatError) as caught:
        parse_decision(data)

    assert str(caught.value).startswith("malformed governor decision at ")
    assert expected in str(caught.value)


def test_describe_deny_names_reason_and_rule() -> None:
    decision = decide(environment="prod", profile="balanced")

    assert describe(decision) == (
        f"DENY {decision.decision_id} by rule 'repository.minimum_profile': "
        f"{decision.reason} (violated repository.minimum_profile)"
    )


def test_describe_clarification_names_missing() -> None:
    decision = decide(runner=None)

    assert describe(decision).endswith("by rule 'input.complete': missing actors.runner")


FRIDAY_EVENING = datetime(2025, 1, 10, 15, 30, tzinfo=UTC)  # 16:30 in Berlin, in the window
THURSDAY_EVENING = datetime(2025, 1, 9, 15, 30, tzinfo=UTC)
FREEZE_WINDOWS: list[dict[str, Any]] = [
    {
        "name": "friday-evenings",
        "weekdays": ["fri"],
        "start": "16:00",
        "end": "00:00",
        "timezone": "Europe/Berlin",
        "override_role": "sre",
    },
    {
        "name": "year-end",
        "start": "2025-12-20T00:00:00+01:00",
        "end": "2026-01-05T00:00:00+01:00",
        "environments": ["prod"],
    },
]


def decide_at(
    instant: datetime, windows: list[dict[str, Any]] | None = None, **changes: Any
) -> Any:
    governance = make_governance(freeze_windows=FREEZE_WINDOWS if windows is None else windows)
    governor = EmbeddedGovernor(governance, now=lambda: instant)
    return governor.decide(governor_request(**changes))


def test_outside_freeze_is_authorized() -> None:
    decision = decide_at(THURSDAY_EVENING)

    assert isinstance(decision, Authorize)
    assert decision.constraints == {}


def test_freeze_escalates_to_override_role() -> None:
    decision = decide_at(FRIDAY_EVENING)

    assert isinstance(decision, Escalate)
    assert decision.rule == "freeze.friday-evenings"
    assert decision.human_review_required == "sre"


def test_freeze_override_by_role_holder_passes() -> None:
    decision = decide_at(FRIDAY_EVENING, approvers=("pat", "dora"), planner="sam")

    assert isinstance(decision, Authorize)
    assert decision.rule == "default.authorize"
    assert decision.constraints == {
        "freeze_override": [
            {
                "window": "friday-evenings",
                "role": "sre",
                "by": ["pat"],
                "until": "2025-01-11T00:00:00+01:00",
                "acknowledged": False,
            }
        ]
    }


def test_freeze_override_by_non_holder_escalates() -> None:
    decision = decide_at(FRIDAY_EVENING, approvers=("dora", "sam"))

    assert isinstance(decision, Escalate)
    assert decision.human_review_required == "sre"


def test_runner_holding_override_role_escalates() -> None:
    decision = decide_at(FRIDAY_EVENING, runner="pat", planner="rita")

    assert isinstance(decision, Escalate)
    assert decision.rule == "freeze.friday-evenings"


def test_freeze_without_override_role_denies() -> None:
    decision = decide_at(datetime(2025, 12, 23, 10, 0, tzinfo=UTC), environment="prod")

    assert isinstance(decision, Deny)
    assert decision.rule == "freeze.year-end"
    assert decision.violated_rule == "freeze.year-end"
    assert "change freeze 'year-end' is in force" in decision.reason
    assert "until 2026-01-05T00:00:00+01:00" in decision.reason
    assert "names no override_role" in decision.reason


def test_freeze_for_other_environment_ignored() -> None:
    decision = decide_at(datetime(2025, 12, 23, 10, 0, tzinfo=UTC), environment="staging")

    assert isinstance(decision, Authorize)


def test_freeze_checked_before_missing_input() -> None:
    decision = decide_at(FRIDAY_EVENING, profile=None)

    assert isinstance(decision, Escalate)


def test_each_active_freeze_needs_override() -> None:
    windows = [
        FREEZE_WINDOWS[0],
        {**FREEZE_WINDOWS[1], "override_role": "security", "environments": []},
    ]
    christmas_friday = datetime(2025, 12, 26, 15, 30, tzinfo=UTC)

    decision = decide_at(christmas_friday, windows, approvers=("pat",), planner="dora")

    assert isinstance(decision, Escalate)
    assert decision.rule == "freeze.year-end"
    assert decision.human_review_required == "security"


def test_all_overrides_are_cited() -> None:
    windows = [
        FREEZE_WINDOWS[0],
        {**FREEZE_WINDOWS[1], "override_role": "security", "environments": []},
    ]
    christmas_friday = datetime(2025, 12, 26, 15, 30, tzinfo=UTC)

    decision = decide_at(christmas_friday, windows, approvers=("sam", "pat"), planner="dora")

    assert isinstance(decision, Authorize)
    overrides = decision.constraints["freeze_override"]
    assert [(item["window"], item["by"]) for item in overrides] == [
        ("friday-evenings", ["pat"]),
        ("year-end", ["sam"]),
    ]


def test_freeze_override_records_acknowledgment() -> None:
    governance = make_governance(freeze_windows=FREEZE_WINDOWS)
    request = governor_request(approvers=("pat",), planner="sam").model_copy(
        update={"freeze_acknowledged": True}
    )

    decision = EmbeddedGovernor(governance, now=lambda: FRIDAY_EVENING).decide(request)

    assert isinstance(decision, Authorize)
    assert decision.constraints["freeze_override"][0]["acknowledged"] is True


def test_override_still_meets_later_rules() -> None:
    decision = decide_at(FRIDAY_EVENING, profile="strict", approvers=("pat",), planner="pat")

    assert isinstance(decision, Deny)
    assert decision.rule == "separation.full_split"


def test_naive_clock_is_rejected() -> None:
    governor = EmbeddedGovernor(make_governance(), now=lambda: datetime(2025, 1, 10, 12, 0))

    with pytest.raises(ValueError, match="naive datetime"):
        governor.decide(governor_request())


AUTHORITY: list[dict[str, Any]] = [
    {"action": "migration.rewind", "environments": ["qa"], "roles": ["dba"]},
]
REWIND = {"action": "migration.rewind", "artifacts": (PLAN_ARTIFACT, STATE_ARTIFACT)}


def decide_with_authority(rules: list[dict[str, Any]] | None = None, **changes: Any) -> Any:
    governance = make_governance(authority=AUTHORITY if rules is None else rules)
    return EmbeddedGovernor(governance).decide(governor_request(**{**REWIND, **changes}))


def test_authority_approver_with_role_allowed() -> None:
    decision = decide_with_authority(environment="qa", approvers=("dan",))

    assert isinstance(decision, Authorize)


def test_authority_runner_with_role_allowed() -> None:
    decision = decide_with_authority(environment="qa", runner="dora")

    assert isinstance(decision, Authorize)


def test_authority_without_role_denied() -> None:
    decision = decide_with_authority(environment="qa", approvers=("sam",))

    assert isinstance(decision, Deny)
    assert decision.rule == "authority.migration.rewind"
    assert decision.violated_rule == "authority.migration.rewind"
    assert decision.reason == (
        "migration.rewind in environment 'qa' needs the runner or an approver holding one of "
        "the roles dba, and none of 'rita', 'sam' does"
    )


def test_authority_ignores_planner_role() -> None:
    decision = decide_with_authority(environment="qa", planner="dora")

    assert isinstance(decision, Deny)
    assert decision.rule == "authority.migration.rewind"


def test_authority_other_environment_unrestricted() -> None:
    decision = decide_with_authority(environment="staging")

    assert isinstance(decision, Authorize)


def test_authority_other_action_unrestricted() -> None:
    decision = decide_with_authority(environment="qa", action="rollback.service")

    assert isinstance(decision, Authorize)


def test_authority_rule_without_environments_applies() -> None:
    rules = [{"action": "rollback.service", "roles": ["sre"]}]

    decision = decide_with_authority(rules, action="rollback.service", artifacts=(PLAN_ARTIFACT,))

    assert isinstance(decision, Deny)
    assert decision.rule == "authority.rollback.service"


def test_authority_held_by_approvers_only() -> None:
    rules = [{**AUTHORITY[0], "held_by": ["approvers"]}]

    decision = decide_with_authority(rules, environment="qa", runner="dora")

    assert isinstance(decision, Deny)
    assert decision.reason.endswith(
        "needs an approver holding one of the roles dba, and there is nobody to hold one"
    )


def test_authority_every_matching_rule_applies() -> None:
    rules = [*AUTHORITY, {"action": "migration.rewind", "roles": ["security"]}]

    denied = decide_with_authority(rules, environment="qa", approvers=("dan",))
    allowed = decide_with_authority(rules, environment="qa", approvers=("dan", "sam"))

    assert isinstance(denied, Deny)
    assert "roles security" in denied.reason
    assert isinstance(allowed, Authorize)


def test_authority_checked_before_minimum_profile() -> None:
    decision = decide_with_authority(environment="qa", profile="flow")

    assert isinstance(decision, Deny)
    assert decision.rule == "authority.migration.rewind"


def test_malformed_artifact_digest_is_denied() -> None:
    artifact = Artifact(kind="plan", ref="plans/REL-1/x.json", sha256="AB" * 32)

    decision = decide(artifacts=(artifact,))

    assert isinstance(decision, Deny)
    assert decision.rule == "artifacts.digest"
    assert "the plan artifact 'plans/REL-1/x.json'" in decision.reason


def test_remote_governor_selected_with_endpoint() -> None:
    endpoint = GovernorEndpoint(base_url="https://governor.example.com/hummbl", token="t0k")

    governor = governor_for(make_governance(governor="remote"), endpoint)

    assert isinstance(governor, RemoteGovernorClient)
    assert governor.url == "https://governor.example.com/hummbl/v1/decisions"


def test_remote_governor_without_endpoint_fails_closed() -> None:
    with pytest.raises(GovernorEndpointError) as caught:
        governor_for(make_governance(governor="remote"))

    assert "Airflow connection 'hummbl_governor_default'" in str(caught.value)
    assert "AIRFLOW_CONN_HUMMBL_GOVERNOR_DEFAULT=" in str(caught.value)


def test_governor_for_passes_clock() -> None:
    governance = make_governance(freeze_windows=FREEZE_WINDOWS)

    decision = governor_for(governance, now=lambda: FRIDAY_EVENING).decide(governor_request())

    assert isinstance(decision, Escalate)
