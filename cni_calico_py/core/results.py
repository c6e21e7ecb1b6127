"""CNI results: one internal shape, written and read in every supported version.

0.3.x and 0.4.0 tag each IP with `version`; 1.0.0 drops it; 1.1.0 adds the
interface `mtu`, `socketPath`, `pciID` and the extra route attributes.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from . import versions
from .errors import CNIError, Code

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_T = TypeVar("_T")
# Interface indexes, MTUs, route priorities, tables and scopes all fit in 32 bits.
_MAX_NUMBER = 2**32 - 1

_ROUTE_EXTRAS_1_1 = (("mtu", "mtu"), ("advmss", "advmss"), ("priority", "priority"),
                     ("table", "table"), ("scope", "scope"))


@dataclass
class Interface:
    name: str
    mac: str = ""
    sandbox: str = ""
    mtu: int | None = None
    socket_path: str = ""
    pci_id: str = ""


@dataclass
class IPConfig:
    address: IPInterface
    gateway: IPAddress | None = None
    interface: int | None = None


@dataclass
class Route:
    dst: IPNetwork
    gw: IPAddress | None = None
    mtu: int | None = None
    advmss: int | None = None
    priority: int | None = None
    table: int | None = None
    scope: int | None = None


@dataclass
class DNS:
    nameservers: list[str] = field(default_factory=list)
    domain: str = ""
    search: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.nameservers or self.domain or self.search or self.options)


@dataclass
class Result:
    interfaces: list[Interface] = field(default_factory=list)
    ips: list[IPConfig] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    dns: DNS = field(default_factory=DNS)


def to_json(result: Result, version: str) -> dict[str, Any]:
    """Write `result` in the shape `version` defines."""
    tagged_ips = not versions.at_least(version, "1.0.0")
    newest = versions.at_least(version, "1.1.0")
    out: dict[str, Any] = {"cniVersion": version}
    if result.interfaces:
        out["interfaces"] = [_interface_json(i, newest) for i in result.interfaces]
    ips = []
    for ip in result.ips:
        entry: dict[str, Any] = {}
        if tagged_ips:
            entry["version"] = str(ip.address.version)
        entry["address"] = str(ip.address)
        if ip.gateway is not None:
            entry["gateway"] = str(ip.gateway)
        if ip.interface is not None:
            entry["interface"] = ip.interface
        ips.append(entry)
    out["ips"] = ips
    if result.routes:
        out["routes"] = [_route_json(r, newest) for r in result.routes]
    dns: dict[str, Any] = {}
    if result.dns.nameservers:
        dns["nameservers"] = result.dns.nameservers
    if result.dns.domain:
        dns["domain"] = result.dns.domain
    if result.dns.search:
        dns["search"] = result.dns.search
    if result.dns.options:
        dns["options"] = result.dns.options
    out["dns"] = dns
    return out


def _interface_json(iface: Interface, newest: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": iface.name}
    if iface.mac:
        entry["mac"] = iface.mac
    if newest and iface.mtu is not None:
        entry["mtu"] = iface.mtu
    if iface.sandbox:
        entry["sandbox"] = iface.sandbox
    if newest and iface.socket_path:
        entry["socketPath"] = iface.socket_path
    if newest and iface.pci_id:
        entry["pciID"] = iface.pci_id
    return entry


def _route_json(route: Route, newest: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"dst": str(route.dst)}
    if route.gw is not None:
        entry["gw"] = str(route.gw)
    if newest:
        for attr, key in _ROUTE_EXTRAS_1_1:
            value = getattr(route, attr)
            if value is not None:
                entry[key] = value
    return entry


def from_json(data: Any, what: str = "prevResult") -> Result:
    """Read a result of any supported version (a chain may hand over an older one).

    Every field is type-checked: a malformed result is error 6 naming the
    field, never a half-read one.
    """
    if not isinstance(data, dict):
        raise _bad(what, "must be a JSON object")
    version = data.get("cniVersion")
    if not isinstance(version, str):
        raise _bad(f"{what}.cniVersion", "is missing; expected a version string")
    versions.require_supported(version, f"{what}.cniVersion")
    interfaces = [_interface(_object(item, f"{what}.interfaces[{n}]"), f"{what}.interfaces[{n}]")
                  for n, item in enumerate(_list(data, "interfaces", what))]
    ips = [_ip_config(_object(item, f"{what}.ips[{n}]"), f"{what}.ips[{n}]")
           for n, item in enumerate(_list(data, "ips", what))]
    routes = [parse_route(item, f"{what}.routes[{n}]")
              for n, item in enumerate(_list(data, "routes", what))]
    raw_dns = data.get("dns")
    dns = DNS() if raw_dns is None else _dns(_object(raw_dns, f"{what}.dns"), f"{what}.dns")
    return Result(interfaces=interfaces, ips=ips, routes=routes, dns=dns)


def parse_route(raw: Any, what: str = "route") -> Route:
    raw = _object(raw, what)
    return Route(
        dst=_parsed(ipaddress.ip_network, _text(raw, "dst", what, required=True), f"{what}.dst",
                    "a network in CIDR notation", strict=False),
        gw=_address(raw, "gw", what),
        mtu=_number(raw, "mtu", what),
        advmss=_number(raw, "advmss", what),
        priority=_number(raw, "priority", what),
        table=_number(raw, "table", what),
        scope=_number(raw, "scope", what),
    )


def _interface(raw: dict[str, Any], what: str) -> Interface:
    name = _text(raw, "name", what, required=True)
    if not name:
        raise _bad(f"{what}.name", "is empty")
    return Interface(
        name=name,
        mac=_text(raw, "mac", what),
        sandbox=_text(raw, "sandbox", what),
        mtu=_number(raw, "mtu", what),
        socket_path=_text(raw, "socketPath", what),
        pci_id=_text(raw, "pciID", what),
    )


def _ip_config(raw: dict[str, Any], what: str) -> IPConfig:
    return IPConfig(
        address=_parsed(ipaddress.ip_interface, _text(raw, "address", what, required=True),
                        f"{what}.address", "an address with its prefix length, e.g. 10.0.0.5/32"),
        gateway=_address(raw, "gateway", what),
        interface=_number(raw, "interface", what),
    )


def _dns(raw: dict[str, Any], what: str) -> DNS:
    return DNS(
        nameservers=_texts(raw, "nameservers", what),
        domain=_text(raw, "domain", what),
        search=_texts(raw, "search", what),
        options=_texts(raw, "options", what),
    )


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(what, f"must be a JSON object, got {_kind(value)}")
    return value


def _list(raw: dict[str, Any], key: str, what: str) -> list[Any]:
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad(f"{what}.{key}", f"must be a list, got {_kind(value)}")
    return value


def _text(raw: dict[str, Any], key: str, what: str, required: bool = False) -> str:
    value = raw.get(key)
    if value is None:
        if required:
            raise _bad(f"{what}.{key}", "is required")
        return ""
    if not isinstance(value, str):
        raise _bad(f"{what}.{key}", f"must be a string, got {_kind(value)}")
    return value


def _texts(raw: dict[str, Any], key: str, what: str) -> list[str]:
    items = _list(raw, key, what)
    for n, item in enumerate(items):
        if not isinstance(item, str):
            raise _bad(f"{what}.{key}[{n}]", f"must be a string, got {_kind(item)}")
    return list(items)


def _number(raw: dict[str, Any], key: str, what: str) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_NUMBER:
        raise _bad(f"{what}.{key}", f"must be a whole number from 0 to {_MAX_NUMBER}, "
                   f"got {_kind(value)}")
    return value


def _address(raw: dict[str, Any], key: str, what: str) -> IPAddress | None:
    text = _text(raw, key, what)
    return _parsed(ipaddress.ip_address, text, f"{what}.{key}", "an IP address") if text else None


def _parsed(parse: Callable[..., _T], text: str, what: str, expected: str, **options: Any) -> _T:
    try:
        return parse(text, **options)
    except ValueError:
        raise _bad(what, f"must be {expected}, got {text[:80]!r}") from None


def _kind(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        return "a number" if isinstance(value, float) or abs(value) > _MAX_NUMBER else str(value)
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return "a string" if isinstance(value, str) else type(value).__name__


def _bad(what: str, rule: str) -> CNIError:
    return CNIError(Code.DECODING_FAILURE, f"{what} {rule}", what)
