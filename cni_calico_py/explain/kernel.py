"""The kernel's own answers, through pyroute2: route lookups, links, neighbours, FDB entries.

A lookup asks for the FIB entry that matched (RTM_F_FIB_MATCH, `ip route get
fibmatch`), so a hop names the route an operator would find in `ip route`,
not just the destination address.
"""

from __future__ import annotations

import errno
import ipaddress
from dataclasses import dataclass
from typing import Any

from ..core.constants import MAIN_TABLE, ROUTE_PROTO
from ..dataplane.netlink import iproute_class
from ..dataplane.netns import entered

RTM_F_FIB_MATCH = 0x2000
RTNH_F_ONLINK = 4
PROTOCOLS = {2: "kernel", 3: "boot", 4: "static", 12: "bird", 16: "dhcp", 186: "bgp",
             ROUTE_PROTO: str(ROUTE_PROTO)}
TYPES = {1: "unicast", 2: "local", 3: "broadcast", 6: "blackhole", 7: "unreachable",
         8: "prohibit", 9: "throw"}
SCOPE_LINK = 253
# What a route lookup answers when the route it found drops the packet, or there is none.
DROPPED = (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EINVAL, errno.EACCES)


@dataclass(frozen=True)
class Route:
    dst: str  # "default", or a prefix / address as `ip route` writes it
    type: str
    gateway: str | None = None
    dev: str | None = None
    proto: str = ""
    scope: int = 0
    onlink: bool = False

    def text(self) -> str:
        """The route as `ip route` prints it."""
        parts = [] if self.type == "unicast" else [self.type]
        parts.append(self.dst)
        if self.gateway:
            parts += ["via", self.gateway]
        if self.dev:
            parts += ["dev", self.dev]
        if self.proto and self.proto not in ("boot",):
            parts += ["proto", self.proto]
        if self.scope == SCOPE_LINK:
            parts += ["scope", "link"]
        if self.onlink:
            parts.append("onlink")
        return " ".join(parts)


@dataclass(frozen=True)
class Link:
    name: str
    index: int
    up: bool
    mtu: int
    mac: str
    kind: str
    # The other end's ifindex, for a veth; a VXLAN device's local address and port.
    peer_index: int | None = None
    vxlan_local: str | None = None
    vxlan_port: int | None = None


class Kernel:
    """Netlink to the current network namespace, or to the pod's one at `netns` (a path).

    A pod's namespace is entered as every request enters it (dataplane.netns),
    never through pyroute2's own `netns=`, which makes the namespace when the
    path is missing. Raises NetnsNotFound or NetnsRefused for a bad path.
    """

    def __init__(self, netns: str | None = None) -> None:
        iproute = iproute_class()
        if netns:
            # A netlink socket belongs to the namespace it was made in.
            with entered(netns):
                self._ipr = iproute()
        else:
            self._ipr = iproute()
        self._names: dict[int, str] = {}

    def close(self) -> None:
        self._ipr.close()

    def __enter__(self) -> Kernel:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def lookup(self, dst: str, src: str | None = None, iif: int | None = None) -> Route | None:
        """The route the kernel picks for `dst` (coming in on `iif`); None: unreachable."""
        request: dict[str, Any] = {"dst": dst, "flags": RTM_F_FIB_MATCH}
        if src:
            request["src"] = src
        if iif:
            request["iif"] = iif
        try:
            (msg, *_) = self._ipr.route("get", **request)
        except Exception as err:  # pyroute2's NetlinkError
            if getattr(err, "code", None) not in DROPPED:
                raise
            # The kernel answers a lookup that ends in a blackhole (or unreachable,
            # prohibit) route with an error, not the route: find which one it was.
            return self._dropping(dst)
        return self._route(msg)

    def _dropping(self, dst: str) -> Route | None:
        """The most specific main-table route covering `dst` that drops packets, if any."""
        address = ipaddress.ip_address(dst)
        best: tuple[int, Route] | None = None
        for msg in self._ipr.get_routes(family=2, table=MAIN_TABLE):
            if TYPES.get(msg["type"]) not in ("blackhole", "unreachable", "prohibit"):
                continue
            network = ipaddress.ip_network(f"{msg.get('RTA_DST') or '0.0.0.0'}/{msg['dst_len']}")
            if address in network and (best is None or network.prefixlen > best[0]):
                best = (network.prefixlen, self._route(msg))
        return best[1] if best else None

    def routes(self, kind: str) -> list[Route]:
        """The main table's routes of one type (e.g. "blackhole")."""
        code = next(c for c, name in TYPES.items() if name == kind)
        return [self._route(m) for m in self._ipr.get_routes(family=2, table=MAIN_TABLE)
                if m["type"] == code]

    def _route(self, msg: Any) -> Route:
        dst = msg.get("RTA_DST")
        length = msg["dst_len"]
        text = "default" if dst is None else dst if length == 32 else f"{dst}/{length}"
        oif = msg.get("RTA_OIF")
        return Route(dst=text, type=TYPES.get(msg["type"], str(msg["type"])),
                     gateway=msg.get("RTA_GATEWAY"), dev=self.name(oif) if oif else None,
                     proto=PROTOCOLS.get(msg["proto"], str(msg["proto"])), scope=msg["scope"],
                     onlink=bool(msg["flags"] & RTNH_F_ONLINK))

    def name(self, index: int) -> str:
        if index not in self._names:
            found = self._ipr.get_links(index)
            self._names[index] = found[0].get("IFLA_IFNAME") if found else f"if{index}"
        return self._names[index]

    def link(self, name_or_index: str | int) -> Link | None:
        try:
            if isinstance(name_or_index, int):
                found = self._ipr.get_links(name_or_index)
            else:
                found = self._ipr.get_links(ifname=name_or_index)
        except Exception as err:  # NetlinkError: no such device
            if getattr(err, "code", None) in (errno.ENODEV, errno.ENOENT):
                return None
            raise
        if not found:
            return None
        msg = found[0]
        info = msg.get("IFLA_LINKINFO")
        kind = info.get("IFLA_INFO_KIND") if info else ""
        data = info.get("IFLA_INFO_DATA") if info else None
        local = port = None
        if kind == "vxlan" and data is not None:
            local = data.get("IFLA_VXLAN_LOCAL")
            port = data.get("IFLA_VXLAN_PORT")
        link = msg.get("IFLA_LINK")
        return Link(name=msg.get("IFLA_IFNAME"), index=msg["index"], up=bool(msg["flags"] & 1),
                    mtu=msg.get("IFLA_MTU"), mac=msg.get("IFLA_ADDRESS") or "", kind=kind or "",
                    peer_index=link if kind == "veth" else None, vxlan_local=local,
                    vxlan_port=port)

    def neighbour(self, address: str, index: int) -> str | None:
        """The link-layer address the kernel has for `address` on link `index`."""
        for msg in self._ipr.get_neighbours(family=2, ifindex=index):
            if msg.get("NDA_DST") == address:
                mac: str | None = msg.get("NDA_LLADDR")
                return mac
        return None

    def fdb(self, mac: str, index: int) -> str | None:
        """Where the bridge table of link `index` sends frames for `mac` (a VXLAN VTEP's IP)."""
        for msg in self._ipr.get_neighbours(family=7, ifindex=index):  # AF_BRIDGE
            if msg.get("NDA_LLADDR") == mac and msg.get("NDA_DST"):
                dst: str | None = msg.get("NDA_DST")
                return dst
        return None


def sysctl(device: str, name: str) -> str | None:
    """net.ipv4.conf.<device>.<name> in this process's network namespace."""
    try:
        with open(f"/proc/sys/net/ipv4/conf/{device}/{name}", encoding="ascii") as value:
            return value.read().strip()
    except OSError:
        return None
