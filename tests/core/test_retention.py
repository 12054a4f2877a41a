"""Retention: old batches stop getting DAGs but stay in the registry with their history."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from git_repos import GitRepo

from rollback_coordinator.core.batches import Batch, BatchConventions, CommitInfo, ScanResult
from rollback_coordinator.core.registry import BatchRegistry, RegistrySnapshot, active_batches
from rollback_coordinator.core.retention import apply_retention
from rollback_coordinator.core.watch import watch_once
from rollback_coordinator.core.watch_config import RetentionPolicy

NOW = datetime(2025, 6, 1, tzinfo=UTC)
REPO = "https://git.example.com/shop.git"


def make_batch(batch_id: str, sequence: int, days_old: int) -> Batch:
    authored_at = (NOW - timedelta(days=days_old)).isoformat()
    commit = CommitInfo(
        sha=f"{sequence:040x}",
        subject=f"{batch_id}: change",
        author="Ada Lovelace <ada@example.com>",
        authored_at=authored_at,
        files=("services/api/handlers.py",),
        parents=(f"{sequence - 1:040x}",),
    )
    return Batch(
        id=batch_id,
        commits=(commit,),
        from_ref=commit.sha,
        to_ref=commit.parents[0],
        sequence=sequence,
        files=commit.files,
    )


@pytest.fixture
def registry(tmp_path: Path) -> BatchRegistry:
    return BatchRegistry(tmp_path / "registry" / "batches.json")


def registered(registry: BatchRegistry, *batches: Batch) -> RegistrySnapshot:
    registry.register(ScanResult(batches={batch.id: batch for batch in batches}), REPO)
    return registry.load()


def three_batches(registry: BatchRegistry) -> RegistrySnapshot:
    return registered(
        registry,
        make_batch("REL-1", 1, days_old=200),
        make_batch("REL-2", 2, days_old=40),
        make_batch("REL-3", 3, days_old=1),
    )


def test_max_batches_keeps_newest(registry: BatchRegistry) -> None:
    result = apply_retention(three_batches(registry), RetentionPolicy(max_batches=2), NOW)

    assert result.retired == ["REL-1"]
    assert sorted(active_batches(result.snapshot)) == ["REL-2", "REL-3"]


def test_max_age_retires_old_batches(registry: BatchRegistry) -> None:
    result = apply_retention(three_batches(registry), RetentionPolicy(max_age_days=30), NOW)

    assert sorted(result.retired) == ["REL-1", "REL-2"]
    assert "200 days old" in (result.snapshot.batches["REL-1"].retired_reason or "")


def test_both_limits_apply_together(registry: BatchRegistry) -> None:
    policy = RetentionPolicy(max_age_days=100, max_batches=1)

    result = apply_retention(three_batches(registry), policy, NOW)

    assert sorted(result.retired) == ["REL-1", "REL-2"]
    assert "max_batches=1" in (result.snapshot.batches["REL-2"].retired_reason or "")


def test_no_limits_retire_nothing(registry: BatchRegistry) -> None:
    snapshot = three_batches(registry)

    result = apply_retention(snapshot, RetentionPolicy(), NOW)

    assert result.retired == []
    assert result.snapshot is snapshot


def test_raised_limit_reactivates_batch(registry: BatchRegistry) -> None:
    retired = apply_retention(three_batches(registry), RetentionPolicy(max_batches=1), NOW)

    result = apply_retention(retired.snapshot, RetentionPolicy(max_batches=2), NOW)

    assert result.reactivated == ["REL-2"]
    assert result.snapshot.batches["REL-2"].retired is False
    assert result.snapshot.batches["REL-1"].retired is True


def test_retirement_time_is_kept(registry: BatchRegistry) -> None:
    first = apply_retention(three_batches(registry), RetentionPolicy(max_batches=2), NOW)

    later = apply_retention(first.snapshot, RetentionPolicy(max_batches=2), NOW + timedelta(days=3))

    assert later.retired == []
    assert later.snapshot.batches["REL-1"].retired_at == NOW.isoformat(timespec="seconds")


def test_retired_batch_keeps_its_commits(registry: BatchRegistry) -> None:
    snapshot = three_batches(registry)

    result = apply_retention(snapshot, RetentionPolicy(max_batches=1), NOW)

    assert result.snapshot.batches["REL-1"].batch == snapshot.batches["REL-1"].batch


def test_active_batches_skip_retired(registry: BatchRegistry) -> None:
    result = apply_retention(three_batches(registry), RetentionPolicy(max_batches=1), NOW)

    assert list(active_batches(result.snapshot)) == ["REL-3"]


def test_active_batches_keep_orphaned(registry: BatchRegistry) -> None:
    snapshot = three_batches(registry)
    entry = replace(snapshot.batches["REL-2"], orphaned_at="2025-05-01T00:00:00+00:00")
    orphaned = replace(snapshot, batches={**snapshot.batches, "REL-2": entry})

    assert "REL-2" in active_batches(orphaned)


def test_naive_now_raises(registry: BatchRegistry) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        apply_retention(three_batches(registry), RetentionPolicy(), datetime(2025, 6, 1))


def test_registry_file_marks_retired_batch(registry: BatchRegistry) -> None:
    three_batches(registry)
    policy = RetentionPolicy(max_batches=2)

    registry.update(lambda current: (apply_retention(current, policy, NOW).snapshot, None))

    data = json.loads(registry.path.read_text(encoding="utf-8"))
    assert data["batches"]["REL-1"]["retired"] is True
    assert data["batches"]["REL-1"]["retired_at"] == NOW.isoformat(timespec="seconds")
    assert "max_batches=2" in data["batches"]["REL-1"]["retired_reason"]
    assert data["batches"]["REL-3"]["retired"] is False


def test_registration_keeps_retirement(registry: BatchRegistry) -> None:
    three_batches(registry)
    policy = RetentionPolicy(max_batches=2)
    registry.update(lambda current: (apply_retention(current, policy, NOW).snapshot, None))

    registered(registry, make_batch("REL-1", 1, days_old=200))

    assert registry.load().batches["REL-1"].retired is True


def test_watch_pass_retires_old_batches(tmp_path: Path, registry: BatchRegistry) -> None:
    repo = GitRepo(tmp_path / "repo")
    old = int((NOW - timedelta(days=90)).timestamp())
    recent = int((NOW - timedelta(days=2)).timestamp())
    repo.commit("REL-1: ship orders", {"services/api/handlers.py": "2\n"}, date=old)
    repo.commit("REL-2: tune the worker", {"services/worker/queue.py": "2\n"}, date=recent)

    report = watch_once(
        repo.path,
        registry,
        BatchConventions(),
        fetch=False,
        remote=None,
        retention=RetentionPolicy(max_age_days=30),
        now=NOW,
    )

    assert report.retired == ["REL-1"]
    assert list(active_batches(registry.load())) == ["REL-2"]
    assert "REL-1" in registry.load().batches
