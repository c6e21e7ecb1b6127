"""DEL: remove the pod's interface (its host end and routes go with it), then release."""

from __future__ import annotations

from typing import Any

from .. import ipam_client
from ..config import NetConf
from ..dataplane import netlink, netns, veth
from ..logs import log
from ..request import Request
from .common import host_veth_for


def delete(request: Request, netconf: NetConf, raw: dict[str, Any]) -> None:
    # The dataplane goes first: an address released while its route still
    # points at an old veth is what makes Calico's "route already exists" error.
    if request.netns:
        try:
            with netlink.pod_handle(request.netns) as pod:
                removed = veth.delete_pod_end(pod, request.ifname)
                log.info("DEL %s: pod interface %s", request.container_id,
                         "removed" if removed else "already gone")
        except netns.NetnsNotFound:
            log.info("DEL %s: netns %s already gone", request.container_id, request.netns)
            _remove_orphaned_host_end(request, netconf, raw)
    # Without a netns (containerd's second DEL), the host veth is not looked up
    # by name: a newer sandbox of the same pod may own that name by now.
    ipam_client.call("DEL", request, raw, netconf.ipam.type)


def _remove_orphaned_host_end(request: Request, netconf: NetConf, raw: dict[str, Any]) -> None:
    """The kernel destroys the pair with the namespace, but in the background,
    and never while a leftover process keeps the namespace alive: until then the
    node would route an address about to be released to the old veth."""
    addresses = ipam_client.addresses_of(request, raw, netconf.ipam.type)
    if not addresses:
        return
    host_name = host_veth_for(request, netconf)
    with netlink.host_handle() as host:
        if veth.delete_host_end_routing(host, host_name, addresses):
            log.info("DEL %s: removed %s, still routing %s", request.container_id, host_name,
                     ", ".join(map(str, addresses)))
