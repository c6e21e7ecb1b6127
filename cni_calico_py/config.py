"""The network configuration a runtime hands the plugin on stdin.

Keys follow the spec's camelCase where the spec names them and Calico's
snake_case where operators already write them (`log_level`, `mtu`, ...).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .decoding import config_error

DEFAULT_MTU_FILE = "/var/lib/calico/mtu"
# IFNAMSIZ leaves 15 characters; the hash takes 11 of them.
VETH_HASH_LEN = 11
MAX_VETH_PREFIX = 15 - VETH_HASH_LEN


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


def parse_netconf(raw: dict[str, Any]) -> NetConf:
    try:
        return NetConf.model_validate(raw)
    except ValidationError as err:
        raise config_error(err) from None
