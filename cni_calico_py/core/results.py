"""CNI results: one internal shape, written and read in every supported version.

0.3.x and 0.4.0 tag each IP with `version`; 1.0.0 drops it; 1.1.0 adds the
interface `mtu`, `socketPath`, `pciID` and the extra route attributes.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from . import json_fields as fields
from . import versions

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Interface indexes, MTUs, route priorities, tables and scopes all fit in 32 bits.

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
        raise fields.bad(what, "must be a JSON object")
    version = data.get("cniVersion")
    if not isinstance(version, str):
        raise fields.bad(f"{what}.cniVersion", "is missing; expected a version string")
    versions.require_supported(version, f"{what}.cniVersion")
    interfaces = [_interface(fields.json_object(item, f"{what}.interfaces[{n}]"), f"{what}.interfaces[{n}]")
                  for n, item in enumerate(fields.list_of(data, "interfaces", what))]
    ips = [_ip_config(fields.json_object(item, f"{what}.ips[{n}]"), f"{what}.ips[{n}]")
           for n, item in enumerate(fields.list_of(data, "ips", what))]
    routes = [parse_route(item, f"{what}.routes[{n}]")
              for n, item in enumerate(fields.list_of(data, "routes", what))]
    raw_dns = data.get("dns")
    dns = DNS() if raw_dns is None else parse_dns(fields.json_object(raw_dns, f"{what}.dns"),
                                                  f"{what}.dns")
    return Result(interfaces=interfaces, ips=ips, routes=routes, dns=dns)


def parse_route(raw: Any, what: str = "route") -> Route:
    raw = fields.json_object(raw, what)
    return Route(
        dst=fields.parsed(ipaddress.ip_network, fields.text(raw, "dst", what, required=True),
                          f"{what}.dst", "a network in CIDR notation", strict=False),
        gw=fields.address(raw, "gw", what),
        mtu=fields.number(raw, "mtu", what),
        advmss=fields.number(raw, "advmss", what),
        priority=fields.number(raw, "priority", what),
        table=fields.number(raw, "table", what),
        scope=fields.number(raw, "scope", what),
    )


def _interface(raw: dict[str, Any], what: str) -> Interface:
    name = fields.text(raw, "name", what, required=True)
    if not name:
        raise fields.bad(f"{what}.name", "is empty")
    return Interface(
        name=name,
        mac=fields.text(raw, "mac", what),
        sandbox=fields.text(raw, "sandbox", what),
        mtu=fields.number(raw, "mtu", what),
        socket_path=fields.text(raw, "socketPath", what),
        pci_id=fields.text(raw, "pciID", what),
    )


def _ip_config(raw: dict[str, Any], what: str) -> IPConfig:
    return IPConfig(
        address=fields.parsed(ipaddress.ip_interface, fields.text(raw, "address", what, required=True),
                              f"{what}.address", "an address with its prefix length, e.g. 10.0.0.5/32"),
        gateway=fields.address(raw, "gateway", what),
        interface=fields.number(raw, "interface", what),
    )


def parse_dns(raw: dict[str, Any], what: str) -> DNS:
    return DNS(
        nameservers=fields.texts(raw, "nameservers", what),
        domain=fields.text(raw, "domain", what),
        search=fields.texts(raw, "search", what),
        options=fields.texts(raw, "options", what),
    )
