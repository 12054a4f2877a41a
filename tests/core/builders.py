"""Inputs for planner, plan, governor, approval and render tests: real files, plain objects.

The service map is written as a real services.yaml with executable rollback scripts and
loaded with ``load_services``, so every test goes through the same checks as production.
"""

from __future__ import annotations

import copy
import hashlib
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from rollback_coordinator.core.batches import Batch, CommitInfo
from rollback_coordinator.core.governance import Governance
from rollback_coordinator.core.plan import Plan
from rollback_coordinator.core.planner import PlanRequest, build_plan
from rollback_coordinator.core.services import ServiceMap, load_services

CREATED_AT = "2025-03-04T10:00:00+00:00"
REPO_URL = "https://git.example.com/shop.git"

# db <- api <- {worker, automations}: each arrow points from a dependency to its dependent.
EXAMPLE_SERVICES: dict[str, dict[str, Any]] = {
    "db": {"paths": ["db/**"], "rollback_script": "scripts/db.sh"},
    "api": {
        "paths": ["services/api/**"],
        "rollback_script": "scripts/api.sh",
        "depends_on": ["db"],
    },
    "worker": {
        "paths": ["services/worker/**"],
        "rollback_script": "scripts/worker.sh",
        "depends_on": ["api"],
    },
    "automations": {
        "paths": ["automations/**"],
        "rollback_script": "scripts/automations.sh",
        "depends_on": ["api"],
    },
}

# One changed file per service of EXAMPLE_SERVICES.
FILE_OF: dict[str, str] = {
    "db": "db/migrations/0042_orders.sql",
    "api": "services/api/handlers.py",
    "worker": "services/worker/queue.py",
    "automations": "automations/nightly.yaml",
}

GOVERNANCE: dict[str, Any] = {
    "default_environment": "staging",
    "environments": {
        "staging": {"minimum_profile": "flow"},
        "qa": {"minimum_profile": "balanced"},
        "prod": {"minimum_profile": "strict"},
    },
    "roles": {"dba": ["dora", "dan"], "security": ["sam"], "sre": ["pat"]},
}


def example_services(**changes: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Return a copy of EXAMPLE_SERVICES with each named service's settings updated."""
    services = copy.deepcopy(EXAMPLE_SERVICES)
    for name, settings in changes.items():
        services[name].update(settings)
    return services


def write_services(folder: Path, services: Mapping[str, Mapping[str, Any]]) -> ServiceMap:
    """Write services.yaml and an executable script per service into folder, then load it."""
    folder.mkdir(parents=True, exist_ok=True)
    for settings in services.values():
        script = folder / settings["rollback_script"]
        script.parent.mkdir(parents=True, exist_ok=True)
        if not script.exists():
            script.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
            script.chmod(script.stat().st_mode | stat.S_IXUSR)
    source = folder / "services.yaml"
    source.write_text(yaml.safe_dump({"services": dict(services)}, sort_keys=False))
    return load_services(source)


def fake_sha(seed: str) -> str:
    return hashlib.sha1(seed.encode()).hexdigest()


def make_batch(
    batch_id: str, sequence: int, files: list[str], subjects: list[str] | None = None
) -> Batch:
    """Build a batch of one commit per subject, every commit changing all of ``files``."""
    subjects = subjects or [f"Change for {batch_id}"]
    commits = tuple(
        CommitInfo(
            sha=fake_sha(f"{batch_id}/{index}"),
            subject=subject,
            author="Ada Lovelace",
            authored_at=CREATED_AT,
            files=tuple(files),
            parents=(fake_sha(f"{batch_id}/{index - 1}"),),
        )
        for index, subject in enumerate(subjects)
    )
    return Batch(
        id=batch_id,
        commits=commits,
        from_ref=commits[-1].sha,
        to_ref=fake_sha(f"{batch_id}/-1"),
        sequence=sequence,
        files=tuple(files),
    )


def batch_touching(batch_id: str, sequence: int, *services: str) -> Batch:
    """Build a batch that changes one file of each named service of EXAMPLE_SERVICES."""
    return make_batch(batch_id, sequence, [FILE_OF[name] for name in services])


def batches_of(*batches: Batch) -> dict[str, Batch]:
    return {batch.id: batch for batch in batches}


def plan_request(batch: str, **changes: Any) -> PlanRequest:
    """Build a request for a flow rollback in staging by pat, with a fixed creation time."""
    fields: dict[str, Any] = {
        "batch": batch,
        "profile": "flow",
        "environment": "staging",
        "author": "pat",
        "reason": "checkout errors after deploy",
        "created_at": CREATED_AT,
    }
    fields.update(changes)
    return PlanRequest(**fields)


def make_governance(**changes: Any) -> Governance:
    return Governance.model_validate({**copy.deepcopy(GOVERNANCE), **changes})


def make_plan(
    folder: Path,
    services: Mapping[str, Mapping[str, Any]] | None = None,
    touched: tuple[str, ...] = ("api",),
    **request_changes: Any,
) -> Plan:
    """Write the services into folder and plan batch REL-1, which touches ``touched``."""
    service_map = write_services(folder, services or EXAMPLE_SERVICES)
    batches = batches_of(batch_touching("REL-1", 1, *touched))
    return build_plan(plan_request("REL-1", **request_changes), batches, service_map, REPO_URL)
