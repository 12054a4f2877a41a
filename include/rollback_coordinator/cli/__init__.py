"""The rollback-coordinator command line: plan, execute, status, approve."""

from rollback_coordinator.cli.main import main

__all__ = ["main"]
