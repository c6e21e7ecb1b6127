"""One module per CNI verb; each takes the request and its parsed config."""

from __future__ import annotations

from typing import Any

from .. import ipam_client
from ..config import NetConf
from ..request import Request
from ..results import Result


def dispatch(request: Request, netconf: NetConf, raw: dict[str, Any]) -> Result | None:
    # A config the IPAM cannot serve fails here, before any change to the node.
    ipam_client.preflight(request, raw, netconf.ipam.type)
    if request.command == "ADD":
        from .add import add

        return add(request, netconf, raw)
    if request.command == "DEL":
        from .delete import delete

        delete(request, netconf, raw)
        return None
    if request.command == "CHECK":
        from .check import check

        check(request, netconf, raw)
        return None
    from .housekeeping import gc, status

    if request.command == "GC":
        gc(request, netconf, raw)
    else:
        status(request, netconf, raw)
    return None
