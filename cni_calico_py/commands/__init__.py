"""One module per CNI verb; each takes the request and its parsed config."""

from __future__ import annotations

from typing import Any

from .. import ipam_client
from ..config import NetConf
from ..core import attachment_lock
from ..core.request import Request
from ..core.results import Result

# The verbs that touch one attachment; each runs alone on it (attachment_lock.py).
ATTACHMENT_VERBS = ("ADD", "DEL", "CHECK")


def dispatch(request: Request, netconf: NetConf, raw: dict[str, Any]) -> Result | None:
    # A config the IPAM cannot serve fails here, before any change to the node.
    ipam_client.preflight(request, raw, netconf.ipam.type)
    if request.command in ATTACHMENT_VERBS:
        with attachment_lock.held(netconf.name, request.container_id, request.ifname,
                                  request.command):
            return _attachment_verb(request, netconf, raw)
    from .housekeeping import gc, status

    if request.command == "GC":
        gc(request, netconf, raw)
    else:
        status(request, netconf, raw)
    return None


def _attachment_verb(request: Request, netconf: NetConf, raw: dict[str, Any]) -> Result | None:
    if request.command == "ADD":
        from .add import add

        return add(request, netconf, raw)
    if request.command == "DEL":
        from .delete import delete

        delete(request, netconf, raw)
        return None
    from .check import check

    check(request, netconf, raw)
    return None
