"""Checks that services.yaml and governance.yaml agree, which neither file can check alone.

A service whose approvals name a role that governance.yaml does not declare, or a role
without users, waits for an approval that no user can give. A service whose environment
list names an environment that governance.yaml does not define, such as the typo 'prood',
is silently skipped by rollbacks in the environment that was meant.
"""

from __future__ import annotations

from rollback_coordinator.core.errors import ConfigError
from rollback_coordinator.core.governance import Governance
from rollback_coordinator.core.services import Service, ServiceMap
from rollback_coordinator.core.yaml_lines import name_list, short_repr


def check_services_against_governance(services: ServiceMap, governance: Governance) -> None:
    """Raise ConfigError for the first service that governance.yaml cannot serve.

    The error names services.yaml, the service, the field and its line. Services are
    checked in file order, and within a service approvals come before environment.
    """
    for service in services.services.values():
        _check_approval_roles(service, services, governance)
        _check_environments(service, services, governance)


def _check_approval_roles(service: Service, services: ServiceMap, governance: Governance) -> None:
    for index, role in enumerate(service.approvals):
        users = governance.roles.get(role)
        if users is None:
            problem = (
                f"role {short_repr(role)} is not declared under roles in governance.yaml "
                f"(declared: {name_list(governance.roles)}), so nobody could approve this "
                f"service; declare the role with its users or fix the spelling"
            )
        elif not users:
            problem = (
                f"role {short_repr(role)} has no users in governance.yaml, so nobody could "
                f"approve this service; add users to the role"
            )
        else:
            continue
        raise ConfigError(
            problem,
            file=services.source,
            service=service.name,
            field="approvals",
            line=services.setting_line(service.name, "approvals", index),
        )


def _check_environments(service: Service, services: ServiceMap, governance: Governance) -> None:
    for index, environment in enumerate(service.environment):
        if environment in governance.environments:
            continue
        raise ConfigError(
            f"environment {short_repr(environment)} is not one of the environments in "
            f"governance.yaml ({name_list(governance.environments)}); fix the spelling or add "
            f"the environment there, because rollbacks in unlisted environments skip this "
            f"service",
            file=services.source,
            service=service.name,
            field="environment",
            line=services.setting_line(service.name, "environment", index),
        )
