"""The batch registry file: round trips, merging, atomic writes and concurrent writers."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import subprocess
from multiprocessing.queues import Queue
from pathlib import Path

import pytest

from rollback_coordinator.core.batches import Batch, CommitInfo, ScanResult, scan_repository
from rollback_coordinator.core.errors import CoordinatorError
from rollback_coordinator.core.registry import (
    BatchRegistry,
    RegistrySnapshot,
    load_registry_batches,
)

REPO = "git@example.com:shop/services.git"


def make_commit(sha: str, parent: str, files: tuple[str, ...]) -> CommitInfo:
    return CommitInfo(
        sha=sha,
        subject=f"change {sha}",
        author="Ada Lovelace <ada@example.com>",
        authored_at="2024-01-01T00:00:00+00:00",
        files=files,
        parents=(parent,),
    )


def make_batch(batch_id: str, commits: list[CommitInfo], sequence: int) -> Batch:
    return Batch(
        id=batch_id,
        commits=tuple(commits),
        from_ref=commits[-1].sha,
        to_ref=commits[0].parents[0],
        sequence=sequence,
        files=tuple(sorted({name for commit in commits for name in commit.files})),
    )


def make_scan(*batches: Batch, head: str | None = "f" * 40, since: str | None = None) -> ScanResult:
    return ScanResult(batches={batch.id: batch for batch in batches}, head=head, since=since)


@pytest.fixture
def registry(tmp_path: Path) -> BatchRegistry:
    return BatchRegistry(tmp_path / "registry" / "batches.json")


def test_missing_file_loads_empty(registry: BatchRegistry) -> None:
    assert registry.load() == RegistrySnapshot()


def test_register_round_trip(registry: BatchRegistry) -> None:
    batch = make_batch("REL-1", [make_commit("b1", "a0", ("api/x.yaml",))], sequence=3)
    registry.register(make_scan(batch, head="c" * 40), REPO)
    snapshot = registry.load()
    assert snapshot.watermark == "c" * 40
    assert snapshot.batches["REL-1"].batch == batch
    assert snapshot.batches["REL-1"].repo == REPO


def test_registered_at_is_utc_timestamp(registry: BatchRegistry) -> None:
    batch = make_batch("REL-1", [make_commit("b1", "a0", ("a",))], sequence=0)
    registry.register(make_scan(batch), REPO)
    assert registry.load().batches["REL-1"].registered_at.endswith("+00:00")


def test_file_content_follows_documented_layout(registry: BatchRegistry) -> None:
    batch = make_batch("REL-1", [make_commit("b1", "a0", ("a",))], sequence=0)
    registry.register(make_scan(batch, head="c" * 40), REPO)
    registry.record_request("tag:REL-1@b1")
    data = json.loads(registry.path.read_text(encoding="utf-8"))
    assert data["format"] == 1
    assert data["watermark"] == "c" * 40
    assert data["batches"]["REL-1"]["from_ref"] == "b1"
    assert data["batches"]["REL-1"]["repo"] == REPO
    assert list(data["requests"]) == ["tag:REL-1@b1"]


def test_register_returns_only_new_ids(registry: BatchRegistry) -> None:
    first = make_batch("REL-1", [make_commit("b1", "a0", ("a",))], sequence=0)
    second = make_batch("REL-2", [make_commit("b2", "b1", ("b",))], sequence=1)
    assert registry.register(make_scan(first), REPO) == ["REL-1"]
    assert registry.register(make_scan(first, second), REPO) == ["REL-2"]
    assert registry.register(make_scan(first, second), REPO) == []


def test_new_ids_are_ordered_oldest_first(registry: BatchRegistry) -> None:
    newer = make_batch("REL-9", [make_commit("b9", "b1", ("b",))], sequence=5)
    older = make_batch("REL-10", [make_commit("b1", "a0", ("a",))], sequence=1)
    assert registry.register(make_scan(newer, older), REPO) == ["REL-10", "REL-9"]


def test_incremental_scan_extends_known_batch(registry: BatchRegistry) -> None:
    first = make_commit("b1", "a0", ("api/x.yaml",))
    later = make_commit("b3", "b2", ("db/y.yaml",))
    registry.register(make_scan(make_batch("REL-1", [first], sequence=1)), REPO)
    registry.register(make_scan(make_batch("REL-1", [later], sequence=3), since="b2"), REPO)
    batch = registry.load().batches["REL-1"].batch
    assert [commit.sha for commit in batch.commits] == ["b1", "b3"]
    assert batch.from_ref == "b3"
    assert batch.to_ref == "a0"
    assert batch.sequence == 3
    assert batch.files == ("api/x.yaml", "db/y.yaml")


def test_extended_batch_keeps_registration_time(registry: BatchRegistry) -> None:
    first = make_batch("REL-1", [make_commit("b1", "a0", ("a",))], sequence=1)
    registry.register(make_scan(first), REPO)
    registered_at = registry.load().batches["REL-1"].registered_at
    later = make_batch("REL-1", [make_commit("b3", "b2", ("b",))], sequence=3)
    registry.register(make_scan(later, since="b2"), REPO)
    assert registry.load().batches["REL-1"].registered_at == registered_at


def test_incremental_rescan_does_not_duplicate_commits(registry: BatchRegistry) -> None:
    batch = make_batch("REL-1", [make_commit("b1", "a0", ("a",))], sequence=1)
    registry.register(make_scan(batch), REPO)
    registry.register(make_scan(batch, since="a0"), REPO)
    assert registry.load().batches["REL-1"].batch == batch


def test_full_scan_replaces_known_batch(registry: BatchRegistry) -> None:
    old = make_batch("REL-1", [make_commit("b1", "a0", ("a",))], sequence=1)
    rewritten = make_batch("REL-1", [make_commit("c1", "a0", ("a",))], sequence=1)
    registry.register(make_scan(old), REPO)
    registry.register(make_scan(rewritten), REPO)
    assert registry.load().batches["REL-1"].batch == rewritten


def test_scan_without_head_keeps_watermark(registry: BatchRegistry) -> None:
    registry.register(make_scan(head="c" * 40), REPO)
    registry.register(make_scan(head=None), REPO)
    assert registry.load().watermark == "c" * 40


def test_register_keeps_recorded_requests(registry: BatchRegistry) -> None:
    registry.record_request("tag:REL-1@b1")
    registry.register(make_scan(make_batch("REL-1", [make_commit("b1", "a0", ("a",))], 0)), REPO)
    assert "tag:REL-1@b1" in registry.load().requests


def test_record_request_true_only_once(registry: BatchRegistry) -> None:
    assert registry.record_request("tag:REL-1@b1") is True
    assert registry.record_request("tag:REL-1@b1") is False
    assert registry.record_request("trailer:REL-1@b1") is True


def test_record_request_rejects_empty_key(registry: BatchRegistry) -> None:
    with pytest.raises(ValueError):
        registry.record_request("")


def test_load_registry_batches_returns_batches(registry: BatchRegistry) -> None:
    batch = make_batch("REL-1", [make_commit("b1", "a0", ("a",))], sequence=0)
    registry.register(make_scan(batch), REPO)
    assert load_registry_batches(registry.path) == {"REL-1": batch}


def test_scanned_repository_round_trip(registry: BatchRegistry, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    environment = {
        **os.environ,
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Ada",
        "GIT_AUTHOR_EMAIL": "ada@example.com",
        "GIT_COMMITTER_NAME": "Ada",
        "GIT_COMMITTER_EMAIL": "ada@example.com",
        "GIT_AUTHOR_DATE": "1700000000 +0000",
        "GIT_COMMITTER_DATE": "1700000000 +0000",
    }
    subprocess.run(["git", "init", "-q", str(repo)], check=True, env=environment)
    for index, message in enumerate(["initial", "REL-1: é change", "[REL-2] other"]):
        (repo / f"file {index}.txt").write_text("x", encoding="utf-8")
        subprocess.run(["git", "add", "-A"], cwd=repo, check=True, env=environment)
        subprocess.run(["git", "commit", "-qm", message], cwd=repo, check=True, env=environment)
    scan = scan_repository(repo)
    registry.register(scan, str(repo))
    assert load_registry_batches(registry.path) == scan.batches
    assert registry.load().watermark == scan.head


def test_corrupt_file_raises_naming_file(registry: BatchRegistry) -> None:
    registry.path.parent.mkdir(parents=True)
    registry.path.write_text('{"format": 1, "batches": {', encoding="utf-8")
    with pytest.raises(CoordinatorError) as caught:
        registry.load()
    assert str(registry.path) in str(caught.value)
    assert "not valid JSON" in str(caught.value)


def test_unknown_format_raises(registry: BatchRegistry) -> None:
    registry.path.parent.mkdir(parents=True)
    registry.path.write_text('{"format": 2}', encoding="utf-8")
    with pytest.raises(CoordinatorError, match="unsupported batch registry format 2"):
        registry.load()


@pytest.mark.parametrize("value", [-1, "12", True, 1.5])
def test_invalid_watch_sequence_raises(registry: BatchRegistry, value: object) -> None:
    registry.path.parent.mkdir(parents=True)
    registry.path.write_text(json.dumps({"format": 1, "watch_sequence": value}), encoding="utf-8")

    with pytest.raises(CoordinatorError) as caught:
        registry.load()

    assert str(registry.path) in str(caught.value)
    assert "field 'watch_sequence' must be a commit count" in str(caught.value)


def test_hostile_id_in_file_raises(registry: BatchRegistry) -> None:
    batch = make_batch("REL-1", [make_commit("b1", "a0", ("a",))], sequence=0)
    registry.register(make_scan(batch), REPO)
    data = json.loads(registry.path.read_text(encoding="utf-8"))
    data["batches"]["{{ 7*7 }}"] = {**data["batches"].pop("REL-1"), "id": "{{ 7*7 }}"}
    registry.path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(CoordinatorError) as caught:
        registry.load()
    assert str(registry.path) in str(caught.value)
    assert "'{{ 7*7 }}'" in str(caught.value)


def test_entry_stored_under_other_id_raises(registry: BatchRegistry) -> None:
    batch = make_batch("REL-1", [make_commit("b1", "a0", ("a",))], sequence=0)
    registry.register(make_scan(batch), REPO)
    data = json.loads(registry.path.read_text(encoding="utf-8"))
    data["batches"]["REL-2"] = data["batches"].pop("REL-1")
    registry.path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(CoordinatorError, match="different id"):
        registry.load()


def test_register_on_corrupt_file_leaves_it_untouched(registry: BatchRegistry) -> None:
    registry.path.parent.mkdir(parents=True)
    registry.path.write_text("not json", encoding="utf-8")
    batch = make_batch("REL-1", [make_commit("b1", "a0", ("a",))], sequence=0)
    with pytest.raises(CoordinatorError):
        registry.register(make_scan(batch), REPO)
    assert registry.path.read_text(encoding="utf-8") == "not json"


def test_write_leaves_no_temporary_files(registry: BatchRegistry) -> None:
    batch = make_batch("REL-1", [make_commit("b1", "a0", ("a",))], sequence=0)
    registry.register(make_scan(batch), REPO)
    registry.record_request("tag:REL-1@b1")
    names = sorted(path.name for path in registry.path.parent.iterdir())
    assert names == ["batches.json", "batches.json.lock"]


def test_failed_write_keeps_previous_file(
    registry: BatchRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = make_batch("REL-1", [make_commit("b1", "a0", ("a",))], sequence=0)
    registry.register(make_scan(batch), REPO)
    before = registry.path.read_bytes()

    def fail_replace(source: str, target: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail_replace)
    with pytest.raises(OSError):
        registry.record_request("tag:REL-1@b1")
    assert registry.path.read_bytes() == before
    assert len(list(registry.path.parent.iterdir())) == 2


def test_write_keeps_file_mode(registry: BatchRegistry) -> None:
    registry.register(make_scan(), REPO)
    registry.path.chmod(0o640)
    registry.record_request("tag:REL-1@b1")
    assert stat.S_IMODE(registry.path.stat().st_mode) == 0o640


def _register_many(path: str, worker: int, count: int) -> None:
    registry = BatchRegistry(path)
    for index in range(count):
        commit = make_commit(f"{worker}-{index}", "a0", (f"w{worker}/f{index}",))
        batch = make_batch(f"W{worker}-{index + 1}", [commit], sequence=index)
        registry.register(make_scan(batch), REPO)


def _record_same_request(path: str, results: Queue[bool]) -> None:
    results.put(BatchRegistry(path).record_request("tag:REL-1@b1"))


def test_concurrent_registration_loses_nothing(registry: BatchRegistry) -> None:
    context = multiprocessing.get_context("fork")
    count = 25
    workers = [
        context.Process(target=_register_many, args=(str(registry.path), worker, count))
        for worker in (1, 2, 3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0, 0, 0]
    assert len(registry.load().batches) == 3 * count


def test_concurrent_record_request_is_true_once(registry: BatchRegistry) -> None:
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    workers = [
        context.Process(target=_record_same_request, args=(str(registry.path), results))
        for _ in range(6)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    outcomes = [results.get(timeout=10) for _ in workers]
    assert outcomes.count(True) == 1
    assert outcomes.count(False) == 5
