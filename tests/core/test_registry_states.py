"""Registry states added for the watcher: pending and skipped requests, orphaned batches."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from rollback_coordinator.core.batches import Batch, CommitInfo, RollbackRequest, ScanResult
from rollback_coordinator.core.errors import CoordinatorError
from rollback_coordinator.core.registry import BatchRegistry, FoundRequest, RegistrySnapshot

SHA = "a" * 40
REPO = "https://git.example.com/shop.git"
REQUEST = RollbackRequest("REL-1", "tag", ref="rollback/REL-1", sha=SHA)


@pytest.fixture
def registry(tmp_path: Path) -> BatchRegistry:
    return BatchRegistry(tmp_path / "registry" / "batches.json")


def one_batch() -> Batch:
    commit = CommitInfo(
        sha=SHA,
        subject="REL-1: ship orders",
        author="Ada Lovelace <ada@example.com>",
        authored_at="2025-01-01T00:00:00+00:00",
        files=("services/api/handlers.py",),
        parents=("b" * 40,),
    )
    return Batch("REL-1", (commit,), SHA, "b" * 40, 1, commit.files)


def queue(registry: BatchRegistry, pending: bool = True, reason: str | None = None) -> None:
    def change(current: RegistrySnapshot) -> tuple[RegistrySnapshot, None]:
        found = {REQUEST.key: FoundRequest(REQUEST, "2025-01-02T00:00:00+00:00", reason)}
        if pending:
            return replace(current, pending=found), None
        return replace(current, skipped=found), None

    registry.update(change)


def test_pending_request_round_trip(registry: BatchRegistry) -> None:
    queue(registry)

    found = registry.load().pending[REQUEST.key]

    assert found.request == REQUEST
    assert found.found_at == "2025-01-02T00:00:00+00:00"


def test_skipped_request_keeps_reason(registry: BatchRegistry) -> None:
    queue(registry, pending=False, reason="batch REL-1 is retired")

    assert registry.load().skipped[REQUEST.key].skip_reason == "batch REL-1 is retired"


def test_record_request_moves_pending_to_started(registry: BatchRegistry) -> None:
    queue(registry)

    assert registry.record_request(REQUEST.key) is True

    snapshot = registry.load()
    assert snapshot.pending == {}
    assert REQUEST.key in snapshot.requests


def test_recording_twice_writes_once(registry: BatchRegistry) -> None:
    registry.record_request(REQUEST.key)
    written = registry.path.stat().st_mtime_ns

    assert registry.record_request(REQUEST.key) is False
    assert registry.path.stat().st_mtime_ns == written


def test_file_lists_request_states(registry: BatchRegistry) -> None:
    queue(registry)

    data = json.loads(registry.path.read_text(encoding="utf-8"))

    assert data["pending_requests"][REQUEST.key] == {
        "batch": "REL-1",
        "source": "tag",
        "ref": "rollback/REL-1",
        "sha": SHA,
        "found_at": "2025-01-02T00:00:00+00:00",
    }
    assert data["skipped_requests"] == {}


def test_orphaned_batch_round_trip(registry: BatchRegistry) -> None:
    registry.register(ScanResult(batches={"REL-1": one_batch()}), REPO)

    def orphan(current: RegistrySnapshot) -> tuple[RegistrySnapshot, None]:
        entry = replace(
            current.batches["REL-1"],
            orphaned_at="2025-02-01T00:00:00+00:00",
            orphaned_reason="gone",
        )
        return replace(current, batches={"REL-1": entry}), None

    registry.update(orphan)

    entry = registry.load().batches["REL-1"]
    data = json.loads(registry.path.read_text(encoding="utf-8"))
    assert entry.orphaned is True
    assert entry.orphaned_reason == "gone"
    assert data["batches"]["REL-1"]["orphaned"] is True


def test_file_without_new_fields_loads(registry: BatchRegistry) -> None:
    registry.path.parent.mkdir(parents=True)
    batch = {**one_batch().to_dict(), "registered_at": "2025-01-01T00:00:00+00:00", "repo": REPO}
    old = {"format": 1, "watermark": SHA, "batches": {"REL-1": batch}, "requests": {}}
    registry.path.write_text(json.dumps(old), encoding="utf-8")

    snapshot = registry.load()

    assert snapshot.pending == {}
    assert snapshot.batches["REL-1"].retired is False
    assert snapshot.batches["REL-1"].orphaned is False


def test_pending_entry_with_bad_sha_raises(registry: BatchRegistry) -> None:
    queue(registry)
    data = json.loads(registry.path.read_text(encoding="utf-8"))
    data["pending_requests"][REQUEST.key]["sha"] = "$(touch pwned)"
    registry.path.write_text(json.dumps(data), encoding="utf-8")

    with pytest.raises(CoordinatorError) as caught:
        registry.load()

    assert str(registry.path) in str(caught.value)
    assert "pending_requests" in str(caught.value)
    assert "field 'sha'" in str(caught.value)


def test_pending_entry_under_other_key_raises(registry: BatchRegistry) -> None:
    queue(registry)
    data = json.loads(registry.path.read_text(encoding="utf-8"))
    data["pending_requests"]["tag:REL-2@" + SHA] = data["pending_requests"].pop(REQUEST.key)
    registry.path.write_text(json.dumps(data), encoding="utf-8")

    with pytest.raises(CoordinatorError, match="different key"):
        registry.load()


def test_retired_mark_without_reason_raises(registry: BatchRegistry) -> None:
    registry.register(ScanResult(batches={"REL-1": one_batch()}), REPO)
    data = json.loads(registry.path.read_text(encoding="utf-8"))
    data["batches"]["REL-1"]["retired"] = True
    registry.path.write_text(json.dumps(data), encoding="utf-8")

    with pytest.raises(CoordinatorError, match="retired_at"):
        registry.load()
