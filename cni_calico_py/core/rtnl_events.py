"""The kernel's rtnetlink notifications of link, route and device-setting changes, decoded.

What a repairer needs of each notification, read straight from the wire
(these few fields cost microseconds; pyroute2's classes would decode every
attribute, and have none for netconf messages):
- links (RTM_NEWLINK, RTM_DELLINK): index, name, up, alias;
- routes (RTM_NEWROUTE, RTM_DELROUTE): family, destination, prefix length,
  output interface, table, type;
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
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
RTM_NEWNETCONF = 80
# Groups: RTNLGRP_LINK 1, IPV4_ROUTE 7, IPV6_ROUTE 11, IPV4_NETCONF 24, IPV6_NETCONF 25.
GROUPS = (1 << 0) | (1 << 6) | (1 << 10) | (1 << 23) | (1 << 24)
RT_TABLE_MAIN = 254
RTN_BLACKHOLE = 6

_IFINFO = struct.Struct("=BxHiII")  # family, type, index, flags, change
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, proto, scope, type, flags
_NETCONF = struct.Struct("=Bxxx")
IFLA_IFNAME, IFLA_IFALIAS = 3, 20
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


@dataclass(frozen=True)
class RouteEvent:
    deleted: bool
    family: int
    dst: str  # "" for a default route
    dst_len: int
    oif: int
    table: int
    type: int


@dataclass(frozen=True)
class NetconfEvent:
    family: int
    index: int  # negative: "all" or "default"
    proxy_neigh: int | None


Event = LinkEvent | RouteEvent | NetconfEvent


class Subscription:
    """A socket the kernel copies every link, route and netconf change to."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  NETLINK_ROUTE)
        # A burst (many pods going at once) must not overflow into ENOBUFS.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((0, GROUPS))

    def close(self) -> None:
        self.sock.close()

    def fileno(self) -> int:
        return self.sock.fileno()

    def wait(self, timeout: float) -> bool:
        return bool(select.select([self.sock], [], [], max(0.0, timeout))[0])

    def read(self) -> list[Event] | None:
        """The events of one datagram; None when notifications were lost (ENOBUFS)."""
        try:
            data = self.sock.recv(1 << 18)
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
        _, _, index, flags, _ = _IFINFO.unpack_from(body)
        attrs = _attrs(body[_IFINFO.size:])
        return LinkEvent(kind == RTM_DELLINK, index, _text(attrs.get(IFLA_IFNAME)),
                         bool(flags & _IFF_UP), _text(attrs.get(IFLA_IFALIAS)))
    if kind in (RTM_NEWROUTE, RTM_DELROUTE) and len(body) >= _RTMSG.size:
        family, dst_len, _, _, table, _, _, rtype, _ = _RTMSG.unpack_from(body)
        attrs = _attrs(body[_RTMSG.size:])
        dst = attrs.get(RTA_DST, b"")
        if RTA_TABLE in attrs:
            table = _u32(attrs[RTA_TABLE])
        return RouteEvent(kind == RTM_DELROUTE, family, _address(family, dst), dst_len,
                          _u32(attrs[RTA_OIF]) if RTA_OIF in attrs else 0, table, rtype)
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
