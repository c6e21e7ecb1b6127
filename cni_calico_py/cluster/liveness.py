"""The node's etcd lease: `alive/<name>` exists while the node renews it.

A node that dies without `calico-py node leave` stops renewing; etcd deletes
its `alive` key when the lease runs out (`node_lease_seconds`) and every other
node's watch sees it go. Renewing a lease is not a write: it adds nothing to
etcd's history. The key itself is written once per lease (at start, and
again only if the lease was lost, e.g. etcd was unreachable for longer than
the lease).
"""

from __future__ import annotations

import threading

from ..core.logs import log
from .datastore import Datastore, DatastoreUnavailable


class Liveness:
    def __init__(self, datastore: Datastore, nodename: str, ttl: float) -> None:
        self.datastore = datastore
        self.nodename = nodename
        self.ttl = max(round(ttl), 2)
        self.lease: int | None = None
        self._thread: threading.Thread | None = None

    def renew(self) -> None:
        """Keep the lease, or take a new one and bind the node's `alive` key to it."""
        if self.lease is not None and self.datastore.keep_alive(self.lease):
            return
        if self.lease is not None:
            log.warning("node %s: lease %x expired; taking a new one", self.nodename, self.lease)
        lease = self.datastore.grant_lease(self.ttl)
        self.datastore.mark_alive(self.nodename, lease)
        self.lease = lease
        log.info("node %s alive under lease %x (%d s)", self.nodename, lease, self.ttl)

    def start(self, stop: threading.Event) -> None:
        self._thread = threading.Thread(target=self._run, args=(stop,), name="lease", daemon=True)
        self._thread.start()

    def _run(self, stop: threading.Event) -> None:
        # A third of the lease between renewals: two can fail before it runs out.
        while not stop.wait(self.ttl / 3 if self.lease is not None else 1.0):
            try:
                self.renew()
            except DatastoreUnavailable as err:
                log.warning("node %s: cannot renew its lease: %s", self.nodename, err)
            except Exception:
                log.exception("node %s: renewing its lease failed", self.nodename)
