"""GC and STATUS: the address store's business, which IPAM answers; GC also cleans the node.

An address GC frees must not stay routed to the pod that held it: the next
pod given the address would fail to route it, or the old pod would get its
traffic. So before our IPAM frees a stale address, the host veth routing it
goes (its route with it); and an address whose record cannot be read is kept
while the node routes it to a live pod interface, since whose it is cannot
be told.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import ipam_client
from ..config import NetConf
from ..core.logs import log
from ..core.request import Request
from ..core.results import IPAddress
from ..dataplane import netlink, veth

if TYPE_CHECKING:
    from ipam.store import Reservation

    from ..core.rtnl import Rtnl


def gc(request: Request, netconf: NetConf, raw: dict[str, Any]) -> None:
    if netconf.ipam.type != ipam_client.IN_PROCESS_TYPE:
        # A foreign IPAM frees without asking: its reservations cannot be seen.
        ipam_client.call("GC", request, raw, netconf.ipam.type)
        return
    with netlink.host_handle() as host:
        ipam_client.gc(request, raw, netconf.ipam.type, before_release(host, netconf.veth_prefix))


def before_release(host: Rtnl, veth_prefix: str) -> Callable[[IPAddress, Reservation], bool]:
    """Asked by the IPAM, under its store's lock, before it frees each stale address."""

    def may_release(address: IPAddress, record: Reservation) -> bool:
        try:
            links = veth.links_routing(host, address)
        except OSError as err:
            raise netlink.failure(f"reading the node's routes to {address}", err) from err
        pod_ends = [link for link in links if _is_pod_end(link, veth_prefix)]
        if record.damaged:
            if pod_ends:
                log.warning(
                    "GC keeps %s: its record is unreadable (%s) and the node routes it to %s, a "
                    "live pod interface; delete that interface or repair the record to free it",
                    address, record.damaged, ", ".join(link.name for link in pod_ends))
                return False
            return True
        for link in pod_ends:
            # Deleting either end of the pair removes both, and the routes through them.
            if veth.delete_host_end_routing(host, link.name, [address]):
                log.info("GC: removed %s, routing %s of stale container %s ifname %s",
                         link.name, address, record.container_id, record.ifname)
        for link in links:
            if not _is_pod_end(link, veth_prefix):
                log.warning("GC frees %s; the node routes it via %s, which is not a pod "
                            "interface of this network, and is left alone", address, link.name)
        return True

    return may_release


def _is_pod_end(link: veth.LinkFacts, veth_prefix: str) -> bool:
    """A host veth of this network: never the uplink, nor another plugin's device."""
    return link.kind == "veth" and link.name.startswith(veth_prefix)


def status(request: Request, netconf: NetConf, raw: dict[str, Any]) -> None:
    ipam_client.call("STATUS", request, raw, netconf.ipam.type)
