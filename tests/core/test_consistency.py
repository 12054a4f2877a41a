"""Tests for the checks that services.yaml and governance.yaml agree with each other."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollback_coordinator.core.consistency import check_services_against_governance
from rollback_coordinator.core.errors import ConfigError
from rollback_coordinator.core.governance import Governance, load_governance
from rollback_coordinator.core.services import ServiceMap, load_services

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPOSITORY_ROOT / "config"

GOVERNANCE = """\
default_environment: staging
environments:
  staging:
    minimum_profile: flow
  prod:
    minimum_profile: balanced
roles:
  dba: [bob, carol]
  guardian: [gina]
  on-leave: []
"""

# Line 4 contains the settings of the api service, which each test completes.
SERVICES = """\
services:
  db:
    rollback_script: scripts/rollback.sh
  api: {{rollback_script: scripts/rollback.sh, depends_on: [db], {settings}}}
"""


def load_pair(folder: Path, api_settings: str) -> tuple[ServiceMap, Governance]:
    script = folder / "scripts" / "rollback.sh"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    script.chmod(0o755)
    services_file = folder / "services.yaml"
    services_file.write_text(SERVICES.format(settings=api_settings), encoding="utf-8")
    governance_file = folder / "governance.yaml"
    governance_file.write_text(GOVERNANCE, encoding="utf-8")
    return load_services(services_file), load_governance(governance_file)


def check_error(services: ServiceMap, governance: Governance) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        check_services_against_governance(services, governance)
    return caught.value


def test_example_config_files_agree() -> None:
    services = load_services(CONFIG_DIR / "services.yaml")
    governance = load_governance(CONFIG_DIR / "governance.yaml")

    check_services_against_governance(services, governance)


def test_declared_roles_and_environments_pass(tmp_path: Path) -> None:
    services, governance = load_pair(
        tmp_path, "approvals: [dba, guardian], environment: [staging, prod]"
    )

    check_services_against_governance(services, governance)


def test_empty_environment_list_means_all(tmp_path: Path) -> None:
    services, governance = load_pair(tmp_path, "environment: []")

    check_services_against_governance(services, governance)


def test_undeclared_approval_role_rejected(tmp_path: Path) -> None:
    services, governance = load_pair(tmp_path, "approvals: [dba, release-manager]")

    error = check_error(services, governance)

    assert error.file == str(tmp_path / "services.yaml")
    assert error.service == "api"
    assert error.field == "approvals"
    assert error.line == 4
    assert (
        "role 'release-manager' is not declared under roles in governance.yaml "
        "(declared: dba, guardian, on-leave), so nobody could approve this service"
    ) in str(error)


def test_role_without_users_rejected(tmp_path: Path) -> None:
    services, governance = load_pair(tmp_path, "approvals: [on-leave]")

    error = check_error(services, governance)

    assert error.service == "api"
    assert error.field == "approvals"
    assert "role 'on-leave' has no users in governance.yaml" in str(error)
    assert "add users to the role" in str(error)


def test_misspelled_environment_rejected(tmp_path: Path) -> None:
    services, governance = load_pair(tmp_path, "environment: [staging, prood]")

    error = check_error(services, governance)

    assert error.file == str(tmp_path / "services.yaml")
    assert error.service == "api"
    assert error.field == "environment"
    assert error.line == 4
    assert (
        "environment 'prood' is not one of the environments in governance.yaml (staging, prod)"
    ) in str(error)


def test_approvals_checked_before_environment(tmp_path: Path) -> None:
    services, governance = load_pair(tmp_path, "approvals: [nobody], environment: [prood]")

    error = check_error(services, governance)

    assert error.field == "approvals"


def test_error_names_line_of_block_item(tmp_path: Path) -> None:
    _, governance = load_pair(tmp_path, "approvals: [dba]")
    services_file = tmp_path / "services.yaml"
    services_file.write_text(
        "services:\n"
        "  db:\n"
        "    rollback_script: scripts/rollback.sh\n"
        "    environment:\n"
        "      - staging\n"
        "      - prood\n",
        encoding="utf-8",
    )

    error = check_error(load_services(services_file), governance)

    assert error.service == "db"
    assert error.line == 6
    assert "\n" not in str(error)
