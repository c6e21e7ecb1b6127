"""The interface every backend implements (etcd.py, kubernetes.py; a fake one in the tests)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from .model import Key, KVPair, Listing, Value, WatchEvent


class WatchStream(Protocol):
    """Batches of events after a revision, as they happen.

    Iterating ends when the stream is closed or the datastore ends it;
    it raises ResyncNeeded when the revision it started from is gone (list
    again) and DatastoreUnavailable when the connection fails.
    """

    def __iter__(self) -> Iterator[list[WatchEvent]]: ...

    def close(self) -> None:
        """Ends the iteration, from any thread."""


class LivenessLease(Protocol):
    def renew(self) -> None:
        """Keep the node alive for another ttl, taking a new lease if the old one lapsed."""

    def release(self) -> None:
        """The node is leaving: it is no longer alive."""


class Backend(Protocol):
    #: "etcdv3" or "kubernetes", as Calico's DATASTORE_TYPE names them.
    kind: str

    def create(self, key: Key, value: Value) -> KVPair:
        """Store a new key; AlreadyExists when it is there."""

    def update(self, kv: KVPair) -> KVPair:
        """Replace the value if the key is still at `kv.revision`; Conflict if not,
        NotFound when it is gone."""

    def delete(self, key: Key, revision: str | None) -> None:
        """Remove the key, only while at `revision` when given; Conflict, NotFound."""

    def get(self, key: Key) -> KVPair:
        """NotFound when the key is not there."""

    def list(self, kind: str, node: str | None = None) -> Listing:
        """Every value of a kind (of one node's only, for affinities), and the revision
        to watch from."""

    def watch(self, kind: str, revision: str) -> WatchStream:
        """The changes of a kind after `revision` (a list's)."""

    def liveness(self, node: str, ttl: int) -> LivenessLease:
        """The node's liveness, not yet taken: renew() takes it."""

    def close(self) -> None: ...
