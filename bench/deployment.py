"""Benchmark deployments: a services.yaml of up to 30 services, no-op scripts and a batch registry.

The 30 services form the layers of a typical web shop: data stores, core services that
use them, edge services that call the core, workers and automation jobs. Each service's
dependencies point at lower layers only, as services.yaml requires (no cycles).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rollback_coordinator.core.batches import Batch, CommitInfo
from rollback_coordinator.core.registry import BatchRegistry, RegisteredBatch, RegistrySnapshot

# name -> services it depends on, lowest layer first.
SERVICES: dict[str, list[str]] = {
    "users-db": [],
    "orders-db": [],
    "billing-db": [],
    "cache": [],
    "queue": [],
    "search-index": [],
    "users": ["users-db", "cache"],
    "auth": ["users", "cache"],
    "catalog": ["cache", "search-index"],
    "inventory": ["orders-db", "catalog"],
    "pricing": ["catalog", "cache"],
    "orders": ["orders-db", "inventory", "pricing", "queue"],
    "billing": ["billing-db", "orders", "queue"],
    "payments": ["billing", "auth"],
    "shipping": ["orders", "queue"],
    "notifications": ["queue", "users"],
    "api-gateway": ["auth", "orders", "catalog", "payments"],
    "web": ["api-gateway"],
    "admin": ["api-gateway", "auth"],
    "mobile-bff": ["api-gateway"],
    "partner-api": ["auth", "orders", "inventory"],
    "order-worker": ["orders", "shipping", "queue"],
    "billing-worker": ["billing", "payments", "queue"],
    "email-worker": ["notifications", "queue"],
    "search-indexer": ["catalog", "search-index", "queue"],
    "report-worker": ["orders", "billing"],
    "nightly-jobs": ["orders", "billing"],
    "data-export": ["orders", "users"],
    "cleanup": ["orders-db", "users-db"],
    "metrics-exporter": ["api-gateway", "queue"],
}

# Databases carry migrations, and the customer-facing services need a guardian's approval.
WITH_MIGRATIONS = {"users-db", "orders-db", "billing-db"}
WITH_APPROVALS = {"payments", "billing", "api-gateway", "web", "partner-api", "orders-db"}

NOOP_SCRIPT = "#!/bin/sh\nexit 0\n"

GOVERNANCE_YAML = """\
governor: embedded
default_environment: staging
environments:
  staging: {minimum_profile: flow}
  prod: {minimum_profile: balanced}
roles:
  guardian: [guardian]
approvals:
  timeout_s: 300
"""

AUTHORED_AT = "2025-03-01T12:00:00+00:00"


@dataclass(frozen=True)
class Deployment:
    """The folders a benchmark points ROLLBACK_CONFIG_DIR and ROLLBACK_DATA_DIR at."""

    config_dir: Path
    data_dir: Path

    @property
    def registry_file(self) -> Path:
        return self.data_dir / "registry" / "batches.json"

    def env(self) -> dict[str, str]:
        return {
            "ROLLBACK_CONFIG_DIR": str(self.config_dir),
            "ROLLBACK_DATA_DIR": str(self.data_dir),
        }


def service_names(count: int) -> list[str]:
    """Return the first ``count`` services; every prefix of SERVICES is closed under depends_on."""
    if not 1 <= count <= len(SERVICES):
        raise ValueError(f"service count {count} is outside 1..{len(SERVICES)}")
    return list(SERVICES)[:count]


def write_config(
    config_dir: Path, services: list[str], *, approvals: bool = True, migrations: bool = True
) -> None:
    """Write services.yaml, governance.yaml and the no-op script every service runs."""
    scripts = config_dir / "scripts"
    scripts.mkdir(parents=True, exist_ok=True)
    script = scripts / "noop.sh"
    script.write_text(NOOP_SCRIPT)
    script.chmod(0o755)
    lines = ["services:"]
    for name in services:
        lines += _service_lines(name, approvals and name in WITH_APPROVALS,
                                migrations and name in WITH_MIGRATIONS)
    (config_dir / "services.yaml").write_text("\n".join(lines) + "\n")
    (config_dir / "governance.yaml").write_text(GOVERNANCE_YAML)


def _service_lines(name: str, approvals: bool, migrations: bool) -> list[str]:
    lines = [
        f"  {name}:",
        f'    paths: ["services/{name}/**"]',
        "    rollback_script: scripts/noop.sh",
        '    health_check: {command: ["scripts/noop.sh"], timeout: 10}',
    ]
    if SERVICES[name]:
        lines.append(f"    depends_on: [{', '.join(SERVICES[name])}]")
    if approvals:
        lines.append("    approvals: [guardian]")
    if migrations:
        lines += [
            "    migrations:",
            "      tool: other",
            f"      directory: services/{name}/migrations",
            '      state_command: ["scripts/noop.sh"]',
        ]
    return lines


def synthetic_batches(count: int, services: list[str]) -> dict[str, RegisteredBatch]:
    """Return ``count`` batches REL-1..REL-<count>, each with one commit touching every service."""
    batches = {}
    files = tuple(f"services/{name}/app.py" for name in services)
    for number in range(1, count + 1):
        batch_id = f"REL-{number}"
        sha = f"{number:040x}"
        parent = f"{number - 1:040x}"
        commit = CommitInfo(
            sha=sha,
            subject=f"{batch_id}: release {number}",
            author="Release Bot <release@example.com>",
            authored_at=AUTHORED_AT,
            files=files,
            parents=(parent,),
        )
        batch = Batch(
            id=batch_id,
            commits=(commit,),
            from_ref=sha,
            to_ref=parent,
            sequence=number,
            files=files,
        )
        batches[batch_id] = RegisteredBatch(batch, registered_at=AUTHORED_AT, repo="/srv/shop")
    return batches


def write_registry(path: Path, batches: dict[str, RegisteredBatch]) -> None:
    """Replace the registry at ``path`` with ``batches``, through the project's own writer."""
    snapshot = RegistrySnapshot(watermark=None, batches=batches)
    BatchRegistry(path).update(lambda current: (snapshot, None))


def build_deployment(root: Path, batch_count: int, service_count: int = 30) -> Deployment:
    """Create config and data folders under ``root`` with ``batch_count`` registered batches."""
    deployment = Deployment(config_dir=root / "config", data_dir=root / "data")
    names = service_names(service_count)
    write_config(deployment.config_dir, names)
    write_registry(deployment.registry_file, synthetic_batches(batch_count, names))
    return deployment
