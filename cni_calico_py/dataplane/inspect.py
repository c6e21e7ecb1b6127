"""What CHECK compares: the kernel's state against the result ADD gave."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from ..results import Interface, IPAddress, Route
from . import netlink
from .addressing import routes_to
from .constants import HOST_VETH_MAC, MAIN_TABLE, family
from .rtnl import Rtnl


def pod_problems(
    pod: Rtnl, expected: Interface, addresses: Sequence[IPAddress], routes: Sequence[Route]
) -> list[str]:
    index = netlink.link_index(pod, expected.name)
    if index is None:
        return [f"pod interface {expected.name} is missing from {expected.sandbox}"]
    problems = []
    attrs = netlink.link_attrs(pod, index)
    if expected.mac and str(attrs["address"]).lower() != expected.mac.lower():
        problems.append(
            f"pod interface {expected.name} has MAC {attrs['address']}, expected {expected.mac}"
        )
    if not attrs["up"]:
        problems.append(f"pod interface {expected.name} is down")
    present = {ipaddress.ip_address(a) for a in pod.addresses(index)}
    for address in addresses:
        if address not in present:
            problems.append(f"pod interface {expected.name} lacks address {address}")
    for route in routes:
        if not _has_route(pod, route, index):
            via = f" via {route.gw}" if route.gw else ""
            problems.append(f"pod route {route.dst}{via} dev {expected.name} is missing")
    return problems


def _has_route(pod: Rtnl, route: Route, index: int) -> bool:
    dst = "" if route.dst.prefixlen == 0 else str(route.dst.network_address)
    for found in pod.routes(family(route.dst.version)):
        if (found.get("table") or MAIN_TABLE) != MAIN_TABLE or found["dst_len"] != route.dst.prefixlen:
            continue
        if (found.get("dst") or "") != dst or found.get("oif") != index:
            continue
        if route.gw is None or found.get("gateway") == str(route.gw):
            return True
    return False


def host_problems(host: Rtnl, expected: Interface, addresses: Sequence[IPAddress]) -> list[str]:
    index = netlink.link_index(host, expected.name)
    if index is None:
        return [f"host interface {expected.name} is missing"]
    problems = []
    attrs = netlink.link_attrs(host, index)
    if str(attrs["address"]).lower() != HOST_VETH_MAC:
        problems.append(
            f"host interface {expected.name} has MAC {attrs['address']}, expected {HOST_VETH_MAC}"
        )
    if not attrs["up"]:
        problems.append(f"host interface {expected.name} is down")
    for address in addresses:
        if not any(r.get("oif") == index for r in routes_to(host, address)):
            prefix = 32 if address.version == 4 else 128
            problems.append(f"host route {address}/{prefix} dev {expected.name} is missing")
    return problems


def describe(values: Sequence[Any]) -> str:
    return "; ".join(str(v) for v in values)
