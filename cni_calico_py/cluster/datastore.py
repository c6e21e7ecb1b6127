"""The cluster's shared state in etcd: the node registry, liveness, on the IPAM's block claims.

Layout under the prefix (default `/calico-py/v1`):
- `nodes/<name>`: `{"name", "ip", "asNumber", "vtepMac", "tunnelAddress",
  "routeReflectorClusterId"}`, the registry, written only when it changes;
- `alive/<name>`: bound to the node's etcd lease; it goes when the node stops
  renewing the lease (the node died) and the other nodes see it go;
- `blocks/<address>-<length>`: `{"node", "claimed"}`, one key per owned block
  (ipam/block_claims.py: an ADD that finds every block full claims one too).

The node daemon reads the whole prefix once (`snapshot`) and then follows it
with a watch (watch.py); `View` is what it knows, at one revision.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from ipaddress import IPv4Network
from typing import Any

from ipam.block_claims import BlockClaims, DatastoreUnavailable, PoolExhausted

__all__ = ["Datastore", "DatastoreUnavailable", "Event", "NodeRecord", "PoolExhausted", "View"]


@dataclass(frozen=True)
class NodeRecord:
    name: str
    ip: str
    as_number: int
    vtep_mac: str
    # The node's VXLAN (or tunl0) address, when an encapsulation mode uses one.
    tunnel_address: str | None = None
    # Set on a BGP route reflector: its cluster ID.
    route_reflector: str | None = None

    def to_json(self) -> str:
        data = {"name": self.name, "ip": self.ip, "asNumber": self.as_number,
                "vtepMac": self.vtep_mac, "tunnelAddress": self.tunnel_address}
        if self.route_reflector:
            data["routeReflectorClusterId"] = self.route_reflector
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: bytes | str) -> NodeRecord | None:
        try:
            data = json.loads(text)
            tunnel = data.get("tunnelAddress")
            reflector = data.get("routeReflectorClusterId")
            return cls(str(data["name"]), str(data["ip"]), int(data["asNumber"]),
                       str(data["vtepMac"]), str(tunnel) if tunnel else None,
                       str(reflector) if reflector else None)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


@dataclass(frozen=True)
class Event:
    """One change under the prefix: `value` None for a deletion."""

    key: str
    value: bytes | None
    revision: int


@dataclass
class View:
    """The prefix's keys (relative to it) and values, as of `revision`."""

    revision: int
    kvs: dict[str, bytes] = field(default_factory=dict)

    def apply(self, events: Iterable[Event]) -> bool:
        """Take the events newer than the view; True when something changed."""
        changed = False
        for event in events:
            if event.revision <= self.revision:
                continue  # already in the snapshot this view started from
            if event.value is None:
                changed |= self.kvs.pop(event.key, None) is not None
            elif self.kvs.get(event.key) != event.value:
                self.kvs[event.key] = event.value
                changed = True
        return changed

    def nodes(self) -> list[NodeRecord]:
        records = (NodeRecord.from_json(v) for k, v in self.kvs.items() if k.startswith("nodes/"))
        return sorted((r for r in records if r is not None), key=lambda r: r.name)

    def owners(self) -> dict[IPv4Network, str]:
        found: dict[IPv4Network, str] = {}
        for key, value in self.kvs.items():
            if not key.startswith("blocks/"):
                continue
            block = _block(key[len("blocks/"):])
            try:
                owner = str(json.loads(value)["node"])
            except (ValueError, KeyError, TypeError):
                owner = "?"
            if block is not None:
                found[block] = owner
        return found

    def alive(self) -> set[str]:
        return {k[len("alive/"):] for k in self.kvs if k.startswith("alive/")}


def _block(segment: str) -> IPv4Network | None:
    """`192.168.0.64-26` -> 192.168.0.64/26 (ipam/blocks.py writes the keys)."""
    try:
        return IPv4Network(segment.replace("-", "/", 1))
    except ValueError:
        return None


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _transaction(client: Any, txn: dict[str, Any]) -> dict[str, Any]:
    return dict(client.transaction(txn))


def range_end(prefix: str) -> str:
    """The end of etcd's range holding every key that starts with `prefix`."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class Datastore(BlockClaims):
    def _node_key(self, name: str) -> str:
        return f"{self.prefix}/nodes/{name}"

    def _alive_key(self, name: str) -> str:
        return f"{self.prefix}/alive/{name}"

    def register_node(self, node: NodeRecord) -> None:
        self._call(f"register node {node.name}",
                   lambda c: c.put(self._node_key(node.name), node.to_json()))

    def nodes(self) -> list[NodeRecord]:
        found = self._call("list nodes", lambda c: c.get_prefix(f"{self.prefix}/nodes/"))
        records = (NodeRecord.from_json(value) for value, _ in found)
        return sorted((r for r in records if r is not None), key=lambda r: r.name)

    def alive(self) -> set[str]:
        found = self._call("list live nodes", lambda c: c.get_prefix(f"{self.prefix}/alive/"))
        return {meta["key"].decode().rsplit("/", 1)[-1] for _, meta in found}

    def snapshot(self) -> View:
        """Every key under the prefix in one read, with the revision to watch from."""
        start = f"{self.prefix}/"
        body = {"key": _b64(start), "range_end": _b64(range_end(start))}
        answer = self._call("read the cluster", lambda c: c.post(c.get_url("/kv/range"), json=body))
        view = View(int(answer["header"]["revision"]))
        for kv in answer.get("kvs", []):
            key = base64.b64decode(kv["key"]).decode()[len(start):]
            view.kvs[key] = base64.b64decode(kv.get("value", ""))
        return view

    # -- liveness
    def grant_lease(self, ttl: int) -> int:
        answer = self._call("grant a lease", lambda c: c.post(c.get_url("/lease/grant"),
                                                              json={"TTL": ttl, "ID": 0}))
        return int(answer["ID"])

    def keep_alive(self, lease: int) -> bool:
        """Renew the lease; False once it has expired (a renewal is not a write)."""
        answer = self._call("renew the lease", lambda c: c.post(c.get_url("/lease/keepalive"),
                                                                json={"ID": lease}))
        return int(answer.get("result", {}).get("TTL", -1)) > 0

    def mark_alive(self, name: str, lease: int) -> None:
        body = {"key": _b64(self._alive_key(name)), "value": _b64(json.dumps({"node": name})),
                "lease": lease}
        self._call(f"mark {name} alive", lambda c: c.post(c.get_url("/kv/put"), json=body))

    def remove_node(self, name: str) -> list[IPv4Network]:
        """Take a node out of the registry and give its blocks back to the pool, in one
        transaction (every node's watch sees it at once); only the blocks still its own."""
        for _ in range(3):
            found = self._call("list blocks", lambda c: c.get_prefix(f"{self.prefix}/blocks/"))
            owned: list[tuple[IPv4Network, str, int]] = []
            for value, meta in found:
                key = meta["key"].decode()
                block = _block(key.rsplit("/", 1)[-1])
                try:
                    owner = json.loads(value)["node"]
                except (ValueError, KeyError, TypeError):
                    owner = None
                if block is not None and owner == name:
                    owned.append((block, key, int(meta["mod_revision"])))
            txn = {
                "compare": [{"key": _b64(key), "result": "EQUAL", "target": "MOD",
                             "mod_revision": revision} for _, key, revision in owned],
                "success": [{"request_delete_range": {"key": _b64(key)}}
                            for key in [k for _, k, _ in owned] + [self._node_key(name),
                                                                   self._alive_key(name)]],
                "failure": [],
            }
            result = self._call(f"remove node {name}", partial(_transaction, txn=txn))
            if result.get("succeeded", False):
                return [block for block, _, _ in owned]
        raise DatastoreUnavailable(f"cannot remove node {name}: its blocks kept changing")
