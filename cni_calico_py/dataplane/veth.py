"""The veth pair: pod end CNI_IFNAME in the pod, host end `cali...` on the node."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.constants import HOST_VETH_MAC
from ..core.errors import CNIError, Code
from ..core.results import IPAddress
from ..core.rtnl import IFF_UP
from . import netlink, ownership
from .addressing import routes_to

if TYPE_CHECKING:
    from ..core.rtnl import Rtnl


def pod_end_pair(host: Rtnl, pod: Rtnl, pod_index: int,
                 host_names: Sequence[str]) -> LinkFacts | None:
    """The host end, among `host_names`, whose veth peer is the pod's interface `pod_index`."""
    pod_link = pod.link(pod_index)
    peer = pod_link.get("link")
    if _kind(pod_link) != "veth" or not peer:
        return None
    facts = link_facts(host, int(peer))
    if facts is None or facts.name not in host_names or facts.kind != "veth" \
            or facts.peer_index != pod_index:
        return None
    return facts


def _kind(link: Any) -> str | None:
    info = link.get("linkinfo")
    return str(info.get("kind")) if info is not None else None


def refuse_pod_interface(ifname: str, netns_path: str, why: str) -> CNIError:
    return CNIError(
        Code.DATAPLANE_FAILURE,
        f"interface {ifname} already exists in {netns_path} and {why}",
        "the runtime asked to create an interface the pod already has; another container's "
        "attachment in this network namespace is left as it is",
    )


def is_ours(host: Rtnl, facts: LinkFacts, mark: str, held: Callable[[], Sequence[IPAddress]],
            *, unfinished: bool) -> bool:
    """Whether host veth `facts` is the attachment's whose mark is `mark` (ownership.py)."""
    found = ownership.whose(facts.alias, facts.up, mark)
    return ownership.is_mine(found, lambda: routes_one_of(host, facts.index, held()),
                             unfinished=unfinished)


def routes_one_of(host: Rtnl, index: int, addresses: Sequence[IPAddress]) -> bool:
    return any(route.get("oif") == index for a in addresses for route in routes_to(host, a))


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
            raise NameTaken(
                Code.DATAPLANE_FAILURE,
                f"cannot create veth {pod_ifname}/{host_name}: an interface of that name exists",
            ) from err
        raise netlink.failure(f"creating veth {pod_ifname}/{host_name}", err) from err
    finally:
        os.close(host_ns)


class NameTaken(CNIError):
    """One of the pair's names was taken between the look and the creation."""


def delete_if_named(handle: Rtnl, index: int, name: str, what: str) -> bool:
    """Delete link `index` if it still bears `name`: never another link that took the name."""
    facts = link_facts(handle, index)
    if facts is None or facts.name != name:
        return False
    return delete_link(handle, index, what)


def delete_link(handle: Rtnl, index: int, what: str) -> bool:
    """Whether the link was still there: one gone meanwhile is no error."""
    try:
        handle.delete_link(index)
    except OSError as err:
        if netlink.is_missing(err):
            return False
        raise netlink.failure(f"deleting {what}", err) from err
    return True


def set_up(handle: Rtnl, index: int, what: str, alias: str | None = None) -> None:
    try:
        handle.set_up(index, alias)
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
    alias: str = ""  # IFLA_IFALIAS: ADD's owner mark on a host veth (naming.owner_mark)
    up: bool = False


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
        alias=str(msg.get("ifalias") or ""), up=bool(msg["flags"] & IFF_UP),
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
