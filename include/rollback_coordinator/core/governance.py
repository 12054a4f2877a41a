"""governance.yaml: which governor decides, the profiles environments require, who holds which role,
the change freeze windows and the authority matrix."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from rollback_coordinator.core.decisions import Action
from rollback_coordinator.core.errors import ConfigError
from rollback_coordinator.core.freeze import FreezeWindow
from rollback_coordinator.core.notifications import NotificationSettings
from rollback_coordinator.core.services import (
    ENVIRONMENT_NAME_PATTERN,
    ROLE_NAME_PATTERN,
    UniqueNames,
)
from rollback_coordinator.core.yaml_lines import (
    FieldValueError,
    name_list,
    read_yaml,
    short_repr,
    translate_validation_error,
    yaml_type_name,
)

ProfileName = Literal["flow", "balanced", "strict"]

# Profiles from weakest to strongest; an environment's minimum can only be met or exceeded.
PROFILE_RANK: dict[str, int] = {"flow": 0, "balanced": 1, "strict": 2}

# An approval wait longer than this is almost certainly a unit mistake, and Airflow must be
# able to turn the wait into a timedelta.
MAX_APPROVAL_TIMEOUT_S = 30 * 24 * 60 * 60


class Profile(BaseModel):
    """The demands of a governance profile on a run."""

    model_config = ConfigDict(frozen=True)

    name: ProfileName
    audit: Literal["basic", "full", "signed"]
    separation: Literal["none", "propose_only", "full_split"]
    min_approvers: int


PROFILES: dict[str, Profile] = {
    "flow": Profile(name="flow", audit="basic", separation="none", min_approvers=0),
    "balanced": Profile(name="balanced", audit="full", separation="propose_only", min_approvers=0),
    "strict": Profile(name="strict", audit="signed", separation="full_split", min_approvers=2),
}


def _check_role_name(name: str) -> str:
    if not re.fullmatch(ROLE_NAME_PATTERN, name):
        raise ValueError(
            f"role name {short_repr(name)} is invalid; use lowercase letters, digits, '_' and '-', "
            f"starting with a letter, as in the approvals of services.yaml"
        )
    return name


RoleName = Annotated[str, AfterValidator(_check_role_name)]


def _check_environment_name(name: str) -> str:
    # Environment names reach run parameters, audit records and the governor's requests,
    # so they follow the same rule as the environment lists of services.yaml.
    if not re.fullmatch(ENVIRONMENT_NAME_PATTERN, name):
        raise ValueError(
            f"environment name {short_repr(name)} is invalid; use lowercase letters, digits, "
            f"'_' and '-', starting with a letter, as in the environment lists of services.yaml"
        )
    return name


EnvironmentName = Annotated[str, AfterValidator(_check_environment_name)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class EnvironmentPolicy(_Model):
    minimum_profile: ProfileName = "flow"
    default_profile: ProfileName | None = None

    @model_validator(mode="after")
    def _default_meets_minimum(self) -> "EnvironmentPolicy":
        default = self.default_profile
        if default is not None and PROFILE_RANK[default] < PROFILE_RANK[self.minimum_profile]:
            raise FieldValueError(
                "default_profile",
                f"default profile '{default}' is weaker than the minimum profile "
                f"'{self.minimum_profile}', so every run that uses the default would be "
                f"denied; raise it to at least {self.minimum_profile} or remove it",
            )
        return self


class RemoteGovernor(_Model):
    connection_id: str = Field(default="hummbl_governor_default", pattern=r"^[A-Za-z0-9_.-]+$")
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    retries: int = Field(default=2, ge=0, le=10)


class AuthorityRule(_Model):
    """One rule of the authority matrix: the roles an action needs in some environments.

    A person counted by ``held_by`` must hold one of ``roles``, and an empty
    ``environments`` matches every environment. The runner is the person who triggered the
    run and approvers are the people whose approvals the request carries. The planner only
    proposes, so it never satisfies a rule.
    """

    action: Action
    environments: list[str] = Field(default_factory=list)
    roles: list[RoleName] = Field(min_length=1)
    held_by: list[Literal["runner", "approvers"]] = Field(
        default_factory=lambda: ["runner", "approvers"], min_length=1
    )

    def applies_to(self, action: str, environment: str) -> bool:
        return action == self.action and (
            not self.environments or environment in self.environments
        )


class ApprovalSettings(_Model):
    timeout_s: float = Field(
        default=86400.0,
        gt=0,
        le=MAX_APPROVAL_TIMEOUT_S,
        description=(
            f"Seconds a step waits for approvals before it fails, at most "
            f"{MAX_APPROVAL_TIMEOUT_S} (30 days)."
        ),
    )


class AuditSettings(_Model):
    """The source of the signing key for the strict profile's audit records.

    The key never lives in the repository: it is a file outside it, or the password of an
    Airflow connection (base64 of the raw or PEM key).
    """

    signing_key_file: str | None = Field(default=None, min_length=1)
    signing_connection_id: str = Field(
        default="rollback_audit_signing", pattern=r"^[A-Za-z0-9_.-]+$"
    )


class Governance(_Model):
    """The parsed governance.yaml."""

    governor: Literal["embedded", "remote"] = "embedded"
    default_environment: EnvironmentName
    environments: dict[EnvironmentName, EnvironmentPolicy]
    roles: dict[RoleName, UniqueNames] = Field(default_factory=dict)
    remote: RemoteGovernor = Field(default_factory=RemoteGovernor)
    approvals: ApprovalSettings = Field(default_factory=ApprovalSettings)
    freeze_windows: list[FreezeWindow] = Field(default_factory=list)
    authority: list[AuthorityRule] = Field(default_factory=list)
    review_role: RoleName | None = Field(
        default=None,
        description=(
            "Role whose holders review rollbacks under the strict profile: the governor "
            "escalates to it until the service has two distinct approvers."
        ),
    )
    audit: AuditSettings = Field(default_factory=AuditSettings)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)

    @model_validator(mode="after")
    def _default_environment_is_known(self) -> "Governance":
        if self.default_environment not in self.environments:
            known = name_list(self.environments)
            raise FieldValueError(
                "default_environment",
                f"{short_repr(self.default_environment)} is not one of the environments ({known}); "
                f"add it under environments or pick one of them",
            )
        return self

    @model_validator(mode="after")
    def _freeze_windows_are_consistent(self) -> "Governance":
        seen: set[str] = set()
        for window in self.freeze_windows:
            where = f"window {short_repr(window.name)}"
            if window.name in seen:
                raise FieldValueError(
                    "freeze_windows",
                    f"two windows are named {short_repr(window.name)}; rename one, because "
                    f"decisions cite each window as freeze.<name>",
                )
            seen.add(window.name)
            self._check_environments("freeze_windows", where, window.environments)
            if window.override_role is not None:
                self._check_roles("freeze_windows", where, [window.override_role])
        return self

    @model_validator(mode="after")
    def _authority_is_consistent(self) -> "Governance":
        for number, rule in enumerate(self.authority, start=1):
            where = f"rule {number} ({rule.action})"
            self._check_environments("authority", where, rule.environments)
            self._check_roles("authority", where, rule.roles)
        if self.review_role is not None:
            self._check_roles("review_role", "the review role", [self.review_role])
        return self

    def _check_environments(self, field: str, where: str, environments: list[str]) -> None:
        for environment in environments:
            if environment not in self.environments:
                known = name_list(self.environments)
                raise FieldValueError(
                    field,
                    f"{where}: environment {short_repr(environment)} is not one of the "
                    f"environments ({known}); add it under environments or fix the spelling",
                )

    def _check_roles(self, field: str, where: str, roles: list[str]) -> None:
        for role in roles:
            if role not in self.roles:
                known = name_list(self.roles)
                raise FieldValueError(
                    field,
                    f"{where}: role {short_repr(role)} is not declared under roles ({known}); "
                    f"declare it with its users or fix the spelling",
                )

    def minimum_profile(self, environment: str) -> str:
        return self.environments[environment].minimum_profile

    def default_profile(self, environment: str) -> str:
        policy = self.environments[environment]
        return policy.default_profile or policy.minimum_profile

    def holds_role(self, user: str, role: str) -> bool:
        return user in self.roles.get(role, [])

    def authority_rules(self, action: str, environment: str) -> list[AuthorityRule]:
        return [rule for rule in self.authority if rule.applies_to(action, environment)]


def load_governance(path: str | Path) -> Governance:
    """Load and validate governance.yaml, raising ConfigError for the first problem found.

    The error is one line that names the file, the dotted field and the line. Unknown keys,
    duplicate keys and values of the wrong type are errors: YAML values are not coerced.
    """
    source = Path(os.path.abspath(path))
    data, lines = read_yaml(source)
    _check_top_level(data, source)
    try:
        return Governance.model_validate(data, strict=True)
    except ValidationError as error:
        raise translate_validation_error(error, Governance, source, lines) from None


def _check_top_level(data: Any, source: Path) -> None:
    if data is None:
        raise ConfigError(
            "the file is empty; add default_environment and environments", file=source
        )
    if not isinstance(data, dict):
        raise ConfigError(
            f"the top level is a {yaml_type_name(data)}; it must be a mapping with "
            f"default_environment and environments",
            file=source,
            line=1,
        )
