"""Exceptions raised by the core, each written for the person at the terminal."""

from __future__ import annotations

from pathlib import Path


class CoordinatorError(Exception):
    """Base class for every error the coordinator reports to a user."""


class ConfigError(CoordinatorError):
    """An invalid configuration file, naming the file, the service and the field at fault.

    ``str()`` of the error is one line, so it reads well as an Airflow import error
    and as CLI output.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path,
        service: str | None = None,
        field: str | None = None,
        line: int | None = None,
    ) -> None:
        self.message = message
        self.file = str(file)
        self.service = service
        self.field = field
        self.line = line
        super().__init__(self.__str__())

    def __str__(self) -> str:
        location = self.file if self.line is None else f"{self.file}:{self.line}"
        parts = [location]
        if self.service is not None:
            parts.append(f"service '{self.service}'")
        if self.field is not None:
            parts.append(f"field '{self.field}'")
        return ": ".join([", ".join(parts), self.message])


class BatchIdError(CoordinatorError):
    """A batch id that is not safe to use as a DAG id, a file name or a parameter."""


class InvalidPlanFileError(CoordinatorError):
    """A plan file that is missing, unreadable or not a plan at all."""


class PlanError(CoordinatorError):
    """A plan that cannot be built or that must not be executed."""


class OverlapError(PlanError):
    """A rollback that would silently undo newer batches touching the same services."""

    def __init__(self, batch: str, newer: list[tuple[str, list[str]]]) -> None:
        self.batch = batch
        self.newer = newer
        described = "; ".join(f"{other} (touches {', '.join(services)})" for other, services in newer)
        super().__init__(
            f"batch {batch} is overlapped by newer batches: {described}. Rolling {batch} back alone "
            f"would undo them too. Roll them back first, or ask for a cascading plan "
            f"(--cascade on the CLI, the 'cascade' parameter in the trigger form)."
        )
