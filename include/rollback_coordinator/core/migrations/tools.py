"""The adapter of each supported migration tool, by its ``migrations.tool`` name."""

from __future__ import annotations

from rollback_coordinator.core.migrations.alembic import AlembicAdapter
from rollback_coordinator.core.migrations.atlas import AtlasAdapter
from rollback_coordinator.core.migrations.base import MigrationAdapter, MigrationCheckError
from rollback_coordinator.core.migrations.django import DjangoAdapter
from rollback_coordinator.core.migrations.flyway import FlywayAdapter
from rollback_coordinator.core.migrations.golang_migrate import GolangMigrateAdapter
from rollback_coordinator.core.migrations.liquibase import LiquibaseAdapter
from rollback_coordinator.core.migrations.prisma import PrismaAdapter
from rollback_coordinator.core.migrations.rails import RailsAdapter

ADAPTERS: dict[str, MigrationAdapter] = {
    adapter.tool: adapter
    for adapter in (
        PrismaAdapter(),
        AlembicAdapter(),
        FlywayAdapter(),
        DjangoAdapter(),
        RailsAdapter(),
        LiquibaseAdapter(),
        GolangMigrateAdapter(),
        AtlasAdapter(),
    )
}


def adapter_for(tool: str) -> MigrationAdapter:
    """Return the adapter of ``tool``; raise MigrationCheckError for a tool without one."""
    try:
        return ADAPTERS[tool]
    except KeyError:
        raise MigrationCheckError(
            f"migration tool {tool!r} has no history table reader; supported tools are "
            f"{', '.join(sorted(ADAPTERS))}. Use migrations.state_command for other tools"
        ) from None
