"""The batch registry: a JSON file of the batches found so far and the requests handled.

The DAG factory reads it at every parse, so reading is one ``json.load``. Writers take
an exclusive lock on ``<file>.lock`` and replace the file atomically, so readers never
see a partial file. Because each writer reads the file again under the lock, two
BatchRegistry writers never lose each other's updates.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rollback_coordinator.core.batches import Batch, ScanResult
from rollback_coordinator.core.errors import CoordinatorError
from rollback_coordinator.core.settings import locations

REGISTRY_FORMAT = 1
_NEW_FILE_MODE = 0o644
_REPAIR_HINT = (
    "Restore the file from a backup or repair it by hand. Deleting it makes the "
    "coordinator forget which rollback requests it already started."
)


@dataclass(frozen=True)
class RegisteredBatch:
    """A batch in the registry, with when it was first registered and from which repository."""

    batch: Batch
    registered_at: str
    repo: str


@dataclass(frozen=True)
class RegistrySnapshot:
    """The registry content at one moment.

    ``watermark`` is the head of the last registered scan, where the next incremental scan
    starts. ``requests`` maps each handled rollback request key to when it was recorded.
    """

    watermark: str | None = None
    batches: dict[str, RegisteredBatch] = field(default_factory=dict)
    requests: dict[str, str] = field(default_factory=dict)


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
        with self._locked():
            current = self.load()
            batches = dict(current.batches)
            added: list[str] = []
            for batch in sorted(scan.batches.values(), key=lambda found: found.sequence):
                known = batches.get(batch.id)
                if known is None:
                    added.append(batch.id)
                    batches[batch.id] = RegisteredBatch(batch, registered_at=now, repo=repo)
                    continue
                merged = batch if scan.since is None else _extend(known.batch, batch)
                batches[batch.id] = RegisteredBatch(merged, known.registered_at, repo)
            watermark = scan.head if scan.head is not None else current.watermark
            self._write(RegistrySnapshot(watermark, batches, current.requests))
        return added

    def record_request(self, key: str) -> bool:
        """Record a handled rollback request. Return True only the first time ``key`` is seen.

        Callers start a rollback run only on True, so each request starts one run even when
        several schedulers scan at once.
        """
        if not isinstance(key, str) or not key:
            raise ValueError(f"invalid request key {key!r}: expected a non-empty string")
        with self._locked():
            current = self.load()
            if key in current.requests:
                return False
            requests = {**current.requests, key: _now()}
            self._write(RegistrySnapshot(current.watermark, current.batches, requests))
        return True

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
        }
    return {
        "format": REGISTRY_FORMAT,
        "watermark": snapshot.watermark,
        "batches": batches,
        "requests": dict(sorted(snapshot.requests.items())),
    }


def _snapshot_from_json(data: Any, path: Path) -> RegistrySnapshot:
    if not isinstance(data, dict) or data.get("format") != REGISTRY_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CoordinatorError(
            f"{path}: unsupported batch registry format {found!r}, expected "
            f"{{\"format\": {REGISTRY_FORMAT}, ...}}. {_REPAIR_HINT}"
        )
    watermark = data.get("watermark")
    batches = data.get("batches", {})
    requests = data.get("requests", {})
    if watermark is not None and not isinstance(watermark, str):
        raise CoordinatorError(f"{path}: field 'watermark' must be a commit sha or null")
    if not isinstance(batches, dict) or not isinstance(requests, dict):
        raise CoordinatorError(f"{path}: fields 'batches' and 'requests' must be JSON objects")
    if not all(isinstance(value, str) for value in requests.values()):
        raise CoordinatorError(f"{path}: field 'requests' must map request keys to timestamps")
    entries = {key: _entry_from_json(key, item, path) for key, item in batches.items()}
    return RegistrySnapshot(watermark, entries, requests)


def _entry_from_json(batch_id: str, item: Any, path: Path) -> RegisteredBatch:
    try:
        batch = Batch.from_dict(item)
        registered_at = item.get("registered_at")
        repo = item.get("repo")
        if not isinstance(registered_at, str) or not isinstance(repo, str):
            raise ValueError("fields 'registered_at' and 'repo' must be strings")
        if batch.id != batch_id:
            raise ValueError(f"the entry is stored under a different id, {batch_id!r}")
    except (ValueError, CoordinatorError) as error:
        raise CoordinatorError(
            f"{path}: invalid batch entry {batch_id!r}: {error}. {_REPAIR_HINT}"
        ) from error
    return RegisteredBatch(batch, registered_at, repo)


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
