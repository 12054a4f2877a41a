"""Rollback DAGs, one per deployment batch in the registry (Airflow DAG factory).

Configuration comes from ROLLBACK_CONFIG_DIR and the registry from ROLLBACK_DATA_DIR.
An invalid services.yaml or governance.yaml shows up as one import error for this file.
"""

from rollback_coordinator.airflow.factory import build_dags

globals().update(build_dags())
