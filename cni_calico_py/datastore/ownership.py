"""Who owns which block of the pool, above any backend, with Calico's claim protocol.

A claim is three compare-and-swap steps, each safe to stop after:
1. create the node's affinity for the block as `pending`;
2. create the block with `affinity: host:<node>`: of two nodes racing for
   one block exactly one create succeeds; the loser deletes its pending
   affinity and tries the next block;
3. mark the affinity `confirmed`.
A release runs the other way: the affinity goes to `pendingDeletion`, the
block is deleted (only while it is still the node's), then the affinity.

The node uses a block for addresses only with its confirmed affinity; the
other nodes route a block to the node its `affinity` names (the block's
create is the step no two nodes can both take). A pending affinity without
its block is nobody's. `recover` finishes what a killed daemon left half
done, and gives a block written before affinities existed its confirmed one.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Collection, Iterator
from dataclasses import replace
from ipaddress import IPv4Network
from typing import TypeVar

from ..core.logs import log
from .backend import Backend
from .errors import AlreadyExists, Conflict, DatastoreUnavailable, NotFound, PoolExhausted
from .model import AFFINITY, BLOCK, Affinity, AffinityState, Block, Key, KVPair, cidr_name

T = TypeVar("T")
# Compare-and-swap attempts before a step gives up (each re-reads what it changes).
CAS_ATTEMPTS = 5


def block_count(pool: IPv4Network, block_size: int) -> int:
    return 1 << (block_size - pool.prefixlen)


def claim_order(
    pool: IPv4Network, block_size: int, taken: Collection[IPv4Network], nodename: str,
) -> Iterator[IPv4Network]:
    """Free blocks, starting at a point that depends on the node name and wrapping around.

    Nodes starting together then mostly try different blocks first, so a race
    costs a retry only when two names land on the same block.
    """
    count = block_count(pool, block_size)
    start = int.from_bytes(hashlib.sha1(nodename.encode()).digest()[:8], "big") % count
    step = 1 << (32 - block_size)
    base = int(pool.network_address)
    for offset in range(count):
        index = (start + offset) % count
        block = IPv4Network((base + index * step, block_size))
        if block not in taken:
            yield block


def _retried(what: str, step: Callable[[], T]) -> T:
    for _ in range(CAS_ATTEMPTS):
        try:
            return step()
        except Conflict:
            continue
    raise DatastoreUnavailable(f"cannot {what}: it kept changing under {CAS_ATTEMPTS} attempts")


class BlockOwnership:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    # -- reading
    def blocks(self) -> dict[IPv4Network, str]:
        """Every block of the cluster and the node its affinity names ("?" for none)."""
        found = {}
        for kv in self.backend.list(BLOCK).items:
            assert isinstance(kv.value, Block)
            found[kv.value.cidr] = kv.value.owner or "?"
        return found

    def affinities(self, node: str) -> list[KVPair]:
        return [kv for kv in self.backend.list(AFFINITY, node=node).items
                if isinstance(kv.value, Affinity) and kv.value.node == node]

    def owned(self, node: str, pool: IPv4Network) -> list[IPv4Network]:
        """The node's blocks in the pool: confirmed affinity, and the block names the node."""
        confirmed = {kv.value.cidr for kv in self.affinities(node)
                     if isinstance(kv.value, Affinity) and kv.value.state == "confirmed"}
        return sorted(cidr for cidr, owner in self.blocks().items()
                      if owner == node and cidr in confirmed and cidr.subnet_of(pool))

    # -- claiming
    def claim(self, node: str, pool: IPv4Network, block_size: int) -> IPv4Network:
        """One more block of the pool for `node`; PoolExhausted when none is left."""
        taken = self.blocks()
        for cidr in claim_order(pool, block_size, taken, node):
            if self._claim_one(node, cidr):
                log.info("node %s claimed block %s", node, cidr)
                return cidr
            log.info("node %s lost the race for block %s; trying the next one", node, cidr)
        owners = sorted(set(taken.values()))
        raise PoolExhausted(
            f"pool {pool} has no free /{block_size} block: all {block_count(pool, block_size)} are "
            f"owned (by {', '.join(owners[:8])}{', ...' if len(owners) > 8 else ''}); "
            "grow the pool or release blocks of nodes that left")

    def _claim_one(self, node: str, cidr: IPv4Network) -> bool:
        pending = Affinity(node, cidr, "pending")
        try:
            affinity = self.backend.create(pending.key, pending)
        except AlreadyExists:
            affinity = self.backend.get(pending.key)  # ours, left by a claim that was cut short
        try:
            self.backend.create(Key(BLOCK, cidr_name(cidr)), Block.empty(cidr, node))
        except AlreadyExists:
            try:
                block = self.backend.get(Key(BLOCK, cidr_name(cidr)))
            except NotFound:
                block = None
            if block is None or not isinstance(block.value, Block) or block.value.owner != node:
                self._drop(affinity)
                return False
        self._set_state(affinity, "confirmed")
        return True

    def _set_state(self, affinity: KVPair, state: AffinityState) -> None:
        def step() -> None:
            nonlocal affinity
            assert isinstance(affinity.value, Affinity)
            if affinity.value.state != state:
                try:
                    self.backend.update(KVPair(affinity.key, replace(affinity.value, state=state),
                                               affinity.revision))
                except Conflict:
                    affinity = self.backend.get(affinity.key)
                    raise
        _retried(f"mark {affinity.key} {state}", step)

    def _drop(self, affinity: KVPair) -> None:
        try:
            self.backend.delete(affinity.key, affinity.revision)
        except NotFound:
            pass
        except Conflict:
            current = self.backend.get(affinity.key)
            self.backend.delete(current.key, current.revision)

    # -- releasing
    def release(self, node: str, cidr: IPv4Network) -> bool:
        """Give the block back if `node` still owns it; False if it did not."""
        key = Affinity(node, cidr).key
        try:
            affinity = self.backend.get(key)
        except NotFound:
            affinity = None
        if affinity is not None:
            self._set_state(affinity, "pendingDeletion")
        deleted = self._delete_block(node, cidr)
        if affinity is not None:
            with contextlib.suppress(NotFound):
                self._drop(self.backend.get(key))
        if deleted:
            log.info("node %s released block %s", node, cidr)
        return deleted

    def _delete_block(self, node: str, cidr: IPv4Network) -> bool:
        key = Key(BLOCK, cidr_name(cidr))
        for _ in range(CAS_ATTEMPTS):
            try:
                block = self.backend.get(key)
            except NotFound:
                return False
            if not isinstance(block.value, Block) or block.value.owner != node:
                return False
            try:
                self.backend.delete(key, block.revision)
                return True
            except NotFound:
                return False
            except Conflict:
                continue
        raise DatastoreUnavailable(f"cannot release block {cidr}: it kept changing")

    # -- repair
    def recover(self, node: str) -> list[str]:
        """Finish the node's claims and releases a kill cut short; what was done."""
        done = []
        mine = {kv.value.cidr: kv for kv in self.affinities(node) if isinstance(kv.value, Affinity)}
        blocks = self.blocks()
        for cidr, affinity in sorted(mine.items()):
            assert isinstance(affinity.value, Affinity)
            state = affinity.value.state
            if state == "pending" and blocks.get(cidr) == node:
                self._set_state(affinity, "confirmed")
                done.append(f"confirmed the claim of {cidr} a restart cut short")
            elif state == "pending":
                self._drop(affinity)
                done.append(f"dropped a pending affinity for {cidr} without its block")
            elif state == "pendingDeletion":
                self.release(node, cidr)
                done.append(f"finished the release of {cidr}")
            elif blocks.get(cidr) != node:
                self._drop(affinity)
                whose = "gone" if cidr not in blocks else f"{blocks[cidr]}'s"
                done.append(f"dropped a confirmed affinity for {cidr}, whose block is {whose}")
        for cidr, owner in sorted(blocks.items()):
            if owner == node and cidr not in mine:
                confirmed = Affinity(node, cidr, "confirmed")
                try:
                    self.backend.create(confirmed.key, confirmed)
                    done.append(f"gave block {cidr} its confirmed affinity")
                except AlreadyExists:
                    pass
        for line in done:
            log.info("node %s: %s", node, line)
        return done

    def remove_node(self, node: str) -> list[IPv4Network]:
        """Release every block of a node that left the cluster; the blocks released."""
        cidrs = {cidr for cidr, owner in self.blocks().items() if owner == node}
        cidrs |= {kv.value.cidr for kv in self.affinities(node) if isinstance(kv.value, Affinity)}
        return [cidr for cidr in sorted(cidrs) if self.release(node, cidr)]
