"""End-to-end demo: roll the sample deployment's newest batch back through Airflow.

Run from a checkout: python -m rollback_coordinator.demo [--workdir .demo]
Exits 0 only when every service is verifiably back on its previous release and the batch's
database migration is undone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from rollback_coordinator.demo.sample import (
    NEWEST_BATCH,
    SOURCE_DIRS,
    SampleDeployment,
    create_sample,
    git,
    start_sample_api,
)

CHECKOUT = Path(__file__).resolve().parents[3]
RUN_WAIT_S = 900
# The demo deletes its work folder on start, but only one that this marker shows it made.
WORKDIR_MARKER = ".rollback-demo"


def main() -> int:
    parser = argparse.ArgumentParser(description="Run the rollback coordinator demo end to end.")
    parser.add_argument("--workdir", type=Path, default=CHECKOUT / ".demo")
    args = parser.parse_args()
    workdir = args.workdir.resolve()
    if workdir.exists():
        if any(workdir.iterdir()) and not (workdir / WORKDIR_MARKER).exists():
            print(f"error: {workdir} is not empty and was not made by the demo; pick another "
                  f"--workdir", file=sys.stderr)
            return 1
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    (workdir / WORKDIR_MARKER).write_text("made by python -m rollback_coordinator.demo\n")
    env = demo_environment(workdir)

    step("Building the sample deployment (git history, releases, database)")
    sample = create_sample(Path(env["ROLLBACK_DATA_DIR"]))
    print(f"  repository {sample.repo}")
    for line in git(sample.repo, "log", "--format=%h %s", "--reverse").splitlines():
        print(f"    {line}")

    api, api_port = start_sample_api(sample)
    try:
        return run_demo(sample, env, workdir, api_port)
    finally:
        api.terminate()
        api.wait(timeout=10)


def run_demo(sample: SampleDeployment, env: dict[str, str], workdir: Path, api_port: int) -> int:
    before = {service: sample.version_of(service) for service in SOURCE_DIRS}
    step("Preparing Airflow's metadata database (SQLite)")
    run([airflow_command(), "db", "migrate"], env, quiet=True)

    step(f"Planning the rollback of {NEWEST_BATCH} as alice (balanced profile, staging)")
    plan_file = workdir / f"plan-{NEWEST_BATCH}.json"
    run(
        [cli_command(), "plan", NEWEST_BATCH, "--repo", str(sample.repo), "--profile", "balanced",
         "--environment", "staging", "--reason", "orders release breaks checkout", "--out", str(plan_file)],
        {**env, "ROLLBACK_ACTOR": "alice"},
    )
    plan = json.loads(plan_file.read_text())

    step("Approving the api as guardian through the CLI, bound to the plan's digest")
    run(
        [cli_command(), "approve", NEWEST_BATCH, "--service", "api", "--role", "guardian",
         "--plan", plan["sha256"]],
        {**env, "ROLLBACK_ACTOR": "guardian"},
    )

    step("Executing the plan through Airflow (dag.test, in process)")
    log_path = workdir / "execute.log"
    with log_path.open("w") as log:
        code = subprocess.run(
            [cli_command(), "execute", str(plan_file)], env=env, stdout=log,
            stderr=subprocess.STDOUT, timeout=RUN_WAIT_S,
        ).returncode
    print(f"  run finished with exit code {code}; Airflow's output is in {log_path}")
    if code != 0:
        print("  last lines of that output:")
        for line in log_path.read_text(errors="replace").splitlines()[-15:]:
            print(f"    {line}")

    step("Checking every service against the release before the batch")
    ok = verify(sample, plan, before, api_port)
    print_summary(env, plan)
    return 0 if ok and code == 0 else 1


def verify(sample: SampleDeployment, plan: dict, before: dict[str, str], api_port: int) -> bool:
    to_ref = plan["plan"]["phases"][0]["to_ref"]
    ok = True
    for service, source in SOURCE_DIRS.items():
        expected = git(sample.repo, "show", f"{to_ref}:{source}/VERSION")
        release, version = sample.release_of(service), sample.version_of(service)
        good = release == to_ref and version == expected
        ok &= good
        print(f"  {'ok  ' if good else 'FAIL'} {service:<12} {before[service]} -> {version} "
              f"(release {release[:12]}, expected {expected} at {to_ref[:12]})")

    with sqlite3.connect(sample.database) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        rolled_back = db.execute(
            "SELECT rolled_back_at FROM _prisma_migrations WHERE migration_name LIKE '%_orders'"
        ).fetchone()[0]
    good = "orders" not in tables and rolled_back is not None
    ok &= good
    print(f"  {'ok  ' if good else 'FAIL'} db           orders table "
          f"{'dropped' if 'orders' not in tables else 'still present'}, migration marked rolled back "
          f"at {rolled_back}")

    with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/health", timeout=5) as response:
        served = json.loads(response.read())["version"]
    print(f"  {'ok  ' if served == sample.version_of('api') else 'FAIL'} api health endpoint serves {served}")
    return ok and served == sample.version_of("api")


def print_summary(env: dict[str, str], plan: dict) -> None:
    step("Summary")
    print(f"  plan {plan['sha256'][:12]} by {plan['plan']['author']}, order:")
    for phase in plan["plan"]["phases"]:
        for service in phase["services"]:
            print(f"    level {service['level']}: {service['group_id']}")
    status = subprocess.run(
        [cli_command(), "status", NEWEST_BATCH, "--json"], env=env, capture_output=True, text=True
    )
    runs = json.loads(status.stdout)["runs"] if status.returncode == 0 else []
    for record in runs[-1]["steps"] if runs else []:
        decision, health = record.get("decision"), record.get("health")
        if decision:
            print(f"  decision {decision['decision']:<9} {record['task_id']:<28} rule {decision['rule']}")
        if health:
            state = "healthy" if health["healthy"] else "unhealthy"
            print(f"  health   {record['task_id']:<38} {state}: {health['detail']}")
    audit = Path(env["ROLLBACK_DATA_DIR"]) / "audit"
    if not (audit / ".git").is_dir():
        print(f"  no audit repository at {audit}: the run did not reach its audit step")
        return
    print(f"  audit repository {audit}: {git(audit, 'log', '-1', '--format=%h %s')}")
    print(f"    {audit / 'RUN_LOG.md'} and {audit / 'memory'}")


def demo_environment(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "ROLLBACK_CONFIG_DIR": str(CHECKOUT / "config"),
            "ROLLBACK_DATA_DIR": str(workdir / "data"),
            "AIRFLOW_CONN_SAMPLE_DB": f"sqlite:///{workdir / 'data' / 'sample' / 'app.db'}",
            "AIRFLOW_HOME": str(workdir / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(CHECKOUT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(CHECKOUT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        }
    )
    env.pop("ROLLBACK_AIRFLOW_URL", None)
    return env


def airflow_command() -> str:
    return str(Path(sys.executable).with_name("airflow"))


def cli_command() -> str:
    return str(Path(sys.executable).with_name("rollback-coordinator"))


def run(argv: list[str], env: dict[str, str], quiet: bool = False) -> None:
    result = subprocess.run(argv, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        print(result.stdout + result.stderr, file=sys.stderr)
        raise SystemExit(f"command failed with exit code {result.returncode}: {' '.join(argv[:3])}")
    if not quiet:
        for line in result.stdout.splitlines():
            print(f"  {line}")


def step(title: str) -> None:
    print(f"\n== {title}")


if __name__ == "__main__":
    sys.exit(main())
