"""Governance-aware rollback coordinator for multi-service deployments.

``rollback_coordinator.core`` holds the domain logic and imports nothing from Airflow.
``rollback_coordinator.airflow`` adapts that core into Airflow operators, sensors and DAGs.
"""

__version__ = "0.1.0"
