"""`plan`: scan a repository, register its batches and write the plan file of one batch."""

from __future__ import annotations

import argparse
from pathlib import Path

from rollback_coordinator.cli.output import EXIT_OK, Printer, current_actor
from rollback_coordinator.core.batch_id import validate_batch_id
from rollback_coordinator.core.batches import scan_repository
from rollback_coordinator.core.consistency import check_services_against_governance
from rollback_coordinator.core.errors import ConfigError, CoordinatorError
from rollback_coordinator.core.governance import PROFILES, load_governance
from rollback_coordinator.core.plan import plan_digest, plan_path, write_plan
from rollback_coordinator.core.planner import PlanRequest, build_plan
from rollback_coordinator.core.registry import BatchRegistry
from rollback_coordinator.core.render import plan_lines
from rollback_coordinator.core.services import load_services
from rollback_coordinator.core.settings import locations


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "plan",
        help="write the plan file of a batch",
        description=(
            "Scan the repository for deployment batches, register them so their rollback "
            "DAGs exist, and write the plan of one batch with its SHA-256 digest. You are "
            "recorded as the plan's author."
        ),
    )
    parser.add_argument("batch", help="batch id, for example REL-42")
    parser.add_argument("--repo", required=True, type=Path, help="path of the git repository")
    parser.add_argument(
        "--services", type=Path, help="services.yaml to plan with (default: the one in ROLLBACK_CONFIG_DIR)"
    )
    parser.add_argument("--profile", choices=list(PROFILES), help="governance profile (default: the environment's)")
    parser.add_argument("--environment", help="target environment (default: governance.yaml's default)")
    parser.add_argument("--reason", default="", help="why the batch is rolled back")
    parser.add_argument("--dry-run", action="store_true", help="plan a rehearsal that runs no rollback script")
    parser.add_argument(
        "--cascade", action="store_true", help="also roll back newer batches touching the same services"
    )
    parser.add_argument("--out", required=True, type=Path, help="where to write the plan file")
    return parser


def run(args: argparse.Namespace, printer: Printer) -> int:
    batch_id = validate_batch_id(args.batch)
    places = locations()
    services = load_services(args.services or places.services_file)
    governance = load_governance(places.governance_file)
    check_services_against_governance(services, governance)
    environment = args.environment or governance.default_environment
    if environment not in governance.environments:
        known = ", ".join(governance.environments)
        raise ConfigError(
            f"unknown environment '{environment}'; use one of {known}",
            file=places.governance_file, field="environments",
        )
    if args.out.exists() and not args.out.is_file():
        raise CoordinatorError(f"--out {args.out} exists and is not a regular file; pick a file path")

    repo = args.repo.resolve()
    registry = BatchRegistry(places.registry_file)
    _check_same_repository(registry, repo)
    scan = scan_repository(repo)
    added = registry.register(scan, repo=str(repo))
    batches = {key: item.batch for key, item in registry.load().batches.items()}

    request = PlanRequest(
        batch=batch_id,
        profile=args.profile or governance.default_profile(environment),
        environment=environment,
        author=current_actor(),
        reason=args.reason,
        dry_run=args.dry_run,
        cascade=args.cascade,
    )
    plan = build_plan(request, batches, services, str(repo))
    digest = write_plan(plan, args.out)
    write_plan(plan, plan_path(places.plans_dir, plan.batch, plan_digest(plan)))

    lines = plan_lines(plan, digest)
    if added:
        lines.insert(0, f"registered batches: {', '.join(added)}")
    lines.append(f"plan file: {args.out}")
    lines.append(f"execute it with: rollback-coordinator execute {args.out}")
    printer.result(
        {
            "batch": plan.batch,
            "sha256": digest,
            "plan_file": str(args.out),
            "registered": added,
            "plan": plan.model_dump(mode="json"),
        },
        lines,
    )
    return EXIT_OK


def _check_same_repository(registry: BatchRegistry, repo: Path) -> None:
    """Refuse to mix repositories in one registry, since batch ids and order are per repository."""
    others = {item.repo for item in registry.load().batches.values()} - {str(repo)}
    if others:
        raise CoordinatorError(
            f"the batch registry {registry.path} contains batches of {', '.join(sorted(others))}, "
            f"not {repo}; use one ROLLBACK_DATA_DIR per repository"
        )
