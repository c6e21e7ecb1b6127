"""What CHECK compares: the kernel's state against what ADD made, and nothing else.

Only this plugin's objects are looked at: its pod interface and host veth,
the pod's link route to the node's gateway, the pod routes through that
gateway, the node's route per pod address and the veth's sysctls. What
earlier plugins of a chain made is theirs to check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..core.constants import HOST_VETH_MAC, MAIN_TABLE, SCOPE_LINK, family, host_prefixlen, pod_gateway
from ..core.results import Interface, IPAddress, Route
from ..core.rtnl import Rtnl
from . import netlink, sysctl
from .addressing import addresses_on, routes_to
from .naming import OWNER_MARK
from .netns import OWN_NETNS
from .veth import LinkFacts, link_facts, netnsid_of


@dataclass(frozen=True)
class Made:
    """What ADD made for one attachment, as CHECK expects to find it."""

    pod: Interface  # CNI_IFNAME in the pod; its MAC is compared when known
    host: Interface  # the host veth
    pod_mtu: int
    host_mtu: int
    netns_path: str  # where this process opens the pod's netns
    addresses: Sequence[IPAddress]
    # The pod routes through the node's gateway, as ADD added them.
    routes: Sequence[Route]
    owner: str = ""  # the mark ADD left on the host end (naming.owner_mark); "" to skip


def problems(host: Rtnl, pod: Rtnl, made: Made) -> list[str]:
    """One line per object that is missing or differs, naming it and what differs."""
    found: list[str] = []
    pod_index = netlink.link_index(pod, made.pod.name)
    host_index = netlink.link_index(host, made.host.name)
    if pod_index is None:
        found.append(f"pod interface {made.pod.name} is missing from {made.pod.sandbox}")
    else:
        found += _pod_problems(pod, pod_index, made)
    if host_index is None:
        found.append(f"host interface {made.host.name} is missing")
    else:
        found += _host_problems(host, host_index, made)
    if pod_index is not None and host_index is not None:
        found += _pairing_problems(host, host_index, pod, pod_index, made)
    return found


def _pod_problems(pod: Rtnl, index: int, made: Made) -> list[str]:
    name = made.pod.name
    found = _link_problems(pod, index, f"pod interface {name}", made.pod.mac, made.pod_mtu)
    present = addresses_on(pod, index)
    for address in made.addresses:
        want = host_prefixlen(address.version)
        prefixes = sorted(p.network.prefixlen for p in present if p.ip == address)
        if not prefixes:
            found.append(f"pod interface {name} lacks address {address}/{want}")
        elif want not in prefixes:
            found.append(f"pod interface {name} has address {address}/{prefixes[0]}, "
                         f"expected {address}/{want}")
    dumps = {v: pod.routes(family(v)) for v in sorted({a.version for a in made.addresses})}
    if 4 in dumps:
        gateway = pod_gateway(4)
        if not any(_is_link_route(r, str(gateway), index) for r in dumps[4]):
            found.append(f"pod route {gateway}/32 dev {name} scope link is missing")
    for route in made.routes:
        if not any(_is_route(r, route, index) for r in dumps.get(route.dst.version, [])):
            via = f" via {route.gw}" if route.gw else ""
            found.append(f"pod route {route.dst}{via} dev {name} is missing")
    return found


def _in_main_table(found: Any) -> bool:
    return (found.get("table") or MAIN_TABLE) == MAIN_TABLE


def _is_link_route(found: Any, gateway: str, index: int) -> bool:
    return bool(
        _in_main_table(found) and found["dst_len"] == 32 and found.get("dst") == gateway
        and found.get("oif") == index and not found.get("gateway") and found["scope"] == SCOPE_LINK
    )


def _is_route(found: Any, route: Route, index: int) -> bool:
    dst = "" if route.dst.prefixlen == 0 else str(route.dst.network_address)
    return bool(
        _in_main_table(found) and found["dst_len"] == route.dst.prefixlen
        and (found.get("dst") or "") == dst and found.get("oif") == index
        and (route.gw is None or found.get("gateway") == str(route.gw))
    )


def _host_problems(host: Rtnl, index: int, made: Made) -> list[str]:
    name = made.host.name
    found = _link_problems(host, index, f"host interface {name}", HOST_VETH_MAC, made.host_mtu)
    found += _sysctl_problems(name, {a.version for a in made.addresses})
    for address in made.addresses:
        prefix = f"{address}/{host_prefixlen(address.version)}"
        routes = routes_to(host, address)
        ours = [r for r in routes if r.get("oif") == index]
        if not ours:
            elsewhere = ", ".join(_route_target(host, r) for r in routes)
            found.append(f"host route {prefix} dev {name} is missing"
                         + (f" (the node routes it via {elsewhere})" if elsewhere else ""))
        elif address.version == 4 and ours[0]["scope"] != SCOPE_LINK:
            found.append(f"host route {prefix} dev {name} has scope {ours[0]['scope']}, "
                         f"expected link ({SCOPE_LINK})")
    return found


def _route_target(host: Rtnl, route: Any) -> str:
    oif = route.get("oif")
    if not oif:
        return f"a route of type {route['type']}"
    facts = link_facts(host, int(oif))
    return facts.name if facts is not None else f"ifindex {oif}"


def _link_problems(handle: Rtnl, index: int, what: str, mac: str, mtu: int) -> list[str]:
    found = []
    attrs = netlink.link_attrs(handle, index)
    if mac and str(attrs["address"]).lower() != mac.lower():
        found.append(f"{what} has MAC {attrs['address']}, expected {mac}")
    if not attrs["up"]:
        found.append(f"{what} is down")
    if attrs["mtu"] != mtu:
        found.append(f"{what} has MTU {attrs['mtu']}, expected {mtu}")
    return found


def _sysctl_problems(name: str, versions: set[int]) -> list[str]:
    wanted = sysctl.host_settings(4 in versions, 6 in versions)
    found = []
    for proto, kind, key, want in wanted:
        dotted = f"net.{proto}.{kind}.{name}.{key}"
        try:
            value = sysctl.read(proto, kind, name, key)
        except OSError as err:
            found.append(f"host interface {name}: cannot read {dotted}: {err.strerror or err}")
            continue
        if value != want:
            found.append(f"host interface {name} has {dotted}={value}, expected {want}")
    return found


def _pairing_problems(host: Rtnl, host_index: int, pod: Rtnl, pod_index: int, made: Made) -> list[str]:
    """The two ends must be one veth pair: each names the other, in the other's netns."""
    host_end, pod_end = link_facts(host, host_index), link_facts(pod, pod_index)
    if host_end is None or pod_end is None:
        return []  # gone meanwhile: the next CHECK names it
    if made.owner and host_end.alias.startswith(OWNER_MARK) and host_end.alias != made.owner:
        # Unmarked is an older version's pair: the peers below tell whether it is the pod's.
        return [f"host interface {host_end.name} belongs to another attachment "
                f"(its alias is {host_end.alias!r})"]
    host_what, pod_what = f"host interface {host_end.name}", f"pod interface {pod_end.name}"
    found = [f"{what} is a {facts.kind or 'device of no kind'}, expected a veth"
             for what, facts in ((host_what, host_end), (pod_what, pod_end)) if facts.kind != "veth"]
    if found:
        return found
    # Read after the links: reporting a peer elsewhere gives that netns an id.
    pod_ns_id, host_ns_id = netnsid_of(host, made.netns_path), netnsid_of(pod, OWN_NETNS)
    if pod_ns_id is None or (host_end.peer_index, host_end.peer_netnsid) != (pod_index, pod_ns_id):
        found.append(f"{host_what} is not peered with {pod_end.name} in {made.pod.sandbox}: "
                     f"its peer is {_peer(host_end, pod_ns_id, 'the pod netns')}")
    if host_ns_id is None or (pod_end.peer_index, pod_end.peer_netnsid) != (host_index, host_ns_id):
        found.append(f"{pod_what} is not peered with {host_end.name} on the node: "
                     f"its peer is {_peer(pod_end, host_ns_id, 'the node netns')}")
    return found


def _peer(facts: LinkFacts, other_id: int | None, other: str) -> str:
    if facts.peer_index is None:
        return "unknown"
    if facts.peer_netnsid is None:
        return f"ifindex {facts.peer_index} in its own netns"
    where = other if facts.peer_netnsid == other_id else f"netns id {facts.peer_netnsid}"
    return f"ifindex {facts.peer_index} in {where}"


def describe(values: Sequence[Any]) -> str:
    return "; ".join(str(v) for v in values)
