"""Addresses a runtime asks for by name: CNI_ARGS `IP=`, `args.cni.ips`, `runtimeConfig.ips`.

All three are honoured together, as host-local does. Each address may come
with a prefix length ("192.168.97.7/26"): only the address counts, the
result carries the prefix of its range's subnet.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cni_calico_py.core.errors import CNIError, Code
from cni_calico_py.core.results import IPAddress


@dataclass(frozen=True)
class Requested:
    address: IPAddress
    source: str  # where it came from, for error messages

    def __str__(self) -> str:
        return f"{self.address} (from {self.source})"


def requested_addresses(cni_args: Mapping[str, str], raw: dict[str, Any]) -> list[Requested]:
    found: dict[IPAddress, Requested] = {}
    env_value = cni_args.get("IP", "")
    for text in filter(None, (t.strip() for t in env_value.split(","))):
        _add(found, text, "CNI_ARGS IP", Code.INVALID_ENVIRONMENT)
    args = raw.get("args")
    cni = args.get("cni") if isinstance(args, dict) else None
    if isinstance(cni, dict) and "ips" in cni:
        _add_list(found, cni["ips"], "args.cni.ips")
    runtime = raw.get("runtimeConfig")
    if isinstance(runtime, dict) and "ips" in runtime:
        _add_list(found, runtime["ips"], "runtimeConfig.ips")
    return list(found.values())


def _add_list(found: dict[IPAddress, Requested], value: Any, path: str) -> None:
    if not isinstance(value, list):
        raise CNIError(Code.INVALID_NETWORK_CONFIG,
                       f"invalid network config: {path} must be a list of IP addresses, "
                       f"got {json.dumps(value)[:80]}", path)
    for index, item in enumerate(value):
        _add(found, item, f"{path}[{index}]", Code.INVALID_NETWORK_CONFIG)


def _add(found: dict[IPAddress, Requested], text: Any, source: str, code: Code) -> None:
    try:
        address = ipaddress.ip_interface(text).ip if isinstance(text, str) else None
    except ValueError:
        address = None
    if address is None:
        raise CNIError(code, f"{source}: {json.dumps(text)[:80]} is not an IP address "
                       "(with or without a prefix length)", source)
    found.setdefault(address, Requested(address, source))
