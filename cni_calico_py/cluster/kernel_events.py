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
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import suppress
from ipaddress import IPv4Address, IPv4Network

from ..core.constants import MAIN_TABLE, ROUTE_PROTO
from ..core.logs import log
from .peers import IPIP_DEVICE, VXLAN_DEVICE

_NETLINK_ROUTE = 0
_RTMGRP_LINK = 0x1
_RTMGRP_NEIGH = 0x4
_RTMGRP_IPV4_IFADDR = 0x10
_RTMGRP_IPV4_ROUTE = 0x40
GROUPS = _RTMGRP_LINK | _RTMGRP_NEIGH | _RTMGRP_IPV4_IFADDR | _RTMGRP_IPV4_ROUTE

RTM_NEWLINK, RTM_DELLINK = 16, 17
RTM_NEWADDR, RTM_DELADDR = 20, 21
RTM_DELROUTE = 25
RTM_DELNEIGH = 29
BIRD_PROTO = 12
DEVICES = (VXLAN_DEVICE, IPIP_DEVICE)
RECEIVE_BUFFER = 1 << 20

_HEADER = struct.Struct("=IHHII")
_ATTR = struct.Struct("=HH")
_IFINFO = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
_NDMSG = struct.Struct("=BxxxiHBB")  # family, ifindex, state, flags, type
_IFLA_IFNAME = 3
_IFA_LABEL = 3
_RTA_DST = 1
_RTA_TABLE = 15


def _attrs(data: bytes, offset: int, end: int) -> Iterator[tuple[int, bytes]]:
    while offset + _ATTR.size <= end:
        length, kind = _ATTR.unpack_from(data, offset)
        if length < _ATTR.size:
            return
        yield kind & 0x3FFF, data[offset + _ATTR.size:offset + length]
        offset += (length + 3) & ~3


def _text(value: bytes) -> str:
    return value.split(b"\0", 1)[0].decode(errors="replace")


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
        offset = 0
        found = None
        while offset + _HEADER.size <= len(data):
            length, kind = _HEADER.unpack_from(data, offset)[:2]
            if length < _HEADER.size:
                break
            what = self.message(kind, data, offset + _HEADER.size, offset + length)
            found = found or what
            offset += (length + 3) & ~3
        return found

    def message(self, kind: int, data: bytes, body: int, end: int) -> str | None:
        if kind in (RTM_NEWLINK, RTM_DELLINK) and end - body >= _IFINFO.size:
            index = _IFINFO.unpack_from(data, body)[2]
            name = next((_text(v) for k, v in _attrs(data, body + _IFINFO.size, end)
                         if k == _IFLA_IFNAME), None)
            if name not in DEVICES:
                return None
            if kind == RTM_DELLINK:
                self.devices.pop(index, None)
            else:
                self.devices[index] = str(name)
            return f"link {name}"
        if kind in (RTM_NEWADDR, RTM_DELADDR) and end - body >= _IFADDR.size:
            index = _IFADDR.unpack_from(data, body)[4]
            label = next((_text(v) for k, v in _attrs(data, body + _IFADDR.size, end)
                          if k == _IFA_LABEL), None)
            name = self.devices.get(index) or (label if label in DEVICES else None)
            return f"address of {name}" if name else None
        if kind == RTM_DELNEIGH and end - body >= _NDMSG.size:
            index = _NDMSG.unpack_from(data, body)[1]
            name = self.devices.get(index)
            return f"neighbour on {name}" if name == VXLAN_DEVICE else None
        if kind == RTM_DELROUTE and end - body >= _RTMSG.size:
            return self.route(data, body, end)
        return None

    def route(self, data: bytes, body: int, end: int) -> str | None:
        family, dst_len, _, _, table, protocol = _RTMSG.unpack_from(data, body)[:6]
        if family != socket.AF_INET or protocol not in (ROUTE_PROTO, BIRD_PROTO):
            return None
        dst = IPv4Address(0)
        for kind, value in _attrs(data, body + _RTMSG.size, end):
            if kind == _RTA_TABLE and len(value) >= 4:
                table = struct.unpack_from("=I", value)[0]
            elif kind == _RTA_DST and len(value) == 4:
                dst = IPv4Address(value)
        if table != MAIN_TABLE:
            return None
        network = IPv4Network(f"{dst}/{dst_len}", strict=False)
        return f"route {network}" if network.subnet_of(self.pool) else None


class KernelMonitor:
    def __init__(self, pool: IPv4Network, on_change: Callable[[str], None]) -> None:
        self.on_change = on_change
        self.relevance = Relevance(pool)
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                   _NETLINK_ROUTE)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            self._sock.bind((0, GROUPS))
        except OSError:
            self._sock.close()
            raise
        # After the bind: a device made from now on is seen in a notification.
        self.relevance.learn_devices()

    def start(self) -> None:
        threading.Thread(target=self._run, name="kernel-events", daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                data = self._sock.recv(RECEIVE_BUFFER)
            except OSError as err:
                # ENOBUFS: notifications were lost; one of them may have been ours.
                log.info("kernel notifications lost (%s): comparing the kernel with the plan", err)
                self.relevance.learn_devices()
                self.on_change("lost notifications")
                continue
            what = self.relevance(data)
            if what is not None:
                self.on_change(what)
