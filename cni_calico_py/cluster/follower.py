"""What the node daemon knows of the cluster, and the watches that keep it current.

It lists the nodes, blocks and liveness once and follows each kind with a
watch from its listing's revision. Re-reading a kind starts that kind's
watch again after the new listing: an event the old watch delivered while
the listing was on its way may be newer than the listing, and is delivered
again rather than lost; a replaced watch's late events are dropped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from ipaddress import IPv4Network

from ..datastore.backend import Backend
from ..datastore.model import BLOCK, Block, NodeRecord, WatchEvent
from ..datastore.registry import FOLLOWED, read_cluster
from ..datastore.view import Cluster
from .watch import Watch


class Follower:
    def __init__(self, backend: Backend, on_change: Callable[[], None],
                 on_end: Callable[[str], None]) -> None:
        self.backend = backend
        self.on_change = on_change
        self.on_end = on_end
        self._lock = threading.Lock()
        self._view: Cluster | None = None
        # The watch of each kind the view follows; events of any other are dropped.
        self._watches: dict[str, Watch] = {}

    def refresh(self, watch: bool = True) -> None:
        """List everything (the safety net) and, with `watch`, follow it from there."""
        view = read_cluster(self.backend)
        with self._lock:
            self._view = view
            if watch:
                for kind in FOLLOWED:
                    self._follow(kind, view.revisions[kind])

    def _follow(self, kind: str, revision: str) -> None:
        """Watch `kind` after `revision` in place of its earlier watch. With the lock held."""
        old = self._watches.pop(kind, None)
        if old is not None:
            old.stop()
        new = Watch(self.backend, kind, revision, lambda events: self._on_events(new, events),
                    self.on_end)
        self._watches[kind] = new
        new.start()

    def _on_events(self, watch: Watch, events: list[WatchEvent]) -> None:
        with self._lock:
            current = self._watches.get(watch.kind) is watch
            changed = current and self._view is not None and self._view.apply(events)
        if changed:
            self.on_change()

    def stop(self) -> None:
        with self._lock:
            watches, self._watches = list(self._watches.values()), {}
        for each in watches:
            each.stop()

    def known(self) -> tuple[list[NodeRecord], dict[IPv4Network, str], set[str]]:
        """The nodes, each block's owner, and the nodes alive."""
        with self._lock:
            if self._view is None:
                self._view = read_cluster(self.backend)
            return self._view.node_list(), self._view.owners(), self._view.alive()

    def blocks(self) -> dict[IPv4Network, Block]:
        with self._lock:
            return dict(self._view.blocks) if self._view is not None else {}

    def reread_blocks(self) -> None:
        """The blocks as the datastore has them now."""
        listing = self.backend.list(BLOCK)
        with self._lock:
            if self._view is not None:
                self._view.take(BLOCK, listing)
                if BLOCK in self._watches:
                    self._follow(BLOCK, listing.revision)

    def learn(self, record: NodeRecord) -> None:
        """What this node just wrote, before its watch event arrives."""
        with self._lock:
            if self._view is not None:
                self._view.nodes[record.name] = record

    def next_lapse(self) -> float:
        """When a live node's liveness lapses unless renewed (monotonic), for backends
        where nobody sends an event then (a Kubernetes Lease)."""
        with self._lock:
            at = self._view.next_expiry() if self._view is not None else None
        return float("inf") if at is None else time.monotonic() + max(at - time.time(), 0) + 0.05
