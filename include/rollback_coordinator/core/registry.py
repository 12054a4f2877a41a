"""The batch registry: a JSON file of the batches found so far and the requests handled.

The DAG factory reads it at every parse, so reading is one ``json.load``. Writers take
an exclusive lock on ``<file>.lock`` and replace the file atomically, so readers never
see a partial file. Because each writer reads the file again under the lock, two
BatchRegistry writers never lose each other's updates.

A batch is never deleted. A batch beyond the retention limits is marked retired and gets
no DAG; a batch whose commits left the watched history is marked orphaned and keeps its
DAG. Rollback requests found in git move from ``pending_requests`` to ``requests`` (started)
once their run has been triggered, or land in ``skipped_requests`` with the reason.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from rollback_coordinator.core.batch_id import validate_batch_id
from rollback_coordinator.core.batches import Batch, RollbackRequest, ScanResult
from rollback_coordinator.core.errors import CoordinatorError
from rollback_coordinator.core.settings import locations

REGISTRY_FORMAT = 1
_NEW_FILE_MODE = 0o644
_REPAIR_HINT = (
    "Restore the file from a backup or repair it by hand. Deleting it makes the "
    "coordinator forget which rollback requests it already started."
)


REQUEST_SOURCES = ("tag", "trailer")
_COMMIT_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_Result = TypeVar("_Result")


@dataclass(frozen=True)
class RegisteredBatch:
    """A batch in the registry, with when it was first registered and from which repository.

    ``retired_at`` and ``retired_reason`` are set while the retention limits exclude the
    batch: it stays in the registry but gets no DAG. ``orphaned_at`` and ``orphaned_reason``
    are set when its commits are no longer in the watched history: it keeps its DAG.
    """

    batch: Batch
    registered_at: str
    repo: str
    retired_at: str | None = None
    retired_reason: str | None = None
    orphaned_at: str | None = None
    orphaned_reason: str | None = None

    @property
    def retired(self) -> bool:
        return self.retired_at is not None

    @property
    def orphaned(self) -> bool:
        return self.orphaned_at is not None


@dataclass(frozen=True)
class FoundRequest:
    """A rollback request found in git, when it was found and, if skipped, why."""

    request: RollbackRequest
    found_at: str
    skip_reason: str | None = None


@dataclass(frozen=True)
class RegistrySnapshot:
    """The registry content at one moment.

    ``watermark`` is the head of the last registered scan, where the next incremental scan
    starts. ``watch_watermark`` is the head of the git watcher's last pass, kept apart
    because ``rollback-coordinator plan`` moves ``watermark`` for any clone it scans, which
    would make the watcher miss the rollback trailers in between. ``watch_sequence`` is the
    number of commits reachable from ``watch_watermark``, where the watcher's next pass
    continues the batch sequences without counting history again.

    ``requests`` maps the key of each request whose run was started to when it was recorded.
    ``pending`` contains the requests whose run is still to be started, and ``skipped`` the
    requests that will not start a run automatically.
    """

    watermark: str | None = None
    batches: dict[str, RegisteredBatch] = field(default_factory=dict)
    requests: dict[str, str] = field(default_factory=dict)
    pending: dict[str, FoundRequest] = field(default_factory=dict)
    skipped: dict[str, FoundRequest] = field(default_factory=dict)
    watch_watermark: str | None = None
    watch_sequence: int | None = None

    def knows_request(self, key: str) -> bool:
        """Return whether the request was already started, queued or skipped."""
        return key in self.requests or key in self.pending or key in self.skipped


@dataclass(frozen=True)
class MergedScan:
    """The registry after merging a scan, and which batch ids were added or restored."""

    snapshot: RegistrySnapshot
    added: list[str]
    restored: list[str]


class BatchRegistry:
    """Reads and updates the registry file at ``path`` (default: ``Locations.registry_file``)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else locations().registry_file
        self.lock_path = self.path.with_name(f"{self.path.name}.lock")

    def load(self) -> RegistrySnapshot:
        """Read the registry. A missing file is empty, an invalid one raises CoordinatorError."""
        try:
            with self.path.open("rb") as stream:
                data = json.load(stream)
        except FileNotFoundError:
            return RegistrySnapshot()
        except OSError as error:
            raise CoordinatorError(
                f"{self.path}: cannot read the batch registry: {error.strerror}"
            ) from error
        except ValueError as error:
            raise CoordinatorError(
                f"{self.path}: the batch registry is not valid JSON ({error}). {_REPAIR_HINT}"
            ) from error
        return _snapshot_from_json(data, self.path)

    def register(self, scan: ScanResult, repo: str) -> list[str]:
        """Merge the batches of ``scan`` into the registry and return the ids that are new.

        A full scan (``scan.since`` is None) replaces a known batch, because it reads the
        whole current history. An incremental scan adds its newer commits to a known batch.
        The watermark moves to ``scan.head`` unless the scan found no head.
        """
        now = _now()

        def merge(current: RegistrySnapshot) -> tuple[RegistrySnapshot, list[str]]:
            merged = merge_scan(current, scan, repo, now)
            return merged.snapshot, merged.added

        return self.update(merge)

    def record_request(self, key: str) -> bool:
        """Record that the run of a rollback request was started. Return True the first time.

        The request leaves ``pending``. Callers start a rollback run only on True, or
        record after starting the run, so each request starts one run even when several
        schedulers scan at once.
        """
        if not isinstance(key, str) or not key:
            raise ValueError(f"invalid request key {key!r}: expected a non-empty string")

        def record(current: RegistrySnapshot) -> tuple[RegistrySnapshot, bool]:
            if key in current.requests:
                return current, False
            pending = {name: item for name, item in current.pending.items() if name != key}
            requests = {**current.requests, key: _now()}
            return replace(current, requests=requests, pending=pending), True

        return self.update(record)

    def update(
        self, change: Callable[[RegistrySnapshot], tuple[RegistrySnapshot, _Result]]
    ) -> _Result:
        """Apply ``change`` to the current content under the lock and write its result.

        ``change`` returns the new snapshot and a value that ``update`` returns. Every part
        of the change lands in one atomic write, or none does. Returning the snapshot it
        was given unchanged writes nothing.
        """
        with self._locked():
            current = self.load()
            changed, result = change(current)
            if changed is not current:
                self._write(changed)
        return result

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, _NEW_FILE_MODE)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            # Closing the descriptor releases the lock. The lock file stays, because
            # deleting it would let a waiting writer lock a file that no longer exists.
            os.close(descriptor)

    def _write(self, snapshot: RegistrySnapshot) -> None:
        text = json.dumps(_snapshot_to_json(snapshot), indent=2, ensure_ascii=False)
        _replace_atomically(self.path, text + "\n")


def load_registry_batches(path: str | Path | None = None) -> dict[str, Batch]:
    """Return the registered batches by id, without their registration details."""
    snapshot = BatchRegistry(path).load()
    return {batch_id: entry.batch for batch_id, entry in snapshot.batches.items()}


def active_batches(snapshot: RegistrySnapshot) -> dict[str, Batch]:
    """Return the batches that get a rollback DAG: every batch that is not retired.

    Orphaned batches stay active, so their DAG and run history remain reachable.
    """
    return {
        batch_id: entry.batch
        for batch_id, entry in snapshot.batches.items()
        if not entry.retired
    }


def merge_scan(
    current: RegistrySnapshot,
    scan: ScanResult,
    repo: str,
    now: str,
    *,
    replace_known: bool | None = None,
) -> MergedScan:
    """Return ``current`` with the batches of ``scan`` merged in, as ``register`` writes it.

    ``replace_known`` selects whether a known batch is replaced by what the scan found or
    extended with its new commits; by default a full scan replaces and an incremental scan
    extends. A batch that was orphaned and appears again is always replaced and is no longer
    orphaned, because its old commits are gone. Retirement marks are kept, since only the
    retention policy sets or clears them.
    """
    if replace_known is None:
        replace_known = scan.since is None
    batches = dict(current.batches)
    added: list[str] = []
    restored: list[str] = []
    for batch in sorted(scan.batches.values(), key=lambda found: found.sequence):
        known = batches.get(batch.id)
        if known is None:
            added.append(batch.id)
            batches[batch.id] = RegisteredBatch(batch, registered_at=now, repo=repo)
            continue
        if known.orphaned:
            restored.append(batch.id)
            merged = batch
        else:
            merged = batch if replace_known else _extend(known.batch, batch)
        batches[batch.id] = replace(
            known, batch=merged, repo=repo, orphaned_at=None, orphaned_reason=None
        )
    watermark = scan.head if scan.head is not None else current.watermark
    snapshot = replace(current, watermark=watermark, batches=batches)
    return MergedScan(snapshot, added, restored)


def _extend(known: Batch, found: Batch) -> Batch:
    """Return ``known`` with the commits of ``found`` that it lacks, which are newer."""
    known_shas = {commit.sha for commit in known.commits}
    added = tuple(commit for commit in found.commits if commit.sha not in known_shas)
    if not added:
        return known
    newest = found if found.sequence >= known.sequence else known
    return Batch(
        id=known.id,
        commits=known.commits + added,
        from_ref=newest.from_ref,
        to_ref=known.to_ref,
        sequence=newest.sequence,
        files=tuple(sorted({*known.files, *found.files})),
    )


def _snapshot_to_json(snapshot: RegistrySnapshot) -> dict[str, Any]:
    batches = {}
    for batch_id in sorted(snapshot.batches):
        entry = snapshot.batches[batch_id]
        batches[batch_id] = {
            **entry.batch.to_dict(),
            "registered_at": entry.registered_at,
            "repo": entry.repo,
            **_mark_to_json("retired", entry.retired_at, entry.retired_reason),
            **_mark_to_json("orphaned", entry.orphaned_at, entry.orphaned_reason),
        }
    return {
        "format": REGISTRY_FORMAT,
        "watermark": snapshot.watermark,
        "watch_watermark": snapshot.watch_watermark,
        "watch_sequence": snapshot.watch_sequence,
        "batches": batches,
        "requests": dict(sorted(snapshot.requests.items())),
        "pending_requests": _found_requests_to_json(snapshot.pending),
        "skipped_requests": _found_requests_to_json(snapshot.skipped),
    }


def _mark_to_json(name: str, at: str | None, reason: str | None) -> dict[str, Any]:
    if at is None:
        return {name: False}
    return {name: True, f"{name}_at": at, f"{name}_reason": reason}


def _found_requests_to_json(found: dict[str, FoundRequest]) -> dict[str, Any]:
    result = {}
    for key in sorted(found):
        item = found[key]
        result[key] = {
            "batch": item.request.batch_id,
            "source": item.request.source,
            "ref": item.request.ref,
            "sha": item.request.sha,
            "found_at": item.found_at,
        }
        if item.skip_reason is not None:
            result[key]["reason"] = item.skip_reason
    return result


def _snapshot_from_json(data: Any, path: Path) -> RegistrySnapshot:
    if not isinstance(data, dict) or data.get("format") != REGISTRY_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CoordinatorError(
            f"{path}: unsupported batch registry format {found!r}, expected "
            f"{{\"format\": {REGISTRY_FORMAT}, ...}}. {_REPAIR_HINT}"
        )
    watermark = data.get("watermark")
    watch_watermark = data.get("watch_watermark")
    batches = data.get("batches", {})
    requests = data.get("requests", {})
    for name, value in (("watermark", watermark), ("watch_watermark", watch_watermark)):
        if value is not None and not isinstance(value, str):
            raise CoordinatorError(f"{path}: field '{name}' must be a commit sha or null")
    # Files written before the watcher stored its sequence lack it; git counts it instead.
    watch_sequence = data.get("watch_sequence")
    if watch_sequence is not None and (
        not isinstance(watch_sequence, int) or isinstance(watch_sequence, bool) or watch_sequence < 0
    ):
        raise CoordinatorError(
            f"{path}: field 'watch_sequence' must be a commit count (an integer >= 0) or null, "
            f"found {watch_sequence!r}. {_REPAIR_HINT}"
        )
    if not isinstance(batches, dict) or not isinstance(requests, dict):
        raise CoordinatorError(f"{path}: fields 'batches' and 'requests' must be JSON objects")
    if not all(isinstance(value, str) for value in requests.values()):
        raise CoordinatorError(f"{path}: field 'requests' must map request keys to timestamps")
    entries = {key: _entry_from_json(key, item, path) for key, item in batches.items()}
    # Files written before the git watcher existed lack its fields.
    pending = _found_requests_from_json(data.get("pending_requests", {}), "pending_requests", path)
    skipped = _found_requests_from_json(data.get("skipped_requests", {}), "skipped_requests", path)
    return RegistrySnapshot(
        watermark, entries, requests, pending, skipped, watch_watermark, watch_sequence
    )


def _entry_from_json(batch_id: str, item: Any, path: Path) -> RegisteredBatch:
    try:
        batch = Batch.from_dict(item)
        registered_at = item.get("registered_at")
        repo = item.get("repo")
        if not isinstance(registered_at, str) or not isinstance(repo, str):
            raise ValueError("fields 'registered_at' and 'repo' must be strings")
        if batch.id != batch_id:
            raise ValueError(f"the entry is stored under a different id, {batch_id!r}")
        retired_at, retired_reason = _mark_from_json(item, "retired")
        orphaned_at, orphaned_reason = _mark_from_json(item, "orphaned")
    except (ValueError, CoordinatorError) as error:
        raise CoordinatorError(
            f"{path}: invalid batch entry {batch_id!r}: {error}. {_REPAIR_HINT}"
        ) from error
    return RegisteredBatch(
        batch, registered_at, repo, retired_at, retired_reason, orphaned_at, orphaned_reason
    )


def _mark_from_json(item: dict[str, Any], name: str) -> tuple[str | None, str | None]:
    """Return the time and reason of the ``retired`` or ``orphaned`` mark, or two Nones."""
    marked = item.get(name, False)
    if not isinstance(marked, bool):
        raise ValueError(f"field '{name}' must be true or false")
    if not marked:
        return None, None
    at = item.get(f"{name}_at")
    reason = item.get(f"{name}_reason")
    if not isinstance(at, str) or not isinstance(reason, str):
        raise ValueError(f"fields '{name}_at' and '{name}_reason' must be strings when {name}")
    return at, reason


def _found_requests_from_json(data: Any, name: str, path: Path) -> dict[str, FoundRequest]:
    if not isinstance(data, dict):
        raise CoordinatorError(f"{path}: field '{name}' must be a JSON object. {_REPAIR_HINT}")
    found = {}
    for key, item in data.items():
        try:
            found[key] = _found_request_from_json(key, item)
        except (ValueError, CoordinatorError) as error:
            raise CoordinatorError(
                f"{path}: invalid entry {key!r} of '{name}': {error}. {_REPAIR_HINT}"
            ) from error
    return found


def _found_request_from_json(key: str, item: Any) -> FoundRequest:
    if not isinstance(item, dict):
        raise ValueError("it must be a JSON object")
    fields = ("batch", "source", "ref", "sha", "found_at")
    if not all(isinstance(item.get(name), str) for name in fields):
        raise ValueError(f"fields {', '.join(fields)} must be strings")
    if item["source"] not in REQUEST_SOURCES:
        raise ValueError(f"field 'source' must be one of {', '.join(REQUEST_SOURCES)}")
    reason = item.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise ValueError("field 'reason' must be a string")
    if _COMMIT_SHA.fullmatch(item["sha"]) is None:
        raise ValueError(f"field 'sha' must be a full hexadecimal commit sha, got {item['sha']!r}")
    batch_id = validate_batch_id(item["batch"], pattern=None)
    request = RollbackRequest(batch_id, item["source"], ref=item["ref"], sha=item["sha"])
    if request.key != key:
        raise ValueError(f"the entry is stored under a different key, {key!r}")
    return FoundRequest(request, item["found_at"], reason)


def _replace_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file next to ``path``, flush it to disk, then rename it."""
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else _NEW_FILE_MODE
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Flush the rename to disk, so that a crash cannot bring back the old file."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
