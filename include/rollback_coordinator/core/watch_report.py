"""The report of one git watcher pass, and the log lines an operator on call reads from it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from rollback_coordinator.core.batches import BatchConflict, RejectedId, RollbackRequest

LogRecord = tuple[int, str]


@dataclass
class WatchReport:
    """What one watcher pass found and changed.

    ``new_requests`` lists each request the first time a pass finds it, and never again.
    ``pending_requests`` lists every request whose run is still to be started, the new ones
    included, until ``BatchRegistry.record_request`` records it as started.
    ``skipped_requests`` lists the requests this pass decided not to start, with the reason.
    ``unverified`` lists batches that a full scan of a shallow clone or a detached HEAD did
    not find, which may still exist beyond what the scan could see.
    """

    repo: str
    rev: str
    head: str | None = None
    since: str | None = None
    full_scan_reason: str | None = None
    watermark_lost: bool = False
    fetched: bool = False
    shallow: bool = False
    detached: bool = False
    commit_count: int = 0
    registered: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)
    unverified: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    reactivated: list[str] = field(default_factory=list)
    without_services: list[str] = field(default_factory=list)
    new_requests: list[RollbackRequest] = field(default_factory=list)
    pending_requests: list[RollbackRequest] = field(default_factory=list)
    skipped_requests: list[tuple[RollbackRequest, str]] = field(default_factory=list)
    conflicts: list[BatchConflict] = field(default_factory=list)
    rejected_ids: list[RejectedId] = field(default_factory=list)

    def log_records(self) -> list[LogRecord]:
        """Return (logging level, message) pairs describing this pass, warnings included."""
        records = [*self._scan_records(), *self._batch_records(), *self._request_records()]
        for conflict in self.conflicts:
            records.append((
                logging.WARNING,
                f"commit {conflict.sha[:12]} names more than one batch "
                f"({', '.join(conflict.keys)}), so it belongs to no batch",
            ))
        for rejected in self.rejected_ids:
            records.append((
                logging.WARNING,
                f"commit or tag {rejected.sha[:12]}: ignored key {rejected.value!r}: "
                f"{rejected.reason}",
            ))
        return records

    def _scan_records(self) -> list[LogRecord]:
        where = f"{self.repo} at {self.rev}"
        head = self.head[:12] if self.head else "no commit"
        if self.full_scan_reason is None:
            since = self.since[:12] if self.since else "?"
            line = f"scanned {where} ({head}): {self.commit_count} new commits since {since}"
            records = [(logging.INFO, line)]
        else:
            level = logging.WARNING if self.watermark_lost else logging.INFO
            line = (
                f"full scan of {where} ({head}), {self.commit_count} commits, because "
                f"{self.full_scan_reason}"
            )
            records = [(level, line)]
        if self.shallow:
            records.append((
                logging.WARNING,
                f"{self.repo} is a shallow clone: batches older than its depth are missing "
                f"or incomplete, and their to_ref may be wrong; run 'git fetch --unshallow' "
                f"there",
            ))
        if self.detached:
            records.append((logging.INFO, f"{self.repo} has a detached HEAD at {head}"))
        return records

    def _batch_records(self) -> list[LogRecord]:
        records: list[LogRecord] = []
        named = (
            (logging.INFO, "registered batches", self.registered),
            (logging.INFO, "batches found again and no longer orphaned", self.restored),
            (logging.WARNING, "batches orphaned: their commits left the history", self.orphaned),
            (logging.INFO, "batches retired by the retention limits", self.retired),
            (logging.INFO, "batches back within the retention limits", self.reactivated),
        )
        for level, description, batch_ids in named:
            if batch_ids:
                records.append((level, f"{description}: {', '.join(batch_ids)}"))
        if self.unverified:
            records.append((
                logging.WARNING,
                f"batches not found by the full scan, kept as they were because the scan "
                f"could not see the whole history: {', '.join(self.unverified)}",
            ))
        for batch_id in self.without_services:
            records.append((
                logging.WARNING,
                f"batch {batch_id} touches no service in services.yaml: registered, but it "
                f"gets no DAG",
            ))
        return records

    def _request_records(self) -> list[LogRecord]:
        records: list[LogRecord] = []
        for request in self.new_requests:
            records.append((
                logging.INFO,
                f"new rollback request for batch {request.batch_id} by {request.source} "
                f"{request.ref}",
            ))
        for request, reason in self.skipped_requests:
            records.append((
                logging.WARNING,
                f"rollback request for batch {request.batch_id} by {request.source} "
                f"{request.ref} is skipped: {reason}",
            ))
        records.append((logging.INFO, f"{len(self.pending_requests)} rollback runs to start"))
        return records
