"""DEL: remove the pod's interface (its host end and routes go with it), then release."""

from __future__ import annotations

from ..core.logs import log
from ..dataplane import netns
from ..dataplane.api import Dataplane
from ..ipam_client import Ipam
from .invocation import Invocation


def delete(inv: Invocation, ipam: Ipam, dataplane: Dataplane) -> None:
    # The dataplane goes first: an address released while its route still
    # points at an old veth is what makes Calico's "route already exists" error.
    if not (inv.request.netns and _delete_pod_end(inv, dataplane)):
        _remove_orphaned_host_end(inv, ipam, dataplane)
    ipam.release()


def _delete_pod_end(inv: Invocation, dataplane: Dataplane) -> bool:
    """Whether the pod's interface was there and is gone now, with its peer."""
    request = inv.request
    try:
        removed = dataplane.teardown(inv.pod)
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


def _remove_orphaned_host_end(inv: Invocation, ipam: Ipam, dataplane: Dataplane) -> None:
    """The host end of a pair whose pod end could not be reached.

    The kernel destroys the pair with the namespace, but in the background,
    and never while a leftover process keeps the namespace alive: until then
    the node would route an address about to be released to the old veth.
    Without a netns (containerd's second DEL) the host veth is not taken by
    its name alone: a newer sandbox of the same pod may own that name by now.
    Only a veth routing an address this attachment still holds is its own.
    """
    addresses = ipam.addresses_of()
    if not addresses:
        return
    if dataplane.remove_orphan(inv.host_veth, addresses):
        log.info("DEL %s: removed %s, still routing %s", inv.request.container_id, inv.host_veth,
                 ", ".join(map(str, addresses)))
