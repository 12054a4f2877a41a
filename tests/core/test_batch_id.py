"""Batch id validation and the DAG id mapping."""

from __future__ import annotations

import pytest

from rollback_coordinator.core.batch_id import (
    batch_id_from_dag_id,
    dag_id_for,
    validate_batch_id,
)
from rollback_coordinator.core.errors import BatchIdError


@pytest.mark.parametrize("value", ["REL-42", "A-1", "OPS2-123456789", "ABCDEFGHIJKLMNOP-9"])
def test_valid_ticket_keys_pass(value: str) -> None:
    assert validate_batch_id(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "rel-42",
        "REL-0",
        "REL-042",
        "REL42",
        "REL-42\n",
        "REL-42 ",
        "ABCDEFGHIJKLMNOPQ-1",
        "REL-1234567890",
        "$(rm -rf ~)-1",
        "{{ 7*7 }}",
        "REL-1;id",
        "`id`-1",
        "REL/1",
    ],
)
def test_invalid_ids_raise(value: str) -> None:
    with pytest.raises(BatchIdError):
        validate_batch_id(value)


def test_error_shows_value_with_repr() -> None:
    with pytest.raises(BatchIdError) as caught:
        validate_batch_id("REL-1\nrm -rf /")
    message = str(caught.value)
    assert "'REL-1\\nrm -rf /'" in message
    assert "\n" not in message


def test_error_names_expected_form() -> None:
    with pytest.raises(BatchIdError) as caught:
        validate_batch_id("rel-1")
    assert "REL-42" in str(caught.value)
    assert "^[A-Z][A-Z0-9]{0,15}-[1-9][0-9]{0,8}$" in str(caught.value)


def test_error_for_long_value_stays_short() -> None:
    with pytest.raises(BatchIdError) as caught:
        validate_batch_id("X" * 10_000)
    assert len(str(caught.value)) < 300


def test_non_string_raises() -> None:
    with pytest.raises(BatchIdError):
        validate_batch_id(42)  # type: ignore[arg-type]


def test_custom_pattern_accepts_its_form() -> None:
    assert validate_batch_id("release-2024.05", r"release-\d{4}\.\d{2}") == "release-2024.05"


@pytest.mark.parametrize(
    "value", ["a b", "a$b", "a`b", "a{b", "a}b", "a;b", "a/b", "a..b", ".hidden", "x" * 65]
)
def test_custom_pattern_cannot_bypass_safety_rule(value: str) -> None:
    with pytest.raises(BatchIdError):
        validate_batch_id(value, r".*")


def test_none_pattern_applies_only_safety_rule() -> None:
    assert validate_batch_id("release_2024.05", None) == "release_2024.05"


def test_dag_id_for_prefixes_batch_id() -> None:
    assert dag_id_for("REL-42") == "rollback_REL-42"


def test_dag_id_for_rejects_unsafe_id() -> None:
    with pytest.raises(BatchIdError):
        dag_id_for("{{ 7*7 }}")


def test_batch_id_from_dag_id_round_trip() -> None:
    assert batch_id_from_dag_id(dag_id_for("REL-42")) == "REL-42"


@pytest.mark.parametrize(
    "dag_id", ["deploy_REL-42", "rollback_", "rollback_coordinator_cleanup", "rollback_a b"]
)
def test_batch_id_from_other_dag_id_is_none(dag_id: str) -> None:
    assert batch_id_from_dag_id(dag_id) is None


def test_batch_id_from_dag_id_with_custom_pattern() -> None:
    assert batch_id_from_dag_id("rollback_ops.7", pattern=r"ops\.\d+") == "ops.7"
