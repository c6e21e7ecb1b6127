"""What the node's records say should be wired, and what the kernel has now."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from ipam.api import Holding, NodeHoldings, node_holdings

from ..core.constants import MAIN_TABLE
from ..core.results import IPAddress, IPNetwork
from ..core.rtnl import IFF_UP, Rtnl
from ..dataplane import sysctl
from ..dataplane.naming import OWNER_MARK, owner_mark


@dataclass(frozen=True)
class Attachment:
    network: str
    container_id: str
    ifname: str
    addresses: tuple[IPAddress, ...]

    @property
    def key(self) -> tuple[str, str, str]:
        return self.network, self.container_id, self.ifname

    @property
    def mark(self) -> str:
        return owner_mark(self.network, self.container_id, self.ifname)


@dataclass
class Wanted:
    """What the records say this node should have, and the kernel's links and routes now."""

    attachments: list[Attachment]
    blocks: tuple[IPNetwork, ...]
    bird_holds_blackholes: bool
    links: dict[str, tuple[int, str, bool]]  # mark -> (index, name, up)
    routes: dict[tuple[str, int], list[tuple[int, int]]]  # (dst, len) -> [(oif, type)]

    def by_address(self, address: str) -> list[Attachment]:
        return [a for a in self.attachments if any(str(x) == address for x in a.addresses)]

    def by_index(self, index: int) -> list[Attachment]:
        marks = {mark for mark, (i, _, _) in self.links.items() if i == index}
        return [a for a in self.attachments if a.mark in marks]


def read_wanted(rtnl: Rtnl, state_file: str | None) -> Wanted:
    """What the records want, and the kernel's marked links and main-table routes now."""
    held: NodeHoldings = node_holdings(state_file)
    attachments: dict[tuple[str, str, str], list[IPAddress]] = {}
    for holding in held.holdings:
        attachments.setdefault(key_of(holding), []).append(holding.address)
    links = {}
    for link in rtnl.links():
        alias = str(link.get("ifalias") or "")
        if alias.startswith(OWNER_MARK):
            links[alias] = (int(link["index"]), str(link.get("ifname")),
                            bool(link["flags"] & IFF_UP))
    routes: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for family in (socket.AF_INET, socket.AF_INET6):
        for route in rtnl.routes(family, table=MAIN_TABLE):
            if (route.get("table") or MAIN_TABLE) != MAIN_TABLE:
                continue
            key = (str(route.get("dst") or ""), int(route["dst_len"]))
            routes.setdefault(key, []).append((int(route.get("oif") or 0), int(route["type"])))
    return Wanted(
        [Attachment(n, c, i, tuple(a)) for (n, c, i), a in sorted(attachments.items())],
        held.blocks, held.bird_holds_blackholes, links, routes)



def marked_link(rtnl: Rtnl, mark: str) -> tuple[int, str, bool] | None:
    """The link carrying `mark`: index, name, up."""
    for link in rtnl.links():
        if str(link.get("ifalias") or "") == mark:
            return int(link["index"]), str(link.get("ifname")), bool(link["flags"] & IFF_UP)
    return None



def held_by(attachment: Attachment, state_file: str | None) -> list[IPAddress]:
    """The addresses the attachment's records hold now."""
    return [h.address for h in node_holdings(state_file).holdings if key_of(h) == attachment.key]


def key_of(holding: Holding) -> tuple[str, str, str]:
    return holding.network, holding.container_id, holding.ifname


def settings_off(name: str, addresses: tuple[IPAddress, ...]) -> list[str]:
    off = []
    for proto, kind, key, value in sysctl.host_settings(any(a.version == 4 for a in addresses),
                                                         any(a.version == 6 for a in addresses)):
        try:
            if sysctl.read(proto, kind, name, key) != value:
                off.append(key)
        except OSError:
            continue
    return off
