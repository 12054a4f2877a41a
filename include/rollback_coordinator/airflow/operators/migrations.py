"""The migration step: prove a service's database can be rewound, then have the rewind authorized.

With `connection_id`, the migration tool's own history table is read through that Airflow
connection; with `state_command`, the command reports the state. When both are set, both must
report the database safe to rewind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow.sdk import Connection
from airflow.sdk.exceptions import AirflowFailException

from rollback_coordinator.airflow import governing
from rollback_coordinator.airflow.operators.service import ServiceStepOperator, script_context
from rollback_coordinator.airflow.steps import StepEnvironment
from rollback_coordinator.core.approvals import ApprovalStore
from rollback_coordinator.core.decisions import Artifact, Escalate
from rollback_coordinator.core.errors import CoordinatorError
from rollback_coordinator.core.migration_state import MigrationVerdict, verify_with_state_command
from rollback_coordinator.core.migrations import (
    batch_migration_ids,
    target_from_uri,
    verify_history,
)
from rollback_coordinator.core.registry import BatchRegistry
from rollback_coordinator.core.services import Migrations, Service


class VerifyMigrationsOperator(ServiceStepOperator):
    """Prove the service's database can be rewound, then ask the governor to rewind it."""

    ui_color = "#fff3e0"

    def run_step(self, env: StepEnvironment, context: Any) -> dict[str, Any]:
        services = env.ctx.services
        service = services.services[env.step.service]
        migrations = service.migrations
        if migrations is None:
            raise AirflowFailException(
                f"service {env.step.service} has no migrations in {services.source}, but the "
                f"plan verifies them; plan again"
            )
        self._check_lock_file(env, migrations)

        expected = self._expected(env, migrations)
        self.log.info(
            "batch %s, service %s: verifying %s migrations %s",
            env.step.batch, env.step.service, migrations.tool, ", ".join(expected) or "(none)",
        )
        verdicts = self._verdicts(env, service, migrations, expected)
        records = [verdict.to_record() for verdict in verdicts]
        unsafe = [verdict for verdict in verdicts if not verdict.safe]
        for verdict in verdicts:
            self.log.info(
                "batch %s, service %s: %s reports %s: %s",
                env.step.batch, env.step.service, verdict.source,
                "safe to rewind" if verdict.safe else "NOT safe to rewind", verdict.reason,
            )
        if unsafe:
            env.record(self.task_id, self.step_kind, "failed", migration_state=records)
            reasons = "; ".join(verdict.reason for verdict in unsafe)
            raise AirflowFailException(
                f"service {env.step.service}: database cannot be rewound: {reasons}"
            )
        return self._authorize(env, verdicts, records)

    def _check_lock_file(self, env: StepEnvironment, migrations: Migrations) -> None:
        if migrations.lock_file is None:
            return
        lock = env.ctx.services.resolve(migrations.lock_file)
        if lock.exists():
            env.record(self.task_id, self.step_kind, "failed", lock_file=str(lock))
            raise AirflowFailException(
                f"service {env.step.service}: migration lock file {lock} exists, so a migration "
                f"may be running; wait for it to finish or remove a stale lock, then run again"
            )

    def _expected(self, env: StepEnvironment, migrations: Migrations) -> list[str]:
        registered = BatchRegistry(env.ctx.places.registry_file).load().batches.get(env.phase.batch)
        if registered is None:
            raise AirflowFailException(
                f"batch {env.phase.batch} is no longer in the registry; its migrations cannot be "
                f"found"
            )
        files = registered.batch.files
        if migrations.tool == "other":
            return first_parts_below(files, migrations.directory)
        try:
            return batch_migration_ids(
                migrations.tool, files, Path(env.plan.repo), env.phase.from_ref,
                migrations.directory, before_ref=env.phase.to_ref,
            )
        except CoordinatorError as error:
            raise AirflowFailException(f"service {env.step.service}: {error}") from None

    def _verdicts(
        self, env: StepEnvironment, service: Service, migrations: Migrations, expected: list[str]
    ) -> list[MigrationVerdict]:
        verdicts = []
        if migrations.connection_id is not None:
            verdicts.append(self._history_verdict(env, service, migrations, expected))
        if migrations.state_command is not None:
            verdicts.append(
                verify_with_state_command(
                    env.ctx.services.command_argv(list(migrations.state_command)),
                    tool=migrations.tool,
                    expected=expected,
                    context_env=script_context(env).environment(),
                    extra_env=dict(service.env),
                    cwd=env.ctx.services.base_dir,
                    timeout_s=service.timeout,
                    on_line=lambda line: self.log.info("[state command] %s", line),
                )
            )
        return verdicts

    def _history_verdict(
        self, env: StepEnvironment, service: Service, migrations: Migrations, expected: list[str]
    ) -> MigrationVerdict:
        conn_id = migrations.connection_id
        try:
            target = target_from_uri(conn_id, Connection.get(conn_id).get_uri())
        except CoordinatorError as error:
            raise AirflowFailException(f"service {env.step.service}: {error}") from None
        except Exception as error:  # noqa: BLE001 - a missing connection must stop the rollback
            raise AirflowFailException(
                f"service {env.step.service}: Airflow connection '{conn_id}' is not usable "
                f"({type(error).__name__}: {error}); define it, for example with "
                f"AIRFLOW_CONN_{conn_id.upper()}"
            ) from None
        try:
            return verify_history(
                target, migrations.tool, expected, Path(env.plan.repo), env.phase.from_ref,
                migrations.directory, timeout_s=min(float(service.timeout), 60.0),
                script_handles_down=migrations.script_handles_down, service=env.step.service,
            )
        except CoordinatorError as error:
            raise AirflowFailException(f"service {env.step.service}: {error}") from None

    def _authorize(
        self, env: StepEnvironment, verdicts: list[MigrationVerdict], records: list[dict]
    ) -> dict[str, Any]:
        artifacts = [
            Artifact(
                kind="migration_state",
                ref=f"runs/{env.step.batch}/{env.step.group_id}/{verdict.source}",
                sha256=verdict.sha256,
            )
            for verdict in verdicts
        ]
        store = ApprovalStore(env.ctx.places.approvals_dir)
        approvers = {
            approval.user for approval in store.list(env.plan.batch, env.digest, env.step.group_id)
        }
        request = governing.build_request(
            env.ctx, env.plan, env.digest,
            action="migration.rewind",
            service=env.step.service,
            approvers=env.approvers(approvers),
            repo_ref=env.phase.from_ref,
            extra_artifacts=artifacts,
            freeze_acknowledged=env.freeze_acknowledged,
        )
        decision = governing.ask(env.ctx, request, self.log)
        details = {"migration_state": records, **governing.decision_record(request, decision)}
        try:
            outcome = governing.enforce(env.ctx, decision, request)
        except AirflowFailException:
            env.record(self.task_id, self.step_kind, "failed", **details)
            raise
        if isinstance(outcome, Escalate):
            env.record(self.task_id, self.step_kind, "failed", **details)
            raise AirflowFailException(
                f"governor asks for review by '{outcome.human_review_required}' before the "
                f"database of {env.step.service} is rewound; approve the service and run again"
            )
        env.record(self.task_id, self.step_kind, "succeeded", **details)
        return {"safe": True, "sha256": [verdict.sha256 for verdict in verdicts]}


def first_parts_below(files: tuple[str, ...], directory: str) -> list[str]:
    """Return the names below a migration folder, for tools without an adapter."""
    prefix = directory.rstrip("/") + "/"
    names: list[str] = []
    for path in files:
        if path.startswith(prefix):
            name = Path(path[len(prefix):]).parts[0]
            if name not in names:
                names.append(name)
    return names
