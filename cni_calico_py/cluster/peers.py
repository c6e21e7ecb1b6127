"""What the routes to other nodes' blocks should be, per encapsulation mode (pure).

- Off, IPIP, IPIPCrossSubnet: nothing here; BIRD learns and installs the
  routes (`proto bird`; bird_config.py), through tunl0 in the IPIP modes.
- VXLAN: `<block> via <peer VTEP address> dev vxlan.calico onlink`, plus the
  peer's permanent neigh and fdb entries on vxlan.calico.
- VXLANCrossSubnet: peers in the node's own subnet get a plain
  `<block> via <peer node IP> dev <uplink>`; the rest are encapsulated.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network

from ipam.node_state import BIRD_MODES

from ..datastore.model import NodeRecord

VXLAN_DEVICE = "vxlan.calico"
IPIP_DEVICE = "tunl0"
# The routing mode of the networking backend `none` (Calico's CALICO_NETWORKING_BACKEND=none):
# the underlay routes the pool, so no tunnel, no BIRD and no routes to other nodes.
NO_ROUTING = "None"


@dataclass(frozen=True)
class RemoteRoute:
    dst: IPv4Network
    gateway: ipaddress.IPv4Address
    device: str
    onlink: bool

    def line(self) -> str:
        """As `ip route` prints it, without the proto."""
        return f"{self.dst} via {self.gateway} dev {self.device}" + (" onlink" if self.onlink else "")


@dataclass(frozen=True)
class VxlanPeer:
    """One remote VTEP: the three permanent entries VXLAN needs towards it."""

    tunnel_address: ipaddress.IPv4Address
    vtep_mac: str
    node_ip: ipaddress.IPv4Address


@dataclass(frozen=True)
class Plan:
    routes: tuple[RemoteRoute, ...]
    vxlan_peers: tuple[VxlanPeer, ...]
    # Peers left out, with why (e.g. a VXLAN peer without a VTEP address yet).
    skipped: tuple[str, ...] = ()


def plan(
    mode: str, me: NodeRecord, uplink: str, nodes: Iterable[NodeRecord],
    owners: Mapping[IPv4Network, str],
) -> Plan:
    if uses_bird(mode) or mode == NO_ROUTING:
        return Plan((), ())
    my_subnet = ipaddress.IPv4Interface(me.ip).network
    routes: list[RemoteRoute] = []
    vteps: list[VxlanPeer] = []
    skipped: list[str] = []
    for peer in sorted(nodes, key=lambda n: n.name):
        if peer.name == me.name:
            continue
        blocks = sorted(b for b, owner in owners.items() if owner == peer.name)
        peer_ip = ipaddress.IPv4Interface(peer.ip).ip
        if mode.endswith("CrossSubnet") and peer_ip in my_subnet:
            routes += [RemoteRoute(b, peer_ip, uplink, False) for b in blocks]
        elif peer.tunnel_address is None:
            skipped.append(f"{peer.name}: no VXLAN tunnel address registered yet")
        else:
            vtep = ipaddress.IPv4Address(peer.tunnel_address)
            vteps.append(VxlanPeer(vtep, peer.vtep_mac, peer_ip))
            routes += [RemoteRoute(b, vtep, VXLAN_DEVICE, True) for b in blocks]
    return Plan(tuple(routes), tuple(vteps), tuple(skipped))


def uses_vxlan(mode: str) -> bool:
    return mode.startswith("VXLAN")


def uses_bird(mode: str) -> bool:
    """BIRD routes between nodes (and holds the node's blackholes) in these modes."""
    return mode in BIRD_MODES


def uses_ipip(mode: str) -> bool:
    return mode.startswith("IPIP")


def encapsulation_overhead(mode: str) -> int:
    """Bytes the tunnel header takes from the pod MTU: outer IPv4+UDP+VXLAN, or outer IPv4."""
    return 50 if uses_vxlan(mode) else 20 if uses_ipip(mode) else 0


def tunnel_address(blocks: Sequence[IPv4Network]) -> ipaddress.IPv4Address | None:
    """The VTEP (or tunl0) address: the first address of the node's first block."""
    return blocks[0].network_address if blocks else None
