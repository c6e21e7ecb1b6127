"""Pod addresses and routes, and the node's /32 (/128) route to each pod address."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from ..core.constants import MAIN_TABLE, PROTO_BOOT, SCOPE_LINK, family, host_prefixlen, pod_gateway
from ..core.errors import CNIError, Code
from ..core.results import IPAddress, IPInterface, Route
from ..core.rtnl import RouteSpec, Rtnl
from . import netlink


def pod_routes(addresses: Sequence[IPAddress], custom: Sequence[Route]) -> list[Route]:
    """The routes a pod gets: per address family the custom ones, else a default route.

    Every route goes through the node (the family's fixed gateway), the only
    neighbour a pod has.
    """
    out: list[Route] = []
    for version in sorted({a.version for a in addresses}):
        wanted = [r for r in custom if r.dst.version == version]
        dsts = [r.dst for r in wanted] or [ipaddress.ip_network("0.0.0.0/0" if version == 4 else "::/0")]
        out.extend(Route(dst=dst, gw=pod_gateway(version)) for dst in dsts)
    return out


def add_pod_addresses(pod: Rtnl, index: int, addresses: Sequence[IPAddress]) -> None:
    for address in addresses:
        try:
            pod.add_address(index, family(address.version), str(address), host_prefixlen(address.version))
        except OSError as err:
            raise netlink.failure(f"adding {address} to the pod interface", err) from err


def add_pod_routes(pod: Rtnl, index: int, addresses: Sequence[IPAddress], routes: Sequence[Route]) -> None:
    if any(a.version == 4 for a in addresses):
        # The gateway is on-link only through this route; the default route needs it.
        gateway = str(pod_gateway(4))
        _add_route(pod, "pod", RouteSpec(
            family(4), gateway, 32, oif=index, proto=PROTO_BOOT, scope=SCOPE_LINK))
    for route in routes:
        _add_route(pod, "pod", RouteSpec(
            family(route.dst.version), str(route.dst.network_address), route.dst.prefixlen,
            gateway=str(route.gw), oif=index, proto=PROTO_BOOT,
        ))


def _add_route(handle: Rtnl, where: str, spec: RouteSpec) -> None:
    try:
        handle.change_route("add", spec)
    except OSError as err:
        if netlink.is_exists(err):
            return
        raise netlink.failure(f"adding {where} route {spec.dst}/{spec.dst_len}", err) from err


def routes_to(handle: Rtnl, address: IPAddress) -> list[Any]:
    prefixlen = host_prefixlen(address.version)
    return [
        r for r in handle.routes(family(address.version))
        if r.get("dst") == str(address) and r["dst_len"] == prefixlen
        and (r.get("table") or MAIN_TABLE) == MAIN_TABLE
    ]


def add_host_route(host: Rtnl, address: IPAddress, host_index: int, host_name: str) -> None:
    """`<ip>/32 dev caliX scope link`; an identical route is fine, one elsewhere an error."""
    prefixlen = host_prefixlen(address.version)
    spec = RouteSpec(
        family(address.version), str(address), prefixlen, oif=host_index, proto=PROTO_BOOT,
        scope=SCOPE_LINK if address.version == 4 else 0,
    )
    try:
        host.change_route("add", spec)
        return
    except OSError as err:
        if not netlink.is_exists(err):
            raise netlink.failure(f"adding node route {address}/{prefixlen} via {host_name}", err) from err
    for route in routes_to(host, address):
        oif = route.get("oif")
        if oif == host_index:
            return
        other = _name_of(host, oif) if oif else f"a {route['type']} route"
        raise CNIError(
            Code.ADDRESS_CONFLICT,
            f"route {address}/{prefixlen} already exists for interface {other}, "
            f"not for {host_name}: refusing to take over another pod's address",
            f"remove the stale route (ip route del {address}/{prefixlen}) if {other} is gone",
        )


def _name_of(host: Rtnl, index: int) -> str:
    try:
        return str(netlink.link_attrs(host, index)["ifname"])
    except Exception:
        return f"ifindex {index}"


def addresses_on(handle: Rtnl, index: int) -> list[IPInterface]:
    """The addresses on interface `index`, each with its prefix length."""
    from pyroute2.netlink import NLM_F_DUMP
    from pyroute2.netlink.rtnl import RTM_GETADDR
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg

    found = handle.request(ifaddrmsg(), RTM_GETADDR, NLM_F_DUMP)
    return [
        ipaddress.ip_interface(f"{a.get('local') or a.get('address')}/{a['prefixlen']}")
        for a in found if a["index"] == index and (a.get("local") or a.get("address"))
    ]
