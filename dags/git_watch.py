"""The git watcher: registers deployment batches and starts the rollback runs requested in git.

Configuration comes from watch.yaml in ROLLBACK_CONFIG_DIR. Without that file there is no
git_watch DAG. An invalid watch.yaml shows up as one import error for this file.
"""

from rollback_coordinator.airflow.watcher import build_watch_dags

globals().update(build_watch_dags())
