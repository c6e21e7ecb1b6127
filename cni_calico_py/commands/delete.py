"""DEL: remove the pod's interface if it is this attachment's (its host end and routes go with
it), then release the attachment's addresses.

A DEL for a container that owns nothing in the namespace (another sandbox of
the pod, or a container whose ADD was refused) changes nothing there and
releases only its own reservation: the pair is removed only when it carries
the attachment's mark (dataplane/ownership.py), never by its name alone.
"""

from __future__ import annotations

from functools import cache

from ..core import attachment_lock, cancel
from ..core.logs import log
from ..dataplane import netns
from ..dataplane.api import Dataplane, Held
from ..ipam_client import Ipam
from .invocation import Invocation


def delete(inv: Invocation, ipam: Ipam, dataplane: Dataplane) -> None:
    # Read at most once, and only for a pair that predates the owner mark.
    held: Held = cache(ipam.addresses_of)
    attachment_lock.confirm("removing the pod's interface")
    # Once the node is changed, the DEL goes to its end even if its caller goes:
    # a half-done DEL would leave an address reserved for a pod without wiring.
    with cancel.suspended():
        # The dataplane goes first: an address released while its route still
        # points at an old veth is what makes Calico's "route already exists" error.
        if not (inv.request.netns and _delete_pod_end(inv, dataplane, held)):
            _remove_orphaned_host_end(inv, dataplane, held)
        attachment_lock.confirm("releasing the attachment's addresses")
        ipam.release()


def _delete_pod_end(inv: Invocation, dataplane: Dataplane, held: Held) -> bool:
    """Whether the pod's interface was there, this attachment's, and is gone now, with its peer."""
    request = inv.request
    try:
        removed = dataplane.teardown(inv.pod, held)
    except netns.NetnsNotFound:
        log.info("DEL %s: netns %s already gone", request.container_id, request.netns)
        return False
    except netns.NetnsRefused as err:
        # Never touch what it names (the node's own interfaces, say); the
        # reservation is still released, so a runtime's DEL always completes.
        log.warning("DEL %s: %s; releasing the reservation only", request.container_id, err)
        return False
    if removed:
        log.info("DEL %s: pod interface removed", request.container_id)
    return removed


def _remove_orphaned_host_end(inv: Invocation, dataplane: Dataplane,
                              held: Held) -> None:
    """The host end of a pair whose pod end could not be reached.

    The kernel destroys the pair with the namespace, but in the background,
    and never while a leftover process keeps the namespace alive: until then
    the node would route an address about to be released to the old veth.
    Without a netns (containerd's second DEL) the host veth is not taken by
    its name alone: a newer sandbox of the same pod may own that name by now.
    Only a veth marked as this attachment's (or, unmarked, routing an address
    it still holds) is its own.
    """
    removed = dataplane.remove_orphan(inv.pod.host_names, inv.pod.owner, held)
    if removed:
        log.info("DEL %s: removed its host interface %s, whose pod end was out of reach",
                 inv.request.container_id, removed)
