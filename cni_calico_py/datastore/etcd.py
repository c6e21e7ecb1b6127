"""The etcd backend: JSON values under a prefix (etcd_codec.py), over etcd's HTTP gateway
(etcd3gw), watched one kind per stream (etcd_watch.py).

Every write is one transaction comparing the key's revision (mod_revision;
create_revision 0 for a create), so a stale writer is refused, never merged.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ..core.logs import log
from .errors import AlreadyExists, Conflict, DatastoreUnavailable, NotFound
from .etcd_codec import Layout, b64, decode, encode, range_end
from .etcd_watch import EtcdWatch
from .model import (
    LIVENESS,
    Affinity,
    Handle,
    Key,
    KVPair,
    Listing,
    Liveness,
    Value,
)

T = TypeVar("T")


class EtcdBackend:
    kind = "etcdv3"

    def __init__(self, endpoints: Iterable[str], prefix: str, timeout: float) -> None:
        self.endpoints = list(endpoints)
        self.prefix = prefix.rstrip("/")
        self.layout = Layout(self.prefix)
        self.timeout = timeout
        self._clients: dict[str, Any] = {}
        self._preferred = 0

    # -- transport
    def _client(self, endpoint: str) -> Any:
        if endpoint not in self._clients:
            import etcd3gw

            url = urlsplit(endpoint)
            self._clients[endpoint] = etcd3gw.client(
                host=url.hostname or "", port=url.port or 2379, protocol=url.scheme,
                timeout=self.timeout, api_path="/v3/")
        return self._clients[endpoint]

    def _call(self, what: str, action: Callable[[Any], T]) -> T:
        """Run `action` against the first endpoint that answers, starting with the last good one."""
        from etcd3gw import exceptions

        problems = []
        count = len(self.endpoints)
        for step in range(count):
            index = (self._preferred + step) % count
            endpoint = self.endpoints[index]
            try:
                value = action(self._client(endpoint))
            except (exceptions.ConnectionFailedError, exceptions.ConnectionTimeoutError,
                    exceptions.InternalServerError) as err:
                problems.append(f"{endpoint}: {type(err).__name__}")
                continue
            self._preferred = index
            return value
        raise DatastoreUnavailable(f"cannot {what}: no etcd endpoint answered ({'; '.join(problems)})")

    def _post(self, what: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call(what, lambda c: c.post(c.get_url(path), json=body)))

    def _txn(self, what: str, compare: list[dict[str, Any]], success: list[dict[str, Any]],
             path: str) -> dict[str, Any]:
        """A transaction that, when its comparison fails, reads the key instead."""
        body = {"compare": compare, "success": success,
                "failure": [{"request_range": {"key": b64(path)}}]}
        return self._post(what, "/kv/txn", body)

    @staticmethod
    def _missing(answer: dict[str, Any]) -> bool:
        responses = answer.get("responses") or [{}]
        return not responses[0].get("response_range", {}).get("kvs")

    # -- the interface
    def create(self, key: Key, value: Value) -> KVPair:
        path = self.layout.path(key)
        answer = self._txn(f"create {key}", [{"key": b64(path), "result": "EQUAL",
                                              "target": "CREATE", "create_revision": 0}],
                           [{"request_put": {"key": b64(path), "value": b64(encode(value))}}], path)
        if not answer.get("succeeded", False):
            raise AlreadyExists(f"{key} already exists")
        return KVPair(key, value, str(answer["header"]["revision"]))

    def update(self, kv: KVPair) -> KVPair:
        path = self.layout.path(kv.key)
        answer = self._txn(f"update {kv.key}", [{"key": b64(path), "result": "EQUAL",
                                                 "target": "MOD", "mod_revision": int(kv.revision)}],
                           [{"request_put": {"key": b64(path), "value": b64(encode(kv.value))}}],
                           path)
        if not answer.get("succeeded", False):
            if self._missing(answer):
                raise NotFound(f"{kv.key} is gone")
            raise Conflict(f"{kv.key} changed since revision {kv.revision}")
        return KVPair(kv.key, kv.value, str(answer["header"]["revision"]))

    def delete(self, key: Key, revision: str | None) -> None:
        path = self.layout.path(key)
        compare = [] if revision is None else [{"key": b64(path), "result": "EQUAL",
                                                "target": "MOD", "mod_revision": int(revision)}]
        answer = self._txn(f"delete {key}", compare,
                           [{"request_delete_range": {"key": b64(path)}}], path)
        if not answer.get("succeeded", False):
            if self._missing(answer):
                raise NotFound(f"{key} is gone")
            raise Conflict(f"{key} changed since revision {revision}")
        deleted = (answer.get("responses") or [{}])[0].get("response_delete_range", {})
        if int(deleted.get("deleted", 0)) == 0:
            raise NotFound(f"{key} is gone")

    def get(self, key: Key) -> KVPair:
        answer = self._post(f"read {key}", "/kv/range", {"key": b64(self.layout.path(key))})
        for kv in answer.get("kvs", []):
            value = decode(key.kind, key.name, base64.b64decode(kv.get("value", "")))
            if value is not None:
                return KVPair(key, value, str(kv["mod_revision"]))
        raise NotFound(f"{key} is not there")

    def list(self, kind: str, node: str | None = None) -> Listing:
        start = self.layout.directory(kind)
        answer = self._post(f"list {kind}", "/kv/range",
                            {"key": b64(start), "range_end": b64(range_end(start))})
        items = []
        for kv in answer.get("kvs", []):
            key = self.layout.key_of(kind, base64.b64decode(kv["key"]).decode())
            value = decode(kind, key.name, base64.b64decode(kv.get("value", "")))
            if value is None:
                log.warning("skipping %s: not a value this version reads", key)
                continue
            if node is not None and isinstance(value, Affinity | Handle) and value.node != node:
                continue
            items.append(KVPair(key, value, str(kv["mod_revision"])))
        return Listing(items, str(answer["header"]["revision"]))

    def watch(self, kind: str, revision: str) -> EtcdWatch:
        return EtcdWatch(self.endpoints, self.timeout, self.layout, kind, int(revision) + 1)

    def liveness(self, node: str, ttl: int) -> EtcdLiveness:
        return EtcdLiveness(self, node, ttl)

    def close(self) -> None:
        self._clients.clear()


class EtcdLiveness:
    """`alive/<node>` bound to an etcd lease: renewing it is not a write, and etcd removes
    the key when the node stops renewing."""

    def __init__(self, backend: EtcdBackend, node: str, ttl: int) -> None:
        self.backend = backend
        self.node = node
        self.ttl = max(int(ttl), 2)
        self.lease: int | None = None

    def renew(self) -> None:
        b = self.backend
        if self.lease is not None:
            answer = b._post("renew the lease", "/lease/keepalive", {"ID": self.lease})
            if int(answer.get("result", {}).get("TTL", -1)) > 0:
                return
            log.warning("node %s: lease %x expired; taking a new one", self.node, self.lease)
        lease = int(b._post("grant a lease", "/lease/grant", {"TTL": self.ttl, "ID": 0})["ID"])
        path = b.layout.path(Key(LIVENESS, self.node))
        b._post(f"mark {self.node} alive", "/kv/put",
                {"key": b64(path), "value": b64(encode(Liveness(self.node, self.ttl))),
                 "lease": lease})
        self.lease = lease
        log.info("node %s alive under lease %x (%d s)", self.node, lease, self.ttl)

    def release(self) -> None:
        if self.lease is not None:
            self.backend._post("revoke the lease", "/lease/revoke", {"ID": self.lease})
            self.lease = None
