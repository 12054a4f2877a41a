"""Metric names of the coordinator and a small emitter that sends them.

The emitter takes any object with StatsD-style ``incr(name)``, ``timing(name, delta)`` and
``gauge(name, value)`` methods. In Airflow 3.3 that is ``Stats`` from
``airflow.sdk.observability.stats`` (``airflow.stats`` still exists but only warns and
forwards). The task runner builds its backend from ``[metrics]`` when a task starts:
``statsd_on`` with ``statsd_host``, ``statsd_port`` (default 8125) and ``statsd_prefix``
(default "airflow", put in front of every name), or ``statsd_datadog_enabled``, or
``otel_on``. StatsD also needs the ``statsd`` package (the apache-airflow[statsd] extra).
Without it Airflow logs "Could not configure StatsClient" and drops every metric.

Names carry their dimensions (profile, outcome, service) as name segments, because plain
StatsD has no tags:

- ``rollback_coordinator.runs.<outcome>.<profile>``: counter, one per finished run; outcome
  is succeeded, failed or dry_run;
- ``rollback_coordinator.runs.duration.<profile>``: timing of a run that was not a dry run,
  from its start to the audit step (a dry run skips scripts, so it would pull the numbers
  down);
- ``rollback_coordinator.service.<service>.health_before`` and ``.health_after``: gauge, 1
  healthy, 0 unhealthy.

Sending a metric never raises: a failing emitter is logged and ignored, because metrics must
not fail a rollback.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Any, Protocol

PREFIX = "rollback_coordinator"
OUTCOMES = ("succeeded", "failed", "dry_run")

_UNSAFE_SEGMENT = re.compile(r"[^A-Za-z0-9_-]")

logger = logging.getLogger(__name__)


class MetricsEmitter(Protocol):
    """The part of a StatsD client (or of Airflow's Stats) the coordinator uses."""

    def incr(self, stat: str, *args: Any, **kwargs: Any) -> Any: ...

    def timing(self, stat: str, dt: Any, *args: Any, **kwargs: Any) -> Any: ...

    def gauge(self, stat: str, value: float, *args: Any, **kwargs: Any) -> Any: ...


def name_segment(value: str) -> str:
    """Return ``value`` as one metric name segment: no dots, only [A-Za-z0-9_-]."""
    return _UNSAFE_SEGMENT.sub("_", value) or "_"


def run_outcome_metric(outcome: str, profile: str) -> str:
    return f"{PREFIX}.runs.{name_segment(outcome)}.{name_segment(profile)}"


def run_duration_metric(profile: str) -> str:
    return f"{PREFIX}.runs.duration.{name_segment(profile)}"


def service_health_metric(service: str, phase: str) -> str:
    return f"{PREFIX}.service.{name_segment(service)}.health_{name_segment(phase)}"


class RollbackMetrics:
    """Send the coordinator's metrics through ``emitter``, logging failures to ``log``
    (a logging.Logger or the task's ``self.log`` in Airflow)."""

    def __init__(self, emitter: MetricsEmitter, *, log: Any = None) -> None:
        self.emitter = emitter
        self.log = log or logger

    def run_finished(self, *, profile: str, outcome: str, duration: timedelta) -> None:
        """Count a finished run, and time it unless it was a dry run.

        ``outcome`` is "succeeded", "failed" or "dry_run" ("dry run", as the audit writes
        it, is accepted too).
        """
        outcome = outcome.replace(" ", "_")
        if outcome not in OUTCOMES:
            self.log.warning("metric not sent: unknown run outcome %r (known: %s)", outcome,
                             ", ".join(OUTCOMES))
            return
        self._send("incr", run_outcome_metric(outcome, profile))
        if outcome != "dry_run":
            # A timedelta, because Airflow 3.3's StatsD, Datadog and OpenTelemetry backends all
            # turn it into milliseconds.
            self._send("timing", run_duration_metric(profile), duration)

    def service_health(self, *, service: str, phase: str, healthy: bool) -> None:
        """Set the health gauge of ``service`` for ``phase`` ("before" or "after")."""
        self._send("gauge", service_health_metric(service, phase), 1 if healthy else 0)

    def _send(self, method: str, name: str, *args: Any) -> None:
        try:
            getattr(self.emitter, method)(name, *args)
        except Exception as error:  # noqa: BLE001 - metrics must not fail a rollback
            self.log.warning("metric %s not sent (%s): %s", name, method, error)
