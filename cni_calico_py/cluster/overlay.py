"""Programs a Plan into the node's kernel: tunnel devices, routes, VXLAN neigh and fdb.

Every route made here carries the plugin's protocol number and a gateway,
which tells it apart from pod routes (no gateway) and the blackhole routes
(type blackhole). A change is applied as the difference from the plan last
applied; the periodic resync applies the whole plan and removes whatever of
ours is not in it.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from ipaddress import IPv4Network
from typing import TYPE_CHECKING, Any

from ..core.constants import MAIN_TABLE, ROUTE_PROTO
from ..core.logs import log
from ..dataplane.netlink import iproute_class
from . import peers
from .peers import IPIP_DEVICE, VXLAN_DEVICE, RemoteRoute, VxlanPeer

if TYPE_CHECKING:
    from pyroute2.iproute.linux import IPRoute

VXLAN_VNI = 4096
VXLAN_PORT = 4789
_RTNH_F_ONLINK = 4
_NTF_SELF = 2
_NUD_PERMANENT = 0x80
_RTN_BLACKHOLE = 6


class OverlayError(Exception):
    """The node cannot be set up for the encapsulation mode; nothing was half done."""


class Overlay:
    def __init__(self) -> None:
        self.ipr: IPRoute = iproute_class()()

    def close(self) -> None:
        self.ipr.close()

    # -- the uplink
    def uplink(self, node_ip: ipaddress.IPv4Interface) -> tuple[str, int]:
        """The name and MTU of the interface holding the node IP."""
        for addr in self.ipr.get_addr(family=socket.AF_INET):
            if addr.get("IFA_LOCAL", addr.get("IFA_ADDRESS")) == str(node_ip.ip):
                link = self.ipr.link("get", index=addr["index"])[0]
                return str(link.get("IFLA_IFNAME")), int(link.get("IFLA_MTU"))
        raise OverlayError(f"no interface of this node holds its IP {node_ip}")

    def _index(self, name: str) -> int | None:
        found = self.ipr.link_lookup(ifname=name)
        return int(found[0]) if found else None

    # -- tunnel devices
    def ensure_vxlan(self, node_ip: ipaddress.IPv4Interface, mac: str,
                     address: ipaddress.IPv4Address, mtu: int) -> None:
        index = self._index(VXLAN_DEVICE)
        if index is not None and not self._vxlan_matches(index, node_ip, mac):
            log.info("recreating %s: its VNI, port, local address or MAC changed", VXLAN_DEVICE)
            self.ipr.link("del", index=index)
            index = None
        if index is None:
            self.ipr.link("add", ifname=VXLAN_DEVICE, kind="vxlan", vxlan_id=VXLAN_VNI,
                          vxlan_port=VXLAN_PORT, vxlan_local=str(node_ip.ip), vxlan_learning=0,
                          address=mac, mtu=mtu)
            index = self._index(VXLAN_DEVICE)
            assert index is not None
        self.ipr.link("set", index=index, mtu=mtu, state="up")
        self._only_address(index, address)

    def _vxlan_matches(self, index: int, node_ip: ipaddress.IPv4Interface, mac: str) -> bool:
        link = self.ipr.link("get", index=index)[0]
        data = ("IFLA_LINKINFO", "IFLA_INFO_DATA")
        return bool(
            link.get_nested(*data, "IFLA_VXLAN_ID") == VXLAN_VNI
            and link.get_nested(*data, "IFLA_VXLAN_PORT") == VXLAN_PORT
            and link.get_nested(*data, "IFLA_VXLAN_LOCAL") == str(node_ip.ip)
            and str(link.get("IFLA_ADDRESS")).lower() == mac.lower())

    def ensure_ipip(self, address: ipaddress.IPv4Address, mtu: int) -> None:
        index = self.create_tunl0()
        self.ipr.link("set", index=index, mtu=mtu, state="up")
        self._only_address(index, address)

    def create_tunl0(self) -> int:
        index = self._index(IPIP_DEVICE)
        if index is None:
            try:
                self.ipr.link("add", ifname=IPIP_DEVICE, kind="ipip")
            except Exception as err:
                raise OverlayError(
                    f"encapsulation IPIP needs the kernel's ipip support to create {IPIP_DEVICE}, "
                    f"and this kernel has none ({err}); load the ipip module or use VXLAN or "
                    "VXLANCrossSubnet") from None
            index = self._index(IPIP_DEVICE)
            assert index is not None
        return index

    def remove_device(self, name: str) -> None:
        index = self._index(name)
        if index is not None:
            self.ipr.link("del", index=index)
            log.info("removed %s: the encapsulation mode no longer uses it", name)

    def _only_address(self, index: int, address: ipaddress.IPv4Address) -> None:
        present = [a for a in self.ipr.get_addr(family=socket.AF_INET, index=index)]
        if not any(a.get("IFA_LOCAL", a.get("IFA_ADDRESS")) == str(address) for a in present):
            self.ipr.addr("add", index=index, address=str(address), prefixlen=32)
        for a in present:
            other = a.get("IFA_LOCAL", a.get("IFA_ADDRESS"))
            if other != str(address):
                self.ipr.addr("del", index=index, address=other, prefixlen=a["prefixlen"])

    # -- VXLAN peers
    def sync_vxlan_peers(self, peers: tuple[VxlanPeer, ...],
                         previous: tuple[VxlanPeer, ...] | None = None) -> None:
        """Make the entries match `peers`: only the changes since `previous`, or all of them."""
        index = self._index(VXLAN_DEVICE)
        if index is None:
            return
        if previous is not None:
            self._update_vxlan_peers(index, peers, previous)
            return
        for peer in peers:
            self._add_vxlan_peer(index, peer)
        wanted_neigh = {str(p.tunnel_address) for p in peers}
        for entry in self.ipr.neigh("dump", ifindex=index, family=socket.AF_INET):
            dst = entry.get("NDA_DST")
            if entry["ifindex"] == index and dst not in wanted_neigh:
                self._quietly("neigh", "del", ifindex=index, dst=dst)
        wanted_fdb = {(p.vtep_mac.lower(), str(p.node_ip)) for p in peers}
        for entry in self.ipr.fdb("dump", ifindex=index):
            key = (str(entry.get("NDA_LLADDR")).lower(), entry.get("NDA_DST"))
            if entry["ifindex"] == index and key[1] and key not in wanted_fdb:
                self._quietly("fdb", "del", ifindex=index, lladdr=key[0], dst=key[1], flags=_NTF_SELF)

    def _add_vxlan_peer(self, index: int, peer: VxlanPeer) -> None:
        self.ipr.neigh("replace", ifindex=index, dst=str(peer.tunnel_address),
                       lladdr=peer.vtep_mac, state=_NUD_PERMANENT)
        self.ipr.fdb("replace", ifindex=index, lladdr=peer.vtep_mac, dst=str(peer.node_ip),
                     flags=_NTF_SELF, state=_NUD_PERMANENT)

    def _update_vxlan_peers(self, index: int, peers: tuple[VxlanPeer, ...],
                            previous: tuple[VxlanPeer, ...]) -> None:
        wanted_neigh = {str(p.tunnel_address) for p in peers}
        wanted_fdb = {(p.vtep_mac.lower(), str(p.node_ip)) for p in peers}
        for old in set(previous) - set(peers):
            if str(old.tunnel_address) not in wanted_neigh:
                self._quietly("neigh", "del", ifindex=index, dst=str(old.tunnel_address))
            if (old.vtep_mac.lower(), str(old.node_ip)) not in wanted_fdb:
                self._quietly("fdb", "del", ifindex=index, lladdr=old.vtep_mac, dst=str(old.node_ip),
                              flags=_NTF_SELF)
        for peer in set(peers) - set(previous):
            self._add_vxlan_peer(index, peer)

    # -- routes
    def sync_routes(self, routes: tuple[RemoteRoute, ...], pool: IPv4Network,
                    previous: tuple[RemoteRoute, ...] | None = None) -> None:
        """Make our routes match `routes`: only the changes since `previous`, or all of them."""
        wanted = {r.dst: r for r in routes}
        if previous is None:
            stale = [(dst, gw) for dst, gw in self._our_routes(pool) if dst not in wanted]
            changed = list(routes)
        else:
            stale = [(r.dst, str(r.gateway)) for r in previous if r.dst not in wanted]
            changed = [r for r in routes if r not in set(previous)]
        for dst, gateway in stale:
            self._quietly("route", "del", dst=str(dst), gateway=gateway, proto=ROUTE_PROTO)
            log.info("removed route %s: no node owns it any more, or it moved", dst)
        for route in changed:
            oif = self._index(route.device)
            if oif is None:
                log.warning("cannot route %s: no device %s", route.dst, route.device)
                continue
            self.ipr.route("replace", dst=str(route.dst), gateway=str(route.gateway), oif=oif,
                           flags=_RTNH_F_ONLINK if route.onlink else 0, proto=ROUTE_PROTO)

    def _our_routes(self, pool: IPv4Network) -> list[tuple[IPv4Network, str]]:
        found = []
        for route in self.ipr.route("dump", family=socket.AF_INET):
            dst = _dst(route)
            if (route["proto"] == ROUTE_PROTO and route.get("gateway") and route["table"] == MAIN_TABLE
                    and dst is not None and dst.subnet_of(pool)):
                found.append((dst, str(route.get("gateway"))))
        return found

    def remove_blackholes(self, pool: IPv4Network) -> None:
        """The IPAM's `blackhole <block> proto 98` routes: BIRD holds the blackholes in BGP modes."""
        for route in self.ipr.route("dump", family=socket.AF_INET):
            dst = _dst(route)
            if (route["proto"] == ROUTE_PROTO and route["type"] == _RTN_BLACKHOLE
                    and route["table"] == MAIN_TABLE and dst is not None and dst.subnet_of(pool)):
                self._quietly("route", "del", dst=str(dst), type="blackhole", proto=ROUTE_PROTO)
                log.info("removed the IPAM's blackhole for %s: BIRD holds it", dst)

    def _quietly(self, kind: str, verb: str, **spec: Any) -> None:
        try:
            getattr(self.ipr, kind)(verb, **spec)
        except Exception as err:
            if getattr(err, "code", None) not in (errno.ENOENT, errno.ESRCH):
                raise


def _dst(route: Any) -> IPv4Network | None:
    dst = route.get("dst")
    if dst is None:
        return None
    return IPv4Network(f"{dst}/{route['dst_len']}")


def preflight(mode: str) -> None:
    """Refuse a mode this kernel cannot do before the node registers or claims anything."""
    if peers.uses_ipip(mode):
        overlay = Overlay()
        try:
            overlay.create_tunl0()
        finally:
            overlay.close()
