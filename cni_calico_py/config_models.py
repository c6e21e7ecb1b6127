"""What a network config may hold: the pydantic models that check it.

Keys follow the spec's camelCase where the spec names them and Calico's
snake_case where operators already write them (`log_level`, `mtu`, ...).
Imported only to check a config not seen before (see verdicts.py): the
plugin itself works with the plain values in config.py.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .config import DEFAULT_MTU_FILE, MAX_VETH_PREFIX, STABLE_FIELDS
from .decoding import config_error


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class ContainerSettings(_Model):
    allow_ip_forwarding: bool = False


class IpamSection(BaseModel):
    """Only the IPAM plugin's name is the main plugin's business; the rest is its own."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(min_length=1)


class NetConf(_Model):
    cni_version: str = Field(alias="cniVersion")
    name: str = Field(min_length=1)
    type: str = Field(min_length=1)
    ipam: IpamSection
    mtu: int | None = Field(default=None, ge=68, le=65535)
    mtu_file_path: str = DEFAULT_MTU_FILE
    veth_prefix: str = Field(default="cali", min_length=1, max_length=MAX_VETH_PREFIX)
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "warning"
    log_file_path: str | None = None
    container_settings: ContainerSettings = ContainerSettings()
    nodename: str | None = None
    dns: dict[str, Any] | None = None
    runtime_config: dict[str, Any] = Field(default_factory=dict, alias="runtimeConfig")
    args: dict[str, Any] = Field(default_factory=dict)
    prev_result: dict[str, Any] | None = Field(default=None, alias="prevResult")

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


def validate_netconf(raw: dict[str, Any]) -> dict[str, Any]:
    """The config's values with defaults filled in, or error 7 naming each bad field."""
    try:
        model = NetConf.model_validate(raw)
    except ValidationError as err:
        raise config_error(err) from None
    return model.model_dump(include=STABLE_FIELDS | {"ipam"}) | {"ipam": {"type": model.ipam.type}}
