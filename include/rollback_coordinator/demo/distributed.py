"""The production process layout without containers (`make up-distributed`).

Run from a checkout: python -m rollback_coordinator.demo.distributed [--port 8080]
    [--workdir .distributed] [--concurrency 4]
It starts what docker-compose.yaml starts, as plain processes on 127.0.0.1: PostgreSQL and
Redis from the machine's packages in temporary folders, then the api-server, scheduler,
dag-processor, triggerer and two Celery workers with the CeleryExecutor. Ctrl-C or SIGTERM
stops them all and deletes the database and broker folders.
"""

from __future__ import annotations

import argparse
import base64
import glob
import json
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2

from rollback_coordinator.core.batches import scan_repository
from rollback_coordinator.core.registry import BatchRegistry
from rollback_coordinator.demo.sample import create_sample, start_sample_api
from rollback_coordinator.demo.stack import CHECKOUT, USERS, stack_environment

AIRFLOW = Path(sys.executable).with_name("airflow")
# Debian installs the PostgreSQL server binaries outside PATH, one folder per major version.
DEBIAN_POSTGRES_GLOB = "/usr/lib/postgresql/*/bin"
# initdb refuses to run as root, so as root the server runs as the Debian package's user.
POSTGRES_OS_USER = "postgres"
DATABASE = "airflow"
DATABASE_ROLE = "airflow"
WORKERS = ("worker1", "worker2")
# Celery prints "<name>@<host> ready." once the worker consumes from the broker.
WORKER_READY = " ready."
# A worker's warm shutdown waits for its running tasks. docker-compose.yaml gives them 10 minutes.
STOP_GRACE_S = 60
START_ATTEMPTS = 3


class LayoutError(RuntimeError):
    """A part of the layout could not start."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def postgres_binaries() -> tuple[Path, Path] | None:
    """Return initdb and pg_ctl from PATH, else from Debian's newest server version."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return Path(initdb), Path(pg_ctl)
    for folder in sorted(glob.glob(DEBIAN_POSTGRES_GLOB), key=_major_version, reverse=True):
        initdb_path, pg_ctl_path = Path(folder, "initdb"), Path(folder, "pg_ctl")
        if os.access(initdb_path, os.X_OK) and os.access(pg_ctl_path, os.X_OK):
            return initdb_path, pg_ctl_path
    return None


def redis_binary() -> Path | None:
    found = shutil.which("redis-server")
    return Path(found) if found else None


def missing_binaries() -> list[str]:
    """Name the server programs this layout needs that the machine lacks, with their package."""
    missing = []
    if postgres_binaries() is None:
        missing.append(
            f"initdb and pg_ctl (package postgresql; searched PATH and {DEBIAN_POSTGRES_GLOB})"
        )
    if redis_binary() is None:
        missing.append("redis-server (package redis-server; searched PATH)")
    return missing


def _major_version(folder: str) -> int:
    version = Path(folder).parent.name.split(".")[0]
    return int(version) if version.isdigit() else -1


def _run(command: list[str], env: dict[str, str] | None = None) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)
    if result.returncode != 0:
        output = (result.stderr.strip() or result.stdout.strip())[-2000:]
        raise LayoutError(f"{shlex.join(command)} exited with {result.returncode}: {output}")


@dataclass
class Postgres:
    """A PostgreSQL server in a temporary folder, listening on 127.0.0.1 only."""

    folder: Path
    pg_ctl: Path
    run_as: list[str]
    port: int = 0
    password: str = field(default_factory=lambda: secrets.token_hex(16))

    @property
    def url(self) -> str:
        credentials = f"{DATABASE_ROLE}:{self.password}"
        return f"postgresql+psycopg2://{credentials}@127.0.0.1:{self.port}/{DATABASE}"

    def stop(self) -> None:
        if self.port:
            command = [*self.run_as, str(self.pg_ctl), "-D", str(self.folder / "data")]
            subprocess.run([*command, "-m", "fast", "-w", "stop"], capture_output=True, timeout=120)
            self.port = 0
        shutil.rmtree(self.folder, ignore_errors=True)


def start_postgres() -> Postgres:
    """Create a cluster whose superuser is `airflow`, start it on a free port, add the database."""
    binaries = postgres_binaries()
    if binaries is None:
        raise LayoutError(f"PostgreSQL server binaries not found: {missing_binaries()[0]}")
    initdb, pg_ctl = binaries
    run_as = _postgres_user_prefix()
    folder = Path(tempfile.mkdtemp(prefix="rollback-layout-postgres-"))
    server = Postgres(folder=folder, pg_ctl=pg_ctl, run_as=run_as)
    try:
        password_file = folder / "password"
        password_file.write_text(server.password + "\n")
        _hand_to_postgres_user(folder)
        _run([
            *server.run_as, str(initdb), "-D", str(folder / "data"), "--username", DATABASE_ROLE,
            "--pwfile", str(password_file), "--auth", "scram-sha-256", "--encoding", "UTF8",
            "--locale", "C",
        ])
        server.port = _start_postgres_server(server)
        _create_database(server)
    except BaseException:
        server.stop()
        raise
    return server


def _postgres_user_prefix() -> list[str]:
    """Return the command prefix that runs the server programs as the postgres user, as root."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(POSTGRES_OS_USER)
    except KeyError:
        raise LayoutError(
            f"running as root, PostgreSQL needs the system user '{POSTGRES_OS_USER}', which the "
            "postgresql package creates: install it, or run as a user other than root"
        ) from None
    return [runuser_path(), "-u", POSTGRES_OS_USER, "--"]


def _hand_to_postgres_user(folder: Path) -> None:
    if os.geteuid() != 0:
        return
    account = pwd.getpwnam(POSTGRES_OS_USER)
    for path in (folder, *folder.rglob("*")):
        os.chown(path, account.pw_uid, account.pw_gid)


def _start_postgres_server(server: Postgres) -> int:
    """Start the server and return its port, retrying when another process took the port."""
    log = server.folder / "server.log"
    error: LayoutError | None = None
    for _ in range(START_ATTEMPTS):
        port = free_port()
        options = shlex.join(
            ["-h", "127.0.0.1", "-p", str(port), "-k", str(server.folder), "-c", "fsync=off"]
        )
        command = [str(server.pg_ctl), "-D", str(server.folder / "data"), "-l", str(log)]
        try:
            _run([*server.run_as, *command, "-w", "-t", "60", "-o", options, "start"])
            return port
        except LayoutError as failure:
            error = failure
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise LayoutError(f"PostgreSQL did not start: {error}\nserver log:\n{tail}")


def _create_database(server: Postgres) -> None:
    connection = psycopg2.connect(
        host="127.0.0.1", port=server.port, user=DATABASE_ROLE, password=server.password,
        dbname="postgres",
    )
    try:
        # CREATE DATABASE cannot run inside a transaction block.
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {DATABASE}")
    finally:
        connection.close()


@dataclass
class Redis:
    """A Redis server in a temporary folder, listening on 127.0.0.1 only, without persistence."""

    process: subprocess.Popen
    folder: Path
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        _stop_process(self.process, grace_s=30)
        shutil.rmtree(self.folder, ignore_errors=True)


def start_redis(timeout_s: float = 30) -> Redis:
    binary = redis_binary()
    if binary is None:
        raise LayoutError(f"Redis server not found: {missing_binaries()[-1]}")
    folder = Path(tempfile.mkdtemp(prefix="rollback-layout-redis-"))
    log = folder / "redis.log"
    for _ in range(START_ATTEMPTS):
        port = free_port()
        process = subprocess.Popen(
            [str(binary), "--bind", "127.0.0.1", "--port", str(port), "--save", "",
             "--appendonly", "no", "--dir", str(folder), "--logfile", str(log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        redis = Redis(process=process, folder=folder, port=port)
        deadline = time.monotonic() + timeout_s
        while process.poll() is None and time.monotonic() < deadline:
            if _redis_answers(port):
                return redis
            time.sleep(0.2)
        _stop_process(process, grace_s=5)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    shutil.rmtree(folder, ignore_errors=True)
    raise LayoutError(f"Redis did not start on 127.0.0.1 within {timeout_s:.0f} s; log:\n{tail}")


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def layout_environment(
    home: Path, data_dir: Path, config_dir: Path, port: int, postgres: Postgres, redis: Redis,
    concurrency: int,
) -> dict[str, str]:
    """Return the environment every Airflow component shares, as x-airflow-common sets it."""
    env = stack_environment(home, data_dir, config_dir, port)
    env.update(
        {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.url,
            "AIRFLOW__CELERY__BROKER_URL": redis.url,
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{postgres.url}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(concurrency),
            # Components started separately must share these secrets, or each generates its
            # own. A Fernet key is 32 random bytes in URL-safe base64.
            "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(32),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(64),
        }
    )
    return env


@dataclass
class Component:
    """One Airflow process of the layout and its log file."""

    name: str
    process: subprocess.Popen
    log_path: Path


@dataclass
class DistributedStack:
    """The running layout: where to reach it, its users, processes and backing servers."""

    url: str
    home: Path
    passwords: dict[str, str]
    postgres: Postgres
    redis: Redis
    components: list[Component] = field(default_factory=list)
    stopped: bool = False

    def component(self, name: str) -> Component:
        return next(item for item in self.components if item.name == name)

    def stop(self) -> None:
        """Stop the workers first, so they can still report to the api-server, then the rest."""
        if self.stopped:
            return
        self.stopped = True
        for component in reversed(self.components):
            _stop_process(component.process, grace_s=STOP_GRACE_S)
        self.redis.stop()
        self.postgres.stop()


def _stop_process(process: subprocess.Popen, grace_s: float) -> None:
    """Send SIGTERM, which lets Celery and the scheduler shut down warm, then clean up.

    The process was started in a session of its own, so its id is also its process group's
    id. Children still in that group after the grace period get SIGKILL.
    """
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def start_distributed(
    workdir: Path, data_dir: Path, config_dir: Path, port: int, concurrency: int = 4,
    timeout_s: float = 300,
) -> DistributedStack:
    """Start PostgreSQL, Redis and the Airflow components; return once all of them are ready."""
    _check_port_free(port)
    postgres = start_postgres()
    try:
        redis = start_redis()
    except BaseException:
        postgres.stop()
        raise
    home = workdir / "airflow"
    env = layout_environment(home, data_dir, config_dir, port, postgres, redis, concurrency)
    stack = DistributedStack(
        url=env["AIRFLOW__API__BASE_URL"], home=home, passwords=_write_passwords(home),
        postgres=postgres, redis=redis,
    )
    try:
        logs = workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        _run([str(AIRFLOW), "db", "migrate"], env=env)
        _start_components(stack, env, logs)
        _wait_until_ready(stack, timeout_s)
    except BaseException:
        stack.stop()
        raise
    return stack


def _check_port_free(port: int) -> None:
    # Another server on the port would respond to the health checks in place of this api-server.
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as error:
            raise LayoutError(
                f"port {port} on 127.0.0.1 is not free ({error.strerror}): "
                "choose another with --port"
            ) from None


def _write_passwords(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    passwords = {user: secrets.token_urlsafe(12) for user in USERS}
    (home / "simple_auth_manager_passwords.json.generated").write_text(json.dumps(passwords))
    return passwords


def _start_components(stack: DistributedStack, env: dict[str, str], logs: Path) -> None:
    for name, arguments in _component_commands().items():
        log_path = logs / f"{name}.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [str(AIRFLOW), *arguments], env=env, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        stack.components.append(Component(name, process, log_path))


def _component_commands() -> dict[str, list[str]]:
    """Return the airflow arguments of each component, in start order.

    Every component writes task logs to the one log folder of this machine, where the
    api-server reads them, so no component starts serve-logs: Airflow binds that server to
    all interfaces, and this layout listens on 127.0.0.1 only.
    """
    commands = {
        "api-server": ["api-server"],
        "scheduler": ["scheduler", "--skip-serve-logs"],
        "dag-processor": ["dag-processor"],
        "triggerer": ["triggerer", "--skip-serve-logs"],
    }
    for worker in WORKERS:
        commands[worker] = [
            "celery", "worker", "--celery-hostname", f"{worker}@%h", "--skip-serve-logs",
        ]
    return commands


def _wait_until_ready(stack: DistributedStack, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for component in stack.components:
            if component.process.poll() is not None:
                raise LayoutError(
                    f"airflow {component.name} exited with {component.process.returncode}; "
                    f"see {component.log_path}"
                )
        workers_ready = all(
            WORKER_READY in stack.component(name).log_path.read_text(errors="replace")
            for name in WORKERS
        )
        if workers_ready and _healthy(stack.url):
            return
        time.sleep(2)
    raise LayoutError(
        f"the layout was not ready within {timeout_s:.0f} s; see the logs in "
        f"{stack.components[0].log_path.parent}"
    )


def _healthy(url: str) -> bool:
    """Return True when the metadata database, scheduler, triggerer and dag-processor are up."""
    try:
        with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=5) as response:
            health = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return False
    parts = [part for part in health.values() if isinstance(part, dict)]
    return bool(parts) and all(part.get("status") == "healthy" for part in parts)


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Start the production process layout on 127.0.0.1 with the demo batches."
    )
    parser.add_argument("--port", type=int, default=8080, help="port of the api-server")
    parser.add_argument("--workdir", type=Path, default=CHECKOUT / ".distributed",
                        help="folder for the Airflow home, the logs and the demo data")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="task slots of each Celery worker")
    args = parser.parse_args()
    workdir = args.workdir.resolve()
    data_dir = workdir / "data"

    sample = create_sample(data_dir)
    BatchRegistry(data_dir / "registry" / "batches.json").register(
        scan_repository(sample.repo), repo=str(sample.repo)
    )
    # SIGTERM unwinds like Ctrl-C, so the finally clauses below stop every process.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    api, _ = start_sample_api(sample)
    try:
        return _run_layout(args, workdir, data_dir)
    finally:
        _stop_process(api, grace_s=10)


def _run_layout(args: argparse.Namespace, workdir: Path, data_dir: Path) -> int:
    print(f"starting PostgreSQL, Redis and Airflow on 127.0.0.1 (logs: {workdir / 'logs'}) ...")
    try:
        stack = start_distributed(
            workdir, data_dir, CHECKOUT / "config", args.port, args.concurrency
        )
    except LayoutError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopped before the layout was ready")
        return 1
    try:
        _print_welcome(stack, data_dir)
        return _watch(stack)
    except KeyboardInterrupt:
        print("\nstopping ...")
        return 0
    finally:
        stack.stop()


def _print_welcome(stack: DistributedStack, data_dir: Path) -> None:
    workers = ", ".join(WORKERS)
    print(f"\nAirflow is up at {stack.url} with the CeleryExecutor on workers {workers}.")
    print(f"PostgreSQL: 127.0.0.1:{stack.postgres.port}, Redis: 127.0.0.1:{stack.redis.port}")
    print("Users and passwords (this run only):")
    for user, password in stack.passwords.items():
        print(f"  {user:<9} {password}   ({USERS[user]})")
    cli = Path(sys.executable).with_name("rollback-coordinator")
    print(
        "\nMake a plan as alice and start it as bob through the REST API:"
        f"\n  ROLLBACK_DATA_DIR={data_dir} ROLLBACK_ACTOR=alice {cli} plan REL-3"
        f" --repo {data_dir / 'sample' / 'repo'} --profile balanced --out plan.json"
        f"\n  ROLLBACK_DATA_DIR={data_dir} ROLLBACK_AIRFLOW_URL={stack.url}"
        f" ROLLBACK_AIRFLOW_USERNAME=bob ROLLBACK_AIRFLOW_PASSWORD={stack.passwords['bob']}"
        f" {cli} execute plan.json"
        "\nThe api service waits for the guardian's approval in the UI's required actions."
        "\nPress Ctrl-C to stop."
    )


def _watch(stack: DistributedStack) -> int:
    while True:
        for component in stack.components:
            if component.process.poll() is not None:
                print(
                    f"error: airflow {component.name} exited with {component.process.returncode}; "
                    f"see {component.log_path}",
                    file=sys.stderr,
                )
                return 1
        time.sleep(2)


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())


def runuser_path() -> str:
    """Return runuser, which lives in /usr/sbin, a folder a plain user's PATH often lacks."""
    found = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")
    if found is None:
        raise RuntimeError("runuser not found; install util-linux to run PostgreSQL as its user")
    return found
