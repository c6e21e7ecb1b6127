"""CNI results: one internal shape, written and read in every supported version.

0.3.x and 0.4.0 tag each IP with `version`; 1.0.0 drops it; 1.1.0 adds the
interface `mtu`, `socketPath`, `pciID` and the extra route attributes.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from . import versions
from .errors import CNIError, Code

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

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
    """Read a result of any supported version (a chain may hand over an older one)."""
    if not isinstance(data, dict):
        raise _bad(what, "must be a JSON object")
    version = data.get("cniVersion")
    if not isinstance(version, str):
        raise _bad(f"{what}.cniVersion", "is missing; expected a version string")
    versions.require_supported(version, f"{what}.cniVersion")
    try:
        interfaces = [
            Interface(
                name=str(i["name"]),
                mac=str(i.get("mac", "")),
                sandbox=str(i.get("sandbox", "")),
                mtu=_opt_int(i.get("mtu")),
                socket_path=str(i.get("socketPath", "")),
                pci_id=str(i.get("pciID", "")),
            )
            for i in data.get("interfaces") or []
        ]
        ips = [
            IPConfig(
                address=ipaddress.ip_interface(ip["address"]),
                gateway=ipaddress.ip_address(ip["gateway"]) if ip.get("gateway") else None,
                interface=_opt_int(ip.get("interface")),
            )
            for ip in data.get("ips") or []
        ]
        routes = [parse_route(r) for r in data.get("routes") or []]
        raw_dns = data.get("dns") or {}
        dns = DNS(
            nameservers=list(raw_dns.get("nameservers") or []),
            domain=str(raw_dns.get("domain", "")),
            search=list(raw_dns.get("search") or []),
            options=list(raw_dns.get("options") or []),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise _bad(what, f"is not a valid CNI result: {err}") from None
    return Result(interfaces=interfaces, ips=ips, routes=routes, dns=dns)


def parse_route(raw: dict[str, Any]) -> Route:
    return Route(
        dst=ipaddress.ip_network(raw["dst"], strict=False),
        gw=ipaddress.ip_address(raw["gw"]) if raw.get("gw") else None,
        mtu=_opt_int(raw.get("mtu")),
        advmss=_opt_int(raw.get("advmss")),
        priority=_opt_int(raw.get("priority")),
        table=_opt_int(raw.get("table")),
        scope=_opt_int(raw.get("scope")),
    )


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _bad(what: str, rule: str) -> CNIError:
    return CNIError(Code.DECODING_FAILURE, f"{what} {rule}", what)
