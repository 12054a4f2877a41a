"""Retention of registered batches: which batches keep a rollback DAG.

Every DAG costs parse time and memory in every Airflow component, so old batches retire:
they stay in the registry with their audit history, but the factory builds no DAG for them.
Retirement is recomputed on every watcher pass, so raising a limit brings DAGs back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from rollback_coordinator.core.registry import RegisteredBatch, RegistrySnapshot
from rollback_coordinator.core.watch_config import RetentionPolicy


@dataclass(frozen=True)
class RetentionResult:
    """The registry after retention, and which batches changed state."""

    snapshot: RegistrySnapshot
    retired: list[str]
    reactivated: list[str]


def apply_retention(
    snapshot: RegistrySnapshot, policy: RetentionPolicy | None, now: datetime
) -> RetentionResult:
    """Mark the batches beyond ``policy`` retired and clear the mark on the others.

    Batches are ranked newest first by sequence. A batch is retired when its newest commit
    is older than ``max_age_days``, or when ``max_batches`` newer batches are already kept.
    A batch that stays retired keeps the time and reason of its first retirement.
    """
    if now.tzinfo is None:
        raise ValueError("apply_retention needs a timezone-aware 'now', such as datetime.now(UTC)")
    policy = policy or RetentionPolicy()
    ranked = sorted(
        snapshot.batches.values(), key=lambda entry: (entry.batch.sequence, entry.batch.id)
    )
    batches = dict(snapshot.batches)
    retired: list[str] = []
    reactivated: list[str] = []
    kept_count = 0
    stamp = now.isoformat(timespec="seconds")
    for entry in reversed(ranked):
        reason = _retire_reason(entry, policy, now, kept_count)
        if reason is None:
            kept_count += 1
        batch_id = entry.batch.id
        if reason is not None and not entry.retired:
            batches[batch_id] = replace(entry, retired_at=stamp, retired_reason=reason)
            retired.append(batch_id)
        elif reason is None and entry.retired:
            batches[batch_id] = replace(entry, retired_at=None, retired_reason=None)
            reactivated.append(batch_id)
    if not retired and not reactivated:
        return RetentionResult(snapshot, [], [])
    return RetentionResult(replace(snapshot, batches=batches), retired, reactivated)


def _retire_reason(
    entry: RegisteredBatch, policy: RetentionPolicy, now: datetime, kept_count: int
) -> str | None:
    if policy.max_age_days is not None:
        age = now - newest_commit_time(entry)
        if age > timedelta(days=policy.max_age_days):
            return (
                f"its newest commit is {age.days} days old, beyond "
                f"retention.max_age_days={policy.max_age_days}"
            )
    if policy.max_batches is not None and kept_count >= policy.max_batches:
        return (
            f"the {kept_count} newer batches already reach "
            f"retention.max_batches={policy.max_batches}"
        )
    return None


def newest_commit_time(entry: RegisteredBatch) -> datetime:
    """Return the latest author date of the batch's commits, or its registration time."""
    stamps = [commit.authored_at for commit in entry.batch.commits] or [entry.registered_at]
    return max(datetime.fromisoformat(stamp) for stamp in stamps)
