"""The node's IPv4 address, found the ways Calico's IP_AUTODETECTION_METHOD offers.

`choose` is the pure part: it picks among `Link` records (and asks a route-get
callable for can-reach). `detect` reads those records from the kernel of the
current network namespace and calls it.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any, NamedTuple

from ..dataplane.netlink import iproute_class, netlink_error_code

# Calico's default interface exclusions for first-found.
EXCLUDED = re.compile(
    r"^(docker.*|cbr.*|dummy.*|virbr.*|lxcbr.*|veth.*|lo$|cali.*|tunl.*|flannel.*"
    r"|kube-ipvs.*|cni.*|vxlan.*|wireguard.*|br-.*)"
)
METHODS = ("use first-found, can-reach=<ip>, interface=<regex>, skip-interface=<regex> "
           "or cidr=<cidr>")
SCOPE_UNIVERSE = 0
IFF_UP = 1


class NodeIPError(Exception):
    """No node IP could be found, or the method or the explicit IP is malformed."""


class Address(NamedTuple):
    interface: IPv4Interface
    scope: int = SCOPE_UNIVERSE


class Link(NamedTuple):
    name: str
    kind: str | None
    up: bool
    addresses: tuple[Address, ...] = ()
    ifindex: int = 0

    def global_address(self) -> IPv4Interface | None:
        return next((a.interface for a in self.addresses if a.scope == SCOPE_UNIVERSE), None)

    def describe(self, excluded: bool = False) -> str:
        notes = ["excluded"] if excluded else []
        notes += ["bridge"] if self.kind == "bridge" else []
        notes += [] if self.up else ["down"]
        notes += [str(a.interface) for a in self.addresses]
        return f"{self.name} ({', '.join(notes)})" if notes else self.name


# Source address the kernel would use towards a destination; raises LookupError(reason).
RouteGet = Callable[[IPv4Address], IPv4Address]


def _no_routes(dst: IPv4Address) -> IPv4Address:
    raise LookupError(f"no route to {dst}")


def choose(method: str, links: Sequence[Link], route_get: RouteGet = _no_routes) -> IPv4Interface:
    """The node address `method` picks among `links` (in ifindex order)."""
    method = method.strip()
    name, _, arg = method.partition("=")

    def fail(reason: str) -> NodeIPError:
        return NodeIPError(f'ip_autodetection "{method}": {reason}')

    if method == "first-found":
        for link in links:
            usable = link.up and link.kind != "bridge" and not EXCLUDED.match(link.name)
            if usable and (found := link.global_address()) is not None:
                return found
        listed = ", ".join(link.describe(bool(EXCLUDED.match(link.name))) for link in links) or "none"
        raise fail(f"no global IPv4 address on an up, non-excluded interface; interfaces: {listed}")
    if name == "can-reach" and arg:
        try:
            dst = IPv4Address(arg.strip())
        except ValueError:
            raise fail(f"{arg.strip()!r} is not an IPv4 address") from None
        try:
            source = route_get(dst)
        except LookupError as err:
            raise fail(str(err.args[0] if err.args else f"no route to {dst}")) from None
        return _with_prefix(source, links)
    if name in ("interface", "skip-interface") and arg:
        try:
            patterns = [re.compile(p.strip()) for p in arg.split(",")]
        except re.error as err:
            raise fail(f"bad regex: {err}") from None
        if name == "skip-interface":
            # first-found among the interfaces no pattern names (Calico's skip-interface).
            kept = [link for link in links if not any(p.fullmatch(link.name) for p in patterns)]
            try:
                return choose("first-found", kept)
            except NodeIPError as err:
                raise fail(str(err).split(": ", 1)[1]) from None
        matching = [link for link in links if any(p.fullmatch(link.name) for p in patterns)]
        if not matching:
            raise fail(f"no interface matches; interfaces: {_names(links)}")
        for link in matching:
            if link.up and (found := link.global_address()) is not None:
                return found
        listed = ", ".join(link.describe() for link in matching)
        raise fail(f"no matching interface is up with a global IPv4 address; matching: {listed}")
    if name == "cidr" and arg:
        try:
            networks = [IPv4Network(c.strip(), strict=False) for c in arg.split(",")]
        except ValueError as err:
            raise fail(f"bad IPv4 CIDR: {err}") from None
        for link in links:
            for address in link.addresses if link.up else ():
                if any(address.interface.ip in net for net in networks):
                    return address.interface
        listed = ", ".join(f"{a.interface} on {link.name}{'' if link.up else ' (down)'}"
                           for link in links for a in link.addresses) or "none"
        raise fail(f"no address inside; addresses: {listed}")
    if name in ("can-reach", "interface", "skip-interface", "cidr"):
        raise fail(f"{name} needs a value; {METHODS}")
    raise fail(f"unknown method; {METHODS}")


def choose_explicit(explicit: str, links: Sequence[Link]) -> IPv4Interface:
    """An explicit address; without a prefix, the one of the interface holding it, else /32."""
    text = explicit.strip()
    try:
        given = IPv4Interface(text)
    except ValueError:
        raise NodeIPError(f'IP "{explicit}": not an IPv4 address or address/prefix') from None
    return given if "/" in text else _with_prefix(given.ip, links)


def _with_prefix(ip: IPv4Address, links: Sequence[Link]) -> IPv4Interface:
    for link in links:
        for address in link.addresses:
            if address.interface.ip == ip:
                return address.interface
    return IPv4Interface(ip)


def _names(links: Sequence[Link]) -> str:
    return ", ".join(link.name for link in links) or "none"


def detect(method: str, explicit_ip: str | None = None) -> IPv4Interface:
    """The node's IPv4 address with its prefix, from the kernel of the current netns.

    `explicit_ip` (Calico's IP) wins over the method; "" and "autodetect" mean none given.
    """
    ipr = iproute_class()()
    try:
        links = read_links(ipr)
        if explicit_ip and explicit_ip.strip().lower() != "autodetect":
            return choose_explicit(explicit_ip, links)
        return choose(method, links, lambda dst: _route_source(ipr, dst, links))
    finally:
        ipr.close()


def read_links(ipr: Any) -> list[Link]:
    """Every link with its IPv4 addresses, in ifindex order."""
    addresses: dict[int, list[Address]] = {}
    for msg in ipr.get_addr(family=socket.AF_INET):
        local = msg.get("IFA_LOCAL") or msg.get("IFA_ADDRESS")
        if local:
            interface = IPv4Interface(f"{local}/{msg['prefixlen']}")
            addresses.setdefault(msg["index"], []).append(Address(interface, msg["scope"]))
    links = []
    for msg in sorted(ipr.get_links(), key=lambda m: m["index"]):
        links.append(Link(
            name=str(msg.get("IFLA_IFNAME")),
            kind=msg.get(("IFLA_LINKINFO", "IFLA_INFO_KIND")),
            up=bool(msg["flags"] & IFF_UP),
            addresses=tuple(addresses.get(msg["index"], ())),
            ifindex=msg["index"],
        ))
    return links


def _route_source(ipr: Any, dst: IPv4Address, links: Sequence[Link]) -> IPv4Address:
    """RTM_GETROUTE: asks the kernel which source it would use; sends no packet."""
    try:
        routes = ipr.route("get", dst=str(dst))
    except Exception as err:
        if netlink_error_code(err) is None:
            raise
        raise LookupError(f"no route to {dst} ({os.strerror(netlink_error_code(err) or 0)})") from None
    for route in routes:
        prefsrc = route.get("RTA_PREFSRC")
        if prefsrc:
            return IPv4Address(prefsrc)
        oif = route.get("RTA_OIF")
        for link in links:
            if link.ifindex == oif and (found := link.global_address()) is not None:
                return found.ip
    raise LookupError(f"the route to {dst} has no source address")

