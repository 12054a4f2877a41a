"""Rollback order of services: dependents first, waits reduced to the edges that matter."""

from __future__ import annotations

from rollback_coordinator.core.ordering import rollback_order, transitive_dependents

# db <- api <- {worker, automations}, as depends_on lists.
EXAMPLE = {"db": [], "api": ["db"], "worker": ["api"], "automations": ["api"]}

# top depends on left and right, which both depend on base.
DIAMOND = {"base": [], "left": ["base"], "right": ["base"], "top": ["left", "right"]}


def test_all_touched_levels() -> None:
    levels, _ = rollback_order(["db", "api", "worker", "automations"], EXAMPLE)

    assert levels == {"worker": 0, "automations": 0, "api": 1, "db": 2}


def test_independent_dependents_share_level() -> None:
    levels, _ = rollback_order(["db", "api", "worker", "automations"], EXAMPLE)

    assert levels["worker"] == levels["automations"]


def test_api_waits_for_both_dependents() -> None:
    _, waits = rollback_order(["db", "api", "worker", "automations"], EXAMPLE)

    assert waits["api"] == ["automations", "worker"]


def test_db_waits_only_for_api() -> None:
    _, waits = rollback_order(["db", "api", "worker", "automations"], EXAMPLE)

    assert waits["db"] == ["api"]


def test_all_touched_leaves_wait_for_nothing() -> None:
    _, waits = rollback_order(["db", "api", "worker", "automations"], EXAMPLE)

    assert waits["worker"] == []
    assert waits["automations"] == []


def test_order_holds_through_untouched_service() -> None:
    levels, waits = rollback_order(["worker", "db"], EXAMPLE)

    assert levels == {"worker": 0, "db": 1}
    assert waits == {"worker": [], "db": ["worker"]}


def test_untouched_services_get_no_level() -> None:
    levels, waits = rollback_order(["worker", "db"], EXAMPLE)

    assert "api" not in levels
    assert "api" not in waits


def test_independent_services_share_level_zero() -> None:
    dependencies = {"billing": [], "search": [], "mailer": []}

    levels, waits = rollback_order(["search", "billing", "mailer"], dependencies)

    assert levels == {"billing": 0, "mailer": 0, "search": 0}
    assert waits == {"billing": [], "mailer": [], "search": []}


def test_lone_siblings_share_level_zero() -> None:
    levels, waits = rollback_order(["worker", "automations"], EXAMPLE)

    assert levels == {"automations": 0, "worker": 0}
    assert waits == {"automations": [], "worker": []}


def test_diamond_levels() -> None:
    levels, _ = rollback_order(["base", "left", "right", "top"], DIAMOND)

    assert levels == {"top": 0, "left": 1, "right": 1, "base": 2}


def test_diamond_waits_are_reduced() -> None:
    _, waits = rollback_order(["base", "left", "right", "top"], DIAMOND)

    assert waits == {"top": [], "left": ["top"], "right": ["top"], "base": ["left", "right"]}


def test_diamond_without_middle_keeps_order() -> None:
    levels, waits = rollback_order(["base", "top"], DIAMOND)

    assert levels == {"top": 0, "base": 1}
    assert waits == {"top": [], "base": ["top"]}


def test_diamond_with_one_side_touched() -> None:
    levels, waits = rollback_order(["base", "left", "top"], DIAMOND)

    assert levels == {"top": 0, "left": 1, "base": 2}
    assert waits["base"] == ["left"]


def test_reduction_keeps_edge_of_longer_path() -> None:
    # app depends on db directly and through cache, so db waits for cache, not for app.
    dependencies = {"db": [], "cache": ["db"], "app": ["db", "cache"]}

    levels, waits = rollback_order(["db", "cache", "app"], dependencies)

    assert levels == {"app": 0, "cache": 1, "db": 2}
    assert waits["db"] == ["cache"]
    assert waits["cache"] == ["app"]


def test_single_touched_service_level_zero() -> None:
    levels, waits = rollback_order(["db"], EXAMPLE)

    assert levels == {"db": 0}
    assert waits == {"db": []}


def test_nothing_touched_gives_empty_order() -> None:
    assert rollback_order([], EXAMPLE) == ({}, {})


def test_transitive_dependents_of_example() -> None:
    dependents = transitive_dependents(EXAMPLE)

    assert dependents["db"] == {"api", "worker", "automations"}
    assert dependents["api"] == {"worker", "automations"}
    assert dependents["worker"] == set()
