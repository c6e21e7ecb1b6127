"""The veth pair: pod end CNI_IFNAME in the pod, host end `cali...` on the node."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.constants import HOST_VETH_MAC
from ..core.errors import CNIError, Code
from ..core.results import IPAddress
from . import netlink
from .addressing import routes_to

if TYPE_CHECKING:
    from ..core.rtnl import Rtnl


def refuse_existing_pod_interface(pod: Rtnl, ifname: str, netns_path: str) -> None:
    if netlink.link_index(pod, ifname) is not None:
        raise CNIError(
            Code.DATAPLANE_FAILURE,
            f"interface {ifname} already exists in {netns_path}",
            "the runtime asked to create an interface the pod already has",
        )


def remove_earlier_pair(host: Rtnl, pod: Rtnl, pod_ifname: str, host_name: str) -> bool:
    """Delete the pair `pod_ifname`/`host_name` if both ends exist and are peers.

    Only such a pair is this attachment's own; returns whether there was one.
    """
    pod_index = netlink.link_index(pod, pod_ifname)
    host_index = netlink.link_index(host, host_name)
    if pod_index is None or host_index is None:
        return False
    if not are_peers(host, host_index, pod, pod_index):
        return False
    _delete_link(pod, pod_index, f"{pod_ifname} in the pod")
    return True


def are_peers(host: Rtnl, host_index: int, pod: Rtnl, pod_index: int) -> bool:
    """Whether the two links are the ends of one veth pair (each names the other as its link)."""
    host_link, pod_link = host.link(host_index), pod.link(pod_index)
    return bool(host_link.get("link") == pod_index and pod_link.get("link") == host_index
                and _kind(host_link) == "veth" and _kind(pod_link) == "veth")


def _kind(link: Any) -> str | None:
    info = link.get("linkinfo")
    return str(info.get("kind")) if info is not None else None


def remove_stale_host_veth(host: Rtnl, name: str) -> None:
    """A leftover of an earlier attachment of the same pod: Calico replaces it too."""
    index = netlink.link_index(host, name)
    if index is not None:
        _delete_link(host, index, f"stale host interface {name}")


def create_pair(pod: Rtnl, pod_ifname: str, host_name: str, mtu: int) -> None:
    """Create the pod end inside the pod and its peer straight in the node's netns.

    Creating both in place saves moving a link between namespaces afterwards.
    """
    host_ns = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        pod.add_veth(
            pod_ifname, mtu,
            peer={"ifname": host_name, "net_ns_fd": host_ns, "address": HOST_VETH_MAC, "mtu": mtu},
        )
    except OSError as err:
        if netlink.is_exists(err):
            raise CNIError(
                Code.DATAPLANE_FAILURE,
                f"cannot create veth {pod_ifname}/{host_name}: an interface of that name exists",
            ) from err
        raise netlink.failure(f"creating veth {pod_ifname}/{host_name}", err) from err
    finally:
        os.close(host_ns)


def delete_host_end(host: Rtnl, name: str) -> None:
    """Undo step: deleting either end removes the pair and the routes through it."""
    index = netlink.link_index(host, name)
    if index is not None:
        _delete_link(host, index, f"host interface {name}")


def delete_host_end_routing(host: Rtnl, name: str, addresses: Sequence[IPAddress]) -> bool:
    """Delete host veth `name` if the node routes one of `addresses` through it.

    A route to an address the pod still holds can only be that pod's: a newer
    sandbox of the same pod, under the same name, routes other addresses.
    """
    index = netlink.link_index(host, name)
    if index is None:
        return False
    if not any(route.get("oif") == index for a in addresses for route in routes_to(host, a)):
        return False
    return _delete_link(host, index, f"host interface {name}")


def delete_pod_end(pod: Rtnl, ifname: str) -> bool:
    """Returns whether there was an interface to delete."""
    index = netlink.link_index(pod, ifname)
    if index is None:
        return False
    return _delete_link(pod, index, f"{ifname} in the pod")


def _delete_link(handle: Rtnl, index: int, what: str) -> bool:
    """Whether the link was still there: one gone meanwhile is no error."""
    try:
        handle.delete_link(index)
    except OSError as err:
        if netlink.is_missing(err):
            return False
        raise netlink.failure(f"deleting {what}", err) from err
    return True


def set_up(handle: Rtnl, index: int, what: str) -> None:
    try:
        handle.set_up(index)
    except OSError as err:
        raise netlink.failure(f"setting {what} up", err) from err


@dataclass(frozen=True)
class LinkFacts:
    """What a link says of itself: its kind and, for a veth, where its peer is."""

    index: int
    name: str
    kind: str  # "" when the kernel names none
    peer_index: int | None  # IFLA_LINK
    # IFLA_LINK_NETNSID: the id of the peer's netns, absent when the peer is in this one.
    peer_netnsid: int | None


def link_facts(handle: Rtnl, index: int) -> LinkFacts | None:
    """None when there is no link `index` (any more)."""
    try:
        msg = handle.link(index)
    except OSError as err:
        if netlink.is_missing(err):
            return None
        raise netlink.failure(f"reading interface {index}", err) from err
    info = msg.get("linkinfo")
    peer, netnsid = msg.get("link"), msg.get("link_netnsid")
    return LinkFacts(
        index=index, name=str(msg.get("ifname")),
        kind=str(info.get("kind") or "") if info is not None else "",
        peer_index=int(peer) if peer is not None else None,
        peer_netnsid=int(netnsid) if netnsid is not None else None,
    )


def links_routing(host: Rtnl, address: IPAddress) -> list[LinkFacts]:
    """The interfaces the node routes `address` (as a /32 or /128) through."""
    found = []
    for route in routes_to(host, address):
        oif = route.get("oif")
        facts = link_facts(host, int(oif)) if oif else None
        if facts is not None:
            found.append(facts)
    return found


def netnsid_of(handle: Rtnl, netns_path: str) -> int | None:
    """The id `handle`'s netns knows the netns at `netns_path` by; None if it has none."""
    from pyroute2.netlink.rtnl import RTM_GETNSID
    from pyroute2.netlink.rtnl.nsidmsg import nsidmsg

    fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        msg = nsidmsg()
        msg["attrs"] = [("NETNSA_FD", fd)]
        replies = handle.request(msg, RTM_GETNSID)
    except OSError as err:
        raise netlink.failure(f"looking up the id of netns {netns_path}", err) from err
    finally:
        os.close(fd)
    nsid = replies[0].get("NETNSA_NSID") if replies else None
    # Unassigned reads as -1, which the uint32 codec gives as 2**32 - 1.
    return None if nsid is None or int(nsid) in (-1, 0xFFFFFFFF) else int(nsid)
