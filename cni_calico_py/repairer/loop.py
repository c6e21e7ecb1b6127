"""The repairer's loop: notifications in, checks and repairs out (see the package's docstring)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from ipaddress import ip_network

from ipam.api import bird_holds_blackholes, restore_blackhole

from ..core import attachment_lock, repairs, rtnl_events
from ..core.errors import CNIError
from ..core.logs import log
from ..core.results import IPNetwork
from ..core.rtnl import Rtnl
from ..dataplane import addressing, sysctl
from .targets import RTN_BLACKHOLE, Targets, target
from .wanted import Attachment, Wanted, held_by, marked_link, read_wanted, settings_off

CHECK_SECONDS = 30.0
BUSY_RETRY_SECONDS = 0.05
BUSY_RETRIES = 100  # 5 s of a busy attachment: a request holds it; it rechecks after


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
                    target(event, targets)
            if not events.wait(deadline - time.monotonic()):
                return

    def check(self, targets: Targets) -> float | None:
        """Repair what `targets` name; when to come back for busy attachments (None: never)."""
        if not (targets.everything or targets.addresses or self.busy):
            # A veth set down that is gone by now is a DEL's: nothing to read the node for.
            targets.indexes = {i for i in targets.indexes if self._exists(i)}
        if not (targets.everything or targets.addresses or targets.indexes or self.busy):
            # Only blackholes went (mostly a DEL emptying its block): the block's own
            # lock and list say whether one is due, without reading the whole node.
            self._blackholes_only(targets)
            return None
        try:
            wanted = read_wanted(self.rtnl, self.state_file)
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
        chosen += [a for a in wanted.attachments if a.key in busy_keys]
        for attachment in dict.fromkeys(chosen):
            self._attachment(attachment, wanted)
        blocks = wanted.blocks if targets.everything or targets.blocks else ()
        if not wanted.bird_holds_blackholes:
            for block in blocks:
                self._blackhole(block, wanted)
        return time.monotonic() + BUSY_RETRY_SECONDS if self.busy else None

    def _exists(self, index: int) -> bool:
        try:
            self.rtnl.link(index)
        except OSError:
            return False
        return True

    def _blackholes_only(self, targets: Targets) -> None:
        try:
            if bird_holds_blackholes(self.state_file):
                return
            for dst, length in targets.blocks:
                block = ip_network(f"{dst}/{length}", strict=False)
                if restore_blackhole(block):
                    self._done("blackhole", str(block), f"blackhole {block} was missing",
                               "added it")
        except (OSError, ValueError, CNIError) as err:
            log.warning("repairer: blackholes %s: %s", sorted(targets.blocks), err)

    def _attachment(self, attachment: Attachment, wanted: Wanted) -> None:
        link = wanted.links.get(attachment.mark)
        key = attachment.key
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
        return bool(settings_off(name, attachment.addresses))

    def _repair(self, attachment: Attachment) -> None:
        """Under the attachment's lock: read again, then put back what is missing."""
        current = held_by(attachment, self.state_file)
        if not current:
            return  # released meanwhile: a DEL finished
        link = marked_link(self.rtnl, attachment.mark)
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

    def _blackhole(self, block: IPNetwork, wanted: Wanted) -> None:
        key = (str(block.network_address), block.prefixlen)
        if any(rtype == RTN_BLACKHOLE for _, rtype in wanted.routes.get(key, [])):
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
