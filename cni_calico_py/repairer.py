"""The repairer: what ADD wired on this node comes back when something removes it.

It runs in the agent (a process of its own beside the workers, agent/repair.py)
and in the node daemon (a thread), asleep on rtnetlink notifications; both may
run on one node, as neither writes what is already there. What should exist comes from
the node's records, never from what happens to be in the kernel: every
address the node's stores hold (ipam.api.node_holdings) whose attachment
still has its marked host veth (the mark ADD sets, dataplane/naming.py)
should have:
- that veth up, with Calico's host settings (proxy_arp and the others);
- the node's `<address>/32 dev <veth> scope link` route;
- its block's blackhole (unless BIRD holds the node's blackholes).

A notification that can take one of these away (a route to a pod address or
a blackhole deleted, a marked veth down, proxy_arp turned off) starts a
check of what it concerns at once; the kernel drops a downed veth's routes
without telling, which the link's notification covers. Every CHECK_SECONDS
the whole node is compared, for the settings the kernel does not announce.

A repair never fights a request: it takes the attachment's lock without
waiting (a busy attachment is checked again shortly), reads the records
again under it, and acts only on a veth that still carries the attachment's
mark. A veth that is gone is not brought back: its pod is gone, or being
torn down. Nothing is written when nothing is missing, so the repairer's own
changes end in a quiet check. Each repair is logged, counted (a line to the
agent) and appended to the node's repair journal (core/repairs.py), which
`calico-py explain` reads.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ipam.api import Holding, NodeHoldings, node_holdings, restore_blackhole

from .core import attachment_lock, repairs, rtnl_events
from .core.constants import MAIN_TABLE
from .core.errors import CNIError
from .core.logs import log
from .core.results import IPAddress, IPNetwork
from .core.rtnl import IFF_UP, Rtnl
from .dataplane import addressing, sysctl
from .dataplane.naming import OWNER_MARK, owner_mark

CHECK_SECONDS = 30.0
BUSY_RETRY_SECONDS = 0.05
BUSY_RETRIES = 100  # 5 s of a busy attachment: a request holds it; it rechecks after
_RTN_BLACKHOLE = 6


@dataclass(frozen=True)
class Attachment:
    network: str
    container_id: str
    ifname: str
    addresses: tuple[IPAddress, ...]

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


@dataclass
class Targets:
    """What the next check covers: everything, or what the notifications named."""

    everything: bool = False
    addresses: set[str] = field(default_factory=set)
    indexes: set[int] = field(default_factory=set)
    blocks: set[tuple[str, int]] = field(default_factory=set)

    def __bool__(self) -> bool:
        return self.everything or bool(self.addresses or self.indexes or self.blocks)


class Repairer:
    def __init__(self, report: Callable[[str], None], by: str,
                 state_file: str | None = None) -> None:
        self.report = report
        self.by = by  # who repairs, for the journal: "agent" or "node"
        self.state_file = state_file  # the node state file (cluster mode), if not the default
        self.rtnl = Rtnl(strict_check=True)
        self.busy: dict[tuple[str, str, str], int] = {}  # attachment key -> tries so far

    def run(self, stopping: Callable[[], bool]) -> None:
        events = rtnl_events.Subscription()
        log.info("%s repairer %d following the node's links and routes", self.by, os.getpid())
        # Subscribed first: whatever changes from here on is either seen by this
        # first full check or announced after it.
        targets = Targets(everything=True)
        next_full = time.monotonic()
        retry_at: float | None = None
        try:
            while not stopping():
                now = time.monotonic()
                if now >= next_full:
                    targets.everything = True
                    next_full = now + CHECK_SECONDS
                if targets or (retry_at is not None and now >= retry_at):
                    retry_at = self.check(targets)
                    targets = Targets()
                deadline = min(next_full, retry_at if retry_at is not None else next_full)
                if events.wait(deadline - time.monotonic()):
                    self._collect(events, targets)
        finally:
            events.close()
            self.rtnl.close()

    def _collect(self, events: rtnl_events.Subscription, targets: Targets) -> None:
        """Read what the kernel announced; a short pause gathers a burst into one check."""
        deadline = time.monotonic() + 0.005
        while True:
            read = events.read()
            if read is None:
                targets.everything = True  # notifications were lost
            else:
                for event in read:
                    _target(event, targets)
            if not events.wait(deadline - time.monotonic()):
                return

    def check(self, targets: Targets) -> float | None:
        """Repair what `targets` name; when to come back for busy attachments (None: never)."""
        try:
            wanted = self._read()
        except (OSError, CNIError) as err:
            log.warning("repairer: cannot read the node's records or links: %s", err)
            return time.monotonic() + 1.0
        chosen: list[Attachment] = []
        if targets.everything:
            chosen = list(wanted.attachments)
        else:
            for address in targets.addresses:
                chosen += wanted.by_address(address)
            for index in targets.indexes:
                chosen += wanted.by_index(index)
        busy_keys = set(self.busy)
        chosen += [a for a in wanted.attachments if (a.network, a.container_id, a.ifname) in busy_keys]
        for attachment in dict.fromkeys(chosen):
            self._attachment(attachment, wanted)
        blocks = wanted.blocks if targets.everything or targets.blocks else ()
        if not wanted.bird_holds_blackholes:
            for block in blocks:
                self._blackhole(block, wanted)
        return time.monotonic() + BUSY_RETRY_SECONDS if self.busy else None

    def _read(self) -> Wanted:
        held: NodeHoldings = node_holdings(self.state_file)
        attachments: dict[tuple[str, str, str], list[IPAddress]] = {}
        for holding in held.holdings:
            attachments.setdefault(_key(holding), []).append(holding.address)
        links = {}
        for link in self.rtnl.links():
            alias = str(link.get("ifalias") or "")
            if alias.startswith(OWNER_MARK):
                links[alias] = (int(link["index"]), str(link.get("ifname")),
                                bool(link["flags"] & IFF_UP))
        routes: dict[tuple[str, int], list[tuple[int, int]]] = {}
        for family in (socket.AF_INET, socket.AF_INET6):
            for route in self.rtnl.routes(family, table=MAIN_TABLE):
                if (route.get("table") or MAIN_TABLE) != MAIN_TABLE:
                    continue
                key = (str(route.get("dst") or ""), int(route["dst_len"]))
                routes.setdefault(key, []).append((int(route.get("oif") or 0), int(route["type"])))
        return Wanted(
            [Attachment(n, c, i, tuple(a)) for (n, c, i), a in sorted(attachments.items())],
            held.blocks, held.bird_holds_blackholes, links, routes)

    def _attachment(self, attachment: Attachment, wanted: Wanted) -> None:
        link = wanted.links.get(attachment.mark)
        key = (attachment.network, attachment.container_id, attachment.ifname)
        if link is None:
            self.busy.pop(key, None)  # its pod is gone, or was never wired here
            return
        if not self._broken(attachment, link, wanted):
            self.busy.pop(key, None)
            return
        try:
            with attachment_lock.held(*key, "repair", wait=0.0):
                self.busy.pop(key, None)
                self._repair(attachment)
        except CNIError as err:
            if err.code != 11:
                log.warning("repairer: %s/%s: %s", attachment.container_id, attachment.ifname,
                            err.msg)
                return
            tries = self.busy.get(key, 0) + 1
            if tries > BUSY_RETRIES:
                self.busy.pop(key, None)  # the periodic check comes back to it
            else:
                self.busy[key] = tries

    def _broken(self, attachment: Attachment, link: tuple[int, str, bool],
                wanted: Wanted) -> bool:
        """A quick look without the lock: is anything of this attachment missing?"""
        index, name, up = link
        if not up:
            return True
        for address in attachment.addresses:
            key = (str(address), address.max_prefixlen)
            if not any(oif == index for oif, _ in wanted.routes.get(key, [])):
                return True
        return bool(_settings_off(name, attachment.addresses))

    def _repair(self, attachment: Attachment) -> None:
        """Under the attachment's lock: read again, then put back what is missing."""
        current = [h.address for h in node_holdings(self.state_file).holdings
                   if (h.network, h.container_id, h.ifname) == (attachment.network,
                                                              attachment.container_id,
                                                              attachment.ifname)]
        if not current:
            return  # released meanwhile: a DEL finished
        link = self._marked(attachment.mark)
        if link is None:
            return
        index, name, up = link
        who = f"{attachment.container_id}/{attachment.ifname}"
        if not up:
            self.rtnl.set_up(index)
            self._done("link", name, f"{name} of {who} was down", "set it up")
        for fixed in sysctl.restore_host_veth(name, any(a.version == 4 for a in current),
                                              any(a.version == 6 for a in current)):
            self._done("sysctl", name, fixed, "restored it")
        for address in current:
            prefix = f"{address}/{address.max_prefixlen}"
            if any(r.get("oif") == index for r in addressing.routes_to(self.rtnl, address)):
                continue
            try:
                addressing.add_host_route(self.rtnl, address, index, name)
            except CNIError as err:
                log.warning("repairer: %s: %s", who, err.msg)
                continue
            self._done("route", prefix, f"route {prefix} dev {name} of {who} was missing",
                       "added it")

    def _marked(self, mark: str) -> tuple[int, str, bool] | None:
        for link in self.rtnl.links():
            if str(link.get("ifalias") or "") == mark:
                return int(link["index"]), str(link.get("ifname")), bool(link["flags"] & IFF_UP)
        return None

    def _blackhole(self, block: IPNetwork, wanted: Wanted) -> None:
        key = (str(block.network_address), block.prefixlen)
        if any(rtype == _RTN_BLACKHOLE for _, rtype in wanted.routes.get(key, [])):
            return
        if wanted.routes.get(key):
            return  # another route for the block: an operator's, not to be fought
        try:
            if restore_blackhole(block):
                self._done("blackhole", str(block), f"blackhole {block} was missing", "added it")
        except CNIError as err:
            log.warning("repairer: blackhole %s: %s", block, err.msg)

    def _done(self, what: str, key: str, found: str, done: str) -> None:
        log.info("repaired %s: %s; %s", what, found, done)
        repairs.record(self.by, what, key, found, done)
        self.report(what)


def _key(holding: Holding) -> tuple[str, str, str]:
    return holding.network, holding.container_id, holding.ifname


def _settings_off(name: str, addresses: tuple[IPAddress, ...]) -> list[str]:
    off = []
    for proto, kind, key, value in sysctl.host_settings(any(a.version == 4 for a in addresses),
                                                         any(a.version == 6 for a in addresses)):
        try:
            if sysctl.read(proto, kind, name, key) != value:
                off.append(key)
        except OSError:
            continue
    return off


def _target(event: rtnl_events.Event, targets: Targets) -> None:
    """What a notification may have taken away."""
    if isinstance(event, rtnl_events.RouteEvent):
        if not event.deleted or event.table != MAIN_TABLE:
            return
        if event.type == _RTN_BLACKHOLE:
            targets.blocks.add((event.dst, event.dst_len))
        elif event.dst_len in (32, 128):
            targets.addresses.add(event.dst)
    elif isinstance(event, rtnl_events.LinkEvent):
        # Down, or down and up again: the kernel dropped its routes either way.
        if not event.deleted and event.alias.startswith(OWNER_MARK):
            targets.indexes.add(event.index)
    elif isinstance(event, rtnl_events.NetconfEvent) and event.proxy_neigh == 0 \
            and event.index > 0:
        targets.indexes.add(event.index)

