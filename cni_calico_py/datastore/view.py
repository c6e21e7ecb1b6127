"""What a node knows of the cluster: every node, block and liveness, kept by kind and
followed by watches."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Network
from typing import Any

from .model import (
    BLOCK,
    LIVENESS,
    NODE,
    Block,
    Key,
    Listing,
    Liveness,
    NodeRecord,
    Value,
    WatchEvent,
    cidr_from_name,
)


@dataclass
class Cluster:
    """What a node knows of the cluster: every node, block and liveness, kept by kind."""

    nodes: dict[str, NodeRecord] = field(default_factory=dict)
    blocks: dict[IPv4Network, Block] = field(default_factory=dict)
    liveness: dict[str, Liveness] = field(default_factory=dict)
    revisions: dict[str, str] = field(default_factory=dict)

    def take(self, kind: str, listing: Listing) -> None:
        self._table(kind).clear()
        for kv in listing.items:
            self._put(kv.key, kv.value)
        self.revisions[kind] = listing.revision

    def apply(self, events: list[WatchEvent]) -> bool:
        """True when something changed."""
        changed = False
        for event in events:
            table = self._table(event.key.kind)
            before = table.get(self._index(event.key))
            if event.value is None:
                table.pop(self._index(event.key), None)
            else:
                self._put(event.key, event.value)
            after = table.get(self._index(event.key))
            if isinstance(before, Liveness) and isinstance(after, Liveness):
                # A renewal changes nothing the node acts on; a lapse is found by time.
                changed |= before.alive() != after.alive()
            elif isinstance(before, Block) and isinstance(after, Block):
                # Its mirrored allocations do not change who routes it.
                changed |= before.owner != after.owner
            else:
                changed |= after != before
            self.revisions[event.key.kind] = event.revision
        return changed

    def _table(self, kind: str) -> dict[Any, Any]:
        tables: dict[str, dict[Any, Any]] = {NODE: self.nodes, BLOCK: self.blocks,
                                             LIVENESS: self.liveness}
        return tables.get(kind, {})

    @staticmethod
    def _index(key: Key) -> Any:
        return cidr_from_name(key.name) if key.kind == BLOCK else key.name

    def _put(self, key: Key, value: Value) -> None:
        if isinstance(value, Block):
            self.blocks[value.cidr] = value
        elif isinstance(value, NodeRecord):
            self.nodes[value.name] = value
        elif isinstance(value, Liveness):
            self.liveness[value.node] = value

    def node_list(self) -> list[NodeRecord]:
        return sorted(self.nodes.values(), key=lambda n: n.name)

    def owners(self) -> dict[IPv4Network, str]:
        return {cidr: block.owner or "?" for cidr, block in self.blocks.items()}

    def alive(self, now: float | None = None) -> set[str]:
        return {name for name, live in self.liveness.items() if live.alive(now)}

    def next_expiry(self) -> float | None:
        """When a node that is alive now stops being so, unless it renews (wall clock)."""
        times = [t for live in self.liveness.values() if (t := live.expires()) is not None
                 and live.alive()]
        return min(times, default=None)
