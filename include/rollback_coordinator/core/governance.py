"""governance.yaml: which governor decides, the profiles environments require, who holds which role."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from rollback_coordinator.core.errors import ConfigError
from rollback_coordinator.core.services import ROLE_NAME_PATTERN, UniqueNames
from rollback_coordinator.core.yaml_lines import (
    FieldValueError,
    read_yaml,
    translate_validation_error,
    yaml_type_name,
)

ProfileName = Literal["flow", "balanced", "strict"]

# Profiles from weakest to strongest; an environment's minimum can only be met or exceeded.
PROFILE_RANK: dict[str, int] = {"flow": 0, "balanced": 1, "strict": 2}


class Profile(BaseModel):
    """What a governance profile demands of a run."""

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
            f"role name {name!r} is invalid; use lowercase letters, digits, '_' and '-', "
            f"starting with a letter, as in the approvals of services.yaml"
        )
    return name


RoleName = Annotated[str, AfterValidator(_check_role_name)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EnvironmentPolicy(_Model):
    minimum_profile: ProfileName = "flow"
    default_profile: ProfileName | None = None


class RemoteGovernor(_Model):
    connection_id: str = Field(default="hummbl_governor_default", pattern=r"^[A-Za-z0-9_.-]+$")
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    retries: int = Field(default=2, ge=0, le=10)


class ApprovalSettings(_Model):
    poke_interval_s: float = Field(default=30.0, gt=0, le=3600)
    timeout_s: float = Field(default=86400.0, gt=0)


class Governance(_Model):
    """The parsed governance.yaml."""

    governor: Literal["embedded", "remote"] = "embedded"
    default_environment: str
    environments: dict[str, EnvironmentPolicy]
    roles: dict[RoleName, UniqueNames] = Field(default_factory=dict)
    remote: RemoteGovernor = Field(default_factory=RemoteGovernor)
    approvals: ApprovalSettings = Field(default_factory=ApprovalSettings)

    @model_validator(mode="after")
    def _default_environment_is_known(self) -> "Governance":
        if self.default_environment not in self.environments:
            known = ", ".join(self.environments) or "none"
            raise FieldValueError(
                "default_environment",
                f"'{self.default_environment}' is not one of the environments ({known}); "
                f"add it under environments or pick one of them",
            )
        return self

    def minimum_profile(self, environment: str) -> str:
        return self.environments[environment].minimum_profile

    def default_profile(self, environment: str) -> str:
        policy = self.environments[environment]
        return policy.default_profile or policy.minimum_profile

    def holds_role(self, user: str, role: str) -> bool:
        return user in self.roles.get(role, [])


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
