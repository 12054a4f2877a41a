"""governance.yaml: which governor decides, the profiles environments require, who holds which role."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rollback_coordinator.core.errors import ConfigError

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
    roles: dict[str, list[str]] = Field(default_factory=dict)
    remote: RemoteGovernor = Field(default_factory=RemoteGovernor)
    approvals: ApprovalSettings = Field(default_factory=ApprovalSettings)

    @model_validator(mode="after")
    def _default_environment_is_known(self) -> "Governance":
        if self.default_environment not in self.environments:
            known = ", ".join(self.environments) or "none"
            raise ValueError(
                f"default_environment '{self.default_environment}' is not one of the "
                f"environments ({known})"
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
    """Read governance.yaml, raising ConfigError that names the file and the field."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            "file not found; set ROLLBACK_CONFIG_DIR to the folder holding governance.yaml",
            file=path,
        ) from None
    except yaml.YAMLError as error:
        line = error.problem_mark.line + 1 if getattr(error, "problem_mark", None) else None
        raise ConfigError(f"invalid YAML: {error}", file=path, line=line) from None

    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping", file=path)
    try:
        return Governance.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        raise ConfigError(first["msg"], file=path, field=field) from None
