"""watch.yaml: loading, strict validation and where the watcher keeps its repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollback_coordinator.core.errors import ConfigError
from rollback_coordinator.core.settings import Locations
from rollback_coordinator.core.watch_config import (
    WatchConfig,
    fetch_source,
    load_watch_config,
    scanned_repository,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config" / "watch.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def places(tmp_path: Path) -> Locations:
    return Locations(config_dir=tmp_path / "config", data_dir=tmp_path / "data")


def test_missing_file_means_no_watcher(tmp_path: Path) -> None:
    assert load_watch_config(tmp_path / "watch.yaml") is None


def test_minimal_file_takes_defaults(tmp_path: Path) -> None:
    config = load_watch_config(write(tmp_path, "watch:\n  repository: ../repo\n"))

    assert config == WatchConfig(repository="../repo")
    assert config.rev == "HEAD"
    assert config.interval_minutes == 5
    assert config.start_runs is True
    assert config.retention.max_batches is None


def test_full_file_is_read(tmp_path: Path) -> None:
    text = (
        "watch:\n"
        "  repository: git@git.example.com:shop/services.git\n"
        "  rev: main\n"
        "  connection_id: shop_git\n"
        "  interval_minutes: 2\n"
        "  start_runs: false\n"
        "  dag_wait_timeout_s: 600\n"
        "  retention: {max_age_days: 90, max_batches: 200}\n"
    )

    config = load_watch_config(write(tmp_path, text))

    assert config is not None
    assert config.is_remote is True
    assert config.fetches is True
    assert config.connection_id == "shop_git"
    assert config.retention.max_age_days == 90


def test_password_in_url_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "watch:\n  repository: https://bot:hunter2@git.example.com/shop.git\n")

    with pytest.raises(ConfigError) as caught:
        load_watch_config(path)

    assert f"{path}:2" in str(caught.value)
    assert "field 'watch.repository'" in str(caught.value)
    assert "connection_id" in str(caught.value)


def test_option_like_rev_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "watch:\n  repository: ../repo\n  rev: --upload-pack=x\n")

    with pytest.raises(ConfigError, match="field 'watch.rev'"):
        load_watch_config(path)


def test_unknown_key_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "watch:\n  repository: ../repo\n  branch: main\n")

    with pytest.raises(ConfigError, match="watch.branch"):
        load_watch_config(path)


def test_url_without_fetch_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "watch:\n  repository: https://git.example.com/a.git\n  fetch: false\n")

    with pytest.raises(ConfigError, match="field 'watch.fetch'"):
        load_watch_config(path)


def test_file_without_watch_section_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "repository: ../repo\n")

    with pytest.raises(ConfigError, match="'watch:' mapping"):
        load_watch_config(path)


def test_zero_retention_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "watch:\n  repository: ../repo\n  retention: {max_batches: 0}\n")

    with pytest.raises(ConfigError, match="watch.retention.max_batches"):
        load_watch_config(path)


def test_local_path_resolves_against_config(tmp_path: Path) -> None:
    config = WatchConfig(repository="../repo")

    assert scanned_repository(config, places(tmp_path)) == (tmp_path / "repo").resolve()


def test_remote_is_cloned_into_data_folder(tmp_path: Path) -> None:
    config = WatchConfig(repository="https://git.example.com/shop.git")

    assert scanned_repository(config, places(tmp_path)) == (
        tmp_path / "data" / "watch" / "repository.git"
    )
    assert fetch_source(config, places(tmp_path)) == "https://git.example.com/shop.git"


def test_fetched_local_path_is_absolute(tmp_path: Path) -> None:
    config = WatchConfig(repository="../remote.git", fetch=True)

    assert fetch_source(config, places(tmp_path)) == str((tmp_path / "remote.git").resolve())
