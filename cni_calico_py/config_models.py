"""What a network config may hold: the pydantic models that check it.

Keys follow the spec's camelCase where the spec names them and Calico's
snake_case where operators already write them (`log_level`, `mtu`, ...).
Imported only to check a config not seen before (see verdicts.py): the
plugin itself works with the plain values in config.py.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .config import DEFAULT_MTU_FILE, MAX_VETH_PREFIX, STABLE_FIELDS
from .core.decoding import config_error, path_problem

# The host veth's name starts with it: characters any interface name may hold.
_VETH_PREFIX = re.compile(r"[A-Za-z0-9_.\-]+")


class _Model(BaseModel):
    # Strict: a JSON type other than the field's is an error, never converted
    # ("mtu": "1500", "allow_ip_forwarding": 1), as Go's decoder in Calico has it.
    model_config = ConfigDict(extra="ignore", populate_by_name=True, strict=True)


class ContainerSettings(_Model):
    allow_ip_forwarding: bool = False


class IpamSection(BaseModel):
    """Only the IPAM plugin's name is the main plugin's business; the rest is its own."""

    model_config = ConfigDict(extra="allow", strict=True)
    type: str = Field(min_length=1)


class Dns(_Model):
    """The spec's DNS settings; a misspelt key is refused rather than ignored."""

    model_config = ConfigDict(extra="forbid", strict=True)
    nameservers: list[str] | None = None
    domain: str | None = None
    search: list[str] | None = None
    options: list[str] | None = None

    @field_validator("nameservers")
    @classmethod
    def _addresses(cls, value: list[str] | None) -> list[str] | None:
        for item in value or []:
            try:
                ipaddress.ip_address(item)
            except ValueError:
                raise ValueError(f"{item[:60]!r} is not an IPv4 or IPv6 address") from None
        return value


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
    dns: Dns | None = None
    runtime_config: dict[str, Any] = Field(default_factory=dict, alias="runtimeConfig")
    args: dict[str, Any] = Field(default_factory=dict)
    prev_result: dict[str, Any] | None = Field(default=None, alias="prevResult")

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("mtu_file_path", "log_file_path")
    @classmethod
    def _usable_path(cls, value: str | None) -> str | None:
        problem = path_problem(value) if value is not None else None
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("veth_prefix")
    @classmethod
    def _interface_characters(cls, value: str) -> str:
        if not _VETH_PREFIX.fullmatch(value):
            raise ValueError(f"{value!r} may hold only letters, digits, '_', '.' and '-' "
                             "(it starts every host interface name)")
        return value


def validate_netconf(raw: dict[str, Any]) -> dict[str, Any]:
    """The config's values with defaults filled in, or error 7 naming each bad field."""
    try:
        model = NetConf.model_validate(raw)
    except ValidationError as err:
        raise config_error(err) from None
    values = model.model_dump(include=STABLE_FIELDS - {"dns"})
    # Only the keys the config gave: an empty `dns` stays empty.
    values["dns"] = model.dns.model_dump(exclude_unset=True) if model.dns is not None else None
    return values | {"ipam": {"type": model.ipam.type}}
