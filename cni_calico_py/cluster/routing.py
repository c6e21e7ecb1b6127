"""The node's side of routing between nodes, kept in line with what the daemon knows.

VXLAN modes: the tunnel device, its neigh and fdb entries and the routes
(overlay.py). BGP modes (Off, IPIP, IPIPCrossSubnet): BIRD's config
(bird_config.py), holding the node's blocks as blackholes and its peers.

A change of what the daemon knows is applied as the difference from the last
one: a node joining costs one route, one neigh and one fdb entry on every
other node, or one BIRD reconfiguration. `force` (the periodic resync) and
`repair` (something deleted or changed what the daemon programs) compare the
kernel with the plan and write only what is missing or wrong; in BGP modes
they compare the kernel with what BIRD exports to it, and ask BIRD to write
it again when they differ. What they put right is a repair (repair.py).
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Callable, Mapping, Sequence
from ipaddress import IPv4Network

from ..core import files
from ..core.logs import log
from ..datastore.model import NodeRecord
from . import bird, bird_config, peers
from .config import ClusterConfig
from .overlay import Overlay
from .peers import VXLAN_DEVICE, Plan
from .repair import Fix, bird_drift, report

# A BIRD started this recently may not have written its routes to the kernel yet: its
# routes are compared with the kernel once this has passed.
BIRD_SETTLE_SECONDS = 1.0


class Routing:
    def __init__(self, conf: ClusterConfig) -> None:
        self.conf = conf
        self.mode = conf.routing_mode
        self.bird = bird.Bird(conf.bird_dir)
        self._overlay: Overlay | None = None
        self._uplink: tuple[str, str, int] | None = None  # node IP, uplink name, MTU
        self._devices: tuple[str, str, ipaddress.IPv4Address | None, int] | None = None
        self._plan: Plan | None = None
        self._bird_text: str | None = None
        # Called for every repair, after it was logged and journaled (the daemon counts them).
        self.on_repair: Callable[[Fix], None] | None = None
        # When `repair` should run again (monotonic): BIRD was too new to compare with.
        self.recheck_at = float("inf")

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
            self._forget()
            raise

    def repair(self) -> list[Fix]:
        """Put back what the last plan has and the kernel lacks, or holds otherwise."""
        if self._devices is None or self._plan is None:
            return []  # nothing applied yet: the next sync applies it whole
        try:
            node_ip, mac, tunnel, mtu = self._devices
            fixes = self._devices_fixes(ipaddress.IPv4Interface(node_ip), mac, tunnel, mtu)
            fixes += self._plan_fixes(self._plan)
            if peers.uses_bird(self.mode):
                fixes += self._bird_fixes()
        except Exception:
            self._forget()
            raise
        self._report(fixes, drift=True)
        return fixes

    def _forget(self) -> None:
        # Whatever was half done is redone whole on the next call.
        self._devices = self._plan = self._bird_text = self._uplink = None
        self.close()

    def _overlay_(self) -> Overlay:
        if self._overlay is None:
            self._overlay = Overlay()
        return self._overlay

    def _apply(self, me: NodeRecord, nodes: Sequence[NodeRecord],
               owners: Mapping[IPv4Network, str], force: bool) -> int:
        overlay = self._overlay_()
        node_ip = ipaddress.IPv4Interface(me.ip)
        if force or self._uplink is None or self._uplink[0] != me.ip:
            self._uplink = (me.ip, *overlay.uplink(node_ip))
        _, uplink, uplink_mtu = self._uplink
        mtu = uplink_mtu - peers.encapsulation_overhead(self.mode)
        tunnel = ipaddress.IPv4Address(me.tunnel_address) if me.tunnel_address else None
        devices = (me.ip, me.vtep_mac, tunnel, mtu)
        if force or devices != self._devices:
            fixes = self._devices_fixes(node_ip, me.vtep_mac, tunnel, mtu)
            if not peers.uses_vxlan(self.mode):
                overlay.remove_device(VXLAN_DEVICE)
            if peers.uses_bird(self.mode):
                overlay.remove_blackholes(self.conf.pool)
            # The same devices as before found otherwise: something changed them.
            self._report(fixes, drift=devices == self._devices)
            if devices != self._devices:
                self._devices, self._plan = devices, None
        plan = peers.plan(self.mode, me, uplink, nodes, owners)
        previous = self._plan
        if previous is not None and plan != previous:
            overlay.sync_vxlan_peers(plan.vxlan_peers, previous.vxlan_peers)
            overlay.sync_routes(plan.routes, self.conf.pool, previous.routes)
        if previous is None or force:
            self._report(self._plan_fixes(plan), drift=previous is not None)
        if plan != previous:
            for reason in plan.skipped:
                log.info("not routing to %s", reason)
        self._plan = plan
        if peers.uses_bird(self.mode):
            self._bird(me, nodes, owners, force)
        elif force and self.bird.running():
            self.bird.stop()
        write_if_changed(self.conf.mtu_file, f"{mtu}\n")
        return mtu

    def _devices_fixes(self, node_ip: ipaddress.IPv4Interface, mac: str,
                       tunnel: ipaddress.IPv4Address | None, mtu: int) -> list[Fix]:
        overlay = self._overlay_()
        fixes = []
        if peers.uses_vxlan(self.mode) and tunnel is not None:
            fixes += overlay.ensure_vxlan(node_ip, mac, tunnel, mtu)
        if peers.uses_ipip(self.mode) and tunnel is not None:
            fixes += overlay.ensure_ipip(tunnel, mtu)
        return fixes

    def _plan_fixes(self, plan: Plan) -> list[Fix]:
        """The whole plan against the kernel: what was missing, wrong or stale, now put right."""
        overlay = self._overlay_()
        return (overlay.sync_vxlan_peers(plan.vxlan_peers)
                + overlay.sync_routes(plan.routes, self.conf.pool))

    def _bird(self, me: NodeRecord, nodes: Sequence[NodeRecord],
              owners: Mapping[IPv4Network, str], force: bool) -> None:
        mine = [b for b, owner in owners.items() if owner == me.name and b.subnet_of(self.conf.pool)]
        text = bird_config.render(me, nodes, self.conf.pool, self.conf.as_number,
                                  os.path.join(self.conf.bird_dir, "bird.log"), mine, self.mode)
        if not force and text == self._bird_text:
            return
        unchanged = text == self._bird_text
        outcome = self.bird.apply(text)
        self._bird_text = text
        if outcome != "unchanged":
            log.info("BIRD %s: %d peer(s), blocks %s", outcome,
                     len(bird_config.peers_of(me, nodes)), ", ".join(map(str, sorted(mine))) or "none")
        elif unchanged:
            # The resync: BIRD runs the config it ran, so its routes should be in the kernel.
            self._report(self._bird_fixes(), drift=True)

    def _bird_fixes(self) -> list[Fix]:
        """BIRD's kernel routes against the kernel; BIRD writes them again when they differ."""
        started = self.bird.started_at
        if self._bird_text is None or not self.bird.running():
            return []
        if started is not None and time.monotonic() < started + BIRD_SETTLE_SECONDS:
            self.recheck_at = started + BIRD_SETTLE_SECONDS
            return []
        exported = self.bird.exported()
        if exported is None:
            log.warning("cannot compare the kernel with BIRD's routes: BIRD did not answer")
            return []
        fixes = bird_drift(exported, self._overlay_().bird_routes(self.conf.pool), self.conf.pool,
                           bird.KERNEL_PROTOCOL)
        if fixes:
            self.bird.rewrite_kernel()
        return fixes

    def _report(self, fixes: list[Fix], drift: bool) -> None:
        """Repairs when the plan had been applied before (drift); else the plan being applied."""
        for fix in fixes:
            if not drift:
                log.debug("%s %s: %s; %s", fix.what, fix.key, fix.found, fix.done)
                continue
            report(fix)
            if self.on_repair is not None:
                self.on_repair(fix)


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
