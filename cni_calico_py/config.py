"""The network configuration a runtime hands the plugin on stdin.

Keys follow the spec's camelCase where the spec names them and Calico's
snake_case where operators already write them (`log_level`, `mtu`, ...).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from . import versions
from .errors import CNIError, Code

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


def decode_json(stdin: bytes) -> dict[str, Any]:
    """stdin as a JSON object, or error 6."""
    try:
        data = json.loads(stdin)
    except (ValueError, UnicodeDecodeError) as err:
        raise CNIError(
            Code.DECODING_FAILURE,
            f"network config on stdin is not valid JSON: {err}",
            "stdin",
        ) from None
    if not isinstance(data, dict):
        raise CNIError(
            Code.DECODING_FAILURE,
            f"network config on stdin must be a JSON object, got {type(data).__name__}",
            "stdin",
        )
    return data


def check_version(raw: dict[str, Any], verb: str) -> str:
    """The requested cniVersion, after checking this plugin speaks it for `verb`."""
    version = raw.get("cniVersion")
    if not isinstance(version, str) or not version:
        raise CNIError(
            Code.INVALID_NETWORK_CONFIG,
            "invalid network config: cniVersion: field required, expected a version string "
            f"such as {versions.LATEST!r}",
            "cniVersion",
        )
    versions.require_supported(version)
    versions.require_verb_allowed(verb, version)
    return version


def field_path(prefix: str, loc: Sequence[int | str]) -> str:
    """`ipam.ranges[0][1].rangeStart`: the way an operator reads a JSON path."""
    path = prefix
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path


def config_error(err: ValidationError, prefix: str = "") -> CNIError:
    """Turn pydantic's report into one readable line naming each field path."""
    problems = []
    for item in err.errors():
        path = field_path(prefix, item["loc"])
        problem = item["msg"]
        if item["type"] not in ("missing",) and "input" in item:
            problem += f" (got {json.dumps(item['input'], default=str)[:80]})"
        problems.append(f"{path or '<root>'}: {problem}")
    return CNIError(
        Code.INVALID_NETWORK_CONFIG,
        "invalid network config: " + "; ".join(problems),
        ", ".join(p.split(":", 1)[0] for p in problems),
    )


def parse_netconf(raw: dict[str, Any]) -> NetConf:
    try:
        return NetConf.model_validate(raw)
    except ValidationError as err:
        raise config_error(err) from None
