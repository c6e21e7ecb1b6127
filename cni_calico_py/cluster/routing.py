"""The node's side of routing between nodes, kept in line with what the daemon knows.

VXLAN modes: the tunnel device, its neigh and fdb entries and the routes
(overlay.py). BGP modes (Off, IPIP, IPIPCrossSubnet): BIRD's config
(bird_config.py), holding the node's blocks as blackholes and its peers.

Each call applies only what changed since the last one: a node joining costs
one route, one neigh and one fdb entry on every other node, or one BIRD
reconfiguration. `force` (the periodic resync) applies everything again.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping, Sequence
from ipaddress import IPv4Network

from ..core import files
from ..core.logs import log
from . import bird, bird_config, peers
from .config import ClusterConfig
from .datastore import NodeRecord
from .overlay import Overlay
from .peers import VXLAN_DEVICE, Plan


class Routing:
    def __init__(self, conf: ClusterConfig) -> None:
        self.conf = conf
        self.mode = conf.routing_mode
        self.bird = bird.Bird(conf.bird_dir)
        self._overlay: Overlay | None = None
        self._uplink: tuple[str, str, int] | None = None  # node IP, uplink name, MTU
        self._devices: tuple[object, ...] | None = None
        self._plan: Plan | None = None
        self._bird_text: str | None = None

    def close(self) -> None:
        if self._overlay is not None:
            self._overlay.close()
            self._overlay = None

    def apply(self, me: NodeRecord, nodes: Sequence[NodeRecord], owners: Mapping[IPv4Network, str],
              force: bool) -> int:
        """Bring devices, routes and BIRD in line; returns the pod MTU."""
        try:
            return self._apply(me, nodes, owners, force)
        except Exception:
            # Whatever was half done is redone whole on the next call.
            self._devices = self._plan = self._bird_text = self._uplink = None
            self.close()
            raise

    def _apply(self, me: NodeRecord, nodes: Sequence[NodeRecord],
               owners: Mapping[IPv4Network, str], force: bool) -> int:
        if self._overlay is None:
            self._overlay = Overlay()
        overlay = self._overlay
        node_ip = ipaddress.IPv4Interface(me.ip)
        if force or self._uplink is None or self._uplink[0] != me.ip:
            self._uplink = (me.ip, *overlay.uplink(node_ip))
        _, uplink, uplink_mtu = self._uplink
        mtu = uplink_mtu - peers.encapsulation_overhead(self.mode)
        tunnel = ipaddress.IPv4Address(me.tunnel_address) if me.tunnel_address else None
        devices = (me.ip, me.vtep_mac, tunnel, mtu)
        if force or devices != self._devices:
            if peers.uses_vxlan(self.mode) and tunnel is not None:
                overlay.ensure_vxlan(node_ip, me.vtep_mac, tunnel, mtu)
            elif not peers.uses_vxlan(self.mode):
                overlay.remove_device(VXLAN_DEVICE)
            if peers.uses_ipip(self.mode) and tunnel is not None:
                overlay.ensure_ipip(tunnel, mtu)
            if peers.uses_bird(self.mode):
                overlay.remove_blackholes(self.conf.pool)
            self._devices, self._plan = devices, None
        plan = peers.plan(self.mode, me, uplink, nodes, owners)
        if plan != self._plan:
            previous = self._plan
            overlay.sync_vxlan_peers(plan.vxlan_peers, previous.vxlan_peers if previous else None)
            overlay.sync_routes(plan.routes, self.conf.pool, previous.routes if previous else None)
            for reason in plan.skipped:
                log.info("not routing to %s", reason)
            self._plan = plan
        if peers.uses_bird(self.mode):
            self._bird(me, nodes, owners, force)
        elif force and self.bird.running():
            self.bird.stop()
        write_if_changed(self.conf.mtu_file, f"{mtu}\n")
        return mtu

    def _bird(self, me: NodeRecord, nodes: Sequence[NodeRecord],
              owners: Mapping[IPv4Network, str], force: bool) -> None:
        mine = [b for b, owner in owners.items() if owner == me.name and b.subnet_of(self.conf.pool)]
        text = bird_config.render(me, nodes, self.conf.pool, self.conf.as_number,
                                  os.path.join(self.conf.bird_dir, "bird.log"), mine, self.mode)
        if not force and text == self._bird_text:
            return
        outcome = self.bird.apply(text)
        self._bird_text = text
        if outcome != "unchanged":
            log.info("BIRD %s: %d peer(s), blocks %s", outcome,
                     len(bird_config.peers_of(me, nodes)), ", ".join(map(str, sorted(mine))) or "none")


def write_if_changed(path: str, text: str) -> None:
    try:
        with open(path, encoding="utf-8") as file:
            if file.read() == text:
                return
    except OSError:
        pass
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    files.replace(path, text)
    log.info("pod MTU %s written to %s", text.strip(), path)
