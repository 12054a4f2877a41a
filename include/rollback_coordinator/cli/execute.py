"""`execute`: start the batch's rollback run with exactly the given plan.

Through the REST API of a running Airflow when ROLLBACK_AIRFLOW_URL is set, otherwise in this
process on the local Airflow installation (``dag.test()``), waiting for the run to end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from rollback_coordinator.cli.output import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_RUN_FAILED,
    Printer,
    current_actor,
)
from rollback_coordinator.core.approvals import (
    PLAN_GROUP,
    ApprovalStore,
    plan_approvals,
    satisfied_roles,
)
from rollback_coordinator.core.batch_id import dag_id_for
from rollback_coordinator.core.errors import CoordinatorError
from rollback_coordinator.core.decisions import Escalate
from rollback_coordinator.core.governance import PROFILES, Governance, load_governance
from rollback_coordinator.core.governor import EmbeddedGovernor, plan_request
from rollback_coordinator.core.plan import Plan, plan_path, read_plan, write_plan
from rollback_coordinator.core.planner import rebuild_matches
from rollback_coordinator.core.registry import BatchRegistry
from rollback_coordinator.core.services import load_services
from rollback_coordinator.core.settings import Locations, locations

AIRFLOW_URL_VARIABLE = "ROLLBACK_AIRFLOW_URL"


class ExecuteError(CoordinatorError):
    exit_code = EXIT_RUN_FAILED


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "execute",
        help="start the rollback run of a plan file",
        description=(
            "Start the batch's rollback DAG with exactly this plan. A plan file changed since "
            "it was made is refused. With ROLLBACK_AIRFLOW_URL set (and ROLLBACK_AIRFLOW_USERNAME, "
            "ROLLBACK_AIRFLOW_PASSWORD), the run is triggered through that Airflow's REST API; "
            "otherwise it runs in this process on the local Airflow installation and the "
            "command waits for it to end."
        ),
    )
    parser.add_argument("plan_file", type=Path, help="plan file written by 'rollback-coordinator plan'")
    return parser


def run(args: argparse.Namespace, printer: Printer) -> int:
    plan, digest = read_plan(args.plan_file)
    places = locations()
    stored = plan_path(places.plans_dir, plan.batch, digest)
    if not stored.exists():
        write_plan(plan, stored)
    dag_id = dag_id_for(plan.batch)
    conf = {"plan_sha256": digest}

    if os.environ.get(AIRFLOW_URL_VARIABLE):
        from rollback_coordinator.cli.airflow_api import AirflowApi

        api = AirflowApi.from_environment()
        stamp = datetime.now(timezone.utc).isoformat()
        dag_run = api.trigger(dag_id, conf, run_id=f"cli__{stamp}__{digest[:12]}")
        printer.result(
            {"batch": plan.batch, "dag_id": dag_id, "sha256": digest, "dag_run": dag_run},
            [
                f"triggered {dag_id} run {dag_run['dag_run_id']} with plan {digest}",
                f"follow it with: rollback-coordinator status {plan.batch}",
            ],
        )
        return EXIT_OK

    _check_runnable_here(plan, digest, places)
    with _stdout_to_stderr():
        state, run_id = run_in_process(dag_id, conf)
    printer.result(
        {"batch": plan.batch, "dag_id": dag_id, "sha256": digest, "run_id": run_id, "state": state},
        [
            f"run {run_id} of {dag_id} with plan {digest[:12]}: {state}",
            f"details: rollback-coordinator status {plan.batch}",
        ],
    )
    return EXIT_OK if state == "success" else EXIT_RUN_FAILED


class ExecuteRefused(CoordinatorError):
    exit_code = EXIT_REFUSED


def _check_runnable_here(plan: Plan, digest: str, places: Locations) -> None:
    """Refuse an in-process run that the governor would stop or that would wait forever.

    In this process Airflow records the runner as dag_test, so separation of duties is checked
    here against the person running the command. Without an api-server nothing can respond to
    a step waiting in Airflow, so approvals must be recorded before the run starts.
    """
    registry = BatchRegistry(places.registry_file).load()
    batches = {key: item.batch for key, item in registry.batches.items()}
    rebuild_matches(plan, digest, batches, load_services(places.services_file))

    actor = current_actor()
    if PROFILES[plan.profile].separation != "none" and actor == plan.author:
        raise ExecuteRefused(
            f"the {plan.profile} profile needs the planner and the runner to be different "
            f"people; {actor} made plan {digest[:12]}, so someone else must execute it"
        )
    governance = load_governance(places.governance_file)
    store = ApprovalStore(places.approvals_dir)
    _check_plan_not_escalated(plan, digest, governance, store, actor)
    if plan.dry_run:
        return
    needed = PROFILES[plan.profile].min_approvers
    missing = []
    for step in plan.service_steps():
        records = store.list(plan.batch, digest, step.group_id)
        valid, roles = satisfied_roles(records, plan, step.group_id, governance, runner=None)
        missing.extend((step.group_id, role) for role in roles)
        reviewers = len({approval.user for approval in valid})
        if reviewers < needed and governance.review_role:
            missing.extend([(step.group_id, governance.review_role)] * (needed - reviewers))
    if missing:
        commands = "; ".join(
            f"rollback-coordinator approve {plan.batch} --service {group} --role {role} "
            f"--plan {digest}"
            for group, role in missing
        )
        raise ExecuteRefused(
            f"plan {digest[:12]} needs approvals before it can run in this process: {commands}. "
            f"Or execute through a running Airflow (ROLLBACK_AIRFLOW_URL), where approvers "
            f"answer while the run waits."
        )


def _check_plan_not_escalated(
    plan: Plan, digest: str, governance: Governance, store: ApprovalStore, actor: str
) -> None:
    """Refuse a run whose plan the embedded governor would escalate, as inside a freeze window.

    Such a run would wait for an approval of the whole plan, which cannot be given without
    an api-server. A remote governor is asked only by the run itself.
    """
    if governance.governor != "embedded":
        return
    valid = plan_approvals(store, plan, digest, governance, actor)
    request = plan_request(
        plan, digest,
        action="rollback.plan",
        service=None,
        runner=actor,
        approvers=[approval.user for approval in valid],
        repo_ref=plan.phases[0].from_ref,
    )
    decision = EmbeddedGovernor(governance).decide(request)
    if isinstance(decision, Escalate):
        role = decision.human_review_required
        raise ExecuteRefused(
            f"the governor escalates plan {digest[:12]} to role '{role}' (rule {decision.rule}), "
            f"so the whole plan needs an approval by that role before it can run in this "
            f"process: rollback-coordinator approve {plan.batch} --service {PLAN_GROUP} "
            f"--role {role} --plan {digest}. Or execute through a running Airflow "
            f"(ROLLBACK_AIRFLOW_URL), where the run waits for the approval."
        )


def run_in_process(dag_id: str, conf: dict[str, str]) -> tuple[str, str]:
    """Run the DAG through Airflow's own dag.test() and return the run's state and id."""
    from airflow.configuration import conf as airflow_conf
    from airflow.dag_processing.dagbag import DagBag

    _ensure_metadata_database()
    dags_folder = airflow_conf.get("core", "dags_folder")
    bag = DagBag(dag_folder=dags_folder)
    dag = bag.dags.get(dag_id)
    if dag is None:
        errors = "; ".join(f"{path}: {error.strip().splitlines()[-1]}" for path, error in bag.import_errors.items())
        raise ExecuteError(
            f"no DAG {dag_id} in {dags_folder}"
            + (
                f" (import errors: {errors})"
                if errors
                else "; point AIRFLOW__CORE__DAGS_FOLDER at this project's dags/ folder and "
                "check that the batch is registered (rollback-coordinator plan registers it)"
            )
        )
    dag_run = dag.test(run_conf=conf)
    return str(dag_run.state), dag_run.run_id


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send Airflow's warnings and task logs to stderr, so stdout carries only the result.

    Done on the file descriptor, because Airflow's log handlers keep their own reference
    to the stream they were configured with.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _ensure_metadata_database() -> None:
    from airflow.utils.db import check_migrations, upgradedb

    try:
        check_migrations(timeout=0)
    except TimeoutError:
        upgradedb()
