"""What the cluster says, for one explanation: the datastore's nodes and block owners, BIRD's sessions.

Read once, from the node config the node daemon runs with. Without that
file the node runs alone on the block in its conflist (single-node mode).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, ip_address

from ..cluster.config import ClusterConfig, load
from ..cluster.peers import IPIP_DEVICE, VXLAN_DEVICE, uses_bird
from ..datastore.errors import DatastoreError
from ..datastore.registry import read_cluster
from ..datastore.settings import open_backend

SINGLE_NODE = "single node"


@dataclass
class ClusterView:
    mode: str  # SINGLE_NODE, or the encapsulation: Off (BGP), VXLAN, VXLANCrossSubnet, IPIP...
    nodename: str = ""
    nodes: dict[str, str] = field(default_factory=dict)  # name -> IP, without a prefix length
    owners: dict[IPv4Network, str] = field(default_factory=dict)
    alive: set[str] = field(default_factory=set)
    # BGP modes: peer IP -> session state; None when BIRD is not running.
    sessions: dict[str, str] | None = None
    tunnel_device: str | None = None
    datastore_error: str | None = None

    @property
    def bgp(self) -> bool:
        return uses_bird(self.mode)

    def owner_of(self, address: IPv4Address) -> tuple[IPv4Network, str] | None:
        return next(((b, n) for b, n in self.owners.items() if address in b), None)

    def node_at(self, address: str) -> str | None:
        return next((name for name, ip in self.nodes.items() if ip == address), None)


def read(config_path: str) -> ClusterView:
    if not os.path.exists(config_path):
        return ClusterView(mode=SINGLE_NODE)
    conf = load(config_path)
    view = ClusterView(mode=conf.routing_mode, nodename=conf.nodename,
                       tunnel_device=_tunnel_device(conf))
    try:
        cluster = read_cluster(open_backend(conf.datastore_settings))
        view.owners = cluster.owners()
        view.nodes = {n.name: n.ip.split("/")[0] for n in cluster.node_list()}
        view.alive = cluster.alive()
    except DatastoreError as err:
        view.datastore_error = str(err)
    if view.bgp:
        view.sessions = _sessions(conf)
    return view


def _tunnel_device(conf: ClusterConfig) -> str | None:
    if conf.encapsulation.startswith("VXLAN"):
        return VXLAN_DEVICE
    if conf.encapsulation.startswith("IPIP"):
        return IPIP_DEVICE
    return None


def _sessions(conf: ClusterConfig) -> dict[str, str] | None:
    from ..cluster.bird import Bird

    bird = Bird(conf.bird_dir)
    if not bird.running():
        return None
    return {peer: state for peer, state in bird.peer_states().items() if _is_address(peer)}


def _is_address(text: str) -> bool:
    try:
        ip_address(text)
    except ValueError:
        return False
    return True
