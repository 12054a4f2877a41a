"""Migration verification from the migration tool's own history table.

Before a service's rollback script runs, ``verify_history`` reads the history table of
the service's migration tool (PostgreSQL or SQLite) and compares it with the migration
files of the repository at the batch's newest commit. ``batch_migration_ids`` maps the
files a batch changed to the migration ids it added, and ``target_from_uri`` builds the
database target from an Airflow connection URI. One adapter module per tool holds that
tool's file layout and table layout; adding a tool means adding an adapter to ``tools``.
"""

from rollback_coordinator.core.migrations.base import MigrationCheckError
from rollback_coordinator.core.migrations.batch_ids import batch_migration_ids
from rollback_coordinator.core.migrations.target import DatabaseTarget, target_from_uri
from rollback_coordinator.core.migrations.tools import ADAPTERS, adapter_for
from rollback_coordinator.core.migrations.verifier import verify_history

__all__ = [
    "ADAPTERS",
    "DatabaseTarget",
    "MigrationCheckError",
    "adapter_for",
    "batch_migration_ids",
    "target_from_uri",
    "verify_history",
]
