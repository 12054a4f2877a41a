"""Benchmark 4: the wall time of a rollback run, against plain BashOperators of the same shape.

The deployment has 20 services whose rollback script and health check do nothing (exit 0)
and one batch, REL-1, that touches all of them. Both DAGs run with dag.test() in a fresh
process per sample, on one SQLite metadata database made with ``airflow db migrate``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from common import (
    BENCH_DIR,
    CHECKOUT,
    PYTHON,
    Row,
    Samples,
    airflow_env,
    log,
    ratio_row,
    run_probe,
    scratch_dir,
)
from deployment import service_names, write_config

from rollback_coordinator.core.batches import scan_repository
from rollback_coordinator.core.registry import BatchRegistry

FACTORY_FILE = CHECKOUT / "dags" / "rollback_batches.py"
PROBE = str(BENCH_DIR / "probe_run.py")
SERVICE_COUNT = 20
DAG_ID = "rollback_REL-1"
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Release Bot",
    "GIT_AUTHOR_EMAIL": "release@example.com",
    "GIT_COMMITTER_NAME": "Release Bot",
    "GIT_COMMITTER_EMAIL": "release@example.com",
}


def run_benchmark(samples: int, timeout_s: float = 600) -> list[Row]:
    with scratch_dir("run") as root:
        env = _deployment(root)
        log("run: airflow db migrate")
        subprocess.run(
            [str(Path(PYTHON).parent / "airflow"), "db", "migrate"],
            env=env, check=True, capture_output=True, timeout=timeout_s,
        )
        bash_dir = root / "bash"
        bash_dir.mkdir()
        run_probe([PROBE, str(FACTORY_FILE), DAG_ID, "--dump-shapes",
                   str(bash_dir / "shapes.json")], env, timeout_s)
        (bash_dir / "bash_dags.py").write_text(
            (BENCH_DIR / "dag_files" / "bash_dags.py").read_text()
        )
        # dag.test() syncs every DAG of the DAG folder to the database before it runs.
        bash_env = {**env, "AIRFLOW__CORE__DAGS_FOLDER": str(bash_dir)}
        contenders = {
            "factory": ([PROBE, str(FACTORY_FILE), DAG_ID], env),
            "bash": ([PROBE, str(bash_dir / "bash_dags.py"), f"bash_{DAG_ID}"], bash_env),
        }
        timings = {name: Samples() for name in contenders}
        tasks = 0
        for round_number in range(1, samples + 1):
            for name, (argv, contender_env) in contenders.items():
                log(f"run: round {round_number}/{samples}: {name}")
                result = run_probe(argv, contender_env, timeout_s)
                timings[name].add(result["run_s"])
                tasks = result["tasks"]
        return [
            ratio_row(
                f"rollback run, {SERVICE_COUNT} services, {tasks} tasks (dag.test)",
                timings["factory"], timings["bash"], "BashOperator DAG", 1.3, "<= 1.3 x",
                "bench/run.py --only run",
            )
        ]


def _deployment(root: Path) -> dict[str, str]:
    """Build config, data and a git repository whose batch REL-1 touches every service."""
    config_dir, data_dir, repo = root / "config", root / "data", root / "repo"
    names = service_names(SERVICE_COUNT)
    # No approvals, because no approver can respond while dag.test() runs in this process.
    write_config(config_dir, names, approvals=False, migrations=False)
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("shop\n")
    _git(repo, "add", "--all")
    _git(repo, "commit", "-q", "-m", "Initial release")
    for name in names:
        version = repo / "services" / name / "VERSION"
        version.parent.mkdir(parents=True)
        version.write_text("2\n")
    _git(repo, "add", "--all")
    _git(repo, "commit", "-q", "-m", "REL-1: release 2 of every service")
    registry = BatchRegistry(data_dir / "registry" / "batches.json")
    registry.register(scan_repository(repo), repo=str(repo))
    (root / "airflow").mkdir()
    return airflow_env(
        root / "airflow",
        FACTORY_FILE.parent,
        ROLLBACK_CONFIG_DIR=str(config_dir),
        ROLLBACK_DATA_DIR=str(data_dir),
        ROLLBACK_ACTOR="release-bot",
    )


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "commit.gpgsign=false", *args],
        check=True,
        capture_output=True,
        env={
            **os.environ,
            **GIT_IDENTITY,
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_NOSYSTEM": "1",
        },
    )
