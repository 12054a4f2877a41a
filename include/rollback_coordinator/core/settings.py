"""Locations of configuration and data, from ROLLBACK_CONFIG_DIR and ROLLBACK_DATA_DIR."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# The repository root when running from a checkout: include/rollback_coordinator/core/settings.py
_CHECKOUT_ROOT = Path(__file__).resolve().parents[3]

CONFIG_DIR_VARIABLE = "ROLLBACK_CONFIG_DIR"
DATA_DIR_VARIABLE = "ROLLBACK_DATA_DIR"


def default_data_dir() -> Path:
    """Return the data folder used when ROLLBACK_DATA_DIR is unset.

    It follows the XDG base directory convention, so plans, approvals and the audit
    repository never land inside the git checkout.
    """
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "rollback-coordinator"


@dataclass(frozen=True)
class Locations:
    """Resolved folders for one process: configuration in, data out."""

    config_dir: Path
    data_dir: Path

    @property
    def services_file(self) -> Path:
        return self.config_dir / "services.yaml"

    @property
    def governance_file(self) -> Path:
        return self.config_dir / "governance.yaml"

    @property
    def registry_file(self) -> Path:
        return self.data_dir / "registry" / "batches.json"

    @property
    def plans_dir(self) -> Path:
        return self.data_dir / "plans"

    @property
    def approvals_dir(self) -> Path:
        return self.data_dir / "approvals"

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

    @property
    def audit_repo(self) -> Path:
        override = os.environ.get("ROLLBACK_AUDIT_REPO")
        return Path(override) if override else self.data_dir / "audit"


def locations() -> Locations:
    """Read the two folder variables from the environment, falling back to the defaults."""
    config = os.environ.get(CONFIG_DIR_VARIABLE)
    data = os.environ.get(DATA_DIR_VARIABLE)
    return Locations(
        config_dir=Path(config).resolve() if config else _CHECKOUT_ROOT / "config",
        data_dir=Path(data).resolve() if data else default_data_dir(),
    )
