"""One pass of the git watcher: fetch, scan from the watermark, register, queue rollback requests.

The watcher keeps its own watermark in the registry (``watch_watermark``). How each history
case is handled:

- No watcher watermark (the first pass on this registry): a full scan. The rollback requests
  it finds are already in git, most of them handled long ago, so they are recorded as
  skipped, never started.
- The watermark commit is gone or no longer an ancestor of the watched revision, because a
  force push rewrote history: a full scan. Registered batches of this repository that the
  full scan no longer finds are marked orphaned, with when and why, and keep their DAG. New
  trailer requests are skipped, because a rewritten commit repeats an old trailer under a
  new sha; a tag keeps its sha through a rewrite, so a new tag request still starts a run.
- Shallow clone: scanned as far as it reaches. A full scan neither orphans a missing batch
  nor shrinks a known one, because the missing commits may lie beyond the clone's depth.
- Detached HEAD: scanned like any commit. A full scan orphans nothing, because a detached
  checkout can sit on any commit, so a batch missing from it proves nothing.
- Messages that are not UTF-8: decoded with U+FFFD in place of the bad bytes (core.batches).
- Merge commits: count by their own message; their files are those changed relative to the
  first parent (core.batches).
- A commit naming two batch keys: belongs to no batch and is reported as a conflict.
- A batch whose files match no service: registered, so its history stays on record, but it
  gets no DAG, and rollback requests for it are skipped with that reason.

Each rollback request starts one run. A pass records each request it finds for the first
time as pending, in the same atomic registry write that moves the watermark, so a crash can
lose no request. The Airflow layer then triggers each pending request under the run id that
``run_id_for`` derives from the request, and only afterwards calls
``BatchRegistry.record_request``, which moves the request from pending to started. After a
crash between the trigger and the record, the next pass triggers again with the same run id;
Airflow refuses a second run with that id, so the request is recorded without a second run.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import git

from rollback_coordinator.core.batch_id import dag_id_for
from rollback_coordinator.core.batches import (
    BatchConventions,
    RollbackRequest,
    ScanResult,
    WatermarkLostError,
    scan_repository,
)
from rollback_coordinator.core.errors import CoordinatorError
from rollback_coordinator.core.registry import (
    BatchRegistry,
    FoundRequest,
    RegistrySnapshot,
    merge_scan,
)
from rollback_coordinator.core.retention import apply_retention
from rollback_coordinator.core.services import ServiceMap
from rollback_coordinator.core.watch_config import RetentionPolicy
from rollback_coordinator.core.watch_report import WatchReport

# Fetched revisions land here rather than on a branch, so a fetch never collides with a
# branch that is checked out or edited in the same repository.
WATCHED_REF = "refs/rollback-coordinator/watched"
FETCH_TIMEOUT_S = 600
# The rollback DAG's 'reason' parameter accepts at most this many characters.
REASON_MAX_CHARS = 500

_PASSWORD_IN_URL = re.compile(r"(://[^/@\s:]*):[^/@\s]*@")


@dataclass(frozen=True)
class _PassOptions:
    repo: str
    rev: str
    detached: bool
    full_scan_reason: str | None
    watermark_lost: bool
    services: ServiceMap | None
    retention: RetentionPolicy | None
    start_runs: bool
    now: datetime


def watch_once(
    repo_path: str | Path,
    registry: BatchRegistry,
    conventions: BatchConventions,
    *,
    fetch: bool,
    remote: str | None,
    retention: RetentionPolicy | None,
    rev: str = "HEAD",
    services: ServiceMap | None = None,
    start_runs: bool = True,
    git_env: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> WatchReport:
    """Run one watcher pass over the repository at ``repo_path`` and update ``registry``.

    With ``fetch``, ``rev`` and every tag are first fetched from ``remote`` (a URL or a path;
    None means the repository's ``origin``) into ``repo_path``, which is created as a bare
    repository when missing. ``git_env`` adds environment variables for git, such as
    ``GIT_SSH_COMMAND``. ``services`` lets the pass skip requests for batches that touch no
    service; ``start_runs`` False skips every new request. Raises CoordinatorError when the
    fetch fails or the repository cannot be read. The history cases listed in this module's
    docstring are handled and reported, never raised.
    """
    path = Path(repo_path).resolve()
    scanned_rev = fetch_repository(path, remote, rev, git_env) if fetch else rev
    current = registry.load()
    watermark = current.watch_watermark
    scan, lost = _scan_from_watermark(
        path, conventions, scanned_rev, watermark, current.watch_sequence
    )
    first_pass = "this is the watcher's first pass on this registry"
    options = _PassOptions(
        repo=str(path),
        rev=rev,
        detached=not fetch and rev == "HEAD" and _head_is_detached(path),
        full_scan_reason=first_pass if watermark is None else lost,
        watermark_lost=lost is not None,
        services=services,
        retention=retention,
        start_runs=start_runs,
        now=now or datetime.now(UTC),
    )
    report = registry.update(lambda current: _apply(current, scan, options))
    report.fetched = fetch
    return report


def fetch_repository(
    path: Path, remote: str | None, rev: str, git_env: Mapping[str, str] | None = None
) -> str:
    """Fetch ``rev`` and all tags from ``remote`` into ``path`` and return the ref to scan.

    The revision is force-fetched, so a force push on the remote shows up here as rewritten
    history. Tags deleted on the remote stay in ``path``.
    """
    source = remote or "origin"
    for name, value in (("remote", source), ("rev", rev)):
        if not value or value.startswith("-"):
            raise CoordinatorError(
                f"invalid {name} {value!r} to fetch: expected a URL, a path or a name"
            )
    if not path.exists() or not any(path.iterdir()):
        path.mkdir(parents=True, exist_ok=True)
        _run_git(path, ["init", "--quiet", "--bare"], git_env, action="git init")
    refspecs = [f"+{rev}:{WATCHED_REF}", "+refs/tags/*:refs/tags/*"]
    options = ["--quiet", "--force", "--no-tags", "--no-write-fetch-head"]
    action = f"git fetch from {redact(source)}"
    _run_git(path, ["fetch", *options, source, *refspecs], git_env, action=action)
    return WATCHED_REF


def redact(text: str) -> str:
    """Hide the password of any ``scheme://user:password@host`` in ``text``."""
    return _PASSWORD_IN_URL.sub(r"\1:***@", text)


def run_id_for(request: RollbackRequest) -> str:
    """Return the run id of the rollback run that ``request`` starts.

    The id depends only on the request, so triggering the same request twice yields the same
    id, and Airflow refuses the second run.
    """
    return f"git_{request.source}__{request.batch_id}__{request.sha}"


def run_conf_for(request: RollbackRequest) -> dict[str, str]:
    """Return the conf of the rollback run, which contains only the reason.

    Who started the run is what Airflow records for it, never a value in the conf.
    """
    reason = f"rollback requested by {request.source} {request.ref}"
    return {"reason": reason[:REASON_MAX_CHARS]}


def start_instruction(request: RollbackRequest) -> dict[str, Any]:
    """Return the DAG id, run id, conf and request key that start the run of ``request``."""
    return {
        "dag_id": dag_id_for(request.batch_id),
        "run_id": run_id_for(request),
        "conf": run_conf_for(request),
        "key": request.key,
    }


def _run_git(
    path: Path, args: list[str], git_env: Mapping[str, str] | None, *, action: str
) -> None:
    # A worker has no terminal, so git must fail instead of waiting for a password prompt.
    environment = {**os.environ, **(git_env or {}), "GIT_TERMINAL_PROMPT": "0"}
    try:
        subprocess.run(
            ["git", "-C", str(path), *args],
            env=environment,
            capture_output=True,
            check=True,
            timeout=FETCH_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise CoordinatorError(f"{path}: {action} timed out after {FETCH_TIMEOUT_S} s") from None
    except subprocess.CalledProcessError as error:
        stderr = " ".join(error.stderr.decode("utf-8", errors="replace").split())
        raise CoordinatorError(
            f"{path}: {action} failed: {redact(stderr)}. Check the repository, the Airflow "
            f"git connection and the network"
        ) from None


def _scan_from_watermark(
    path: Path,
    conventions: BatchConventions,
    rev: str,
    watermark: str | None,
    sequence: int | None,
) -> tuple[ScanResult, str | None]:
    """Scan incrementally from ``watermark``, or fully when it is missing or lost.

    Return the scan and, when the watermark was lost, why.
    """
    if watermark is None:
        return scan_repository(path, conventions=conventions, rev=rev), None
    try:
        scan = scan_repository(
            path, conventions=conventions, since=watermark, since_sequence=sequence, rev=rev
        )
        return scan, None
    except WatermarkLostError as error:
        lost = (
            f"the watermark {watermark[:12]} cannot be continued ({error.reason}): history "
            f"was rewritten, for example by a force push, or the registry was filled from "
            f"another repository"
        )
        return scan_repository(path, conventions=conventions, rev=rev), lost


def _head_is_detached(path: Path) -> bool:
    try:
        with git.Repo(path) as repo:
            return repo.head.is_detached
    except (git.InvalidGitRepositoryError, git.NoSuchPathError, ValueError):
        return False


def _apply(
    current: RegistrySnapshot, scan: ScanResult, options: _PassOptions
) -> tuple[RegistrySnapshot, WatchReport]:
    """Return the registry after this pass, and the report that describes the change."""
    stamp = options.now.isoformat(timespec="seconds")
    full = scan.since is None
    report = WatchReport(
        repo=options.repo,
        rev=options.rev,
        head=scan.head,
        since=scan.since,
        full_scan_reason=options.full_scan_reason,
        watermark_lost=options.watermark_lost,
        shallow=scan.shallow,
        detached=options.detached,
        commit_count=scan.commit_count,
        conflicts=list(scan.conflicts),
        rejected_ids=list(scan.rejected_ids),
    )
    # A full scan of a shallow clone may miss old commits of a batch, so extending the known
    # batch keeps them.
    replace_known = full and not scan.shallow
    merged = merge_scan(current, scan, options.repo, stamp, replace_known=replace_known)
    report.registered, report.restored = merged.added, merged.restored
    snapshot = merged.snapshot
    if scan.head is not None:
        snapshot = replace(
            snapshot, watch_watermark=scan.head, watch_sequence=scan.next_sequence
        )

    snapshot = _mark_missing(snapshot, scan, options, report)
    retention = apply_retention(snapshot, options.retention, options.now)
    report.retired, report.reactivated = retention.retired, retention.reactivated
    snapshot = retention.snapshot

    if options.services is not None:
        report.without_services = sorted(
            batch_id
            for batch_id, batch in scan.batches.items()
            if not options.services.touched_services(batch.files)
        )
    snapshot = _queue_requests(snapshot, scan.requests, options, report)
    return snapshot, report


def _mark_missing(
    snapshot: RegistrySnapshot, scan: ScanResult, options: _PassOptions, report: WatchReport
) -> RegistrySnapshot:
    """Mark orphaned the batches of this repository that a full scan no longer finds."""
    if scan.since is not None or scan.head is None:
        return snapshot
    missing = sorted(
        batch_id
        for batch_id, entry in snapshot.batches.items()
        if entry.repo == options.repo and not entry.orphaned and batch_id not in scan.batches
    )
    if not missing:
        return snapshot
    if scan.shallow or options.detached:
        report.unverified = missing
        return snapshot
    stamp = options.now.isoformat(timespec="seconds")
    reason = (
        f"a full scan of {options.rev} at {scan.head[:12]} no longer finds its commits: the "
        f"history was rewritten, for example by a force push, or the batch came from "
        f"another branch"
    )
    batches = dict(snapshot.batches)
    for batch_id in missing:
        batches[batch_id] = replace(batches[batch_id], orphaned_at=stamp, orphaned_reason=reason)
    report.orphaned = missing
    return replace(snapshot, batches=batches)


def _queue_requests(
    snapshot: RegistrySnapshot,
    found: list[RollbackRequest],
    options: _PassOptions,
    report: WatchReport,
) -> RegistrySnapshot:
    """Queue the requests seen for the first time, and skip those that cannot start a run.

    Pending requests from earlier passes are checked again, because since then their batch
    may have been retired or orphaned, or automatic starts turned off.
    """
    stamp = options.now.isoformat(timespec="seconds")
    pending = dict(snapshot.pending)
    skipped = dict(snapshot.skipped)
    for key, item in snapshot.pending.items():
        reason = _skip_reason(item.request, snapshot, options)
        if reason is not None:
            del pending[key]
            skipped[key] = replace(item, skip_reason=reason)
            report.skipped_requests.append((item.request, reason))

    for request in found:
        key = request.key
        if key in snapshot.requests or key in pending or key in skipped:
            continue
        reason = (
            _history_reason(request, options)
            or _skip_reason(request, snapshot, options)
            or _duplicate_reason(request, pending)
        )
        if reason is None:
            pending[key] = FoundRequest(request, stamp)
            report.new_requests.append(request)
        else:
            skipped[key] = FoundRequest(request, stamp, reason)
            report.skipped_requests.append((request, reason))

    ordered = sorted(pending.values(), key=lambda item: (item.found_at, item.request.key))
    report.pending_requests = [item.request for item in ordered]
    if pending == snapshot.pending and skipped == snapshot.skipped:
        return snapshot
    return replace(snapshot, pending=pending, skipped=skipped)


def _history_reason(request: RollbackRequest, options: _PassOptions) -> str | None:
    """Return why a request found by a full scan may be an old one, or None.

    The first pass finds every tag and trailer of the history, most of them handled long
    ago. After a force push, a rewritten commit repeats an old trailer under a new sha. A
    tag keeps its sha through a rewrite, so a new tag after a lost watermark is a new one.
    """
    if options.full_scan_reason is None:
        return None
    action = "push a new rollback tag or trigger the batch's DAG in the Airflow UI"
    if not options.watermark_lost:
        return f"it was in git before the watcher's first pass, so it counts as history; {action}"
    if request.source == "trailer":
        return (
            f"a full scan after rewritten history found it, and a rewritten commit may repeat "
            f"an old request; {action}"
        )
    return None


def _skip_reason(
    request: RollbackRequest, snapshot: RegistrySnapshot, options: _PassOptions
) -> str | None:
    """Return why ``request`` cannot start a run automatically, or None if it can."""
    batch_id = request.batch_id
    entry = snapshot.batches.get(batch_id)
    if entry is None:
        return f"batch {batch_id} is not registered: no commit of the watched history names it"
    if entry.retired:
        return (
            f"batch {batch_id} is retired ({entry.retired_reason}), so it has no DAG; raise "
            f"the retention limits in watch.yaml, then trigger its DAG in the Airflow UI"
        )
    if entry.orphaned:
        return (
            f"batch {batch_id} is orphaned ({entry.orphaned_reason}); if the deployment still "
            f"runs it, trigger its DAG in the Airflow UI"
        )
    services = options.services
    if services is not None and not services.touched_services(entry.batch.files):
        return (
            f"batch {batch_id} touches no service: none of its files match the paths in "
            f"{services.source}, so it has no DAG"
        )
    if not options.start_runs:
        return (
            "automatic starts are off (start_runs: false in watch.yaml); trigger the run "
            "in the Airflow UI or with 'rollback-coordinator execute'"
        )
    return None


def _duplicate_reason(request: RollbackRequest, pending: dict[str, FoundRequest]) -> str | None:
    for item in pending.values():
        if item.request.batch_id == request.batch_id:
            other = item.request
            return (
                f"a run of batch {request.batch_id} is already requested by {other.source} "
                f"{other.ref}"
            )
    return None

