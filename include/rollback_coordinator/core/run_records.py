"""Step records of one run on disk: what each step did, read back by the audit step and `status`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from rollback_coordinator.core.files import atomic_write_text

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_name(value: str) -> str:
    """Make a run id usable as a folder name; Airflow run ids contain ':' and '+'."""
    return _UNSAFE.sub("_", value)


class RunRecords:
    """The folder of one run: <runs dir>/<batch>/<run id>/steps/<task id>.json."""

    def __init__(self, runs_dir: Path, batch: str, run_id: str) -> None:
        self.folder = runs_dir / batch / safe_name(run_id)

    def write_step(self, task_id: str, record: dict[str, Any]) -> Path:
        steps = self.folder / "steps"
        steps.mkdir(parents=True, exist_ok=True)
        path = steps / f"{safe_name(task_id)}.json"
        atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
        return path

    def steps(self) -> list[dict[str, Any]]:
        """Return every step record, oldest start first."""
        folder = self.folder / "steps"
        if not folder.is_dir():
            return []
        records = []
        for path in folder.glob("*.json"):
            try:
                records.append(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                continue
        return sorted(records, key=lambda record: record.get("started_at") or "")


def list_runs(runs_dir: Path, batch: str) -> list[Path]:
    folder = runs_dir / batch
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if path.is_dir())
