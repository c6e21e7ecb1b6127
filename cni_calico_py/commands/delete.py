"""DEL: remove the pod's interface (its host end and routes go with it), then release."""

from __future__ import annotations

from typing import Any

from .. import ipam_client
from ..config import NetConf
from ..core.logs import log
from ..core.request import Request
from ..dataplane import netlink, netns, veth
from .common import host_veth_for


def delete(request: Request, netconf: NetConf, raw: dict[str, Any]) -> None:
    # The dataplane goes first: an address released while its route still
    # points at an old veth is what makes Calico's "route already exists" error.
    if not (request.netns and _delete_pod_end(request)):
        _remove_orphaned_host_end(request, netconf, raw)
    ipam_client.call("DEL", request, raw, netconf.ipam.type)


def _delete_pod_end(request: Request) -> bool:
    """Whether the pod's interface was there and is gone now, with its peer."""
    try:
        with netlink.pod_handle(request.netns_path) as pod:
            removed = veth.delete_pod_end(pod, request.ifname)
    except netns.NetnsNotFound:
        log.info("DEL %s: netns %s already gone", request.container_id, request.netns)
        return False
    except netns.NetnsRefused as err:
        # Never touch what it names (the node's own interfaces, say); the
        # reservation is still released, so a runtime's DEL always completes.
        log.warning("DEL %s: %s; releasing the reservation only", request.container_id, err)
        return False
    log.info("DEL %s: pod interface %s", request.container_id,
             "removed" if removed else "already gone")
    return removed


def _remove_orphaned_host_end(request: Request, netconf: NetConf, raw: dict[str, Any]) -> None:
    """The host end of a pair whose pod end could not be reached.

    The kernel destroys the pair with the namespace, but in the background,
    and never while a leftover process keeps the namespace alive: until then
    the node would route an address about to be released to the old veth.
    Without a netns (containerd's second DEL) the host veth is not taken by
    its name alone: a newer sandbox of the same pod may own that name by now.
    Only a veth routing an address this attachment still holds is its own.
    """
    addresses = ipam_client.addresses_of(request, raw, netconf.ipam.type)
    if not addresses:
        return
    host_name = host_veth_for(request, netconf)
    with netlink.host_handle() as host:
        if veth.delete_host_end_routing(host, host_name, addresses):
            log.info("DEL %s: removed %s, still routing %s", request.container_id, host_name,
                     ", ".join(map(str, addresses)))
