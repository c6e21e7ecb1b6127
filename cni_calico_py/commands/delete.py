"""DEL: remove the pod's interface (its host end and routes go with it), then release."""

from __future__ import annotations

from typing import Any

from .. import ipam_client
from ..config import NetConf
from ..dataplane import netlink, netns, veth
from ..logs import log
from ..request import Request


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
            # The kernel destroyed the veth pair with the namespace.
            log.info("DEL %s: netns %s already gone", request.container_id, request.netns)
    # Without a netns (containerd's second DEL), the host veth is not looked up
    # by name: a newer sandbox of the same pod may own that name by now.
    ipam_client.call("DEL", request, raw, netconf.ipam.type)
