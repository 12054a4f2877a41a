"""Batch ids: validation, and the mapping between a batch id and its rollback DAG id.

A batch id becomes an Airflow DAG id, part of file names and a trigger-form parameter, so
every id must pass a fixed safety rule on top of the configurable ticket-key pattern.
"""

from __future__ import annotations

import re

from rollback_coordinator.core.errors import BatchIdError

BATCH_ID_PATTERN = r"^[A-Z][A-Z0-9]{0,15}-[1-9][0-9]{0,8}$"

# Letters, digits, '.', '_' and '-' only, so no character is active in a shell, a path
# or a Jinja template ('$', backtick, '{', '}', ';', whitespace and '/' all fail).
SAFE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"

DAG_ID_PREFIX = "rollback_"

_SAFE_ID = re.compile(SAFE_ID_PATTERN)
_SHOWN_VALUE_MAX_CHARS = 80


def validate_batch_id(
    value: object, pattern: str | re.Pattern[str] | None = BATCH_ID_PATTERN
) -> str:
    """Return ``value`` unchanged if it is a valid batch id, else raise BatchIdError.

    The id must match ``pattern`` (``None`` skips it) and always the safety rule
    SAFE_ID_PATTERN without '..'. Matching uses ``re.fullmatch``, because ``$`` alone
    also matches before a trailing newline.
    """
    if not isinstance(value, str):
        raise BatchIdError(f"invalid batch id {_shown(value)}: expected a string such as 'REL-42'")
    if not _is_safe(value):
        raise BatchIdError(
            f"invalid batch id {_shown(value)}: expected 1 to 64 characters from letters, digits, "
            f"'.', '_' and '-', starting with a letter or digit, without '..'"
        )
    if pattern is None:
        return value
    compiled = pattern if isinstance(pattern, re.Pattern) else re.compile(pattern)
    if compiled.fullmatch(value) is None:
        expected = compiled.pattern
        example = " such as 'REL-42'" if expected == BATCH_ID_PATTERN else ""
        raise BatchIdError(
            f"invalid batch id {_shown(value)}: expected a ticket key{example} "
            f"matching {expected}"
        )
    return value


def dag_id_for(batch_id: str) -> str:
    """Return the id of the rollback DAG of ``batch_id``, raising BatchIdError if it is unsafe."""
    return f"{DAG_ID_PREFIX}{validate_batch_id(batch_id, pattern=None)}"


def batch_id_from_dag_id(
    dag_id: str, pattern: str | re.Pattern[str] | None = BATCH_ID_PATTERN
) -> str | None:
    """Return the batch id of a rollback DAG id, or None if ``dag_id`` is not one.

    ``pattern`` keeps other DAGs whose id starts with ``rollback_`` from being taken for
    batches. Pass the pattern of the conventions in use, or None to accept any safe id.
    """
    if not dag_id.startswith(DAG_ID_PREFIX):
        return None
    candidate = dag_id[len(DAG_ID_PREFIX) :]
    try:
        return validate_batch_id(candidate, pattern)
    except BatchIdError:
        return None


def _is_safe(value: str) -> bool:
    return _SAFE_ID.fullmatch(value) is not None and ".." not in value


def _shown(value: object) -> str:
    """Return repr(value) cut to a length that keeps the error message on one short line."""
    text = repr(value)
    if len(text) <= _SHOWN_VALUE_MAX_CHARS:
        return text
    return f"{text[:_SHOWN_VALUE_MAX_CHARS]}... ({len(str(value))} characters)"
