"""The node's addresses mirrored into its blocks and handles in the datastore.

The node stays the authority for its addresses: an ADD reserves one in the
node's IPAM store and never waits on the datastore. The daemon then writes
what the store holds into the node's IPAMBlocks (allocations, attributes with
the handle and the pod's namespace, name and node) and IPAMHandles, so
`kubectl get ipamblocks -o yaml` shows which pod has which address, as on a
Calico cluster. It follows the store within a second (the store directory's
modification time, which every ADD and DEL changes, is checked twice a
second) and compares everything at each resync, rebuilding the mirror where
the two disagree. A write is made only where they differ.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from ..core.errors import CNIError
from ..core.logs import log
from ..datastore.backend import Backend
from ..datastore.errors import Conflict, DatastoreError, NotFound
from ..datastore.model import BLOCK, HANDLE, Block, Handle, Key, KVPair, cidr_name
from .config import ClusterConfig

POLL_SECONDS = 0.5


def mirrored_block(block: Block, holders: Mapping[IPv4Address, tuple[str, str]], node: str) -> Block:
    """`block` with its allocations as the node holds them: `holders` maps an address to
    its handle and pod (`namespace/name` or "")."""
    size = block.cidr.num_addresses
    base = int(block.cidr.network_address)
    allocations: list[int | None] = [None] * size
    attributes: list[dict[str, Any]] = []
    for ordinal in range(size):
        held = holders.get(IPv4Address(base + ordinal))
        if held is None:
            continue
        handle, pod = held
        namespace, _, name = pod.partition("/")
        secondary = {"node": node}
        if pod:
            secondary.update(namespace=namespace, pod=name)
        allocations[ordinal] = len(attributes)
        attributes.append({"handle_id": handle, "secondary": secondary})
    free = {o for o in range(size) if allocations[o] is None}
    # Calico's order: addresses freed last are handed out last.
    unallocated = [o for o in block.unallocated if o in free]
    unallocated += sorted(free - set(unallocated))
    return replace(block, allocations=tuple(allocations), unallocated=tuple(unallocated),
                   attributes=tuple(attributes))


class Mirror:
    def __init__(self, backend: Backend, conf: ClusterConfig) -> None:
        self.backend = backend
        self.conf = conf
        # The IPAM store's directory: None before the first mirror, "" while the conflist
        # names none (then only a resync looks again).
        self._store: str | None = None
        self._stamp: int | None = None
        # The node's handles as the datastore has them; None until read.
        self._handles: dict[str, KVPair] | None = None

    # -- noticing changes
    def changed(self) -> bool:
        """Whether the store changed since the last mirror (cheap: one stat)."""
        if self._store is None:
            return True
        if not self._store:
            return False
        try:
            stamp = os.stat(self._store).st_mtime_ns
        except OSError:
            return False
        return stamp != self._stamp

    def follow(self, wake: Callable[[], None], stop: threading.Event) -> None:
        """Call `wake` whenever the store changes, until `stop` (a thread of its own)."""
        def run() -> None:
            while not stop.wait(POLL_SECONDS):
                if self.changed():
                    wake()

        threading.Thread(target=run, name="mirror", daemon=True).start()

    # -- writing
    def apply(self, owned: list[IPv4Network], known: Mapping[IPv4Network, Block]) -> int:
        """Bring the node's blocks and handles in line with its store; the writes made."""
        from ipam.api import ConflistError, network_view

        try:
            view = network_view(self.conf.cni_conflist)
        except (ConflistError, CNIError) as err:
            log.debug("not mirroring addresses: %s", err)
            self._store = ""
            return 0
        self._store = view.store
        try:
            self._stamp = os.stat(view.store).st_mtime_ns
        except OSError:
            self._stamp = None
        holders = {IPv4Address(str(a)): (f"{view.network}.{h.container_id}", h.pod)
                   for a, h in view.holders.items() if a.version == 4}
        writes = 0
        for cidr in owned:
            writes += self._block(cidr, known.get(cidr), holders)
        writes += self._sync_handles(owned, holders)
        return writes

    def _block(self, cidr: IPv4Network, known: Block | None,
               holders: Mapping[IPv4Address, tuple[str, str]]) -> int:
        node = self.conf.nodename
        if known is not None and known.owner == node and \
                mirrored_block(known, holders, node) == known:
            return 0
        try:
            current = self.backend.get(Key(BLOCK, cidr_name(cidr)))
        except NotFound:
            return 0
        if not isinstance(current.value, Block) or current.value.owner != node:
            return 0
        wanted = mirrored_block(current.value, holders, node)
        if wanted == current.value:
            return 0
        wanted = replace(wanted, sequence_number=current.value.sequence_number + 1)
        try:
            self.backend.update(KVPair(current.key, wanted, current.revision))
        except (Conflict, NotFound):
            return 0  # changed meanwhile: the next pass compares again
        return 1

    def _sync_handles(self, owned: list[IPv4Network],
                      holders: Mapping[IPv4Address, tuple[str, str]]) -> int:
        node = self.conf.nodename
        counts: dict[str, dict[str, int]] = {}
        for address, (handle_id, _pod) in holders.items():
            block = next((b for b in owned if address in b), None)
            if block is not None:
                per_block = counts.setdefault(handle_id, {})
                per_block[str(block)] = per_block.get(str(block), 0) + 1
        wanted = {h: Handle(h, tuple(sorted(c.items())), node) for h, c in counts.items()}
        if self._handles is None:
            self._handles = {kv.value.handle_id: kv for kv in self.backend.list(HANDLE, node=node).items
                             if isinstance(kv.value, Handle)}
        writes = 0
        for handle_id, handle in wanted.items():
            have = self._handles.get(handle_id)
            if have is not None and have.value == handle:
                continue
            try:
                if have is None:
                    self._handles[handle_id] = self.backend.create(handle.key, handle)
                else:
                    self._handles[handle_id] = self.backend.update(
                        KVPair(handle.key, handle, have.revision))
                writes += 1
            except DatastoreError as err:
                log.info("handle %s: %s; reading the node's handles again", handle_id, err)
                self._handles = None
                return writes
        for handle_id in set(self._handles) - set(wanted):
            kv = self._handles.pop(handle_id)
            try:
                self.backend.delete(kv.key, kv.revision)
                writes += 1
            except NotFound:
                pass
            except Conflict:
                self._handles = None
                return writes
        return writes
