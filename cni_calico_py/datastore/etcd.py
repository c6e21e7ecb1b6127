"""The etcd backend: JSON values under a prefix, over etcd's HTTP gateway (etcd3gw).

Layout under the prefix (default `/calico-py/v1`), one directory per kind:
- `nodes/<name>`: the node's record (model.NodeRecord's JSON);
- `affinities/<node>-<cidr name>`: a block affinity's spec;
- `blocks/<address>-<length>`: a block's spec (Calico's IPAMBlock). A block
  written before affinities existed holds `{"node", "claimed"}` and reads as
  a block of that node; the ownership layer gives it its confirmed affinity;
- `alive/<name>`: bound to the node's etcd lease; etcd deletes it when the
  node stops renewing the lease;
- `pools/<name>`, `handles/<handle name>`: an IPPool's and an IPAMHandle's spec.

Every write is one transaction comparing the key's revision (mod_revision;
create_revision 0 for a create), so a stale writer is refused, never merged.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from ipaddress import IPv4Network
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ..core.logs import log
from .errors import AlreadyExists, Conflict, DatastoreUnavailable, NotFound, ResyncNeeded
from .model import (
    AFFINITY,
    BLOCK,
    HANDLE,
    LIVENESS,
    NODE,
    POOL,
    Affinity,
    Block,
    Handle,
    Key,
    KVPair,
    Listing,
    Liveness,
    NodeRecord,
    Pool,
    Value,
    WatchEvent,
    cidr_from_name,
    cidr_name,
)

T = TypeVar("T")
DIRECTORIES = {NODE: "nodes", AFFINITY: "affinities", BLOCK: "blocks", LIVENESS: "alive",
               POOL: "pools", HANDLE: "handles"}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def range_end(prefix: str) -> str:
    """The end of etcd's range holding every key that starts with `prefix`."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def block_segment(cidr: IPv4Network) -> str:
    """A block's key segment: `10.88.0.0-26` (`/` separates keys)."""
    return f"{cidr.network_address}-{cidr.prefixlen}"


def encode(value: Value) -> str:
    if isinstance(value, NodeRecord):
        return value.to_json()
    if isinstance(value, Liveness):
        return json.dumps({"node": value.node, "ttl": value.ttl})
    return json.dumps(value.spec(), sort_keys=True)


def decode(kind: str, name: str, raw: bytes) -> Value | None:
    """The value, or None for one this version cannot read (logged by the caller)."""
    if kind == NODE:
        return NodeRecord.from_json(raw)
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    if kind == AFFINITY:
        return Affinity.from_spec(data)
    if kind == LIVENESS:
        return Liveness(name, float(data.get("ttl", 0) or 0))
    if kind == POOL:
        return Pool.from_spec(name, data)
    if kind == HANDLE:
        return Handle.from_spec(data)
    block = Block.from_spec(data)
    if block is None and "node" in data:
        cidr = cidr_from_name(name)
        return Block(cidr, f"host:{data['node']}") if cidr is not None else None
    return block


class EtcdBackend:
    kind = "etcdv3"

    def __init__(self, endpoints: Iterable[str], prefix: str, timeout: float) -> None:
        self.endpoints = list(endpoints)
        self.prefix = prefix.rstrip("/")
        self.timeout = timeout
        self._clients: dict[str, Any] = {}
        self._preferred = 0

    # -- paths
    def directory(self, kind: str) -> str:
        return f"{self.prefix}/{DIRECTORIES[kind]}/"

    def path(self, key: Key) -> str:
        name = key.name
        if key.kind == BLOCK:
            cidr = cidr_from_name(name)
            if cidr is None:
                raise NotFound(f"{key} names no block")
            name = block_segment(cidr)
        return self.directory(key.kind) + name

    def _key_of(self, kind: str, path: str) -> Key:
        name = path[len(self.directory(kind)):]
        if kind == BLOCK:
            cidr = IPv4Network(name.replace("-", "/", 1)) if "-" in name else None
            name = cidr_name(cidr) if cidr else name
        return Key(kind, name)

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
                "failure": [{"request_range": {"key": _b64(path)}}]}
        return self._post(what, "/kv/txn", body)

    @staticmethod
    def _missing(answer: dict[str, Any]) -> bool:
        responses = answer.get("responses") or [{}]
        return not responses[0].get("response_range", {}).get("kvs")

    # -- the interface
    def create(self, key: Key, value: Value) -> KVPair:
        path = self.path(key)
        answer = self._txn(f"create {key}", [{"key": _b64(path), "result": "EQUAL",
                                              "target": "CREATE", "create_revision": 0}],
                           [{"request_put": {"key": _b64(path), "value": _b64(encode(value))}}], path)
        if not answer.get("succeeded", False):
            raise AlreadyExists(f"{key} already exists")
        return KVPair(key, value, str(answer["header"]["revision"]))

    def update(self, kv: KVPair) -> KVPair:
        path = self.path(kv.key)
        answer = self._txn(f"update {kv.key}", [{"key": _b64(path), "result": "EQUAL",
                                                 "target": "MOD", "mod_revision": int(kv.revision)}],
                           [{"request_put": {"key": _b64(path), "value": _b64(encode(kv.value))}}],
                           path)
        if not answer.get("succeeded", False):
            if self._missing(answer):
                raise NotFound(f"{kv.key} is gone")
            raise Conflict(f"{kv.key} changed since revision {kv.revision}")
        return KVPair(kv.key, kv.value, str(answer["header"]["revision"]))

    def delete(self, key: Key, revision: str | None) -> None:
        path = self.path(key)
        compare = [] if revision is None else [{"key": _b64(path), "result": "EQUAL",
                                                "target": "MOD", "mod_revision": int(revision)}]
        answer = self._txn(f"delete {key}", compare,
                           [{"request_delete_range": {"key": _b64(path)}}], path)
        if not answer.get("succeeded", False):
            if self._missing(answer):
                raise NotFound(f"{key} is gone")
            raise Conflict(f"{key} changed since revision {revision}")
        deleted = (answer.get("responses") or [{}])[0].get("response_delete_range", {})
        if int(deleted.get("deleted", 0)) == 0:
            raise NotFound(f"{key} is gone")

    def get(self, key: Key) -> KVPair:
        answer = self._post(f"read {key}", "/kv/range", {"key": _b64(self.path(key))})
        for kv in answer.get("kvs", []):
            value = decode(key.kind, key.name, base64.b64decode(kv.get("value", "")))
            if value is not None:
                return KVPair(key, value, str(kv["mod_revision"]))
        raise NotFound(f"{key} is not there")

    def list(self, kind: str, node: str | None = None) -> Listing:
        start = self.directory(kind)
        answer = self._post(f"list {kind}", "/kv/range",
                            {"key": _b64(start), "range_end": _b64(range_end(start))})
        items = []
        for kv in answer.get("kvs", []):
            key = self._key_of(kind, base64.b64decode(kv["key"]).decode())
            value = decode(kind, key.name, base64.b64decode(kv.get("value", "")))
            if value is None:
                log.warning("skipping %s: not a value this version reads", key)
                continue
            if node is not None and isinstance(value, Affinity | Handle) and value.node != node:
                continue
            items.append(KVPair(key, value, str(kv["mod_revision"])))
        return Listing(items, str(answer["header"]["revision"]))

    def watch(self, kind: str, revision: str) -> EtcdWatch:
        return EtcdWatch(self, kind, int(revision) + 1)

    def liveness(self, node: str, ttl: int) -> EtcdLiveness:
        return EtcdLiveness(self, node, ttl)

    def close(self) -> None:
        self._clients.clear()


class EtcdWatch:
    """One gateway watch stream (`/v3/watch`: one JSON object per line) over a kind's directory."""

    def __init__(self, backend: EtcdBackend, kind: str, start_revision: int) -> None:
        self.backend = backend
        self.kind = kind
        self.start_revision = start_revision
        self._response: Any = None
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[list[WatchEvent]]:
        import requests

        start = self.backend.directory(self.kind)
        request: dict[str, Any] = {"create_request": {"key": _b64(start), "range_end": _b64(range_end(start)),
                                      "start_revision": self.start_revision}}
        problems = []
        for endpoint in self.backend.endpoints:
            url = urlsplit(endpoint)
            try:
                response = requests.post(f"{url.scheme}://{url.netloc}/v3/watch", json=request,
                                         stream=True, timeout=(self.backend.timeout, None))
            except requests.RequestException as err:
                problems.append(f"{endpoint}: {type(err).__name__}")
                continue
            self._response = response
            if self._closed.is_set():
                return
            log.debug("watching %s from revision %d on %s", start, self.start_revision, endpoint)
            try:
                yield from self._batches(response.iter_content(chunk_size=None))
            except requests.RequestException as err:
                if not self._closed.is_set():
                    raise DatastoreUnavailable(f"the watch of {start} broke: {err}") from None
            finally:
                response.close()
            return
        raise DatastoreUnavailable(f"no etcd endpoint took the watch ({'; '.join(problems)})")

    def _batches(self, chunks: Iterable[bytes]) -> Iterator[list[WatchEvent]]:
        pending = b""
        for chunk in chunks:
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip():
                    events = self._events(json.loads(line))
                    if events:
                        yield events

    def _events(self, message: dict[str, Any]) -> list[WatchEvent]:
        if "error" in message:
            raise DatastoreUnavailable(f"etcd ended the watch: {message['error'].get('message')}")
        result = message.get("result", {})
        if result.get("compact_revision") and result.get("canceled"):
            raise ResyncNeeded(f"etcd compacted its history to revision {result['compact_revision']}")
        if result.get("canceled"):
            raise ResyncNeeded(f"etcd cancelled the watch: {result.get('cancel_reason', 'no reason')}")
        found = []
        for event in result.get("events", []):
            kv = event.get("kv", {})
            key = self.backend._key_of(self.kind, base64.b64decode(kv.get("key", "")).decode())
            revision = str(kv.get("mod_revision", 0))
            if event.get("type") == "DELETE":
                found.append(WatchEvent(key, None, revision))
                continue
            value = decode(self.kind, key.name, base64.b64decode(kv.get("value", "")))
            if value is not None:
                found.append(WatchEvent(key, value, revision))
        return found

    def close(self) -> None:
        """Ends the iteration from another thread: the connection is shut down, which
        unblocks the watching thread's read; that thread closes it (closing it here could
        hand its descriptor to another connection while the read still uses it)."""
        self._closed.set()
        response = self._response
        if response is not None:
            with suppress(Exception):
                sock = socket.fromfd(response.raw.fileno(), socket.AF_INET, socket.SOCK_STREAM)
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()


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
        path = b.path(Key(LIVENESS, self.node))
        b._post(f"mark {self.node} alive", "/kv/put",
                {"key": _b64(path), "value": _b64(encode(Liveness(self.node, self.ttl))),
                 "lease": lease})
        self.lease = lease
        log.info("node %s alive under lease %x (%d s)", self.node, lease, self.ttl)

    def release(self) -> None:
        if self.lease is not None:
            self.backend._post("revoke the lease", "/lease/revoke", {"ID": self.lease})
            self.lease = None
