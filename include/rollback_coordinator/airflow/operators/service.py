"""Operators for the steps of one service: health checks and the rollback script."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from rollback_coordinator.airflow.runtime import RollbackTask
from rollback_coordinator.airflow.steps import StepEnvironment, load_step
from rollback_coordinator.core.health import HealthResult, check_command, check_http, check_tcp
from rollback_coordinator.core.plan import file_sha256
from rollback_coordinator.core.scripts import ScriptContext, run_script, script_environment


# Task logs keep this much of a script's output; the digest in the step record covers it all.
LOGGED_OUTPUT_BYTES = 1_000_000


class RollbackScriptFailed(AirflowException):
    """A failed rollback script that Airflow may retry, as services.yaml allows."""


def _capped_log(log: Any, service: str) -> Callable[[str], None]:
    logged = 0

    def log_line(line: str) -> None:
        nonlocal logged
        if logged < LOGGED_OUTPUT_BYTES:
            log.info("[%s] %s", service, line)
        elif logged - len(line) < LOGGED_OUTPUT_BYTES:
            log.warning(
                "[%s] more output not logged (over %d bytes); the step record keeps its sha256",
                service, LOGGED_OUTPUT_BYTES,
            )
        logged += len(line) + 1

    return log_line


def script_context(env: StepEnvironment) -> ScriptContext:
    return ScriptContext(
        batch=env.step.batch,
        service=env.step.service,
        profile=env.plan.profile,
        run_id=env.ctx.run_id,
        plan_digest=env.digest,
        dry_run=env.plan.dry_run,
        from_ref=env.phase.from_ref,
        to_ref=env.phase.to_ref,
        repo=env.plan.repo,
        config_dir=str(env.ctx.places.config_dir),
        data_dir=str(env.ctx.places.data_dir),
        environment_name=env.plan.environment,
    )


class ServiceStepOperator(BaseOperator, RollbackTask):
    """Common ground of the steps in a service's task group."""

    # Nothing from a batch, a commit or a trigger form is ever rendered as a Jinja template.
    template_fields: Sequence[str] = ()

    @property
    def step_kind(self) -> str:
        """Return the kind of step the step records name: the task id within the group."""
        return self.step_name

    def execute(self, context: Any) -> Any:
        env = load_step(context, self.batch_id, self.group_id)
        return self.run_step(env, context)

    def run_step(self, env: StepEnvironment, context: Any) -> Any:
        raise NotImplementedError


class HealthCheckOperator(ServiceStepOperator):
    """Check a service's health before or after its rollback, as services.yaml describes.

    Its task id, health_before or health_after, selects which.
    """

    ui_color = "#e3f2fd"

    @property
    def when(self) -> str:
        return self.step_name.removeprefix("health_")

    def run_step(self, env: StepEnvironment, context: Any) -> dict[str, Any]:
        services = env.ctx.services
        check = services.services[env.step.service].health_check
        if check is None:
            raise AirflowFailException(
                f"service {env.step.service} has no health_check in {services.source}, "
                f"but the plan has a health step for it; plan again"
            )

        result = _run_health_check(check, services, env)
        self.log.info(
            "batch %s, service %s, health %s the rollback: %s (%s %s: %s)",
            env.step.batch,
            env.step.service,
            self.when,
            "healthy" if result.healthy else "UNHEALTHY",
            result.kind,
            result.target,
            result.detail,
        )
        record = {
            "kind": result.kind,
            "target": result.target,
            "healthy": result.healthy,
            "detail": result.detail,
            "duration_s": round(result.duration_s, 3),
        }
        env.record(self.task_id, self.step_kind, "succeeded" if result.healthy else "failed",
                   health=record)
        if not result.healthy:
            raise AirflowFailException(
                f"service {env.step.service} is unhealthy {self.when} the rollback: "
                f"{result.detail} ({result.kind} {result.target})"
            )
        return record


def _run_health_check(check: Any, services: Any, env: StepEnvironment) -> HealthResult:
    if check.kind == "http":
        return check_http(check.http, expect_status=check.expect_status, timeout_s=check.timeout)
    if check.kind == "tcp":
        return check_tcp(check.tcp, timeout_s=check.timeout)
    argv = services.command_argv(list(check.command))
    extra = dict(services.services[env.step.service].env)
    environment = script_environment(script_context(env).environment(), extra)
    return check_command(argv, timeout_s=check.timeout, cwd=services.base_dir, env=environment)


class RollbackScriptOperator(ServiceStepOperator):
    """Run a service's rollback script, as an argument list, with its context in the environment."""

    ui_color = "#ffebee"

    def run_step(self, env: StepEnvironment, context: Any) -> dict[str, Any]:
        services = env.ctx.services
        service = services.services[env.step.service]
        script = Path(env.step.script)
        self._check_script_unchanged(env, script)

        timeout_s = float(service.timeout)
        authorization = context["ti"].xcom_pull(task_ids=f"{self.group_id}.authorize") or {}
        limit = (authorization.get("constraints") or {}).get("timeout_s")
        if isinstance(limit, (int, float)) and 0 < limit < timeout_s:
            timeout_s = float(limit)

        if env.plan.dry_run and not service.supports_dry_run:
            self.log.info(
                "batch %s, service %s: dry run, and the script does not declare "
                "supports_dry_run, so it is not started: would run %s to go back to %s",
                env.step.batch, env.step.service, script, env.phase.to_ref,
            )
            env.record(self.task_id, self.step_kind, "dry run", script=str(script))
            return {"dry_run": True}

        self.log.info(
            "batch %s, service %s: running %s to go back from %s to %s (timeout %.0f s)",
            env.step.batch, env.step.service, script, env.phase.from_ref, env.phase.to_ref,
            timeout_s,
        )
        result = run_script(
            [str(script)],
            context_env=script_context(env).environment(),
            extra_env=dict(service.env),
            cwd=services.base_dir,
            timeout_s=timeout_s,
            on_line=_capped_log(self.log, env.step.service),
        )
        summary = {
            "script": str(script),
            "returncode": result.returncode,
            "timed_out": result.timed_out,
            "duration_s": round(result.duration_s, 3),
            "output_sha256": result.output_sha256,
            "output_truncated": result.output_truncated,
        }
        self.log.info(
            "batch %s, service %s: script exited %s after %.2f s (output sha256 %s)",
            env.step.batch, env.step.service, result.returncode, result.duration_s,
            result.output_sha256,
        )
        if not result.ok:
            env.record(self.task_id, self.step_kind, "failed", result=summary)
            message = f"rollback script of service {env.step.service} failed: {result.summary}"
            if self.retries:
                # services.yaml asked for retries, so Airflow may run the (idempotent) script again.
                raise RollbackScriptFailed(message)
            raise AirflowFailException(message)
        env.record(self.task_id, self.step_kind, "succeeded", result=summary)
        return summary

    def _check_script_unchanged(self, env: StepEnvironment, script: Path) -> None:
        try:
            current = file_sha256(script)
        except OSError as error:
            raise AirflowFailException(f"rollback script {script} is not readable: {error}") from None
        if current != env.step.script_sha256:
            raise AirflowFailException(
                f"rollback script {script} changed after plan {env.digest[:12]} was made "
                f"(sha256 {current}, planned {env.step.script_sha256}); plan again"
            )
