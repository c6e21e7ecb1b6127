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
from typing import Protocol

from ..core.logs import log
from ..core.results import IPAddress
from ..dataplane.api import Dataplane
from ..dataplane.naming import OWNER_MARK, owner_mark
from ..dataplane.veth import LinkFacts
from ..ipam_client import Ipam
from .invocation import Invocation


class StaleRecord(Protocol):
    """What GC reads of a reservation it is about to free (ipam.store.Reservation)."""

    @property
    def damaged(self) -> str: ...
    @property
    def container_id(self) -> str: ...
    @property
    def ifname(self) -> str: ...


def gc(inv: Invocation, ipam: Ipam, dataplane: Dataplane) -> None:
    # A foreign IPAM frees without asking (its reservations cannot be seen): it
    # never calls the hook, and the node's links are never read.
    ipam.gc(before_release(dataplane, inv.netconf.veth_prefix, inv.netconf.name))


def before_release(dataplane: Dataplane, veth_prefix: str,
                   network: str) -> Callable[[IPAddress, StaleRecord], bool]:
    """Asked by the IPAM, under its store's lock, before it frees each stale address."""

    def may_release(address: IPAddress, record: StaleRecord) -> bool:
        links = dataplane.links_routing(address)
        pod_ends = [link for link in links if _is_pod_end(link, veth_prefix)]
        if record.damaged:
            if pod_ends:
                log.warning(
                    "GC keeps %s: its record is unreadable (%s) and the node routes it to %s, a "
                    "live pod interface; delete that interface or repair the record to free it",
                    address, record.damaged, ", ".join(link.name for link in pod_ends))
                return False
            return True
        owner = owner_mark(network, record.container_id, record.ifname)
        for link in pod_ends:
            if link.alias.startswith(OWNER_MARK) and link.alias != owner:
                log.warning(
                    "GC keeps %s: its record names stale container %s ifname %s, but the node "
                    "routes it to %s, which another attachment made; run CHECK on that pod",
                    address, record.container_id, record.ifname, link.name)
                return False
            # Deleting either end of the pair removes both, and the routes through them.
            if dataplane.remove_orphan([link.name], owner, lambda: [address]):
                log.info("GC: removed %s, routing %s of stale container %s ifname %s",
                         link.name, address, record.container_id, record.ifname)
        for link in links:
            if not _is_pod_end(link, veth_prefix):
                log.warning("GC frees %s; the node routes it via %s, which is not a pod "
                            "interface of this network, and is left alone", address, link.name)
        return True

    return may_release


def _is_pod_end(link: LinkFacts, veth_prefix: str) -> bool:
    """A host veth of this network: never the uplink, nor another plugin's device."""
    return link.kind == "veth" and link.name.startswith(veth_prefix)


def status(inv: Invocation, ipam: Ipam, dataplane: Dataplane) -> None:
    ipam.status()
