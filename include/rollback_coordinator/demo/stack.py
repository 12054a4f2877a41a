"""The local Airflow stack (`make up`): `airflow standalone` on 127.0.0.1 with the demo batches.

Run from a checkout: python -m rollback_coordinator.demo.stack [--port 8080] [--workdir .stack]
It builds the sample deployment, registers its batches, starts the sample API and then the
api-server, scheduler, dag-processor and triggerer, and stops them all on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from rollback_coordinator.core.batches import scan_repository
from rollback_coordinator.core.registry import BatchRegistry
from rollback_coordinator.demo.sample import create_sample, start_sample_api

CHECKOUT = Path(__file__).resolve().parents[3]
USERS = {
    "admin": "admin", "alice": "user", "bob": "user", "guardian": "user", "gina": "user",
    "rita": "user",
}


@dataclass
class Stack:
    """A running standalone Airflow and where to reach it."""

    process: subprocess.Popen
    url: str
    home: Path
    passwords: dict[str, str]

    def stop(self) -> None:
        """Stop standalone and every component it started, which share its process group."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        # Its scheduler, api-server and workers can outlive it; they are in its group.
        for stop_signal in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, stop_signal)
            except ProcessLookupError:
                return
            time.sleep(5)


def stack_environment(home: Path, data_dir: Path, config_dir: Path, port: int) -> dict[str, str]:
    """Return the environment of a standalone Airflow bound to 127.0.0.1:port."""
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(CHECKOUT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(CHECKOUT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in USERS.items()),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "10",
            "ROLLBACK_CONFIG_DIR": str(config_dir),
            "ROLLBACK_DATA_DIR": str(data_dir),
            "AIRFLOW_CONN_SAMPLE_DB": f"sqlite:///{data_dir / 'sample' / 'app.db'}",
            # standalone starts its components as `airflow ...` found on PATH.
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    env.pop("ROLLBACK_AIRFLOW_URL", None)
    return env


def start_stack(env: dict[str, str], log_path: Path, timeout_s: float = 180) -> Stack:
    """Start `airflow standalone` and wait until its health endpoint responds."""
    home = Path(env["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    passwords = {user: secrets.token_urlsafe(12) for user in USERS}
    (home / "simple_auth_manager_passwords.json.generated").write_text(json.dumps(passwords))

    url = env["AIRFLOW__API__BASE_URL"]
    log = log_path.open("w")
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("airflow")), "standalone"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    stack = Stack(process=process, url=url, home=home, passwords=passwords)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"airflow standalone exited with {process.returncode}; see {log_path}")
        if _healthy(url):
            return stack
        time.sleep(2)
    stack.stop()
    raise RuntimeError(f"airflow standalone did not respond at {url} within {timeout_s:.0f} s; see {log_path}")


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=5) as response:
            health = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return all(part.get("status") == "healthy" for part in health.values() if isinstance(part, dict))


def main() -> int:
    parser = argparse.ArgumentParser(description="Start the local Airflow stack with the demo batches.")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workdir", type=Path, default=CHECKOUT / ".stack")
    args = parser.parse_args()
    workdir = args.workdir.resolve()
    data_dir = workdir / "data"

    sample = create_sample(data_dir)
    BatchRegistry(data_dir / "registry" / "batches.json").register(
        scan_repository(sample.repo), repo=str(sample.repo)
    )
    # A copy of config/ with a watch.yaml for the sample repository, so the git watcher runs
    # and the checkout stays clean.
    config_dir = workdir / "config"
    shutil.copytree(CHECKOUT / "config", config_dir, dirs_exist_ok=True)
    (config_dir / "watch.yaml").write_text(
        f"watch:\n  repository: {sample.repo}\n  interval_minutes: 1\n"
    )
    env = stack_environment(workdir / "airflow", data_dir, config_dir, args.port)
    api, _ = start_sample_api(sample)
    print(f"starting Airflow on 127.0.0.1:{args.port} (log: {workdir / 'standalone.log'}) ...")
    try:
        stack = start_stack(env, workdir / "standalone.log")
    except RuntimeError as error:
        api.terminate()
        print(f"error: {error}", file=sys.stderr)
        return 1

    print(f"\nAirflow is up at {stack.url}. Users and passwords (this run only):")
    for user, password in stack.passwords.items():
        print(f"  {user:<9} {password}   ({USERS[user]})")
    print(
        "\nOpen the DAG 'Rollback REL-3', read the plan in its docs and trigger it with the form."
        "\nThe git_watch DAG scans the sample repository every minute: commit a 'Rollback: REL-2'"
        f"\ntrailer to {sample.repo} and watch the run start by itself."
        "\nThe api service waits for the guardian's approval; give it with:"
        f"\n  ROLLBACK_DATA_DIR={data_dir} ROLLBACK_ACTOR=guardian "
        f"{Path(sys.executable).with_name('rollback-coordinator')} approve REL-3 --service api --role guardian"
        "\nPress Ctrl-C to stop."
    )
    # SIGTERM stops the stack the way Ctrl-C does, so nothing is left serving.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        stack.process.wait()
    except KeyboardInterrupt:
        print("\nstopping ...")
    finally:
        stack.stop()
        api.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
