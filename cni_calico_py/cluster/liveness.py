"""The node's liveness, and what becomes of nodes that lose theirs.

A node renews its liveness (an etcd lease bound to `alive/<name>`, or a
Kubernetes Lease) a few times per lease; a node that dies without
`calico-py node leave` stops renewing, and every other node sees it go down
(etcd deletes the key; a Lease's renewal time falls behind). Renewing an
etcd lease is not a write; the key is written once per lease.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from ..core.logs import log
from ..datastore.backend import Backend
from ..datastore.errors import DatastoreError
from ..datastore.model import NodeRecord
from ..datastore.registry import remove_node


class Liveness:
    def __init__(self, backend: Backend, nodename: str, ttl: float) -> None:
        self.nodename = nodename
        self.ttl = max(round(ttl), 2)
        self.lease = backend.liveness(nodename, self.ttl)
        self.renewed = False
        self._thread: threading.Thread | None = None

    def renew(self) -> None:
        self.lease.renew()
        self.renewed = True

    def start(self, stop: threading.Event) -> None:
        self._thread = threading.Thread(target=self._run, args=(stop,), name="lease", daemon=True)
        self._thread.start()

    def _run(self, stop: threading.Event) -> None:
        # A third of the lease between renewals: two can fail before it runs out.
        while not stop.wait(self.ttl / 3 if self.renewed else 1.0):
            try:
                self.renew()
            except DatastoreError as err:
                log.warning("node %s: cannot renew its lease: %s", self.nodename, err)
            except Exception:
                log.exception("node %s: renewing its lease failed", self.nodename)


class DeadNodes:
    """Nodes whose lease ran out: logged, shown down, their blocks kept and still routed,
    as Calico keeps a node's block affinities until the node is deleted; with
    `dead_node_release_seconds` set, the first live node removes them after that long."""

    def __init__(self, backend: Backend, nodename: str, limit: float) -> None:
        self.backend = backend
        self.nodename = nodename
        self.limit = limit
        self._down_since: dict[str, float] = {}
        self._remover = False  # this node removes dead ones: the first live node by name

    def follow(self, nodes: list[NodeRecord], alive: set[str], owners: Iterable[str] = ()) -> None:
        """Log nodes going down and up; after `dead_node_release_seconds` (if set) the first
        live node in name order takes a dead one out of the registry and frees its blocks.

        `owners`, the nodes that own blocks, count too: a node deleted from the cluster
        (its Kubernetes Node gone, hence its record) would otherwise keep its blocks forever.
        """
        now = time.monotonic()
        names = {n.name for n in nodes} | set(owners)
        for name in sorted(names - alive - {self.nodename}):
            if name not in self._down_since:
                self._down_since[name] = now
                log.warning("node %s is down: its lease ran out (or it never took one)", name)
        for name in list(self._down_since):
            if name in alive or name not in names:
                del self._down_since[name]
                log.info("node %s is %s", name, "up again" if name in alive else "gone")
        limit = self.limit
        self._remover = bool(limit) and min(alive | {self.nodename}) == self.nodename
        if not self._remover:
            return
        for name, since in list(self._down_since.items()):
            if now - since >= limit:
                released = remove_node(self.backend, name)
                del self._down_since[name]
                log.warning("node %s down for %.0f s: removed, blocks released: %s", name,
                            now - since, ", ".join(map(str, released)) or "none")

    def removal_due(self) -> float:
        """When the next dead node is due for removal (monotonic time), or never."""
        limit = self.limit
        if not self._remover or not self._down_since:
            return float("inf")
        return min(self._down_since.values()) + limit

