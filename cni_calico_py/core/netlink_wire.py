"""The rtnetlink wire format around pyroute2's codecs: header layout, flags, refusals, routes.

rtnl.py sends and receives; this module says what the bytes mean.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import Any

from .constants import MAIN_TABLE
from .pyroute2_loader import load_pyroute2

load_pyroute2()

from pyroute2.netlink.rtnl.rtmsg import rtmsg  # noqa: E402  (needs the bare package registered first)

NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
NETLINK_GET_STRICT_CHK = 12
NLM_F_CAPPED = 0x100
NLM_F_ACK_TLVS = 0x200
NLMSGERR_ATTR_MSG = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_DUMP_INTR = 0x10
IFF_UP = 1
RTN_UNICAST = 1
HEADER = struct.Struct("=IHHII")
ERRNO = struct.Struct("=i")
NLA = struct.Struct("=HH")
# ifinfomsg after the netlink header: family, pad, type, index, flags, change.
IFINFO_INDEX = struct.Struct("=BxHi")
RECV_BUFFER = 1 << 18
# A dump the kernel marks interrupted (the table changed under it) is read again.
DUMP_TRIES = 5

Message = Any  # a decoded pyroute2 nlmsg: `.get(name)` reads a field or attribute
Decoder = Callable[[bytes], Any]


class NetlinkError(OSError):
    """The kernel refused a request; `code` is the errno, as pyroute2's errors carry it."""

    @property
    def code(self) -> int:
        return int(self.errno or 0)


class RouteSpec:
    """One route, as `ip route` would name it."""

    def __init__(
        self, family: int, dst: str, dst_len: int, *, oif: int | None = None,
        gateway: str | None = None, proto: int, scope: int = 0, kind: int = RTN_UNICAST,
        table: int = MAIN_TABLE,
    ) -> None:
        self.family, self.dst, self.dst_len = family, dst, dst_len
        self.oif, self.gateway, self.proto = oif, gateway, proto
        self.scope, self.kind, self.table = scope, kind, table

    def message(self) -> Message:
        msg = rtmsg()
        msg["family"], msg["dst_len"], msg["table"] = self.family, self.dst_len, self.table
        msg["proto"], msg["scope"], msg["type"] = self.proto, self.scope, self.kind
        attrs: list[tuple[str, Any]] = [("RTA_TABLE", self.table)]
        if self.dst_len:
            attrs.append(("RTA_DST", self.dst))
        if self.gateway is not None:
            attrs.append(("RTA_GATEWAY", self.gateway))
        if self.oif is not None:
            attrs.append(("RTA_OIF", self.oif))
        msg["attrs"] = attrs
        return msg


def refusal(code: int, error: bytes, flags: int) -> NetlinkError:
    """The errno, with the kernel's own explanation when it gave one."""
    reason = os.strerror(code)
    if flags & NLM_F_ACK_TLVS:
        # Past the errno and the echoed request header (or whole request).
        offset = HEADER.size + ERRNO.size
        offset += HEADER.size if flags & NLM_F_CAPPED else HEADER.unpack_from(error, offset)[0]
        offset = (offset + 3) & ~3
        while offset + NLA.size <= len(error):
            length, kind = NLA.unpack_from(error, offset)
            if length < NLA.size:
                break
            if kind == NLMSGERR_ATTR_MSG:
                text = error[offset + NLA.size:offset + length].split(b"\0", 1)[0]
                reason = f"{reason} ({text.decode(errors='replace')})"
                break
            offset += (length + 3) & ~3
    return NetlinkError(code, reason)


def decoder(message_class: Any) -> Decoder:
    def decode(chunk: bytes) -> Message:
        reply = message_class(chunk)
        reply.decode()
        return reply

    return decode


def link_index_of(chunk: bytes) -> int:
    return int(IFINFO_INDEX.unpack_from(chunk, HEADER.size)[2])
