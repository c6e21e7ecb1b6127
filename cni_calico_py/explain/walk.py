"""Follow one packet from a pod of this node to a destination pod, asking the kernel at each hop.

The hops: the source pod's own route lookup; the host end of its veth (up,
proxy ARP for 169.254.1.1); the node's lookup for the destination as if the
packet came in on that veth; then, by what that lookup chose, the local
pod's veth, the underlay next hop and its BGP session, or the tunnel (VXLAN:
the VTEP's neighbour and FDB entries, the outer header; IPIP: the outer
header), with the MTU checked against the pod's. What happens on the node
that owns the destination's block is not visible here: it is shown as the
expected hop, with that node named from the datastore. The first hop whose
state is wrong carries the reason.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, ip_address
from typing import Any

from ipam.api import Holder, NetworkView, network_view
from ipam.conflist import load_network

from ..core import repairs
from ..core.constants import DEFAULT_VETH_PREFIX
from ..dataplane.netns import NetnsNotFound, NetnsRefused
from .cluster_view import SINGLE_NODE, ClusterView
from .cluster_view import read as read_cluster
from .kernel import Kernel, Link, Route, sysctl
from .repaired import note

POD_GATEWAY = "169.254.1.1"


class ExplainError(Exception):
    """The question cannot be answered here (not a pod of this node, a bad address)."""


@dataclass(frozen=True)
class Hop:
    where: str
    what: str
    problem: str | None = None
    # Not visible from this node: what the owner of the destination must do.
    expected: bool = False


@dataclass
class Explanation:
    src: str
    dst: str
    node: str
    mode: str
    hops: list[Hop] = field(default_factory=list)

    @property
    def broken(self) -> list[tuple[int, Hop]]:
        return [(n, hop) for n, hop in enumerate(self.hops, 1) if hop.problem]

    def to_json(self) -> dict[str, Any]:
        return {
            "src": self.src, "dst": self.dst, "node": self.node, "mode": self.mode,
            "ok": not self.broken,
            "hops": [{"hop": n, "where": h.where, "what": h.what, "expected": h.expected,
                      "problem": h.problem} for n, h in enumerate(self.hops, 1)],
        }


def explain(src: str, dst: str, conflist: str, node_config: str) -> Explanation:
    cluster = read_cluster(node_config)
    pods = network_view(conflist)
    src_ip, dst_ip = _address(src, "SRC", pods), _address(dst, "DST", pods)
    holder = pods.holders.get(src_ip)
    if holder is None:
        owner = cluster.owner_of(src_ip)
        hint = (f"node {owner[1]} owns its block {owner[0]}: run explain there" if owner
                else "no node of this cluster owns its block" if cluster.mode != SINGLE_NODE
                else f"this node's block is {', '.join(map(str, pods.blocks))}")
        raise ExplainError(f"{src} is not a pod of this node ({hint})")
    prefix = load_network(conflist).get("veth_prefix") or DEFAULT_VETH_PREFIX
    walk = _Walk(src_ip, dst_ip, cluster, pods, holder, str(prefix))
    with Kernel() as node:
        walk.run(node)
    return walk.result


def _address(text: str, what: str, pods: NetworkView) -> IPv4Address:
    """A pod's address, given as such or as `<namespace>/<name>` of a pod of this node."""
    if "/" in text:
        found = [a for a, h in pods.holders.items() if h.pod == text and isinstance(a, IPv4Address)]
        if not found:
            raise ExplainError(f"{what}: no pod named {text} holds an address on this node "
                               "(a pod of another node: give its IP)")
        return min(found)
    try:
        address = ip_address(text)
    except ValueError:
        raise ExplainError(f"{what} must be a pod's IPv4 address or its <namespace>/<name>, "
                           f"got {text!r}") from None
    if not isinstance(address, IPv4Address):
        raise ExplainError(f"{what}: only IPv4 is explained, got {text}")
    return address


class _Walk:
    def __init__(self, src: IPv4Address, dst: IPv4Address, cluster: ClusterView,
                 pods: NetworkView, holder: Holder, veth_prefix: str) -> None:
        self.src, self.dst = src, dst
        self.veth_prefix = veth_prefix
        self.cluster = cluster
        self.pods = pods
        self.holder = holder
        self.here = cluster.nodename or socket.gethostname()
        self.result = Explanation(str(src), str(dst), self.here, cluster.mode)
        self.pod_mtu: int | None = None
        # The host end's ifindex, as the pod's end of the veth names it.
        self.peer_index: int | None = None
        self._repairs: list[repairs.Repair] | None = None

    def repaired(self, key: str) -> str:
        """What the node's repairs last put back of `key` (a route's destination, a device)."""
        if self._repairs is None:
            self._repairs = repairs.recent()
        return note(key, self._repairs, time.time())

    def hop(self, where: str, what: str, problem: str | None = None,
            expected: bool = False) -> None:
        self.result.hops.append(Hop(where, what, problem, expected))

    def run(self, node: Kernel) -> None:
        self.source_pod()
        veth = self.host_veth(node)
        route = self.node_lookup(node, veth)
        if route is not None:
            self.onward(node, route)
        self.own_block(node)

    # -- on the source pod and its veth
    def source_pod(self) -> None:
        where = f"pod {self.src}"
        try:
            with Kernel(self.holder.netns) as pod:
                route = pod.lookup(str(self.dst))
                link = pod.link(self.holder.ifname)
        except (OSError, NetnsNotFound, NetnsRefused) as err:
            reason = "it is gone" if isinstance(err, NetnsNotFound) else str(err)
            self.hop(where, f"netns {self.holder.netns}",
                     f"cannot enter the pod's network namespace: {reason}")
            return
        if link is None:
            self.hop(where, f"netns {self.holder.netns}", f"the pod has no {self.holder.ifname}")
            return
        self.pod_mtu = link.mtu
        self.peer_index = link.peer_index
        state = f"{link.name} {'up' if link.up else 'DOWN'}, mtu {link.mtu}"
        if route is None:
            self.hop(where, state, f"the pod has no route to {self.dst}")
            return
        problem = None
        if not link.up:
            problem = f"the pod's {link.name} is down"
        elif route.gateway != POD_GATEWAY or route.dev != self.holder.ifname:
            problem = (f"the pod's lookup does not go via {POD_GATEWAY} dev {self.holder.ifname}, "
                       "as the plugin set it up")
        self.hop(where, f"route {route.text()} ({state})", problem)

    def host_veth(self, node: Kernel) -> Link | None:
        where = f"node {self.here}"
        back = node.lookup(str(self.src))
        routed = back is not None and (back.dev or "").startswith(self.veth_prefix)
        # The pod's end names its peer; a veth that is down has lost its routes.
        veth = node.link(self.peer_index) if self.peer_index else None
        if veth is None and routed and back is not None:
            veth = node.link(back.dev or "")
        if veth is None:
            self.hop(where, f"route back to the pod: {back.text() if back else 'unreachable'}",
                     "the pod's veth has no host end on this node")
            return None
        proxy_arp = sysctl(veth.name, "proxy_arp")
        what = (f"in on {veth.name} ({'up' if veth.up else 'DOWN'}, mtu {veth.mtu}, "
                f"proxy_arp {proxy_arp}){self.repaired(veth.name)}; route back: "
                f"{back.text() if back else 'unreachable'}{self.repaired(f'{self.src}/32')}")
        problem = None
        if not veth.up:
            problem = f"the pod's host veth {veth.name} is down (and its routes are gone with it)"
        elif not routed or back is None or back.dev != veth.name:
            problem = (f"the node has no route {self.src} dev {veth.name} scope link: replies "
                       "cannot reach the pod")
        elif proxy_arp != "1":
            problem = (f"proxy_arp is off on {veth.name}: nothing answers the pod's ARP for "
                       f"{POD_GATEWAY}")
        elif self.pod_mtu is not None and veth.mtu != self.pod_mtu:
            problem = f"MTU mismatch: the pod's end has {self.pod_mtu}, {veth.name} has {veth.mtu}"
        self.hop(where, what, problem)
        return veth

    def node_lookup(self, node: Kernel, veth: Link | None) -> Route | None:
        where = f"node {self.here}"
        route = None
        if veth is not None and veth.up:
            route = node.lookup(str(self.dst), src=str(self.src), iif=veth.index)
        if route is None:
            # A packet coming in that would be dropped (a blackhole) makes the input
            # lookup fail; the output lookup then names the route that drops it.
            route = node.lookup(str(self.dst))
        owner = self.cluster.owner_of(self.dst)
        block = self.block_of_dst(owner)
        if route is None:
            self.hop(where, f"no route for {self.dst}"
                     + (self.repaired(str(block)) if block is not None else ""),
                     self.no_route(owner, "unreachable"))
            return None
        what = f"route {route.text()} (the node's lookup for {self.dst}"
        what += f" from {veth.name})" if veth is not None else ")"
        if route.type == "blackhole":
            holder = self.pods.holders.get(self.dst)
            veth = self.host_end(node, holder) if holder else None
            if holder is None:
                problem = f"no pod holds {self.dst}: the blackhole for {route.dst} drops it"
            elif veth is not None and not veth.up:
                problem = (f"the destination pod's host veth {veth.name} is down (and its route "
                           f"with it): the blackhole for {route.dst} drops the packet")
            else:
                problem = (f"{self.dst} is held by a pod of this node, yet the node has no route "
                           f"{self.dst} dev {self.veth_prefix}...: the blackhole drops it")
            self.hop(where, what, problem)
            return None
        if route.type != "unicast":
            self.hop(where, what, f"the {route.type} route {route.dst} drops it")
            return None
        if (route.dev or "").startswith(self.veth_prefix):
            return route
        # The route to the destination's block, as the node daemon programs it (or BIRD).
        what += self.repaired(str(block) if block is not None else route.dst)
        if block is not None and not _covers_block(route, block):
            self.hop(where, what, self.no_route(owner, route.text()))
            return None
        self.hop(where, what)
        return route

    def host_end(self, node: Kernel, holder: Holder) -> Link | None:
        """The node's end of a pod's veth, as the pod's end names its peer."""
        try:
            with Kernel(holder.netns) as pod:
                link = pod.link(holder.ifname)
        except (OSError, NetnsNotFound, NetnsRefused):
            return None
        return node.link(link.peer_index) if link is not None and link.peer_index else None

    def block_of_dst(self, owner: tuple[IPv4Network, str] | None) -> IPv4Network | None:
        if owner is not None:
            return owner[0]
        return next((b for b in self.pods.blocks
                     if isinstance(b, IPv4Network) and self.dst in b), None)

    def no_route(self, owner: tuple[IPv4Network, str] | None, fell_to: str) -> str:
        own = next((b for b in self.pods.blocks if self.dst in b), None)
        if own is not None:
            return (f"{self.dst} is in this node's block {own}, but the node has no route for "
                    f"it; the lookup ends at: {fell_to}")
        if owner is None:
            if self.cluster.datastore_error:
                return (f"the datastore could not be read ({self.cluster.datastore_error}), so "
                        f"the node owning {self.dst} is unknown; the lookup ends at: {fell_to}")
            if self.cluster.mode == SINGLE_NODE:
                return (f"{self.dst} is outside this node's block and, in single-node mode, "
                        f"no node is known for it; the lookup ends at: {fell_to}")
            return f"no node owns a block holding {self.dst}; the lookup ends at: {fell_to}"
        block, name = owner
        ip = self.cluster.nodes.get(name, "?")
        reason = f"no route for {block} (owned by node {name} at {ip}); the lookup ends at: {fell_to}"
        if self.cluster.bgp:
            if self.cluster.sessions is None:
                reason += "; BIRD is not running on this node, so nothing is learned from peers"
            elif (state := self.cluster.sessions.get(ip)) is not None and state != "Established":
                reason += f"; the BGP session to {ip} ({name}) is {state}, not Established"
        if name not in self.cluster.alive and self.cluster.alive:
            reason += f"; node {name} is down (its lease ran out)"
        return reason

    # -- after the node's lookup
    def onward(self, node: Kernel, route: Route) -> None:
        if (route.dev or "").startswith(self.veth_prefix):
            self.local_pod(node, route)
            return
        tunnel = self.cluster.tunnel_device
        if route.dev is not None and route.dev == tunnel and tunnel.startswith("vxlan"):
            self.vxlan(node, route)
        elif route.dev is not None and route.dev == tunnel:
            self.ipip(node, route)
        else:
            self.underlay(route)
        self.remote()

    def local_pod(self, node: Kernel, route: Route) -> None:
        where = f"node {self.here}"
        veth = node.link(route.dev or "")
        if veth is None:
            self.hop(where, route.text(), f"{route.dev} is gone")
            return
        held = self.dst in self.pods.holders
        what = (f"route {route.text()}: out on {veth.name} ({'up' if veth.up else 'DOWN'}, "
                f"mtu {veth.mtu}) to the pod {self.dst} on this node")
        problem = None
        if not held:
            problem = f"no pod of this node holds {self.dst}, yet the node routes it to {veth.name}"
        elif not veth.up:
            problem = f"the destination pod's host veth {veth.name} is down"
        self.hop(where, what, problem)

    def underlay(self, route: Route) -> None:
        where = f"node {self.here}"
        peer = route.gateway or ""
        name = self.cluster.node_at(peer)
        what = f"to node {name or '?'} at {peer} over {route.dev}, not encapsulated"
        problem = None
        if self.cluster.bgp:
            sessions = self.cluster.sessions
            if sessions is None:
                problem = "BIRD is not running on this node: the route is left from before"
            else:
                state = sessions.get(peer)
                if state is not None:
                    what += f"; BGP session with {peer}: {state}"
                    if state != "Established":
                        problem = f"the BGP session to {peer} ({name or '?'}) is {state}, not Established"
                elif not any(s == "Established" for s in sessions.values()):
                    problem = "no BGP session of this node is Established"
                else:
                    what += "; learned through a route reflector"
        self.hop(where, what, problem)

    def tunnel(self, node: Kernel, route: Route, kind: str) -> Link | None:
        """The tunnel device the route goes out of; a broken hop when it is gone."""
        device = node.link(route.dev or "")
        if device is None:
            self.hop(f"node {self.here}", f"{route.dev}{self.repaired(route.dev or '')}",
                     f"the {kind} device {route.dev} is gone")
        return device

    def vxlan(self, node: Kernel, route: Route) -> None:
        where = f"node {self.here}"
        device = self.tunnel(node, route, "VXLAN")
        if device is None:
            return
        vtep = route.gateway or ""
        mac = node.neighbour(vtep, device.index)
        outer_dst = node.fdb(mac, device.index) if mac else None
        local = device.vxlan_local or self.cluster.nodes.get(self.here, "?")
        port = device.vxlan_port or 4789
        what = (f"{device.name} ({'up' if device.up else 'DOWN'}, mtu {device.mtu}): VTEP {vtep} "
                f"is {mac or '?'} (neighbour), FDB {mac or '?'} dst {outer_dst or '?'}; "
                f"outer {local} -> {outer_dst or '?'} UDP {port}") + self.repaired(device.name)
        owner = self.cluster.owner_of(self.dst)
        owner_ip = self.cluster.nodes.get(owner[1]) if owner else None
        problem = None
        if not device.up:
            problem = f"{device.name} is down"
        elif mac is None:
            problem = f"no neighbour entry for the VTEP {vtep} on {device.name}"
        elif outer_dst is None:
            problem = f"no FDB entry for {mac} on {device.name}: the outer destination is unknown"
        elif owner_ip and outer_dst != owner_ip:
            problem = (f"the FDB sends {mac} to {outer_dst}, but the block's owner "
                       f"{owner[1] if owner else '?'} is at {owner_ip}")
        else:
            problem = self.mtu_problem(device)
        self.hop(where, what, problem)

    def ipip(self, node: Kernel, route: Route) -> None:
        where = f"node {self.here}"
        device = self.tunnel(node, route, "IPIP")
        if device is None:
            return
        local = self.cluster.nodes.get(self.here, "?")
        what = (f"{device.name} ({'up' if device.up else 'DOWN'}, mtu {device.mtu}): "
                f"outer {local} -> {route.gateway} IPIP") + self.repaired(device.name)
        problem = f"{device.name} is down" if not device.up else self.mtu_problem(device)
        self.hop(where, what, problem)

    def mtu_problem(self, tunnel: Link) -> str | None:
        if self.pod_mtu is not None and self.pod_mtu > tunnel.mtu:
            return (f"MTU mismatch: the pod's {self.holder.ifname} has {self.pod_mtu}, "
                    f"{tunnel.name} only {tunnel.mtu}: larger packets are dropped")
        return None

    def remote(self) -> None:
        owner = self.cluster.owner_of(self.dst)
        if owner is None:
            if self.cluster.datastore_error:
                self.hop("datastore", f"could not be read ({self.cluster.datastore_error}): "
                                      f"the node owning {self.dst} is unknown")
            return
        block, name = owner
        ip = self.cluster.nodes.get(name, "?")
        where = f"node {name} (expected)"
        problem = None
        if self.cluster.alive and name not in self.cluster.alive:
            problem = f"node {name} is down: its lease ran out"
        self.hop(where, f"owns {block} (datastore); delivers by its route {self.dst} dev "
                        f"{self.veth_prefix}... scope link (run explain on {name} at {ip} to see it)",
                 problem, expected=True)
        src_block = next((b for b in self.pods.blocks if self.src in b), None)
        self.hop(where, f"the reply to {self.src} follows its route for {src_block}, "
                        f"which this node announces", expected=True)

    def own_block(self, node: Kernel) -> None:
        """This node's block must have its blackhole: BGP announces the block through it."""
        src_block = next((b for b in self.pods.blocks if self.src in b), None)
        if src_block is None:
            return
        blackholes = {r.dst: r for r in node.routes("blackhole")}
        found = blackholes.get(str(src_block))
        where = f"node {self.here}"
        if found is not None:
            what = f"own block: {found.text()}{self.repaired(str(src_block))}"
            if self.cluster.bgp:
                what += " (exported to the peers by BIRD)"
            self.hop(where, what)
            return
        problem = f"no blackhole route for this node's block {src_block}"
        if self.cluster.bgp:
            problem += ": BIRD has nothing to announce, so other nodes have no route back"
        self.hop(where, "own block", problem)


def _covers_block(route: Route, block: IPv4Network) -> bool:
    """Whether the matched route is for the block itself or something inside it."""
    if route.dst == "default":
        return False
    network = IPv4Network(route.dst if "/" in route.dst else f"{route.dst}/32", strict=False)
    return network.subnet_of(block)
