"""Which of the node's notifications may have taken away what ADD wired, and so what to check."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core import rtnl_events
from ..core.constants import MAIN_TABLE
from ..dataplane.naming import OWNER_MARK

RTN_BLACKHOLE = 6


@dataclass
class Targets:
    """What the next check covers: everything, or what the notifications named."""

    everything: bool = False
    addresses: set[str] = field(default_factory=set)
    indexes: set[int] = field(default_factory=set)
    blocks: set[tuple[str, int]] = field(default_factory=set)

    def __bool__(self) -> bool:
        return self.everything or bool(self.addresses or self.indexes or self.blocks)


def target(event: rtnl_events.Event, targets: Targets) -> None:
    """What a notification may have taken away."""
    if isinstance(event, rtnl_events.RouteEvent):
        if not event.deleted or event.table != MAIN_TABLE:
            return
        if event.type == RTN_BLACKHOLE:
            targets.blocks.add((event.dst, event.dst_len))
        elif event.dst_len in (32, 128):
            targets.addresses.add(event.dst)
    elif isinstance(event, rtnl_events.LinkEvent):
        # Set down (and perhaps up again by now: the kernel dropped its routes either way,
        # and the down notice comes first). A notice that changed no flag (ADD marking
        # the veth before bringing it up) is no reason to look.
        if not event.deleted and event.went_down and event.alias.startswith(OWNER_MARK):
            targets.indexes.add(event.index)
    elif isinstance(event, rtnl_events.NetconfEvent) and event.proxy_neigh == 0 \
            and event.index > 0:
        targets.indexes.add(event.index)
