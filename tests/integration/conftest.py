"""Fixtures for tests that run the coordinator through Airflow: real repositories, real scripts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests_support import GOVERNANCE_YAML, git, services_yaml, write_config

BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Create the session's Airflow metadata database (SQLite) once."""
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], check=True, capture_output=True)


@dataclass
class Deployment:
    """A deployment built for one test: a git repository, a config folder and a data folder."""

    root: Path
    repo: Path
    config_dir: Path
    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def order_log(self) -> Path:
        return self.data_dir / "order.log"

    def script_runs(self) -> list[str]:
        """Return the services whose rollback script ran, in the order they ran."""
        if not self.order_log.exists():
            return []
        return [line.split()[1] for line in self.order_log.read_text().splitlines() if line.startswith("end ")]

    def commit(self, message: str, files: dict[str, str]) -> str:
        for name, content in files.items():
            path = self.repo / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        git(self.repo, "add", "--all")
        git(self.repo, "commit", "--quiet", "--allow-empty", "-m", message)
        return git(self.repo, "rev-parse", "HEAD")

    def cli(self, *args: str, actor: str = "alice", check: bool = True) -> subprocess.CompletedProcess:
        env = {**self.env, "ROLLBACK_ACTOR": actor}
        result = subprocess.run(
            [str(BIN / "rollback-coordinator"), *args], env=env, capture_output=True, text=True, timeout=600
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"rollback-coordinator {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def plan(self, batch: str, *extra: str, actor: str = "alice") -> dict:
        out = self.root / f"plan-{batch}.json"
        self.cli("plan", batch, "--repo", str(self.repo), "--out", str(out), *extra, actor=actor)
        return json.loads(out.read_text())

    def plan_file(self, batch: str) -> Path:
        return self.root / f"plan-{batch}.json"


@pytest.fixture
def deployment(tmp_path: Path, airflow_db: None) -> Deployment:
    """A repository with one batch REL-1 touching all four services, and its config."""
    root = tmp_path
    repo, config_dir, data_dir = root / "repo", root / "config", root / "data"
    data_dir.mkdir()
    write_config(config_dir, services_yaml(), GOVERNANCE_YAML)

    repo.mkdir()
    git(repo, "init", "--quiet", "--initial-branch=main")
    git(repo, "config", "user.name", "Test Developer")
    git(repo, "config", "user.email", "dev@example.com")
    git(repo, "config", "commit.gpgsign", "false")

    env = {
        **os.environ,
        "ROLLBACK_CONFIG_DIR": str(config_dir),
        "ROLLBACK_DATA_DIR": str(data_dir),
    }
    found = Deployment(root=root, repo=repo, config_dir=config_dir, data_dir=data_dir, env=env)
    found.commit("Initial release", {"README.md": "app\n"})
    found.commit(
        "REL-1: ship orders",
        {
            "db/migrations/001/up.sql": "create table orders (id int);\n",
            "services/api/VERSION": "2\n",
            "services/worker/VERSION": "2\n",
            "automations/VERSION": "2\n",
        },
    )
    return found
