"""A synchronous rtnetlink socket: pyroute2's message codecs over a plain kernel socket.

pyroute2 0.9 runs every request of its IPRoute through an asyncio event loop
and a request-filter pipeline: importing that costs ~55 ms and each request
~1-2 ms of Python, about twenty times the kernel's own work. A pod's wiring
is a dozen requests to one socket, strictly one after another, so this module
keeps pyroute2 for what it is best at (the message formats, encoding and
decoding every attribute) and does the send/receive itself: one datagram out,
replies read until the kernel's acknowledgement or the end of the dump.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

from .constants import MAIN_TABLE
from .pyroute2_loader import load_pyroute2

load_pyroute2()

from pyroute2.netlink import (  # noqa: E402  (needs the bare package registered first)
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
)
from pyroute2.netlink.rtnl import (  # noqa: E402
    RTM_DELLINK,
    RTM_DELROUTE,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_GETROUTE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
)
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg  # noqa: E402
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg  # noqa: E402
from pyroute2.netlink.rtnl.rtmsg import rtmsg  # noqa: E402

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
_HEADER = struct.Struct("=IHHII")
_ERRNO = struct.Struct("=i")
_NLA = struct.Struct("=HH")
# ifinfomsg after the netlink header: family, pad, type, index, flags, change.
_IFINFO_INDEX = struct.Struct("=BxHi")
_RECV_BUFFER = 1 << 18
# A dump the kernel marks interrupted (the table changed under it) is read again.
_DUMP_TRIES = 5

Message = Any  # a decoded pyroute2 nlmsg: `.get(name)` reads a field or attribute
Decoder = Callable[[bytes], Any]


class NetlinkError(OSError):
    """The kernel refused a request; `code` is the errno, as pyroute2's errors carry it."""

    @property
    def code(self) -> int:
        return int(self.errno or 0)


class Rtnl:
    """One rtnetlink socket, bound to the network namespace it was opened in."""

    def __init__(self, strict_check: bool = False) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        try:
            self._sock.bind((0, 0))
            # The kernel then says why it refused a request ("Nexthop has
            # invalid gateway"), and leaves the request out of its answer.
            self._sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
            self._sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            if strict_check:
                # The kernel then filters dumps by the request's header fields.
                self._sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
        except OSError:
            self._sock.close()
            raise
        self._sequence = 0

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def request(
        self, msg: Message, kind: int, flags: int = 0, decode: Decoder | None = None,
    ) -> list[Any]:
        """Send `msg` as message type `kind`; returns the replies, decoded by `decode`.

        Every request asks for an acknowledgement, so an answer always ends
        in one (or in NLMSG_DONE for a dump) and a refusal raises NetlinkError.
        By default a reply is decoded whole, as the request's message class.
        """
        for _ in range(_DUMP_TRIES):
            replies, interrupted = self._exchange(
                msg, kind, flags | NLM_F_REQUEST | NLM_F_ACK, decode or _decoder(type(msg)))
            if not interrupted or not flags & NLM_F_DUMP:
                return replies
        raise NetlinkError(errno.EINTR, "the kernel kept interrupting the dump")

    def _exchange(self, msg: Message, kind: int, flags: int, decode: Decoder) -> tuple[list[Any], bool]:
        self._sequence += 1
        sequence = self._sequence
        header = msg["header"]
        header["type"], header["flags"] = kind, flags
        header["sequence_number"], header["pid"] = sequence, 0
        msg.encode()
        self._sock.send(msg.data)
        replies: list[Any] = []
        interrupted = False
        while True:
            data = self._sock.recv(_RECV_BUFFER)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, reply_type, reply_flags, reply_sequence, _ = _HEADER.unpack_from(data, offset)
                if length < _HEADER.size:
                    raise NetlinkError(errno.EBADMSG, "truncated netlink message")
                if reply_sequence == sequence:
                    interrupted |= bool(reply_flags & NLM_F_DUMP_INTR)
                    if reply_type == NLMSG_ERROR:
                        (code,) = _ERRNO.unpack_from(data, offset + _HEADER.size)
                        if code:
                            raise _refusal(-code, data[offset:offset + length], reply_flags)
                        return replies, interrupted
                    if reply_type == NLMSG_DONE:
                        return replies, interrupted
                    replies.append(decode(data[offset:offset + length]))
                offset = (offset + length + 3) & ~3

    # Links

    def link_index(self, ifname: str) -> int | None:
        msg = ifinfmsg()
        msg["attrs"] = [("IFLA_IFNAME", ifname)]
        try:
            # Only the index is read: decoding a whole link costs ~0.5 ms of Python.
            found = self.request(msg, RTM_GETLINK, decode=_link_index)
        except NetlinkError as err:
            if err.code == errno.ENODEV:
                return None
            raise
        return int(found[0]) if found else None

    def link(self, index: int) -> Message:
        msg = ifinfmsg()
        msg["index"] = index
        return self.request(msg, RTM_GETLINK)[0]

    def add_veth(self, ifname: str, mtu: int, peer: dict[str, Any]) -> None:
        """Create `ifname` here and its peer, whose IFLA_* attributes `peer` names."""
        msg = ifinfmsg()
        peer_attrs = [(ifinfmsg.name2nla(key), value) for key, value in peer.items()]
        msg["attrs"] = [
            ("IFLA_IFNAME", ifname),
            ("IFLA_MTU", mtu),
            ("IFLA_LINKINFO", {"attrs": [
                ("IFLA_INFO_KIND", "veth"),
                ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", {"attrs": peer_attrs})]}),
            ]}),
        ]
        self.request(msg, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL)

    def delete_link(self, index: int) -> None:
        msg = ifinfmsg()
        msg["index"] = index
        self.request(msg, RTM_DELLINK)

    def set_up(self, index: int) -> None:
        msg = ifinfmsg()
        msg["index"], msg["flags"], msg["change"] = index, IFF_UP, IFF_UP
        self.request(msg, RTM_NEWLINK)

    # Addresses

    def add_address(self, index: int, family: int, address: str, prefixlen: int) -> None:
        msg = ifaddrmsg()
        msg["index"], msg["family"], msg["prefixlen"] = index, family, prefixlen
        attrs = [("IFA_ADDRESS", address)]
        if family == socket.AF_INET:
            attrs.append(("IFA_LOCAL", address))
        msg["attrs"] = attrs
        self.request(msg, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL)

    def addresses(self, index: int) -> list[str]:
        msg = ifaddrmsg()
        found = self.request(msg, RTM_GETADDR, NLM_F_DUMP)
        return [str(a.get("address")) for a in found if a["index"] == index and a.get("address")]

    # Routes

    def routes(self, family: int, **header: int) -> list[Message]:
        """Dump `family`'s routes; header fields (proto, type, table) filter in strict mode."""
        msg = rtmsg()
        msg["family"] = family
        for field, value in header.items():
            msg[field] = value
        return self.request(msg, RTM_GETROUTE, NLM_F_DUMP)

    def change_route(self, verb: str, spec: RouteSpec) -> None:
        kind, flags = {
            "add": (RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL),
            "replace": (RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE),
            "del": (RTM_DELROUTE, 0),
        }[verb]
        self.request(spec.message(), kind, flags)


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


def _refusal(code: int, error: bytes, flags: int) -> NetlinkError:
    """The errno, with the kernel's own explanation when it gave one."""
    reason = os.strerror(code)
    if flags & NLM_F_ACK_TLVS:
        # Past the errno and the echoed request header (or whole request).
        offset = _HEADER.size + _ERRNO.size
        offset += _HEADER.size if flags & NLM_F_CAPPED else _HEADER.unpack_from(error, offset)[0]
        offset = (offset + 3) & ~3
        while offset + _NLA.size <= len(error):
            length, kind = _NLA.unpack_from(error, offset)
            if length < _NLA.size:
                break
            if kind == NLMSGERR_ATTR_MSG:
                text = error[offset + _NLA.size:offset + length].split(b"\0", 1)[0]
                reason = f"{reason} ({text.decode(errors='replace')})"
                break
            offset += (length + 3) & ~3
    return NetlinkError(code, reason)


def _decoder(message_class: Any) -> Decoder:
    def decode(chunk: bytes) -> Message:
        reply = message_class(chunk)
        reply.decode()
        return reply

    return decode


def _link_index(chunk: bytes) -> int:
    return int(_IFINFO_INDEX.unpack_from(chunk, _HEADER.size)[2])
