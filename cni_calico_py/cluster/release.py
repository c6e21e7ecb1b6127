"""Blocks that hold no address for `block_release_after_seconds` go back to the pool.

The node's first block (its home) is kept. An idle block is first taken out
of the node state, so no new ADD takes an address from it, and given back in
the datastore one check later if it is still empty (an ADD that read the old state
may have used it in between: then it stays).
"""

from __future__ import annotations

import time
from ipaddress import IPv4Network
from typing import TYPE_CHECKING

from ipam import node_state

from ..core.errors import CNIError
from ..core.logs import log
from ..datastore.ownership import BlockOwnership
from .config import ClusterConfig

if TYPE_CHECKING:
    from ipam.api import PoolStore


class IdleBlocks:
    def __init__(self, ownership: BlockOwnership, conf: ClusterConfig) -> None:
        self.ownership = ownership
        self.conf = conf
        self._empty_since: dict[IPv4Network, float] = {}
        self.retiring: dict[IPv4Network, float] = {}

    @property
    def check_seconds(self) -> float:
        return min(self.conf.resync_seconds, max(self.conf.block_release_after_seconds / 4, 0.5))

    def release(self) -> None:
        store = _pool_store(self.conf.cni_conflist)
        state = node_state.read(self.conf.state_file)
        if store is None or state is None:
            return
        active = state.networks
        held, lock = store.held, store.locked
        now = time.monotonic()
        addresses = held()
        for block in active:
            if any(a in block for a in addresses):
                self._empty_since.pop(block, None)
            else:
                self._empty_since.setdefault(block, now)
        idle = [b for b in active[1:] if b in self._empty_since
                and now - self._empty_since[b] >= self.conf.block_release_after_seconds]
        for block in idle:
            with lock(), node_state.locked(self.conf.state_file):
                if any(a in block for a in held()):
                    continue
                current = node_state.read(self.conf.state_file)
                if current is not None:
                    node_state.write(self.conf.state_file, current.with_blocks(
                        [b for b in current.networks if b != block]))
                self.retiring[block] = now
                self._empty_since.pop(block, None)
                log.info("block %s idle for %.0f s: no new addresses from it", block,
                         self.conf.block_release_after_seconds)
        for block, since in list(self.retiring.items()):
            if block in idle or now - since < self.check_seconds:
                continue
            with lock():
                if any(a in block for a in held()):
                    # An ADD that read the old state got an address from it: keep it.
                    del self.retiring[block]
                    continue
                self.ownership.release(self.conf.nodename, block)
                del self.retiring[block]


def _pool_store(conflist: str) -> PoolStore | None:
    """The IPAM store of the conflist's network, when its blocks are the pool's."""
    from ipam.api import ConflistError, pool_store

    try:
        return pool_store(conflist)
    except (ConflistError, CNIError) as err:
        log.debug("not releasing idle blocks: %s", err)
        return None


