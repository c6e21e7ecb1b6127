"""When each node namespace gets (and loses) each route to another node's block.

One rtnetlink socket per node, opened inside the node's namespace and bound
to the IPv4 route group, read by one thread: the kernel tells the time of
every route change, so nothing polls `ip route` and nothing is missed.
Counted: routes with a gateway (the VXLAN and BGP routes to other nodes'
blocks) inside the pool; blackholes and the pods' /32 routes are not.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from ipaddress import IPv4Network

from tests.netns import inside

_RTMGRP_IPV4_ROUTE = 0x40
_RTM_NEWROUTE, _RTM_DELROUTE = 24, 25
_RTN_UNICAST = 1
_RTA_DST, _RTA_GATEWAY = 1, 5
_HEADER = struct.Struct("=IHHII")
_RTMSG = struct.Struct("=BBBBBBBBI")


def parse(data: bytes) -> list[tuple[bool, IPv4Network]]:
    """(added, destination) of each unicast route with a gateway in the datagram."""
    found = []
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind = _HEADER.unpack_from(data, offset)[:2]
        if length < _HEADER.size:
            break
        if kind in (_RTM_NEWROUTE, _RTM_DELROUTE):
            body = offset + _HEADER.size
            family, dst_len, _, _, _, _, _, rtype, _ = _RTMSG.unpack_from(data, body)
            attrs: dict[int, bytes] = {}
            at = body + _RTMSG.size
            while at + 4 <= offset + length:
                alen, atype = struct.unpack_from("=HH", data, at)
                if alen < 4:
                    break
                attrs[atype] = data[at + 4:at + alen]
                at += (alen + 3) & ~3
            if family == socket.AF_INET and rtype == _RTN_UNICAST and _RTA_GATEWAY in attrs:
                dst = socket.inet_ntoa(attrs.get(_RTA_DST, b"\0\0\0\0"))
                found.append((kind == _RTM_NEWROUTE, IPv4Network(f"{dst}/{dst_len}", strict=False)))
        offset += (length + 3) & ~3
    return found


class RouteWatch:
    def __init__(self, pool: IPv4Network) -> None:
        self.pool = pool
        self.lock = threading.Lock()
        # node -> block -> time the route appeared
        self.routes: dict[str, dict[IPv4Network, float]] = {}
        # (node, block) -> time the route went
        self.gone: dict[tuple[str, IPv4Network], float] = {}
        self._socks: dict[int, tuple[str, socket.socket]] = {}
        self._stop = False
        # Why the reading thread ended early, if it did.
        self.failed: str | None = None
        self._thread = threading.Thread(target=self._run, name="routewatch", daemon=True)
        self._thread.start()

    def add(self, node: str, netns_path: str) -> None:
        with inside(netns_path):
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind((0, _RTMGRP_IPV4_ROUTE))
        with self.lock:
            self.routes.setdefault(node, {})
            self._socks[sock.fileno()] = (node, sock)

    def remove(self, node: str) -> None:
        with self.lock:
            for fd, (name, sock) in list(self._socks.items()):
                if name == node:
                    del self._socks[fd]
                    sock.close()
            self.routes.pop(node, None)

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        with self.lock:
            for _, sock in self._socks.values():
                sock.close()
            self._socks.clear()

    def count(self, node: str) -> int:
        with self.lock:
            return len(self.routes.get(node, {}))

    def added(self, node: str, block: IPv4Network) -> float | None:
        with self.lock:
            return self.routes.get(node, {}).get(block)

    def removed(self, node: str, block: IPv4Network) -> float | None:
        with self.lock:
            return self.gone.get((node, block))

    def _run(self) -> None:
        try:
            self._follow()
        except Exception as err:  # the benchmark then says why its counts stopped
            self.failed = f"{type(err).__name__}: {err}"
            raise

    def _follow(self) -> None:
        while not self._stop:
            with self.lock:
                fds = list(self._socks)
            if not fds:
                time.sleep(0.02)
                continue
            try:
                ready, _, _ = select.select(fds, [], [], 0.1)
            except (OSError, ValueError):
                continue  # a socket closed under us
            now = time.monotonic()
            for fd in ready:
                with self.lock:
                    entry = self._socks.get(fd)
                if entry is None:
                    continue
                node, sock = entry
                try:
                    data = sock.recv(1 << 20)
                except OSError:
                    continue
                with self.lock:
                    for added, dst in parse(data):
                        if not dst.subnet_of(self.pool):
                            continue
                        if added:
                            self.routes.setdefault(node, {}).setdefault(dst, now)
                            self.gone.pop((node, dst), None)
                        elif self.routes.get(node, {}).pop(dst, None) is not None:
                            self.gone[(node, dst)] = now
