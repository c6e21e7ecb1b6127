"""How the etcd backend lays values out under its prefix, and encodes and decodes them.

One directory per kind under the prefix (default `/calico-py/v1`):
- `nodes/<name>`: the node's record (model.NodeRecord's JSON);
- `affinities/<node>-<cidr name>`: a block affinity's spec;
- `blocks/<address>-<length>`: a block's spec (Calico's IPAMBlock). A block
  written before affinities existed holds `{"node", "claimed"}` and reads as
  a block of that node; the ownership layer gives it its confirmed affinity;
- `alive/<name>`: bound to the node's etcd lease; etcd deletes it when the
  node stops renewing the lease;
- `pools/<name>`, `handles/<handle name>`: an IPPool's and an IPAMHandle's spec.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from ipaddress import IPv4Network

from .errors import NotFound
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
    Liveness,
    NodeRecord,
    Pool,
    Value,
    cidr_from_name,
    cidr_name,
)

DIRECTORIES = {NODE: "nodes", AFFINITY: "affinities", BLOCK: "blocks", LIVENESS: "alive",
               POOL: "pools", HANDLE: "handles"}


def b64(text: str) -> str:
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



@dataclass(frozen=True)
class Layout:
    """Where each key lives under the prefix."""

    prefix: str

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

    def key_of(self, kind: str, path: str) -> Key:
        name = path[len(self.directory(kind)):]
        if kind == BLOCK:
            cidr = IPv4Network(name.replace("-", "/", 1)) if "-" in name else None
            name = cidr_name(cidr) if cidr else name
        return Key(kind, name)
