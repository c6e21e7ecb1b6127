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
import socket
from typing import Any

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

from .netlink_wire import (  # noqa: E402
    DUMP_TRIES,
    ERRNO,
    HEADER,
    IFF_UP,
    NETLINK_CAP_ACK,
    NETLINK_EXT_ACK,
    NETLINK_GET_STRICT_CHK,
    NETLINK_ROUTE,
    NLM_F_DUMP_INTR,
    NLMSG_DONE,
    NLMSG_ERROR,
    RECV_BUFFER,
    SOL_NETLINK,
    Decoder,
    Message,
    NetlinkError,
    RouteSpec,
    decoder,
    link_index_of,
    refusal,
)

# What callers take from here: the socket, and the wire names they pass to it.
__all__ = [
    "IFF_UP", "NLM_F_DUMP", "RTM_GETLINK", "Message", "NetlinkError", "RouteSpec", "Rtnl",
    "ifinfmsg",
]


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
        for _ in range(DUMP_TRIES):
            replies, interrupted = self._exchange(
                msg, kind, flags | NLM_F_REQUEST | NLM_F_ACK, decode or decoder(type(msg)))
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
            data = self._sock.recv(RECV_BUFFER)
            offset = 0
            while offset + HEADER.size <= len(data):
                length, reply_type, reply_flags, reply_sequence, _ = HEADER.unpack_from(data, offset)
                if length < HEADER.size:
                    raise NetlinkError(errno.EBADMSG, "truncated netlink message")
                if reply_sequence == sequence:
                    interrupted |= bool(reply_flags & NLM_F_DUMP_INTR)
                    if reply_type == NLMSG_ERROR:
                        (code,) = ERRNO.unpack_from(data, offset + HEADER.size)
                        if code:
                            raise refusal(-code, data[offset:offset + length], reply_flags)
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
            found = self.request(msg, RTM_GETLINK, decode=link_index_of)
        except NetlinkError as err:
            if err.code == errno.ENODEV:
                return None
            raise
        return int(found[0]) if found else None

    def link(self, index: int) -> Message:
        msg = ifinfmsg()
        msg["index"] = index
        return self.request(msg, RTM_GETLINK)[0]

    def links(self) -> list[Message]:
        return self.request(ifinfmsg(), RTM_GETLINK, NLM_F_DUMP)

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

    def set_up(self, index: int, alias: str | None = None) -> None:
        """Up, and with `alias` the link's alias too, in one message."""
        msg = ifinfmsg()
        msg["index"], msg["flags"], msg["change"] = index, IFF_UP, IFF_UP
        if alias is not None:
            msg["attrs"] = [("IFLA_IFALIAS", alias)]
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
