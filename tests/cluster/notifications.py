"""What the kernel of a node namespace announces: rtnetlink notifications, timestamped on arrival.

A raw NETLINK_ROUTE socket made inside the node's namespace (a socket stays
in the namespace it was made in), read by a thread of its own: every route,
link, address and neighbour change in that namespace, whoever made it.
Tests measure with it how long an object deleted by hand stays missing, and
count the writes an idle node makes. Standard library only.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from tests.netns import inside

RTMGRP_LINK = 0x1
RTMGRP_NEIGH = 0x4
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_ROUTE = 0x400
GROUPS = RTMGRP_LINK | RTMGRP_NEIGH | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE

KINDS = {16: "newlink", 17: "dellink", 20: "newaddr", 21: "deladdr", 24: "newroute",
         25: "delroute", 28: "newneigh", 29: "delneigh"}
TYPES = {1: "unicast", 2: "local", 3: "broadcast", 5: "multicast", 6: "blackhole"}
NUD_NOARP = 0x40
NUD_PERMANENT = 0x80
AF_BRIDGE = 7

_HEADER = struct.Struct("=IHHII")
_ATTR = struct.Struct("=HH")


@dataclass(frozen=True)
class Note:
    at: float  # time.monotonic() when it was read
    kind: str  # newroute, delroute, newneigh, delneigh, newlink, dellink, newaddr, deladdr
    family: int
    ifindex: int = 0
    dst: str = ""  # a route's network, a neighbour's address
    proto: int = 0
    type: str = ""
    table: int = 0
    state: int = 0  # a neighbour's NUD state
    lladdr: str = ""
    name: str = ""  # a link's name

    @property
    def permanent(self) -> bool:
        return bool(self.state & (NUD_PERMANENT | NUD_NOARP))


def _attrs(data: bytes, offset: int, end: int) -> Iterator[tuple[int, bytes]]:
    while offset + _ATTR.size <= end:
        length, kind = _ATTR.unpack_from(data, offset)
        if length < _ATTR.size:
            return
        yield kind & 0x3FFF, data[offset + _ATTR.size:offset + length]
        offset += (length + 3) & ~3


def _address(value: bytes) -> str:
    return str(IPv4Address(value) if len(value) == 4 else IPv6Address(value))


def parse(at: float, kind: int, data: bytes, body: int, end: int) -> Note | None:
    name = KINDS.get(kind)
    if name is None:
        return None
    if name.endswith("route"):
        family, dst_len, _, _, table, proto, _, rtype, _ = struct.unpack_from("=BBBBBBBBI", data, body)
        dst = "0.0.0.0" if family == socket.AF_INET else "::"
        for attr, value in _attrs(data, body + 12, end):
            if attr == 1:
                dst = _address(value)
            elif attr == 15:
                table = struct.unpack_from("=I", value)[0]
        return Note(at, name, family, dst=f"{dst}/{dst_len}", proto=proto,
                    type=TYPES.get(rtype, str(rtype)), table=table)
    if name.endswith("neigh"):
        family, ifindex, state = struct.unpack_from("=BxxxiH", data, body)
        dst = lladdr = ""
        for attr, value in _attrs(data, body + 12, end):
            if attr == 1:
                dst = _address(value)
            elif attr == 2:
                lladdr = ":".join(f"{b:02x}" for b in value)
        return Note(at, name, family, ifindex=ifindex, dst=dst, state=state, lladdr=lladdr)
    if name.endswith("link"):
        family, _, ifindex = struct.unpack_from("=BxHi", data, body)
        ifname = next((v.split(b"\0", 1)[0].decode() for a, v in _attrs(data, body + 16, end) if a == 3), "")
        return Note(at, name, family, ifindex=ifindex, name=ifname)
    family, _, _, _, ifindex = struct.unpack_from("=BBBBI", data, body)
    return Note(at, name, family, ifindex=ifindex)


class Notifications:
    """Every notification of one namespace since `start`, in order."""

    def __init__(self, netns_path: str) -> None:
        with inside(netns_path):
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self.sock.bind((0, GROUPS))
        self.notes: list[Note] = []
        self.lost = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not select.select([self.sock], [], [], 0.2)[0]:
                continue
            try:
                data = self.sock.recv(1 << 20)
            except OSError:
                self.lost += 1
                continue
            at = time.monotonic()
            offset = 0
            found = []
            while offset + _HEADER.size <= len(data):
                length, kind = _HEADER.unpack_from(data, offset)[:2]
                if length < _HEADER.size:
                    break
                note = parse(at, kind, data, offset + _HEADER.size, offset + length)
                if note is not None:
                    found.append(note)
                offset += (length + 3) & ~3
            with self._lock:
                self.notes.extend(found)

    def mark(self) -> int:
        with self._lock:
            return len(self.notes)

    def since(self, mark: int) -> list[Note]:
        with self._lock:
            return self.notes[mark:]

    def wait(self, match: Callable[[Note], bool], after: int, timeout: float, what: str) -> tuple[Note, int]:
        """The first matching note from position `after` on, and the position after it."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                for position in range(after, len(self.notes)):
                    if match(self.notes[position]):
                        return self.notes[position], position + 1
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
            time.sleep(0.002)


@contextmanager
def notifications(netns_path: str) -> Iterator[Notifications]:
    made = Notifications(netns_path)
    try:
        yield made
    finally:
        made.close()
