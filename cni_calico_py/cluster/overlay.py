"""Programs a Plan into the node's kernel: tunnel devices, routes, VXLAN neigh and fdb.

Every route made here carries the plugin's protocol number and a gateway,
which tells it apart from pod routes (no gateway) and the blackhole routes
(type blackhole). A change of plan is applied as the difference from the plan
last applied. Otherwise the kernel is compared with the whole plan (the
first sync, the periodic resync, and a repair after something else deleted
or changed what the daemon programs): only what is missing or wrong is
written, whatever of ours is not in the plan is removed, and each object put
right is returned as a Fix. An idle node writes nothing.
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
from .repair import Fix, RouteShape

if TYPE_CHECKING:
    from pyroute2.iproute.linux import IPRoute

VXLAN_VNI = 4096
VXLAN_PORT = 4789
BIRD_PROTO = 12
_IFF_UP = 1
_RTNH_F_ONLINK = 4
_NTF_SELF = 2
_NUD_PERMANENT = 0x80
_RTN_UNICAST = 1
_RTN_BLACKHOLE = 6
_ROUTE_TYPES = {1: "unicast", 6: "blackhole", 7: "unreachable", 8: "prohibit"}


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

    def _link(self, name: str) -> Any | None:
        index = self._index(name)
        return self.ipr.link("get", index=index)[0] if index is not None else None

    # -- tunnel devices
    def ensure_vxlan(self, node_ip: ipaddress.IPv4Interface, mac: str,
                     address: ipaddress.IPv4Address, mtu: int) -> list[Fix]:
        """vxlan.calico as the node needs it, up, with its address; what had to be done."""
        link = self._link(VXLAN_DEVICE)
        if link is not None and _vxlan_matches(link, node_ip):
            return (self._mac(link, mac) + self._up(link, mtu)
                    + self._only_address(VXLAN_DEVICE, link["index"], address))
        if link is not None:
            log.info("recreating %s: its VNI, port or local address changed", VXLAN_DEVICE)
            self.ipr.link("del", index=link["index"])
        self.ipr.link("add", ifname=VXLAN_DEVICE, kind="vxlan", vxlan_id=VXLAN_VNI,
                      vxlan_port=VXLAN_PORT, vxlan_local=str(node_ip.ip), vxlan_learning=0,
                      address=mac, mtu=mtu)
        index = self._index(VXLAN_DEVICE)
        assert index is not None
        self.ipr.link("set", index=index, state="up")
        self._only_address(VXLAN_DEVICE, index, address)
        found = (f"no {VXLAN_DEVICE}" if link is None
                 else f"{VXLAN_DEVICE} with another VNI, port or local address")
        return [Fix("device", VXLAN_DEVICE, found,
                    f"{'created' if link is None else 'recreated'} it (VNI {VXLAN_VNI}, port "
                    f"{VXLAN_PORT}, local {node_ip.ip}, MAC {mac}, mtu {mtu}, address {address})")]

    def ensure_ipip(self, address: ipaddress.IPv4Address, mtu: int) -> list[Fix]:
        missing = self._index(IPIP_DEVICE) is None
        index = self.create_tunl0()
        link = self.ipr.link("get", index=index)[0]
        fixes = self._up(link, mtu) + self._only_address(IPIP_DEVICE, index, address)
        if missing:
            return [Fix("device", IPIP_DEVICE, f"no {IPIP_DEVICE}",
                        f"created it (mtu {mtu}, address {address})")]
        return fixes

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

    def _mac(self, link: Any, mac: str) -> list[Fix]:
        """The VTEP MAC the other nodes' neighbour entries name."""
        have = str(link.get("IFLA_ADDRESS")).lower()
        if have == mac.lower():
            return []
        self.ipr.link("set", index=link["index"], address=mac)
        name = str(link.get("IFLA_IFNAME"))
        return [Fix("device", name, f"{name} with MAC {have}", f"set its MAC back to {mac}")]

    def _up(self, link: Any, mtu: int) -> list[Fix]:
        """The device up with the MTU: set only when it is not."""
        name = str(link.get("IFLA_IFNAME"))
        change: dict[str, Any] = {}
        found = []
        if link.get("IFLA_MTU") != mtu:
            change["mtu"] = mtu
            found.append(f"mtu {link.get('IFLA_MTU')}")
        if not link["flags"] & _IFF_UP:
            change["state"] = "up"
            found.append("down")
        if not change:
            return []
        self.ipr.link("set", index=link["index"], **change)
        done = " and ".join(f"{key} {value}" for key, value in change.items())
        return [Fix("device", name, f"{name} {' and '.join(found)}", f"set {done}")]

    def _only_address(self, name: str, index: int, address: ipaddress.IPv4Address) -> list[Fix]:
        present = [a for a in self.ipr.get_addr(family=socket.AF_INET, index=index)]
        fixes = []
        for a in present:
            other = a.get("IFA_LOCAL", a.get("IFA_ADDRESS"))
            if other != str(address):
                self.ipr.addr("del", index=index, address=other, prefixlen=a["prefixlen"])
                fixes.append(Fix("device", name, f"{name} holding {other}/{a['prefixlen']}",
                                 "removed that address"))
        if not any(a.get("IFA_LOCAL", a.get("IFA_ADDRESS")) == str(address) for a in present):
            self.ipr.addr("add", index=index, address=str(address), prefixlen=32)
            fixes.append(Fix("device", name, f"{name} without its address {address}/32",
                             f"added {address}/32"))
        return fixes

    # -- VXLAN peers
    def sync_vxlan_peers(self, peers: tuple[VxlanPeer, ...],
                         previous: tuple[VxlanPeer, ...] | None = None) -> list[Fix]:
        """Make the entries match `peers`: the changes since `previous`, or what the kernel lacks."""
        index = self._index(VXLAN_DEVICE)
        if index is None:
            return []
        if previous is not None:
            self._update_vxlan_peers(index, peers, previous)
            return []
        return self._stale_vxlan_entries(index, peers) + self._missing_vxlan_entries(index, peers)

    def _neighbours(self, index: int) -> dict[str, Any]:
        return {str(e.get("NDA_DST")): e
                for e in self.ipr.neigh("dump", ifindex=index, family=socket.AF_INET)
                if e["ifindex"] == index}

    def _fdb(self, index: int) -> dict[tuple[str, str], Any]:
        return {(str(e.get("NDA_LLADDR")).lower(), str(e.get("NDA_DST"))): e
                for e in self.ipr.fdb("dump", ifindex=index)
                if e["ifindex"] == index and e.get("NDA_DST")}

    def _missing_vxlan_entries(self, index: int, peers: tuple[VxlanPeer, ...]) -> list[Fix]:
        neighbours, fdb = self._neighbours(index), self._fdb(index)
        fixes = []
        for peer in peers:
            vtep, mac = str(peer.tunnel_address), peer.vtep_mac.lower()
            entry = neighbours.get(vtep)
            if entry is None or not _permanent(entry) or str(entry.get("NDA_LLADDR")).lower() != mac:
                self.ipr.neigh("replace", ifindex=index, dst=vtep, lladdr=peer.vtep_mac,
                               state=_NUD_PERMANENT)
                found = (f"no neighbour entry for {vtep} on {VXLAN_DEVICE}" if entry is None else
                         f"neighbour {vtep} lladdr {entry.get('NDA_LLADDR')} state {entry['state']:#x}")
                fixes.append(Fix("neigh", VXLAN_DEVICE, found,
                                 f"put back {vtep} lladdr {mac} permanent"))
            entry = fdb.get((mac, str(peer.node_ip)))
            if entry is None or not _permanent(entry):
                self.ipr.fdb("replace", ifindex=index, lladdr=peer.vtep_mac, dst=str(peer.node_ip),
                             flags=_NTF_SELF, state=_NUD_PERMANENT)
                found = (f"no FDB entry {mac} dst {peer.node_ip} on {VXLAN_DEVICE}" if entry is None
                         else f"FDB entry {mac} dst {peer.node_ip} state {entry['state']:#x}")
                fixes.append(Fix("fdb", VXLAN_DEVICE, found,
                                 f"put back {mac} dst {peer.node_ip} permanent"))
        return fixes

    def _stale_vxlan_entries(self, index: int, peers: tuple[VxlanPeer, ...]) -> list[Fix]:
        """Permanent entries towards no peer of the plan (the kernel's own are left alone)."""
        wanted_neigh = {str(p.tunnel_address) for p in peers}
        wanted_fdb = {(p.vtep_mac.lower(), str(p.node_ip)) for p in peers}
        fixes = []
        for dst, entry in self._neighbours(index).items():
            if dst not in wanted_neigh and _permanent(entry):
                self._quietly("neigh", "del", ifindex=index, dst=dst)
                fixes.append(Fix("neigh", VXLAN_DEVICE, f"neighbour entry {dst} for no peer",
                                 "removed it"))
        for (mac, dst), _entry in self._fdb(index).items():
            if (mac, dst) not in wanted_fdb:
                self._quietly("fdb", "del", ifindex=index, lladdr=mac, dst=dst, flags=_NTF_SELF)
                fixes.append(Fix("fdb", VXLAN_DEVICE, f"FDB entry {mac} dst {dst} for no peer",
                                 "removed it"))
        return fixes

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
                    previous: tuple[RemoteRoute, ...] | None = None) -> list[Fix]:
        """Make our routes match `routes`: the changes since `previous`, or what the kernel lacks."""
        if previous is not None:
            wanted = {r.dst for r in routes}
            for old in previous:
                if old.dst not in wanted:
                    self._quietly("route", "del", dst=str(old.dst), gateway=str(old.gateway),
                                  proto=ROUTE_PROTO)
                    log.info("removed route %s: no node owns it any more, or it moved", old.dst)
            for route in routes:
                if route not in set(previous):
                    self._put_route(route)
            return []
        return self._converge_routes(routes, pool)

    def _converge_routes(self, routes: tuple[RemoteRoute, ...], pool: IPv4Network) -> list[Fix]:
        kernel = self._pool_routes(pool)
        wanted = {r.dst: r for r in routes}
        fixes = []
        for dst, held in kernel.items():
            for route in held:
                if _ours(route) and dst not in wanted:
                    self._quietly("route", "del", dst=str(dst), gateway=route.get("gateway"),
                                  proto=ROUTE_PROTO)
                    fixes.append(Fix("route", str(dst), f"{_describe(route, dst)} for no node's block",
                                     "removed it"))
        devices: dict[str, int | None] = {}
        for want in routes:
            if want.device not in devices:
                devices[want.device] = self._index(want.device)
            oif = devices[want.device]
            present = kernel.get(want.dst, [])
            if oif is not None and any(_same(r, want, oif) for r in present):
                continue
            if self._put_route(want, oif):
                was = (f"no route for {want.dst}" if not present
                       else " and ".join(_describe(r, want.dst) for r in present))
                fixes.append(Fix("route", str(want.dst), was,
                                 f"put back {want.line()} proto {ROUTE_PROTO}"))
        return fixes

    def _put_route(self, route: RemoteRoute, oif: int | None = None) -> bool:
        oif = oif if oif is not None else self._index(route.device)
        if oif is None:
            log.warning("cannot route %s: no device %s", route.dst, route.device)
            return False
        self.ipr.route("replace", dst=str(route.dst), gateway=str(route.gateway), oif=oif,
                       flags=_RTNH_F_ONLINK if route.onlink else 0, proto=ROUTE_PROTO)
        return True

    def _pool_routes(self, pool: IPv4Network) -> dict[IPv4Network, list[Any]]:
        """The main table's IPv4 routes inside the pool, by destination."""
        found: dict[IPv4Network, list[Any]] = {}
        for route in self.ipr.route("dump", family=socket.AF_INET):
            dst = _dst(route)
            if route["table"] == MAIN_TABLE and dst is not None and dst.subnet_of(pool):
                found.setdefault(dst, []).append(route)
        return found

    def bird_routes(self, pool: IPv4Network) -> dict[IPv4Network, RouteShape]:
        """The `proto bird` routes inside the pool, as repair.bird_drift compares them."""
        shapes = {}
        for dst, held in self._pool_routes(pool).items():
            for route in held:
                if route["proto"] == BIRD_PROTO:
                    shapes[dst] = _shape(route)
        return shapes

    def remove_blackholes(self, pool: IPv4Network) -> None:
        """The IPAM's `blackhole <block> proto 98` routes: BIRD holds the blackholes in BGP modes."""
        for dst, held in self._pool_routes(pool).items():
            if any(r["proto"] == ROUTE_PROTO and r["type"] == _RTN_BLACKHOLE for r in held):
                self._quietly("route", "del", dst=str(dst), type="blackhole", proto=ROUTE_PROTO)
                log.info("removed the IPAM's blackhole for %s: BIRD holds it", dst)

    def _quietly(self, kind: str, verb: str, **spec: Any) -> None:
        try:
            getattr(self.ipr, kind)(verb, **spec)
        except Exception as err:
            if getattr(err, "code", None) not in (errno.ENOENT, errno.ESRCH):
                raise


def _vxlan_matches(link: Any, node_ip: ipaddress.IPv4Interface) -> bool:
    """What cannot be changed on a VXLAN device, only made anew."""
    data = ("IFLA_LINKINFO", "IFLA_INFO_DATA")
    return bool(
        link.get_nested(*data, "IFLA_VXLAN_ID") == VXLAN_VNI
        and link.get_nested(*data, "IFLA_VXLAN_PORT") == VXLAN_PORT
        and link.get_nested(*data, "IFLA_VXLAN_LOCAL") == str(node_ip.ip))


def _permanent(entry: Any) -> bool:
    return bool(entry["state"] & _NUD_PERMANENT)


def _dst(route: Any) -> IPv4Network | None:
    dst = route.get("dst")
    if dst is None:
        return None
    return IPv4Network(f"{dst}/{route['dst_len']}")


def _ours(route: Any) -> bool:
    """A route this module made: our protocol and a gateway."""
    return bool(route["proto"] == ROUTE_PROTO and route.get("gateway"))


def _same(route: Any, want: RemoteRoute, oif: int) -> bool:
    return bool(route["proto"] == ROUTE_PROTO and route["type"] == _RTN_UNICAST
                and route.get("gateway") == str(want.gateway) and route.get("oif") == oif
                and bool(route["flags"] & _RTNH_F_ONLINK) == want.onlink)


def _shape(route: Any) -> RouteShape:
    gateways = [route.get("gateway")] if route.get("gateway") else [
        hop.get("gateway") for hop in route.get("multipath") or [] if hop.get("gateway")]
    return RouteShape(_ROUTE_TYPES.get(route["type"], str(route["type"])),
                      tuple(sorted(str(g) for g in gateways)))


def _describe(route: Any, dst: IPv4Network) -> str:
    shape = _shape(route)
    text = shape.text(dst) + f" proto {route['proto']}"
    return text + (" onlink" if route["flags"] & _RTNH_F_ONLINK else "")


def preflight(mode: str) -> None:
    """Refuse a mode this kernel cannot do before the node registers or claims anything."""
    if peers.uses_ipip(mode):
        overlay = Overlay()
        try:
            overlay.create_tunl0()
        finally:
            overlay.close()
