"""The git watcher pass on real repositories: history cases, orphans and rollback requests."""

from __future__ import annotations

import logging
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from builders import EXAMPLE_SERVICES, write_services
from git_repos import GitRepo, bare_remote, run_git

from rollback_coordinator.core.batches import BatchConventions, scan_repository
from rollback_coordinator.core.errors import CoordinatorError
from rollback_coordinator.core.registry import BatchRegistry, active_batches
from rollback_coordinator.core.services import ServiceMap
from rollback_coordinator.core.watch import (
    WATCHED_REF,
    run_conf_for,
    run_id_for,
    start_instruction,
    watch_once,
)
from rollback_coordinator.core.watch_config import RetentionPolicy
from rollback_coordinator.core.watch_report import WatchReport

API_FILE = {"services/api/handlers.py": "v2\n"}
DB_FILE = {"db/migrations/0042_orders.sql": "create table orders ();\n"}
WORKER_FILE = {"services/worker/queue.py": "v2\n"}


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return bare_remote(tmp_path / "remote.git")


@pytest.fixture
def work(tmp_path: Path, remote: Path) -> GitRepo:
    """A developer's clone of the remote, with an initial commit pushed."""
    repo = GitRepo(tmp_path / "work", clone_of=remote)
    repo.commit("Initial release", {"README.md": "shop\n"})
    repo.push()
    return repo


@pytest.fixture
def local(tmp_path: Path) -> GitRepo:
    """A repository the watcher reads in place, without fetching."""
    repo = GitRepo(tmp_path / "local")
    repo.commit("Initial release", {"README.md": "shop\n"})
    return repo


@pytest.fixture
def watching(local: GitRepo, registry: BatchRegistry) -> GitRepo:
    """The local repository after the watcher's first pass, so later requests count as new."""
    watch_local(local, registry)
    return local


@pytest.fixture
def registry(tmp_path: Path) -> BatchRegistry:
    return BatchRegistry(tmp_path / "data" / "registry" / "batches.json")


@pytest.fixture
def services(tmp_path: Path) -> ServiceMap:
    return write_services(tmp_path / "config", EXAMPLE_SERVICES)


def watch_remote(
    tmp_path: Path, remote: Path, registry: BatchRegistry, **options: Any
) -> WatchReport:
    return watch_once(
        tmp_path / "watcher" / "repository.git",
        registry,
        BatchConventions(),
        fetch=True,
        remote=str(remote),
        retention=options.pop("retention", None),
        rev="main",
        **options,
    )


def watch_local(repo: GitRepo, registry: BatchRegistry, **options: Any) -> WatchReport:
    return watch_in_place(repo.path, registry, **options)


def watch_in_place(path: Path, registry: BatchRegistry, **options: Any) -> WatchReport:
    return watch_once(
        path,
        registry,
        BatchConventions(),
        fetch=False,
        remote=None,
        retention=options.pop("retention", None),
        **options,
    )


def request_keys(report: WatchReport, name: str) -> list[str]:
    return [request.key for request in getattr(report, name)]


def test_first_pass_scans_fully(work: GitRepo, remote: Path, registry, tmp_path) -> None:
    work.commit("REL-1: ship orders", API_FILE)
    work.push()

    report = watch_remote(tmp_path, remote, registry)

    assert report.registered == ["REL-1"]
    assert report.full_scan_reason == "this is the watcher's first pass on this registry"
    assert report.watermark_lost is False
    assert registry.load().watermark == work.git("rev-parse", "HEAD")


def test_fetch_creates_bare_clone(work: GitRepo, remote: Path, registry, tmp_path) -> None:
    work.commit("REL-1: ship orders", API_FILE)
    work.push()

    watch_remote(tmp_path, remote, registry)

    clone = tmp_path / "watcher" / "repository.git"
    assert run_git(clone, "rev-parse", "--is-bare-repository") == "true"
    assert run_git(clone, "rev-parse", WATCHED_REF) == work.git("rev-parse", "HEAD")


def test_second_pass_reads_new_commits_only(
    work: GitRepo, remote: Path, registry, tmp_path
) -> None:
    work.commit("REL-1: ship orders", API_FILE)
    work.push()
    first = watch_remote(tmp_path, remote, registry)
    work.commit("REL-2: tune the worker", WORKER_FILE)
    work.push()

    second = watch_remote(tmp_path, remote, registry)

    assert second.since == first.head
    assert second.commit_count == 1
    assert second.registered == ["REL-2"]
    assert second.full_scan_reason is None


def test_pass_stores_commit_count_for_next(local: GitRepo, registry) -> None:
    local.commit("REL-1: ship orders", API_FILE)
    watch_local(local, registry)
    local.commit("REL-2: tune the worker", WORKER_FILE)

    watch_local(local, registry)

    snapshot = registry.load()
    assert snapshot.watch_sequence == int(local.git("rev-list", "--count", "HEAD"))
    assert snapshot.batches["REL-2"].batch.sequence == snapshot.watch_sequence - 1


def test_second_pass_continues_stored_sequence(local: GitRepo, registry) -> None:
    local.commit("REL-1: ship orders", API_FILE)
    watch_local(local, registry)
    # A sequence far from git's count shows that the pass continues from the stored one.
    registry.update(lambda current: (replace(current, watch_sequence=500), None))
    local.commit("REL-2: tune the worker", WORKER_FILE)

    watch_local(local, registry)

    assert registry.load().batches["REL-2"].batch.sequence == 500
    assert registry.load().watch_sequence == 501


def test_registry_without_stored_sequence_counts_history(local: GitRepo, registry) -> None:
    local.commit("REL-1: ship orders", API_FILE)
    watch_local(local, registry)
    registry.update(lambda current: (replace(current, watch_sequence=None), None))
    local.commit("REL-2: tune the worker", WORKER_FILE)

    watch_local(local, registry)

    assert registry.load().batches["REL-2"].batch.sequence == 2


def test_force_push_orphans_removed_batch(
    work: GitRepo, remote: Path, registry, tmp_path
) -> None:
    base = work.commit("REL-1: ship orders", API_FILE)
    removed = work.commit("REL-2: tune the worker", WORKER_FILE)
    work.push()
    watch_remote(tmp_path, remote, registry)
    work.git("reset", "-q", "--hard", base)
    work.commit("REL-3: new index", DB_FILE)
    work.push(force=True)

    report = watch_remote(tmp_path, remote, registry)

    entry = registry.load().batches["REL-2"]
    assert report.watermark_lost is True
    assert report.orphaned == ["REL-2"]
    assert report.registered == ["REL-3"]
    assert entry.orphaned is True
    assert entry.orphaned_at is not None
    assert "force push" in (entry.orphaned_reason or "")
    assert [commit.sha for commit in entry.batch.commits] == [removed]


def test_orphaned_batch_keeps_its_dag(work: GitRepo, remote: Path, registry, tmp_path) -> None:
    base = work.commit("REL-1: ship orders", API_FILE)
    work.commit("REL-2: tune the worker", WORKER_FILE)
    work.push()
    watch_remote(tmp_path, remote, registry)
    work.git("reset", "-q", "--hard", base)
    work.commit("REL-3: new index", DB_FILE)
    work.push(force=True)

    watch_remote(tmp_path, remote, registry)

    assert sorted(active_batches(registry.load())) == ["REL-1", "REL-2", "REL-3"]


def test_orphan_is_reported_once(work: GitRepo, remote: Path, registry, tmp_path) -> None:
    base = work.commit("REL-1: ship orders", API_FILE)
    work.commit("REL-2: tune the worker", WORKER_FILE)
    work.push()
    watch_remote(tmp_path, remote, registry)
    work.git("reset", "-q", "--hard", base)
    work.commit("REL-3: new index", DB_FILE)
    work.push(force=True)
    watch_remote(tmp_path, remote, registry)
    work.git("reset", "-q", "--hard", base)
    work.commit("REL-4: other index", DB_FILE)
    work.push(force=True)

    report = watch_remote(tmp_path, remote, registry)

    assert report.orphaned == ["REL-3"]


def test_reworded_batch_is_replaced_not_orphaned(
    work: GitRepo, remote: Path, registry, tmp_path
) -> None:
    work.commit("REL-1: ship orders", API_FILE)
    work.push()
    watch_remote(tmp_path, remote, registry)
    work.git("commit", "-q", "--amend", "-m", "REL-1: ship orders, reworded")
    work.push(force=True)

    report = watch_remote(tmp_path, remote, registry)

    batch = registry.load().batches["REL-1"].batch
    assert report.orphaned == []
    assert batch.from_ref == work.git("rev-parse", "HEAD")
    assert [commit.subject for commit in batch.commits] == ["REL-1: ship orders, reworded"]


def test_orphaned_batch_found_again_is_restored(
    work: GitRepo, remote: Path, registry, tmp_path
) -> None:
    base = work.commit("REL-1: ship orders", API_FILE)
    work.commit("REL-2: tune the worker", WORKER_FILE)
    work.push()
    watch_remote(tmp_path, remote, registry)
    work.git("reset", "-q", "--hard", base)
    work.push(force=True)
    watch_remote(tmp_path, remote, registry)
    again = work.commit("REL-2: tune the worker again", WORKER_FILE)
    work.push()

    report = watch_remote(tmp_path, remote, registry)

    entry = registry.load().batches["REL-2"]
    assert report.restored == ["REL-2"]
    assert entry.orphaned is False
    assert [commit.sha for commit in entry.batch.commits] == [again]


def test_other_repository_batches_never_orphaned(
    work: GitRepo, remote: Path, local: GitRepo, registry, tmp_path
) -> None:
    local.commit("OPS-7: rotate keys", API_FILE)
    watch_local(local, registry)
    work.commit("REL-1: ship orders", API_FILE)
    work.push()

    report = watch_remote(tmp_path, remote, registry)

    assert report.watermark_lost is True
    assert report.orphaned == []
    assert registry.load().batches["OPS-7"].orphaned is False


def test_shallow_clone_orphans_nothing(work: GitRepo, remote: Path, registry, tmp_path) -> None:
    work.commit("REL-1: ship orders", API_FILE)
    work.commit("REL-2: tune the worker", WORKER_FILE)
    work.commit("REL-3: new index", DB_FILE)
    work.push()
    clone = tmp_path / "clone"
    run_git(tmp_path, "clone", "-q", f"file://{remote}", str(clone))
    watch_in_place(clone, registry)
    work.git("commit", "-q", "--amend", "-m", "REL-3: new index, reworded")
    work.push(force=True)
    shutil.rmtree(clone)
    run_git(tmp_path, "clone", "-q", "--depth", "1", f"file://{remote}", str(clone))

    report = watch_in_place(clone, registry)

    snapshot = registry.load()
    assert report.shallow is True
    assert report.orphaned == []
    assert report.unverified == ["REL-1", "REL-2"]
    assert snapshot.batches["REL-1"].orphaned is False
    assert snapshot.batches["REL-2"].orphaned is False


def test_shallow_full_scan_keeps_older_commits(
    work: GitRepo, remote: Path, registry, tmp_path
) -> None:
    base = work.commit("REL-1: ship orders", API_FILE)
    first = work.commit("REL-2: tune the worker", WORKER_FILE)
    work.commit("REL-2: tune the worker more", {"services/worker/pool.py": "4\n"})
    work.push()
    clone = tmp_path / "clone"
    run_git(tmp_path, "clone", "-q", f"file://{remote}", str(clone))
    watch_in_place(clone, registry)
    work.git("commit", "-q", "--amend", "-m", "REL-2: tune the worker more, reworded")
    work.push(force=True)
    shutil.rmtree(clone)
    run_git(tmp_path, "clone", "-q", "--depth", "1", f"file://{remote}", str(clone))

    watch_in_place(clone, registry)

    batch = registry.load().batches["REL-2"].batch
    assert batch.commits[0].sha == first
    assert batch.to_ref == base


def test_shallow_clone_is_reported(work: GitRepo, remote: Path, registry, tmp_path) -> None:
    work.commit("REL-1: ship orders", API_FILE)
    work.push()
    clone = tmp_path / "clone"
    run_git(tmp_path, "clone", "-q", "--depth", "1", f"file://{remote}", str(clone))

    report = watch_in_place(clone, registry)

    warnings = [text for level, text in report.log_records() if level == logging.WARNING]
    assert any("shallow clone" in text for text in warnings)


def test_detached_head_orphans_nothing(local: GitRepo, registry) -> None:
    first = local.commit("REL-1: ship orders", API_FILE)
    local.commit("REL-2: tune the worker", WORKER_FILE)
    watch_local(local, registry)
    local.git("checkout", "-q", "--detach", first)

    report = watch_local(local, registry)

    assert report.detached is True
    assert report.watermark_lost is True
    assert report.orphaned == []
    assert report.unverified == ["REL-2"]


def test_detached_head_scans_new_commits(local: GitRepo, registry) -> None:
    local.commit("REL-1: ship orders", API_FILE)
    watch_local(local, registry)
    local.git("checkout", "-q", "--detach")
    local.commit("REL-2: tune the worker", WORKER_FILE)

    report = watch_local(local, registry)

    assert report.detached is True
    assert report.registered == ["REL-2"]
    assert report.commit_count == 1


def test_invalid_utf8_message_is_registered(local: GitRepo, registry) -> None:
    local.commit_raw_message(b"[REL-5] caf\xe9 \xff broken bytes\n", API_FILE)

    report = watch_local(local, registry)

    batch = registry.load().batches["REL-5"].batch
    assert report.registered == ["REL-5"]
    assert batch.commits[0].subject == "[REL-5] caf\ufffd \ufffd broken bytes"


def test_merge_commit_counts_by_own_message(local: GitRepo, registry) -> None:
    local.git("checkout", "-q", "-b", "feature")
    local.commit("add worker config", WORKER_FILE)
    local.git("checkout", "-q", "main")
    local.commit("unrelated docs", {"docs/x.md": "y\n"})
    merge = local.merge("feature", "REL-9: merge the worker change")

    watch_local(local, registry)

    batch = registry.load().batches["REL-9"].batch
    assert [commit.sha for commit in batch.commits] == [merge]
    assert batch.files == ("services/worker/queue.py",)


def test_commit_naming_two_batches_is_reported(local: GitRepo, registry) -> None:
    sha = local.commit("REL-1: ship orders\n\nDeploy-Batch: REL-2\n", API_FILE)

    report = watch_local(local, registry)

    warnings = [text for level, text in report.log_records() if level == logging.WARNING]
    assert registry.load().batches == {}
    assert [conflict.sha for conflict in report.conflicts] == [sha]
    assert any("REL-1, REL-2" in text and sha[:12] in text for text in warnings)


def test_batch_touching_no_service_is_registered(local: GitRepo, registry, services) -> None:
    local.commit("REL-1: fix the docs", {"docs/guide.md": "x\n"})

    report = watch_local(local, registry, services=services)

    assert "REL-1" in registry.load().batches
    assert report.without_services == ["REL-1"]


def test_request_for_serviceless_batch_is_skipped(watching: GitRepo, registry, services) -> None:
    watching.commit("REL-1: fix the docs", {"docs/guide.md": "x\n"})
    watching.git("tag", "rollback/REL-1")

    report = watch_local(watching, registry, services=services)

    [(request, reason)] = report.skipped_requests
    assert request.batch_id == "REL-1"
    assert "touches no service" in reason
    assert report.pending_requests == []


def test_first_pass_treats_requests_as_history(local: GitRepo, registry) -> None:
    local.commit("REL-1: ship orders", API_FILE)
    local.git("tag", "rollback/REL-1")
    local.commit("REL-2: tune the worker", WORKER_FILE)
    local.commit("Roll back the worker\n\nRollback: REL-2\n")

    report = watch_local(local, registry)

    reasons = [reason for _, reason in report.skipped_requests]
    assert report.pending_requests == []
    assert len(reasons) == 2
    assert all("before the watcher's first pass" in reason for reason in reasons)


def test_request_is_new_exactly_once(watching: GitRepo, registry) -> None:
    watching.commit("REL-1: ship orders", API_FILE)
    watching.commit("REL-2: tune the worker", WORKER_FILE)
    watching.git("tag", "rollback/REL-1")
    trailer = watching.commit("Roll back the worker\n\nRollback: REL-2\n")

    first = watch_local(watching, registry)
    second = watch_local(watching, registry)

    seen = request_keys(first, "new_requests") + request_keys(second, "new_requests")
    tag = f"tag:REL-1@{watching.git('rev-parse', 'rollback/REL-1')}"
    assert sorted(seen) == sorted([tag, f"trailer:REL-2@{trailer}"])
    assert seen.count(tag) == 1


def test_pending_request_stays_until_recorded(watching: GitRepo, registry) -> None:
    watching.commit("REL-1: ship orders", API_FILE)
    watching.git("tag", "rollback/REL-1")
    first = watch_local(watching, registry)
    [key] = request_keys(first, "pending_requests")

    second = watch_local(watching, registry)
    registry.record_request(key)
    third = watch_local(watching, registry)

    assert request_keys(second, "pending_requests") == [key]
    assert second.new_requests == []
    assert third.pending_requests == []
    assert key in registry.load().requests


def test_trailer_request_survives_later_passes(watching: GitRepo, registry) -> None:
    watching.commit("REL-1: ship orders", API_FILE)
    watching.commit("Roll back the orders\n\nRollback: REL-1\n")
    watch_local(watching, registry)
    watching.commit("REL-2: tune the worker", WORKER_FILE)

    report = watch_local(watching, registry)

    assert [request.batch_id for request in report.pending_requests] == ["REL-1"]


def test_request_in_same_pass_as_batch_is_pending(watching: GitRepo, registry) -> None:
    watching.commit("REL-1: ship orders", API_FILE)
    watching.commit("Roll back the orders\n\nRollback: REL-1\n")

    report = watch_local(watching, registry)

    assert report.registered == ["REL-1"]
    assert [request.batch_id for request in report.new_requests] == ["REL-1"]


def test_plan_scan_hides_no_trailer(watching: GitRepo, registry) -> None:
    watching.commit("REL-1: ship orders", API_FILE)
    watching.commit("Roll back the orders\n\nRollback: REL-1\n")
    registry.register(scan_repository(watching.path), str(watching.path))

    report = watch_local(watching, registry)

    assert [request.batch_id for request in report.new_requests] == ["REL-1"]


def test_rewritten_trailer_starts_no_run(
    work: GitRepo, remote: Path, registry, tmp_path
) -> None:
    watch_remote(tmp_path, remote, registry)
    work.commit("REL-1: ship orders", API_FILE)
    work.commit("Roll back the orders\n\nRollback: REL-1\n")
    work.push()
    [request] = watch_remote(tmp_path, remote, registry).pending_requests
    registry.record_request(request.key)
    reworded = "Roll back, reworded\n\nRollback: REL-1"
    work.git("commit", "-q", "--amend", "--allow-empty", "-m", reworded)
    work.push(force=True)

    report = watch_remote(tmp_path, remote, registry)

    [(rewritten, reason)] = report.skipped_requests
    assert report.watermark_lost is True
    assert rewritten.sha == work.git("rev-parse", "HEAD")
    assert "rewritten" in reason
    assert report.pending_requests == []


def test_new_tag_after_force_push_starts_run(
    work: GitRepo, remote: Path, registry, tmp_path
) -> None:
    watch_remote(tmp_path, remote, registry)
    work.commit("REL-1: ship orders", API_FILE)
    work.commit("REL-2: tune the worker", WORKER_FILE)
    work.push()
    watch_remote(tmp_path, remote, registry)
    work.git("commit", "-q", "--amend", "-m", "REL-2: tune the worker, reworded")
    work.push(force=True)
    work.push_tag("rollback/REL-1", "HEAD~1")

    report = watch_remote(tmp_path, remote, registry)

    assert report.watermark_lost is True
    assert [request.batch_id for request in report.new_requests] == ["REL-1"]


def test_request_for_unknown_batch_is_skipped(watching: GitRepo, registry) -> None:
    watching.git("tag", "rollback/REL-99")

    report = watch_local(watching, registry)

    [(request, reason)] = report.skipped_requests
    assert request.batch_id == "REL-99"
    assert "not registered" in reason
    assert request.key in registry.load().skipped


def test_second_request_for_same_batch_is_skipped(watching: GitRepo, registry) -> None:
    watching.commit("REL-1: ship orders", API_FILE)
    watching.git("tag", "rollback/REL-1")
    watching.commit("Roll back the orders\n\nRollback: REL-1\n")

    report = watch_local(watching, registry)

    assert len(report.pending_requests) == 1
    [(_, reason)] = report.skipped_requests
    assert "already requested" in reason


def test_automatic_starts_off_skips_request(watching: GitRepo, registry) -> None:
    watching.commit("REL-1: ship orders", API_FILE)
    watching.git("tag", "rollback/REL-1")

    report = watch_local(watching, registry, start_runs=False)

    assert report.pending_requests == []
    assert "start_runs: false" in report.skipped_requests[0][1]


def test_request_for_orphaned_batch_is_skipped(
    work: GitRepo, remote: Path, registry, tmp_path
) -> None:
    base = work.commit("REL-1: ship orders", API_FILE)
    work.commit("REL-2: tune the worker", WORKER_FILE)
    work.push()
    watch_remote(tmp_path, remote, registry)
    work.git("reset", "-q", "--hard", base)
    work.commit("Hotfix the orders", {"services/api/fix.py": "1\n"})
    work.push(force=True)
    work.push_tag("rollback/REL-2")

    report = watch_remote(tmp_path, remote, registry)

    assert report.orphaned == ["REL-2"]
    assert report.pending_requests == []
    assert "orphaned" in report.skipped_requests[0][1]


def test_request_for_retired_batch_is_skipped(watching: GitRepo, registry) -> None:
    watching.commit("REL-1: ship orders", API_FILE)
    watching.commit("REL-2: tune the worker", WORKER_FILE)
    watching.git("tag", "rollback/REL-1")

    report = watch_local(watching, registry, retention=RetentionPolicy(max_batches=1))

    assert report.retired == ["REL-1"]
    assert report.pending_requests == []
    assert "retired" in report.skipped_requests[0][1]


def test_pending_request_of_retired_batch_is_skipped(watching: GitRepo, registry) -> None:
    watching.commit("REL-1: ship orders", API_FILE)
    watching.git("tag", "rollback/REL-1")
    watch_local(watching, registry)
    watching.commit("REL-2: tune the worker", WORKER_FILE)

    report = watch_local(watching, registry, retention=RetentionPolicy(max_batches=1))

    assert report.pending_requests == []
    assert registry.load().pending == {}
    assert [request.batch_id for request, _ in report.skipped_requests] == ["REL-1"]


def test_run_id_is_stable_per_request(watching: GitRepo, registry) -> None:
    watching.commit("REL-1: ship orders", API_FILE)
    watching.git("tag", "rollback/REL-1")
    [request] = watch_local(watching, registry).pending_requests
    [again] = watch_local(watching, registry).pending_requests

    sha = watching.git("rev-parse", "HEAD")
    assert run_id_for(request) == f"git_tag__REL-1__{sha}"
    assert run_id_for(again) == run_id_for(request)


def test_run_conf_holds_only_reason(watching: GitRepo, registry) -> None:
    watching.commit("REL-1: ship orders", API_FILE)
    watching.git("tag", "rollback/REL-1")
    [request] = watch_local(watching, registry).pending_requests

    assert run_conf_for(request) == {"reason": "rollback requested by tag rollback/REL-1"}


def test_start_instruction_names_batch_dag(watching: GitRepo, registry) -> None:
    watching.commit("REL-1: ship orders", API_FILE)
    trailer = watching.commit("Roll back the orders\n\nRollback: REL-1\n")
    [request] = watch_local(watching, registry).pending_requests

    instruction = start_instruction(request)

    assert instruction["dag_id"] == "rollback_REL-1"
    assert instruction["key"] == request.key
    assert instruction["conf"] == {"reason": f"rollback requested by trailer {trailer}"}


def test_fetch_failure_hides_password(registry, tmp_path) -> None:
    remote = "http://deployer:s3cret@127.0.0.1:9/shop.git"

    with pytest.raises(CoordinatorError) as caught:
        watch_once(
            tmp_path / "watcher.git",
            registry,
            BatchConventions(),
            fetch=True,
            remote=remote,
            retention=None,
        )

    assert "git fetch from http://deployer:***@127.0.0.1:9/shop.git failed" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_fetch_rejects_option_like_remote(registry, tmp_path) -> None:
    with pytest.raises(CoordinatorError, match="invalid remote"):
        watch_once(
            tmp_path / "watcher.git",
            registry,
            BatchConventions(),
            fetch=True,
            remote="--upload-pack=touch pwned",
            retention=None,
        )


def test_failed_fetch_leaves_registry_untouched(
    work: GitRepo, remote: Path, registry, tmp_path
) -> None:
    work.commit("REL-1: ship orders", API_FILE)
    work.push()
    watch_remote(tmp_path, remote, registry)
    before = registry.path.read_bytes()
    shutil.rmtree(remote)

    with pytest.raises(CoordinatorError):
        watch_remote(tmp_path, remote, registry)

    assert registry.path.read_bytes() == before
