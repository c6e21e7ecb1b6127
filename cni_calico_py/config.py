"""The network config as the plugin uses it: plain values, checked once per distinct config.

config_models.py says what a config may hold (pydantic); this module hands
the commands the checked values. The parts that differ from request to
request (prevResult, runtimeConfig, args) are left out of what is
remembered, so a node's many pods share one verdict; prevResult is read
whole on every request instead, so a malformed one is refused before the
node is touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .core import verdicts

DEFAULT_MTU_FILE = "/var/lib/calico/mtu"
# IFNAMSIZ leaves 15 characters; the hash takes 11 of them.
VETH_HASH_LEN = 11
MAX_VETH_PREFIX = 15 - VETH_HASH_LEN
# NetConf's fields that come from the network config itself, not from the request.
STABLE_FIELDS = {
    "cni_version", "name", "type", "mtu", "mtu_file_path", "veth_prefix", "log_level",
    "log_file_path", "container_settings", "nodename", "dns",
}
_PER_REQUEST_KEYS = {"prevResult": (dict, type(None)), "runtimeConfig": (dict,), "args": (dict,)}


@dataclass(frozen=True)
class ContainerSettings:
    allow_ip_forwarding: bool = False


@dataclass(frozen=True)
class IpamSection:
    """Only the IPAM plugin's name is the main plugin's business; the rest is its own."""

    type: str


@dataclass(frozen=True)
class NetConf:
    cni_version: str
    name: str
    type: str
    ipam: IpamSection
    mtu: int | None
    mtu_file_path: str
    veth_prefix: str
    log_level: str
    log_file_path: str | None
    container_settings: ContainerSettings
    nodename: str | None
    dns: dict[str, Any] | None
    runtime_config: dict[str, Any] = field(default_factory=dict)
    args: dict[str, Any] = field(default_factory=dict)
    prev_result: dict[str, Any] | None = None


def parse_netconf(raw: dict[str, Any]) -> NetConf:
    """The checked config, or error 7 naming each bad field."""
    stable = {k: v for k, v in raw.items() if k not in _PER_REQUEST_KEYS}
    if not all(isinstance(raw[k], kinds) for k, kinds in _PER_REQUEST_KEYS.items() if k in raw):
        stable = raw  # let the full check name the bad per-request field

    def validate() -> dict[str, Any]:
        from .config_models import validate_netconf

        return validate_netconf(stable)

    values = verdicts.remembered("netconf", stable, validate)
    prev_result = raw.get("prevResult")
    if prev_result:
        # Never remembered, so checked on every request, before anything changes.
        from .core.results import from_json

        from_json(prev_result)
    return NetConf(
        **{k: v for k, v in values.items() if k not in ("ipam", "container_settings")},
        ipam=IpamSection(**values["ipam"]),
        container_settings=ContainerSettings(**values["container_settings"]),
        runtime_config=raw.get("runtimeConfig") or {},
        args=raw.get("args") or {},
        prev_result=raw.get("prevResult"),
    )
