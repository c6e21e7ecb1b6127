"""A datastore backend in memory, for the logic above the interface (pure logic, no I/O).

It behaves as the contract suite requires of every backend: one revision
counter, compare-and-swap writes, watches from a revision with a bounded
history (`compact`), liveness that lapses `ttl` seconds after the last
renewal on a clock the test moves (removed then, as etcd removes a lease's
key), and `down` to make every call fail as an unreachable datastore does.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from cni_calico_py.datastore.errors import (
    AlreadyExists,
    Conflict,
    DatastoreUnavailable,
    NotFound,
    ResyncNeeded,
)
from cni_calico_py.datastore.model import (
    LIVENESS,
    Affinity,
    Handle,
    Key,
    KVPair,
    Listing,
    Liveness,
    Value,
    WatchEvent,
)


@dataclass
class MemoryBackend:
    kind = "memory"
    clock: Callable[[], float] = time.time
    down: bool = False
    revision: int = 0
    compacted: int = 0
    data: dict[Key, tuple[Value, int]] = field(default_factory=dict)
    history: list[WatchEvent] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    _watches: list[MemoryWatch] = field(default_factory=list)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    # When each node's liveness lapses, on `clock`.
    lapses: dict[str, float] = field(default_factory=dict)

    def _enter(self, call: str) -> None:
        self.calls.append(call)
        if self.down:
            raise DatastoreUnavailable(f"cannot {call}: the datastore is down")
        self.expire()

    def expire(self) -> None:
        """Remove the liveness of nodes that stopped renewing, as etcd does with a lease."""
        with self._lock:
            for name, at in list(self.lapses.items()):
                if self.clock() >= at:
                    del self.lapses[name]
                    self._commit(Key(LIVENESS, name), None)

    def _commit(self, key: Key, value: Value | None) -> str:
        self.revision += 1
        if value is None:
            self.data.pop(key, None)
        else:
            self.data[key] = (value, self.revision)
        event = WatchEvent(key, value, str(self.revision))
        self.history.append(event)
        for watch in list(self._watches):
            if watch.kind == key.kind:
                watch.events.put([event])
        return str(self.revision)

    def create(self, key: Key, value: Value) -> KVPair:
        with self._lock:
            self._enter(f"create {key}")
            if key in self.data:
                raise AlreadyExists(f"{key} already exists")
            return KVPair(key, value, self._commit(key, value))

    def update(self, kv: KVPair) -> KVPair:
        with self._lock:
            self._enter(f"update {kv.key}")
            if kv.key not in self.data:
                raise NotFound(f"{kv.key} is gone")
            if str(self.data[kv.key][1]) != kv.revision:
                raise Conflict(f"{kv.key} changed since revision {kv.revision}")
            return KVPair(kv.key, kv.value, self._commit(kv.key, kv.value))

    def delete(self, key: Key, revision: str | None) -> None:
        with self._lock:
            self._enter(f"delete {key}")
            if key not in self.data:
                raise NotFound(f"{key} is gone")
            if revision is not None and str(self.data[key][1]) != revision:
                raise Conflict(f"{key} changed since revision {revision}")
            self._commit(key, None)

    def get(self, key: Key) -> KVPair:
        with self._lock:
            self._enter(f"get {key}")
            if key not in self.data:
                raise NotFound(f"{key} is not there")
            value, revision = self.data[key]
            return KVPair(key, value, str(revision))

    def list(self, kind: str, node: str | None = None) -> Listing:
        with self._lock:
            self._enter(f"list {kind}" + (f" of {node}" if node is not None else ""))
            items = [KVPair(k, v, str(r)) for k, (v, r) in sorted(self.data.items(), key=str)
                     if k.kind == kind and not (node is not None and isinstance(v, Affinity | Handle)
                                                and v.node != node)]
            return Listing(items, str(self.revision))

    def watch(self, kind: str, revision: str) -> MemoryWatch:
        with self._lock:
            self._enter(f"watch {kind}")
            watch = MemoryWatch(self, kind)
            if int(revision) < self.compacted:
                watch.events.put(ResyncNeeded(f"revision {revision} was compacted"))
            else:
                backlog = [e for e in self.history if int(e.revision) > int(revision)
                           and e.key.kind == kind]
                if backlog:
                    watch.events.put(backlog)
            self._watches.append(watch)
            return watch

    def compact(self) -> None:
        """Forget the history: every watch from an older revision must list again."""
        with self._lock:
            self.compacted = self.revision
            self.history.clear()
            for watch in self._watches:
                watch.events.put(ResyncNeeded(f"history compacted to {self.revision}"))

    def liveness(self, node: str, ttl: int) -> MemoryLiveness:
        return MemoryLiveness(self, node, ttl)

    def close(self) -> None:
        for watch in list(self._watches):
            watch.close()


class MemoryWatch:
    def __init__(self, backend: MemoryBackend, kind: str) -> None:
        self.backend = backend
        self.kind = kind
        self.events: queue.Queue[list[WatchEvent] | Exception | None] = queue.Queue()

    def __iter__(self) -> Iterator[list[WatchEvent]]:
        while True:
            item = self.events.get()
            if item is None:
                return
            if isinstance(item, Exception):
                raise item
            yield item

    def close(self) -> None:
        with self.backend._lock:
            if self in self.backend._watches:
                self.backend._watches.remove(self)
        self.events.put(None)


class MemoryLiveness:
    def __init__(self, backend: MemoryBackend, node: str, ttl: int) -> None:
        self.backend, self.node, self.ttl = backend, node, ttl

    def renew(self) -> None:
        b = self.backend
        with b._lock:
            b._enter(f"renew {self.node}")
            if self.node not in b.lapses:
                b._commit(Key(LIVENESS, self.node), Liveness(self.node, self.ttl))
            b.lapses[self.node] = b.clock() + self.ttl

    def release(self) -> None:
        with self.backend._lock:
            if self.backend.lapses.pop(self.node, None) is not None:
                self.backend._commit(Key(LIVENESS, self.node), None)
