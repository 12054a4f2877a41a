"""watch.yaml: which repository the git watcher follows, how often, and how long batches stay.

The file contains one ``watch:`` section. Without the file there is no watcher, and batches are
registered only by ``rollback-coordinator plan``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from rollback_coordinator.core.errors import ConfigError
from rollback_coordinator.core.settings import Locations
from rollback_coordinator.core.yaml_lines import (
    FieldValueError,
    read_yaml,
    translate_validation_error,
    yaml_type_name,
)

WATCH_FILE_NAME = "watch.yaml"

# scheme://... or the scp-like user@host:path form that git accepts for SSH.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SCP_LIKE = re.compile(r"^[^/\s:@]+@[^/\s:]+:")
_CREDENTIALS_IN_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/@]*:[^/@]*@")
# Branch, tag or ref names and HEAD. A leading '-' is rejected, so git never reads an option.
_REV = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/-]{0,199}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetentionPolicy(_Model):
    """Limits beyond which a batch is retired: kept in the registry, but without a DAG.

    ``max_age_days`` counts from the author date of the batch's newest commit.
    ``max_batches`` keeps that many of the newest batches. None means no limit.
    """

    max_age_days: int | None = Field(default=None, ge=1, le=36500)
    max_batches: int | None = Field(default=None, ge=1)


class WatchConfig(_Model):
    """The ``watch:`` section of watch.yaml."""

    repository: str = Field(min_length=1)
    rev: str = "HEAD"
    connection_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$")
    fetch: bool | None = None
    clone_dir: str | None = None
    interval_minutes: int = Field(default=5, ge=1, le=1440)
    start_runs: bool = True
    dag_poke_interval_s: int = Field(default=30, ge=5, le=3600)
    dag_wait_timeout_s: int = Field(default=900, ge=30, le=86400)
    retention: RetentionPolicy = Field(default_factory=RetentionPolicy)

    @field_validator("repository")
    @classmethod
    def _repository_is_safe(cls, value: str) -> str:
        if value.startswith("-"):
            raise ValueError(f"{value!r} starts with '-'; give a URL or a path")
        if _CREDENTIALS_IN_URL.match(value):
            raise ValueError(
                "the URL contains a password; remove it and put the credentials in the "
                "Airflow connection named by connection_id"
            )
        return value

    @field_validator("rev")
    @classmethod
    def _rev_is_a_name(cls, value: str) -> str:
        if _REV.fullmatch(value) is None or ".." in value:
            raise ValueError(
                f"{value!r} is not a branch, tag or ref name; use for example main, HEAD or "
                f"refs/heads/release"
            )
        return value

    @model_validator(mode="after")
    def _remote_is_fetched(self) -> WatchConfig:
        if self.is_remote and self.fetch is False:
            raise FieldValueError(
                "fetch",
                "a repository given by URL must be fetched; remove 'fetch: false' or give "
                "the path of a local clone",
            )
        return self

    @property
    def is_remote(self) -> bool:
        """Return whether ``repository`` is a URL rather than a path on this machine."""
        return bool(_URL.match(self.repository) or _SCP_LIKE.match(self.repository))

    @property
    def fetches(self) -> bool:
        """Return whether each scan fetches first: always for URLs, by default not for paths."""
        return self.is_remote if self.fetch is None else self.fetch


class WatchFile(_Model):
    watch: WatchConfig


def load_watch_config(path: str | Path) -> WatchConfig | None:
    """Load and validate watch.yaml, or return None when the file does not exist.

    Raise ConfigError naming the file, the dotted field and the line for anything invalid:
    unknown or duplicate keys, wrong types, a credential inside the URL.
    """
    source = Path(os.path.abspath(path))
    if not source.exists():
        return None
    data, lines = read_yaml(source)
    _check_top_level(data, source)
    try:
        return WatchFile.model_validate(data, strict=True).watch
    except ValidationError as error:
        raise translate_validation_error(error, WatchFile, source, lines) from None


def watch_file(places: Locations) -> Path:
    return places.config_dir / WATCH_FILE_NAME


def scanned_repository(config: WatchConfig, places: Locations) -> Path:
    """Return the local repository that the watcher scans.

    When the watcher fetches, that is its own bare clone (``clone_dir``, by default under
    the data folder). Otherwise it is ``repository`` itself; a relative path resolves
    against the folder of watch.yaml, as paths in services.yaml do.
    """
    if config.fetches:
        if config.clone_dir is not None:
            return _resolve(config.clone_dir, places.config_dir)
        return places.data_dir / "watch" / "repository.git"
    return _resolve(config.repository, places.config_dir)


def fetch_source(config: WatchConfig, places: Locations) -> str:
    """Return what the watcher fetches from: the URL, or a local path made absolute."""
    if config.is_remote:
        return config.repository
    return str(_resolve(config.repository, places.config_dir))


def _resolve(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def _check_top_level(data: Any, source: Path) -> None:
    if isinstance(data, dict) and "watch" in data:
        return
    found = "an empty file" if data is None else f"a {yaml_type_name(data)}"
    if isinstance(data, dict):
        found = "a mapping without the key 'watch'"
    raise ConfigError(
        f"found {found}; the file must contain a 'watch:' mapping with at least 'repository'",
        file=source,
        line=1,
    )
