"""One module per CNI verb; each reads as IPAM + dataplane + result.

A verb takes the invocation (request, config), the IPAM as it sees it
(`ipam_client.Ipam`) and the pod wiring (`dataplane.api.Dataplane`): the
real ones here, fakes in unit tests.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from .. import ipam_client
from ..config import NetConf
from ..core import attachment_lock
from ..core.request import Request
from ..core.results import Result
from ..dataplane.api import Dataplane
from ..dataplane.linux import LinuxDataplane
from .invocation import Invocation

# The verbs that touch one attachment; each runs alone on it (attachment_lock.py).
ATTACHMENT_VERBS = ("ADD", "DEL", "CHECK")

Verb = Callable[[Invocation, ipam_client.Ipam, Dataplane], "Result | None"]


def dispatch(request: Request, netconf: NetConf, raw: dict[str, Any]) -> Result | None:
    # A config the IPAM cannot serve fails here, before any change to the node.
    ipam_client.preflight(request, raw, netconf.ipam.type)
    inv = Invocation(request, netconf, raw)
    ipam = ipam_client.IpamClient(request, raw, netconf.ipam.type)
    lock: AbstractContextManager[object] = nullcontext()
    if request.command in ATTACHMENT_VERBS:
        lock = attachment_lock.held(netconf.name, request.container_id, request.ifname,
                                    request.command)
    with lock, LinuxDataplane() as dataplane:
        return verb(request.command)(inv, ipam, dataplane)


def verb(command: str) -> Verb:
    """The handler of `command` (ADD, DEL, CHECK, GC or STATUS)."""
    if command == "ADD":
        from .add import add

        return add
    if command == "DEL":
        from .delete import delete

        return delete
    if command == "CHECK":
        from .check import check

        return check
    from .housekeeping import gc, status

    return gc if command == "GC" else status
