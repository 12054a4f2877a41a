"""Test settings shared by every test: Airflow and the coordinator never touch the user's home.

Airflow reads its configuration when first imported, so AIRFLOW_HOME and friends are set
here, before any test module imports it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
_SESSION_ROOT = Path(tempfile.mkdtemp(prefix="rollback-tests-"))

os.environ["AIRFLOW_HOME"] = str(_SESSION_ROOT / "airflow")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(CHECKOUT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(CHECKOUT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ.setdefault("ROLLBACK_DATA_DIR", str(_SESSION_ROOT / "data"))
os.environ.setdefault("ROLLBACK_CONFIG_DIR", str(CHECKOUT / "config"))
os.environ.pop("ROLLBACK_AIRFLOW_URL", None)
os.environ.pop("ROLLBACK_ACTOR", None)

# The throwaway PostgreSQL server, for every test folder.
from postgres_fixture import postgres_server, postgres_target  # noqa: E402, F401
