"""The kernel's rtnetlink notifications, decoded: what the repairers need to know.

What the agent's and the node daemon's repairers need of each notification,
read straight from the wire (these few fields cost microseconds; pyroute2's
classes would decode every attribute, and have none for netconf messages):
- links (RTM_NEWLINK, RTM_DELLINK): index, name, up, alias;
- addresses (RTM_NEWADDR, RTM_DELADDR): the device's index and label;
- routes (RTM_NEWROUTE, RTM_DELROUTE): family, destination, prefix length,
  output interface, table, protocol, type;
- neighbours and FDB entries (RTM_NEWNEIGH, RTM_DELNEIGH): family, device;
- per-device settings (RTM_NEWNETCONF): which device, and its proxy_arp or
  proxy_ndp (the kernel tells only some settings' changes).
"""

from __future__ import annotations

import select
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from .netlink_wire import HEADER, NETLINK_ROUTE, NLA

RTM_NEWLINK, RTM_DELLINK = 16, 17
RTM_NEWADDR, RTM_DELADDR = 20, 21
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
RTM_NEWNEIGH, RTM_DELNEIGH = 28, 29
RTM_NEWNETCONF = 80
# Groups (bit n-1 for RTNLGRP n): LINK 1, NEIGH 3, IPV4_IFADDR 5, IPV4_ROUTE 7, IPV6_ROUTE 11,
# IPV4_NETCONF 24, IPV6_NETCONF 25.
LINKS, NEIGHBOURS, IPV4_ADDRESSES = 1 << 0, 1 << 2, 1 << 4
IPV4_ROUTES, IPV6_ROUTES = 1 << 6, 1 << 10
NETCONF = (1 << 23) | (1 << 24)
POD_GROUPS = LINKS | IPV4_ROUTES | IPV6_ROUTES | NETCONF
RT_TABLE_MAIN = 254
RECEIVE_BUFFER = 1 << 20
RTN_BLACKHOLE = 6

_IFINFO = struct.Struct("=BxHiII")  # family, type, index, flags, change
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, proto, scope, type, flags
_NETCONF = struct.Struct("=Bxxx")
_IFADDR = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_NDMSG = struct.Struct("=BxxxiHBB")  # family, ifindex, state, flags, type
IFLA_IFNAME, IFLA_IFALIAS = 3, 20
IFA_LABEL = 3
RTA_DST, RTA_OIF, RTA_TABLE = 1, 4, 15
NETCONFA_IFINDEX, NETCONFA_PROXY_NEIGH = 1, 5
_IFF_UP = 1


@dataclass(frozen=True)
class LinkEvent:
    deleted: bool
    index: int
    name: str
    up: bool
    alias: str
    went_down: bool = False  # this change itself cleared IFF_UP (ifi_change says so)


@dataclass(frozen=True)
class AddressEvent:
    deleted: bool
    index: int
    label: str


@dataclass(frozen=True)
class RouteEvent:
    deleted: bool
    family: int
    dst: str  # "" for a default route
    dst_len: int
    oif: int
    table: int
    type: int
    proto: int = 0


@dataclass(frozen=True)
class NeighbourEvent:
    deleted: bool
    family: int  # AF_BRIDGE for an FDB entry
    index: int


@dataclass(frozen=True)
class NetconfEvent:
    family: int
    index: int  # negative: "all" or "default"
    proxy_neigh: int | None


Event = LinkEvent | AddressEvent | RouteEvent | NeighbourEvent | NetconfEvent


class Subscription:
    """A socket the kernel copies every link, route and netconf change to."""

    def __init__(self, groups: int = POD_GROUPS) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  NETLINK_ROUTE)
        try:
            # A burst (many pods going at once) must not overflow into ENOBUFS.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            self.sock.bind((0, groups))
        except OSError:
            self.sock.close()
            raise

    def close(self) -> None:
        self.sock.close()

    def fileno(self) -> int:
        return self.sock.fileno()

    def wait(self, timeout: float) -> bool:
        return bool(select.select([self.sock], [], [], max(0.0, timeout))[0])

    def read(self) -> list[Event] | None:
        """The events of one datagram; None when notifications were lost (ENOBUFS)."""
        try:
            data = self.sock.recv(RECEIVE_BUFFER)
        except OSError:
            return None
        return list(decode(data))


def decode(data: bytes) -> Iterator[Event]:
    offset = 0
    while offset + HEADER.size <= len(data):
        length, kind, _, _, _ = HEADER.unpack_from(data, offset)
        if length < HEADER.size:
            return
        body = data[offset + HEADER.size:offset + length]
        event = _event(kind, body)
        if event is not None:
            yield event
        offset += (length + 3) & ~3


def _event(kind: int, body: bytes) -> Event | None:
    if kind in (RTM_NEWLINK, RTM_DELLINK) and len(body) >= _IFINFO.size:
        _, _, index, flags, change = _IFINFO.unpack_from(body)
        attrs = _attrs(body[_IFINFO.size:])
        up = bool(flags & _IFF_UP)
        return LinkEvent(kind == RTM_DELLINK, index, _text(attrs.get(IFLA_IFNAME)), up,
                         _text(attrs.get(IFLA_IFALIAS)), bool(change & _IFF_UP) and not up)
    if kind in (RTM_NEWROUTE, RTM_DELROUTE) and len(body) >= _RTMSG.size:
        family, dst_len, _, _, table, proto, _, rtype, _ = _RTMSG.unpack_from(body)
        attrs = _attrs(body[_RTMSG.size:])
        dst = attrs.get(RTA_DST, b"")
        if RTA_TABLE in attrs:
            table = _u32(attrs[RTA_TABLE])
        return RouteEvent(kind == RTM_DELROUTE, family, _address(family, dst), dst_len,
                          _u32(attrs[RTA_OIF]) if RTA_OIF in attrs else 0, table, rtype, proto)
    if kind in (RTM_NEWADDR, RTM_DELADDR) and len(body) >= _IFADDR.size:
        index = _IFADDR.unpack_from(body)[4]
        attrs = _attrs(body[_IFADDR.size:])
        return AddressEvent(kind == RTM_DELADDR, index, _text(attrs.get(IFA_LABEL)))
    if kind in (RTM_NEWNEIGH, RTM_DELNEIGH) and len(body) >= _NDMSG.size:
        family, index = _NDMSG.unpack_from(body)[:2]
        return NeighbourEvent(kind == RTM_DELNEIGH, family, index)
    if kind == RTM_NEWNETCONF and len(body) >= _NETCONF.size:
        (family,) = _NETCONF.unpack_from(body)
        attrs = _attrs(body[_NETCONF.size:])
        index = struct.unpack("=i", attrs[NETCONFA_IFINDEX][:4])[0] \
            if NETCONFA_IFINDEX in attrs else 0
        proxy = attrs.get(NETCONFA_PROXY_NEIGH)
        return NetconfEvent(family, index, _u32(proxy) if proxy is not None else None)
    return None


def _attrs(data: bytes) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    offset = 0
    while offset + NLA.size <= len(data):
        length, kind = NLA.unpack_from(data, offset)
        if length < NLA.size:
            break
        found.setdefault(kind & 0x3FFF, data[offset + NLA.size:offset + length])
        offset += (length + 3) & ~3
    return found


def _u32(raw: bytes) -> int:
    return int(struct.unpack("=I", raw[:4])[0]) if len(raw) >= 4 else 0


def _text(raw: bytes | None) -> str:
    return raw.split(b"\0", 1)[0].decode(errors="replace") if raw else ""


def _address(family: int, raw: bytes) -> str:
    if not raw:
        return ""
    try:
        return socket.inet_ntop(family, raw)
    except (OSError, ValueError):
        return ""
