"""A sample deployment: a git repository with real batches, its deployed releases and database.

It matches config/services.yaml: services api, worker, automations and db, where the newest
batch (REL-3) touches all four and adds a database migration.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# Folder of each service in the sample repository; config/services.yaml uses the same paths.
SOURCE_DIRS = {"api": "services/api", "worker": "services/worker", "automations": "automations"}
MIGRATIONS_DIR = "db/migrations"
NEWEST_BATCH = "REL-3"

_INIT_SQL = "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL);\n"
_ORDERS_SQL = (
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL, total REAL);\n"
    "CREATE INDEX orders_customer ON orders (customer_id);\n"
)

# (message, files to write) in history order. Dates are fixed so runs are reproducible.
HISTORY: list[tuple[str, dict[str, str]]] = [
    (
        "Initial release",
        {
            "README.md": "Sample deployment for the rollback coordinator demo.\n",
            "services/api/VERSION": "1.0.0\n",
            "services/api/app.py": "ROUTES = ['/health', '/customers']\n",
            "services/worker/VERSION": "1.0.0\n",
            "services/worker/jobs.py": "JOBS = ['send_invoices']\n",
            "automations/VERSION": "1.0.0\n",
            "automations/nightly.sh": "#!/bin/sh\necho nightly report\n",
            f"{MIGRATIONS_DIR}/20260101000000_init/migration.sql": _INIT_SQL,
            f"{MIGRATIONS_DIR}/20260101000000_init/down.sql": "DROP TABLE customers;\n",
        },
    ),
    (
        "REL-1: paginate the customer list",
        {"services/api/VERSION": "1.1.0\n", "services/api/app.py": "ROUTES = ['/health', '/customers?page']\n"},
    ),
    ("[REL-2] retry failed invoice jobs", {"services/worker/VERSION": "1.1.0\n"}),
    ("REL-2: report retries in the nightly run", {"automations/VERSION": "1.1.0\n"}),
    ("Describe the sample in the README", {"README.md": "Sample deployment, three batches.\n"}),
    (
        "REL-3: add the orders table",
        {
            f"{MIGRATIONS_DIR}/20261201000000_orders/migration.sql": _ORDERS_SQL,
            f"{MIGRATIONS_DIR}/20261201000000_orders/down.sql": "DROP INDEX orders_customer;\nDROP TABLE orders;\n",
        },
    ),
    (
        "Ship orders through the API, the worker and the nightly run\n\nDeploy-Batch: REL-3",
        {
            "services/api/VERSION": "1.2.0\n",
            "services/api/app.py": "ROUTES = ['/health', '/customers?page', '/orders']\n",
            "services/worker/VERSION": "1.2.0\n",
            "services/worker/jobs.py": "JOBS = ['send_invoices', 'ship_orders']\n",
            "automations/VERSION": "1.2.0\n",
        },
    ),
]


@dataclass(frozen=True)
class SampleDeployment:
    repo: Path
    deploy_root: Path
    database: Path

    @property
    def api_port_file(self) -> Path:
        return self.repo.parent / "api.port"

    def release_of(self, service: str) -> str:
        return (self.deploy_root / service / "RELEASE").read_text().strip()

    def version_of(self, service: str) -> str:
        return (self.deploy_root / service / "VERSION").read_text().strip()


def start_sample_api(sample: SampleDeployment, timeout_s: float = 30) -> tuple[subprocess.Popen, int]:
    """Start the sample API on a free port; return the process and the port it wrote."""
    sample.api_port_file.unlink(missing_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "rollback_coordinator.demo.sample_api",
         "--deploy-root", str(sample.deploy_root), "--port-file", str(sample.api_port_file)],
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the sample API exited with {process.returncode}")
        text = sample.api_port_file.read_text().strip() if sample.api_port_file.exists() else ""
        if text:
            return process, int(text)
        time.sleep(0.1)
    process.terminate()
    raise RuntimeError(f"the sample API wrote no port to {sample.api_port_file}")


def git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env
    ).stdout.strip()


def create_sample(data_dir: Path) -> SampleDeployment:
    """Build the sample under data_dir/sample, replacing any earlier one."""
    root = data_dir / "sample"
    if root.exists():
        shutil.rmtree(root)
    sample = SampleDeployment(root / "repo", root / "deploy", root / "app.db")
    _create_repository(sample.repo)
    head = git(sample.repo, "rev-parse", "HEAD")
    for service, source in SOURCE_DIRS.items():
        deploy_release(sample, service, source, head)
    _migrate_database(sample, head)
    return sample


def deploy_release(sample: SampleDeployment, service: str, source: str, ref: str) -> None:
    target = sample.deploy_root / service
    target.parent.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(sample.repo), "archive", "--format=tar", ref, "--", source],
        check=True, capture_output=True,
    ).stdout
    unpack = sample.deploy_root / f".{service}.unpack"
    unpack.mkdir()
    subprocess.run(["tar", "-x", "-C", str(unpack)], input=archive, check=True)
    (unpack / source).rename(target)
    shutil.rmtree(unpack)
    (target / "RELEASE").write_text(f"{ref}\n")


def _create_repository(repo: Path) -> None:
    repo.mkdir(parents=True)
    git(repo, "init", "--quiet", "--initial-branch=main")
    git(repo, "config", "user.name", "Sample Developer")
    git(repo, "config", "user.email", "developer@example.com")
    git(repo, "config", "commit.gpgsign", "false")
    for index, (message, files) in enumerate(HISTORY):
        for name, content in files.items():
            path = repo / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            if name.endswith(".sh"):
                path.chmod(0o755)
        git(repo, "add", "--all")
        stamp = f"2026-12-0{1 + index // 3}T{10 + index % 3}:00:00+00:00"
        env = {**os.environ, "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}
        git(repo, "commit", "--quiet", "-m", message, env=env)


def _migrate_database(sample: SampleDeployment, ref: str) -> None:
    """Apply every migration of ref the way prisma does, history table included."""
    names = git(sample.repo, "ls-tree", "--name-only", f"{ref}:{MIGRATIONS_DIR}").split()
    with sqlite3.connect(sample.database) as db:
        db.execute(
            "CREATE TABLE _prisma_migrations (id TEXT PRIMARY KEY, checksum TEXT NOT NULL,"
            " finished_at TEXT, migration_name TEXT NOT NULL, logs TEXT, rolled_back_at TEXT,"
            " started_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,"
            " applied_steps_count INTEGER NOT NULL DEFAULT 0)"
        )
        for number, name in enumerate(sorted(names)):
            sql = subprocess.run(
                ["git", "-C", str(sample.repo), "show", f"{ref}:{MIGRATIONS_DIR}/{name}/migration.sql"],
                check=True, capture_output=True,
            ).stdout
            db.executescript(sql.decode())
            db.execute(
                "INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name,"
                " started_at, applied_steps_count) VALUES (?, ?, ?, ?, ?, 1)",
                (
                    f"sample-{number}",
                    hashlib.sha256(sql).hexdigest(),
                    f"2026-12-03T09:00:0{number}+00:00",
                    name,
                    f"2026-12-03T09:00:0{number}+00:00",
                ),
            )
