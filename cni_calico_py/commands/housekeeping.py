"""GC and STATUS: both are the address store's business, so IPAM answers them."""

from __future__ import annotations

from typing import Any

from .. import ipam_client
from ..config import NetConf
from ..request import Request


def gc(request: Request, netconf: NetConf, raw: dict[str, Any]) -> None:
    ipam_client.call("GC", request, raw, netconf.ipam.type)


def status(request: Request, netconf: NetConf, raw: dict[str, Any]) -> None:
    ipam_client.call("STATUS", request, raw, netconf.ipam.type)
