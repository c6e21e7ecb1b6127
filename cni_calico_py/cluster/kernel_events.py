"""Wakes the node daemon when something removes or changes what it programs (rtnetlink).

One raw NETLINK_ROUTE socket, in a thread of its own, follows the kernel's
notifications and keeps those that may undo the daemon's work:
- RTM_DELROUTE of a main-table IPv4 route inside the pool made by the daemon
  (`proto 98`) or by BIRD (`proto bird`);
- RTM_DELNEIGH on vxlan.calico: its neighbour (AF_INET) and FDB (AF_BRIDGE)
  entries;
- RTM_NEWLINK / RTM_DELLINK of vxlan.calico or tunl0 (deleted, down, MTU or
  MAC changed), and their IPv4 addresses coming or going.
The daemon then compares the kernel with its plan and writes only what is
missing or wrong (routing.py), so its own writes wake it once more at most
and write nothing. Lost notifications (ENOBUFS) count as a change.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from contextlib import suppress
from ipaddress import IPv4Network

from ..core import rtnl_events
from ..core.constants import MAIN_TABLE, ROUTE_PROTO
from ..core.logs import log
from .peers import IPIP_DEVICE, VXLAN_DEVICE

GROUPS = (rtnl_events.LINKS | rtnl_events.NEIGHBOURS | rtnl_events.IPV4_ADDRESSES
          | rtnl_events.IPV4_ROUTES)
BIRD_PROTO = 12
DEVICES = (VXLAN_DEVICE, IPIP_DEVICE)


class Relevance:
    """Which notifications may undo the daemon's work; knows the tunnel devices' indexes."""

    def __init__(self, pool: IPv4Network) -> None:
        self.pool = pool
        self.devices: dict[int, str] = {}

    def learn_devices(self) -> None:
        for name in DEVICES:
            with suppress(OSError):
                self.devices[socket.if_nametoindex(name)] = name

    def __call__(self, data: bytes) -> str | None:
        """What a datagram of notifications says changed, if anything of the daemon's."""
        found = None
        for event in rtnl_events.decode(data):
            what = self.event(event)
            found = found or what
        return found

    def event(self, event: rtnl_events.Event) -> str | None:
        if isinstance(event, rtnl_events.LinkEvent):
            if event.name not in DEVICES:
                return None
            if event.deleted:
                self.devices.pop(event.index, None)
            else:
                self.devices[event.index] = event.name
            return f"link {event.name}"
        if isinstance(event, rtnl_events.AddressEvent):
            name = self.devices.get(event.index) or (
                event.label if event.label in DEVICES else None)
            return f"address of {name}" if name else None
        if isinstance(event, rtnl_events.NeighbourEvent):
            name = self.devices.get(event.index) if event.deleted else None
            return f"neighbour on {name}" if name == VXLAN_DEVICE else None
        if isinstance(event, rtnl_events.RouteEvent):
            return self.route(event)
        return None

    def route(self, event: rtnl_events.RouteEvent) -> str | None:
        if (not event.deleted or event.family != socket.AF_INET
                or event.proto not in (ROUTE_PROTO, BIRD_PROTO) or event.table != MAIN_TABLE):
            return None
        network = IPv4Network(f"{event.dst or '0.0.0.0'}/{event.dst_len}", strict=False)
        return f"route {network}" if network.subnet_of(self.pool) else None


class KernelMonitor:
    def __init__(self, pool: IPv4Network, on_change: Callable[[str], None]) -> None:
        self.on_change = on_change
        self.relevance = Relevance(pool)
        self._events = rtnl_events.Subscription(GROUPS)
        # After the bind: a device made from now on is seen in a notification.
        self.relevance.learn_devices()

    def start(self) -> None:
        threading.Thread(target=self._run, name="kernel-events", daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                data = self._events.sock.recv(rtnl_events.RECEIVE_BUFFER)
            except OSError as err:
                # ENOBUFS: notifications were lost; one of them may have been ours.
                log.info("kernel notifications lost (%s): comparing the kernel with the plan", err)
                self.relevance.learn_devices()
                self.on_change("lost notifications")
                continue
            what = self.relevance(data)
            if what is not None:
                self.on_change(what)
