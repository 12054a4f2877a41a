"""The services file (services.yaml): pydantic models and a strict loader.

Relative paths in the file resolve against the folder that contains it, as in compose files.
``load_services`` reports the first problem as a one-line ConfigError that names the file,
the line, the service and the field.
"""

from __future__ import annotations

import math
import os
import re
import shlex
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal, Union
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from rollback_coordinator.core.errors import ConfigError

# GlobError and compile_globs stay importable from this module for existing callers.
from rollback_coordinator.core.globs import GlobError, compile_globs
from rollback_coordinator.core.yaml_lines import (
    NAME_LIMIT,
    LineMap,
    line_of,
    name_list,
    read_yaml,
    short_repr,
    short_text,
    translate_validation_error,
    yaml_type_name,
)

# Service names become Airflow task group ids, so they are kept to a conservative subset.
SERVICE_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,62}$"
ROLE_NAME_PATTERN = r"^[a-z][a-z0-9_-]*$"
ENVIRONMENT_NAME_PATTERN = r"^[a-z][a-z0-9_-]*$"
ENV_KEY_PATTERN = r"^[A-Z_][A-Z0-9_]*$"
CONNECTION_ID_PATTERN = r"^[A-Za-z0-9_.-]+$"
# The coordinator sets ROLLBACK_* variables itself, so a service must not override them.
RESERVED_ENV_PREFIX = "ROLLBACK_"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
# Upper bounds that keep timeouts usable as Airflow timedeltas and subprocess limits, and
# catch a unit mistake such as milliseconds written as seconds.
MAX_SCRIPT_TIMEOUT_S = 7 * 24 * 60 * 60
MAX_HEALTH_CHECK_TIMEOUT_S = 300
MAX_SCRIPT_RETRIES = 10
SCHEMA_TITLE = "Rollback coordinator services.yaml"

MigrationTool = Literal[
    "prisma",
    "alembic",
    "flyway",
    "django",
    "rails",
    "liquibase",
    "golang-migrate",
    "atlas",
    "other",
]

def _split_command(value: Any) -> Any:
    # shlex makes quoting work as in a POSIX shell. The result is an argv list for running
    # the program without a shell, so nothing expands variables or globs.
    if not isinstance(value, str):
        return value
    try:
        return shlex.split(value)
    except ValueError as error:
        raise ValueError(
            f"cannot split command {short_repr(value)} ({error}); fix the quoting"
        ) from None


def _check_argv(argv: list[str]) -> list[str]:
    if not argv or not argv[0]:
        raise ValueError("the command is empty; give the program and its arguments")
    return argv


def _stringify_env_value(value: Any) -> Any:
    # Numbers are common in environment values (PORT: 8080) and have one obvious text form.
    # Booleans do not ("True", "true" or "1"), so they stay invalid and must be quoted, and
    # neither do .nan and .inf, which are more likely mistakes than the words nan and inf.
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(
            f"{value} is not a finite number; put the value in quotes if you mean the text"
        )
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


def _check_env_key(key: str) -> str:
    if not re.fullmatch(ENV_KEY_PATTERN, key):
        raise ValueError(
            f"environment key {short_repr(key)} is invalid; use uppercase letters, digits and '_', "
            f"not starting with a digit"
        )
    if key.startswith(RESERVED_ENV_PREFIX):
        raise ValueError(
            f"environment key {short_repr(key)} uses the reserved prefix {RESERVED_ENV_PREFIX}, "
            f"which the coordinator sets itself; rename the key"
        )
    return key


def _check_unique(items: list[str]) -> list[str]:
    seen: set[str] = set()
    for item in items:
        if item in seen:
            raise ValueError(f"{short_repr(item)} is listed twice; remove the repeat")
        seen.add(item)
    return items


def _check_repository_path(value: str) -> str:
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts or not value.strip():
        raise ValueError(
            f"{short_repr(value)} must be a folder relative to the repository root, without '..', "
            f"such as 'db/migrations'"
        )
    return path.as_posix()


def _parse_tcp_address(value: str) -> tuple[str, int]:
    host, separator, port_text = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not separator or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(
            f"tcp address {short_repr(value)} is invalid; write 'host:port' with a port from 1 to "
            f"65535, "
            f"such as '127.0.0.1:5432'"
        )
    return host, int(port_text)


def _check_http_url(value: str) -> str:
    parts = urlsplit(value)
    fix = "write an http or https URL such as 'http://127.0.0.1:8081/health'"
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"URL {short_repr(value)} has scheme {short_repr(parts.scheme)}; {fix}")
    try:
        port_is_valid = parts.port is None or parts.port > 0
    except ValueError:
        port_is_valid = False
    if not parts.hostname or not port_is_valid or any(char.isspace() for char in value):
        raise ValueError(f"URL {short_repr(value)} is invalid; {fix}")
    return value


Argv = Annotated[
    list[str],
    BeforeValidator(_split_command, json_schema_input_type=Union[str, list[str]]),
    AfterValidator(_check_argv),
]
ServiceName = Annotated[str, StringConstraints(pattern=SERVICE_NAME_PATTERN)]
RoleName = Annotated[str, StringConstraints(pattern=ROLE_NAME_PATTERN)]
EnvironmentName = Annotated[str, StringConstraints(pattern=ENVIRONMENT_NAME_PATTERN)]
EnvKey = Annotated[str, AfterValidator(_check_env_key)]
EnvValue = Annotated[
    str,
    BeforeValidator(_stringify_env_value, json_schema_input_type=Union[str, int, float]),
]
UniqueNames = Annotated[list[str], AfterValidator(_check_unique)]
UniqueRoles = Annotated[list[RoleName], AfterValidator(_check_unique)]
UniqueEnvironments = Annotated[list[EnvironmentName], AfterValidator(_check_unique)]

HEALTH_CHECK_KINDS = ("http", "tcp", "command")


class HealthCheck(BaseModel):
    """A probe that shows whether a service is healthy: exactly one of http, tcp or command."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    http: str | None = Field(default=None, description="http or https URL to GET.")
    expect_status: int = Field(
        default=200, ge=100, le=599, description="Expected HTTP status (http checks only)."
    )
    tcp: str | None = Field(default=None, description="'host:port' that must accept a connection.")
    command: Argv | None = Field(
        default=None,
        description="argv list, or a string split with shlex (never run in a shell). A first "
        "item containing '/' resolves against the folder of services.yaml.",
    )
    timeout: float = Field(
        default=5,
        gt=0,
        le=MAX_HEALTH_CHECK_TIMEOUT_S,
        description=f"Seconds before the check fails, at most {MAX_HEALTH_CHECK_TIMEOUT_S}.",
    )

    @field_validator("http")
    @classmethod
    def _http_is_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_http_url(value)

    @field_validator("tcp")
    @classmethod
    def _tcp_is_address(cls, value: str | None) -> str | None:
        if value is not None:
            _parse_tcp_address(value)
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> HealthCheck:
        configured = [kind for kind in HEALTH_CHECK_KINDS if getattr(self, kind) is not None]
        if len(configured) != 1:
            found = ", ".join(configured) if configured else "none"
            raise ValueError(
                f"a health check needs exactly one of http, tcp or command (found: {found}); "
                f"keep one of them"
            )
        if self.kind != "http" and "expect_status" in self.model_fields_set:
            raise ValueError("expect_status applies only to http checks; remove it")
        return self

    @property
    def kind(self) -> Literal["http", "tcp", "command"]:
        if self.http is not None:
            return "http"
        if self.tcp is not None:
            return "tcp"
        return "command"

    @property
    def target(self) -> str:
        """The URL, the 'host:port' or the shell-quoted command, for logs and messages."""
        if self.http is not None:
            return self.http
        if self.tcp is not None:
            return self.tcp
        return shlex.join(self.command or [])

    @property
    def tcp_address(self) -> tuple[str, int] | None:
        """Host and port of a tcp check, without IPv6 brackets, or None for other kinds."""
        return None if self.tcp is None else _parse_tcp_address(self.tcp)


class Migrations(BaseModel):
    """Migration settings of a service: the folder of migration files and the state source."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    tool: MigrationTool = Field(description="Migration tool that owns the migrations.")
    directory: Annotated[str, AfterValidator(_check_repository_path)] = Field(
        description="Repository-relative folder that contains the migration files."
    )
    state_command: Argv | None = Field(
        default=None,
        description="Command that prints the applied migrations, as argv list or shlex string.",
    )
    lock_file: str | None = Field(
        default=None, min_length=1, description="Lock file, relative to the services.yaml folder."
    )
    connection_id: Annotated[str, StringConstraints(pattern=CONNECTION_ID_PATTERN)] | None = Field(
        default=None,
        description="Airflow connection id of the database, to read the tool's history table.",
    )
    script_handles_down: bool = Field(
        default=False,
        description="The rollback script undoes the migrations itself, so no down file is needed.",
    )

    @model_validator(mode="after")
    def _has_state_source(self) -> Migrations:
        if self.state_command is None and self.connection_id is None:
            raise ValueError(
                "migrations need a state_command or a connection_id to read the applied "
                "migrations; add one of them"
            )
        if self.connection_id is not None and self.tool == "other":
            raise ValueError(
                "tool 'other' has no history table reader, so connection_id cannot be used; "
                "name the tool or use a state_command"
            )
        return self


class ServiceSettings(BaseModel):
    """The settings of one service as written in services.yaml, where its name is the key."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    description: str | None = None
    paths: list[str] = Field(
        default_factory=list,
        description="git-style globs over repository-relative changed file paths.",
    )
    rollback_script: str = Field(
        min_length=1, description="Executable file, relative to the services.yaml folder."
    )
    depends_on: UniqueNames = Field(default_factory=list, description="Names of other services.")
    approvals: UniqueRoles = Field(default_factory=list, description="Roles that must approve.")
    environment: UniqueEnvironments = Field(
        default_factory=list,
        description="Environments where the service is deployed. Empty means all of them.",
    )
    timeout: int = Field(
        default=600,
        gt=0,
        le=MAX_SCRIPT_TIMEOUT_S,
        description=f"Seconds for the rollback script, at most {MAX_SCRIPT_TIMEOUT_S} (7 days).",
    )
    retries: int = Field(
        default=0,
        ge=0,
        le=MAX_SCRIPT_RETRIES,
        description="Times Airflow runs a failed rollback script again. Use retries only when the "
        "script is idempotent: a retry runs it after a partial rollback, so running it twice "
        "must leave the same state as running it once.",
    )
    supports_dry_run: bool = Field(
        default=False, description="If false, a dry run skips the rollback script entirely."
    )
    env: dict[EnvKey, EnvValue] = Field(
        default_factory=dict,
        description="Extra static environment for the scripts.",
        json_schema_extra={
            "propertyNames": {
                "pattern": ENV_KEY_PATTERN,
                "not": {"pattern": f"^{RESERVED_ENV_PREFIX}"},
            }
        },
    )
    health_check: HealthCheck | None = None
    migrations: Migrations | None = None

    _path_pattern: re.Pattern[str] | None = PrivateAttr(default=None)

    @field_validator("paths")
    @classmethod
    def _globs_are_valid(cls, paths: list[str]) -> list[str]:
        for glob in paths:
            try:
                compile_globs((glob,))
            except GlobError as error:
                raise ValueError(str(error)) from None
        return paths

    @model_validator(mode="after")
    def _compile_paths(self) -> ServiceSettings:
        # Compiled once here because touched_services runs for every batch at DAG parse time.
        self._path_pattern = compile_globs(tuple(self.paths))
        return self

    def touches(self, files: Iterable[str]) -> bool:
        """Return whether any of the repository-relative file paths matches ``paths``."""
        pattern = self._path_pattern
        if pattern is None:
            return False
        return any(pattern.fullmatch(file) for file in files)

    def is_deployed_in(self, environment: str) -> bool:
        return not self.environment or environment in self.environment


class Service(ServiceSettings):
    """One service of services.yaml, with its name filled from the mapping key."""

    name: ServiceName


# The model behind the JSON schema. load_services validates service by service instead,
# so it can report errors in file order with line numbers.
class ServicesFile(BaseModel):
    """The services a deployment touches. Relative paths resolve against this file's folder."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    services: dict[str, ServiceSettings] = Field(
        min_length=1,
        description="Services by name. Each name becomes an Airflow task group id.",
        json_schema_extra={"propertyNames": {"pattern": SERVICE_NAME_PATTERN}},
    )


class ServiceMap(BaseModel):
    """The loaded services of one services.yaml, in file order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Path
    base_dir: Path
    services: dict[str, Service]

    # Lines of the settings in services.yaml, for checks that run after loading.
    _lines: LineMap = PrivateAttr(default_factory=dict)

    def setting_line(self, service: str, *path: str | int) -> int | None:
        """Return the line in services.yaml of a service's setting, or of its closest parent."""
        return line_of(self._lines, ("services", service, *path))

    def resolve(self, relative: str | Path) -> Path:
        """Return ``relative`` joined to the services.yaml folder, or unchanged if absolute."""
        path = Path(relative)
        return path if path.is_absolute() else self.base_dir / path

    def script_path(self, service: str) -> Path:
        return self.resolve(self._service(service).rollback_script)

    def command_argv(self, argv: list[str]) -> list[str]:
        """Return argv with a relative program path (one containing '/') resolved."""
        if not argv or "/" not in argv[0]:
            return list(argv)
        return [str(self.resolve(argv[0])), *argv[1:]]

    def dependencies(self, service: str) -> list[str]:
        return list(self._service(service).depends_on)

    def dependents(self, service: str) -> list[str]:
        """Return the services that depend directly on ``service``, in file order."""
        self._service(service)
        return [name for name, other in self.services.items() if service in other.depends_on]

    def touched_services(self, files: Iterable[str]) -> list[str]:
        """Return the services whose paths globs match any of the files, in file order."""
        changed = list(files)
        return [name for name, service in self.services.items() if service.touches(changed)]

    def _service(self, name: str) -> Service:
        try:
            return self.services[name]
        except KeyError:
            known = ", ".join(self.services)
            raise KeyError(f"unknown service {name!r} in {self.source}; known: {known}") from None


def services_json_schema() -> dict[str, Any]:
    """Return the JSON schema (draft 2020-12) of services.yaml, generated from the models."""
    schema = ServicesFile.model_json_schema()
    schema["title"] = SCHEMA_TITLE
    return {"$schema": JSON_SCHEMA_DIALECT, **schema}


def load_services(path: str | Path) -> ServiceMap:
    """Load and validate services.yaml, raising ConfigError for the first problem found.

    Problems are checked in a fixed order: reading and parsing, the top level, then each
    service in file order, then dependency cycles.
    """
    source = Path(os.path.abspath(path))
    data, lines = read_yaml(source, service_section="services")
    raw_services = _services_section(data, lines, source)
    known = [str(name) for name in raw_services]
    services: dict[str, Service] = {}
    for name, raw in raw_services.items():
        service = _build_service(name, raw, lines, source)
        _check_dependencies(service, known, lines, source)
        _check_service_files(service, lines, source)
        services[service.name] = service
    _check_cycles(services, lines, source)
    service_map = ServiceMap(source=source, base_dir=source.parent, services=services)
    service_map._lines = lines
    return service_map


def _services_section(data: Any, lines: LineMap, source: Path) -> dict[Any, Any]:
    if data is None:
        raise ConfigError("the file is empty; add a 'services:' mapping", file=source)
    if not isinstance(data, dict):
        raise ConfigError(
            f"the top level is a {yaml_type_name(data)}; it must be a mapping with a 'services' "
            f"key",
            file=source,
            line=1,
        )
    for key in data:
        if key != "services":
            raise ConfigError(
                f"unknown key {short_repr(key)}; remove it or fix its spelling (allowed keys: "
            f"services)",
                file=source,
                field=str(key),
                line=lines.get((str(key),)),
            )
    if "services" not in data:
        raise ConfigError(
            "no 'services' key; add 'services:' with one entry per service",
            file=source,
            field="services",
        )
    services = data["services"]
    if services is not None and not isinstance(services, dict):
        raise ConfigError(
            f"'services' is a {yaml_type_name(services)}; make it a mapping from service name to "
            f"settings",
            file=source,
            field="services",
            line=lines.get(("services",)),
        )
    if not services:
        raise ConfigError(
            "no services defined; add at least one service under 'services'",
            file=source,
            field="services",
            line=lines.get(("services",)),
        )
    return services


def _build_service(name: Any, raw: Any, lines: LineMap, source: Path) -> Service:
    key_line = lines.get(("services", str(name)))
    if not isinstance(name, str) or not re.fullmatch(SERVICE_NAME_PATTERN, name):
        raise ConfigError(
            f"invalid service name {short_repr(name)}; use 1 to 63 lowercase letters, digits, "
            f"'_' or '-', starting with a letter, because the name becomes an Airflow task "
            f"group id",
            file=source,
            service=short_text(str(name), NAME_LIMIT),
            line=key_line,
        )
    if raw is None:
        raise ConfigError(
            "the service has no settings; add a mapping with at least rollback_script",
            file=source,
            service=name,
            line=key_line,
        )
    try:
        settings = ServiceSettings.model_validate(raw, strict=True)
    except ValidationError as error:
        raise translate_validation_error(
            error, ServiceSettings, source, lines, prefix=("services", name), service=name
        ) from None
    values = {field: getattr(settings, field) for field in ServiceSettings.model_fields}
    return Service(name=name, **values)


def _check_dependencies(service: Service, known: list[str], lines: LineMap, source: Path) -> None:
    for index, dependency in enumerate(service.depends_on):
        line = lines.get(("services", service.name, "depends_on", index))
        if dependency == service.name:
            raise ConfigError(
                f"service depends on itself; remove {short_repr(dependency)} from depends_on",
                file=source,
                service=service.name,
                field="depends_on",
                line=line,
            )
        if dependency not in known:
            raise ConfigError(
                f"unknown dependency {short_repr(dependency)}; use one of the services in this "
                f"file: {name_list(known)}",
                file=source,
                service=service.name,
                field="depends_on",
                line=line,
            )


def _check_service_files(service: Service, lines: LineMap, source: Path) -> None:
    """Reject scripts and commands that are missing, not regular files or not executable.

    A command whose program has no '/' is looked up on PATH when it runs, so it is not
    checked here.
    """
    base = ("services", service.name)
    programs: list[tuple[str, str, tuple[str | int, ...]]] = [
        ("rollback_script", service.rollback_script, base + ("rollback_script",)),
    ]
    if service.health_check is not None and service.health_check.command is not None:
        command_path = base + ("health_check", "command")
        programs.append(("health_check.command", service.health_check.command[0], command_path))
    if service.migrations is not None and service.migrations.state_command is not None:
        state_program = service.migrations.state_command[0]
        state_path = base + ("migrations", "state_command")
        programs.append(("migrations.state_command", state_program, state_path))
    for field, program, path in programs:
        if field != "rollback_script" and "/" not in program:
            continue
        problem = _program_problem(program, source.parent)
        if problem is not None:
            raise ConfigError(
                problem, file=source, service=service.name, field=field, line=line_of(lines, path)
            )


def _program_problem(program: str, base_dir: Path) -> str | None:
    path = Path(program)
    resolved = path if path.is_absolute() else base_dir / path
    display_path = short_text(str(resolved), 200)
    try:
        exists = resolved.exists()
    except OSError as error:
        # pathlib raises for a name too long for the file system, rather than returning False.
        return f"cannot check {display_path} ({error.strerror}); fix the path"
    if not exists:
        return (
            f"{display_path} not found; create it or fix the path (relative paths resolve "
            f"against {base_dir})"
        )
    if not resolved.is_file():
        return f"{display_path} is not a regular file; point to the script itself"
    if not os.access(resolved, os.X_OK):
        return f"{display_path} is not executable; run chmod +x {shlex.quote(str(resolved))}"
    return None


def _check_cycles(services: dict[str, Service], lines: LineMap, source: Path) -> None:
    """Reject the first dependency cycle found by a depth-first walk in file order."""
    finished: set[str] = set()
    for name in services:
        cycle = _find_cycle(name, services, [], finished)
        if cycle is None:
            continue
        start, following = cycle[0], cycle[1]
        index = services[start].depends_on.index(following)
        raise ConfigError(
            f"dependency cycle: {' -> '.join(cycle)}; remove one of these dependencies",
            file=source,
            service=start,
            field="depends_on",
            line=lines.get(("services", start, "depends_on", index)),
        )


def _find_cycle(
    name: str, services: dict[str, Service], stack: list[str], finished: set[str]
) -> list[str] | None:
    if name in stack:
        return stack[stack.index(name) :] + [name]
    if name in finished:
        return None
    stack.append(name)
    for dependency in services[name].depends_on:
        cycle = _find_cycle(dependency, services, stack, finished)
        if cycle is not None:
            return cycle
    stack.pop()
    finished.add(name)
    return None
