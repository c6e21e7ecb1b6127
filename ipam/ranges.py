"""The resolved IPAM config: blocks, range sets and ranges as address objects."""

from __future__ import annotations

import os
from dataclasses import dataclass

from cni_calico_py.core import results

from .allocator import Span


@dataclass(frozen=True)
class Range:
    subnet: results.IPNetwork
    first: results.IPAddress
    last: results.IPAddress
    gateway: results.IPAddress | None
    path: str

    def __contains__(self, address: results.IPAddress) -> bool:
        return (address.version == self.first.version
                and int(self.first) <= int(address) <= int(self.last))

    @property
    def span(self) -> Span:
        return Span(self.first, self.last)

    def describe(self) -> str:
        whole = self.first == self.subnet[0] and self.last == self.subnet[-1]
        return str(self.subnet) if whole else f"{self.subnet} ({self.first}-{self.last})"


@dataclass(frozen=True)
class RangeSet:
    """One pool: an attachment gets one address from each range set."""

    index: int
    ranges: tuple[Range, ...]

    def find(self, address: results.IPAddress) -> Range | None:
        return next((r for r in self.ranges if address in r), None)

    def is_gateway(self, address: results.IPAddress) -> bool:
        return any(r.gateway == address for r in self.ranges)

    @property
    def size(self) -> int:
        """Addresses that can be handed out: all of each range but a gateway inside it."""
        total = 0
        for r in self.ranges:
            total += int(r.last) - int(r.first) + 1
            if r.gateway is not None and r.gateway in r:
                total -= 1
        return total

    def describe(self) -> str:
        return ", ".join(r.describe() for r in self.ranges) or "(no block yet)"


@dataclass(frozen=True)
class IpamConf:
    network: str
    range_sets: tuple[RangeSet, ...]
    data_dir: str
    routes: tuple[results.Route, ...]
    lock_timeout: float
    # Set when the blocks come from the node daemon (cluster mode), not the config.
    node_state_file: str | None = None

    @property
    def store_dir(self) -> str:
        return os.path.join(self.data_dir, self.network)

    @property
    def blocks(self) -> tuple[results.IPNetwork, ...]:
        seen: dict[results.IPNetwork, None] = {}
        for range_set in self.range_sets:
            for r in range_set.ranges:
                seen[r.subnet] = None
        return tuple(seen)

    def range_set_of(self, address: results.IPAddress) -> RangeSet | None:
        return next((s for s in self.range_sets if s.find(address) is not None), None)

    def block_of(self, address: results.IPAddress) -> results.IPNetwork | None:
        return next((b for b in self.blocks if address in b), None)
