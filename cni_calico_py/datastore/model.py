"""Typed keys and values of the datastore, in Calico's shapes, and the revision each was read at.

A key is a kind and a name. Names are Calico's: a block `10-88-0-0-26`, a
block affinity `<node>-10-88-0-0-26`, a node and its liveness by the node's
name. Each backend stores a value its own way (etcd: JSON under a prefix;
Kubernetes: custom resources, Node annotations and Leases) and hands it
back as the types below, with its revision as an opaque string: compare
them only for equality, and hand them back to update, delete and watch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network
from typing import Any, Literal

NODE = "Node"
AFFINITY = "BlockAffinity"
BLOCK = "IPAMBlock"
LIVENESS = "Liveness"
POOL = "IPPool"
HANDLE = "IPAMHandle"
KINDS = (NODE, AFFINITY, BLOCK, LIVENESS, POOL, HANDLE)

AffinityState = Literal["pending", "confirmed", "pendingDeletion"]
AFFINITY_STATES = ("pending", "confirmed", "pendingDeletion")


def cidr_name(cidr: IPv4Network) -> str:
    """Calico's resource name of a block: `10.88.0.0/26` -> `10-88-0-0-26`."""
    return str(cidr).replace(".", "-").replace("/", "-")


def cidr_from_name(name: str) -> IPv4Network | None:
    """The block a Calico name (or the tail of an affinity's name) stands for."""
    parts = name.split("-")
    if len(parts) < 5:
        return None
    try:
        return IPv4Network(f"{'.'.join(parts[-5:-1])}/{parts[-1]}")
    except ValueError:
        return None


@dataclass(frozen=True)
class Key:
    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True)
class NodeRecord:
    """A node of the registry: what the other nodes need to route to its blocks."""

    name: str
    ip: str
    as_number: int
    vtep_mac: str
    # The node's VXLAN (or tunl0) address, when an encapsulation mode uses one.
    tunnel_address: str | None = None
    # Set on a BGP route reflector: its cluster ID.
    route_reflector: str | None = None

    @property
    def key(self) -> Key:
        return Key(NODE, self.name)

    def to_json(self) -> str:
        data: dict[str, Any] = {"name": self.name, "ip": self.ip, "asNumber": self.as_number,
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
class Affinity:
    """A node's claim on a block. Only a confirmed one makes the node the block's owner."""

    node: str
    cidr: IPv4Network
    state: AffinityState = "pending"

    @property
    def key(self) -> Key:
        return Key(AFFINITY, affinity_name(self.node, self.cidr))

    def spec(self) -> dict[str, Any]:
        return {"state": self.state, "node": self.node, "cidr": str(self.cidr), "deleted": "false"}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Affinity | None:
        try:
            state = str(spec["state"])
            if state not in AFFINITY_STATES:
                return None
            return cls(str(spec["node"]), IPv4Network(str(spec["cidr"])), state)  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError):
            return None


def affinity_name(node: str, cidr: IPv4Network) -> str:
    return f"{node}-{cidr_name(cidr)}"


@dataclass(frozen=True)
class Block:
    """A block of the pool, Calico's IPAMBlock. The node is the authority for its
    addresses; `allocations` and `attributes` mirror what it holds."""

    cidr: IPv4Network
    # `host:<node>`: the node that created it. Ownership needs its confirmed affinity too.
    affinity: str | None
    # One entry per address: an index into `attributes`, or None when free.
    allocations: tuple[int | None, ...] = ()
    unallocated: tuple[int, ...] = ()
    attributes: tuple[Mapping[str, Any], ...] = ()
    sequence_number: int = 0

    @classmethod
    def empty(cls, cidr: IPv4Network, node: str) -> Block:
        size = cidr.num_addresses
        return cls(cidr, f"host:{node}", (None,) * size, tuple(range(size)))

    @property
    def owner(self) -> str | None:
        if self.affinity and self.affinity.startswith("host:"):
            return self.affinity[len("host:"):]
        return None

    @property
    def key(self) -> Key:
        return Key(BLOCK, cidr_name(self.cidr))

    def spec(self) -> dict[str, Any]:
        return {"cidr": str(self.cidr), "affinity": self.affinity,
                "allocations": list(self.allocations), "unallocated": list(self.unallocated),
                "attributes": [dict(a) for a in self.attributes],
                "sequenceNumber": self.sequence_number, "deleted": False, "strictAffinity": False}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Block | None:
        try:
            if "cidr" not in spec and "node" in spec:
                return None  # an older record: the backend reads it with its key (legacy_block)
            allocations = tuple(None if a is None else int(a) for a in spec.get("allocations") or ())
            return cls(IPv4Network(str(spec["cidr"])), spec.get("affinity") or None, allocations,
                       tuple(int(u) for u in spec.get("unallocated") or ()),
                       tuple(dict(a) for a in spec.get("attributes") or ()),
                       int(spec.get("sequenceNumber") or 0))
        except (KeyError, TypeError, ValueError, AttributeError):
            return None

    def addresses(self) -> dict[str, Mapping[str, Any]]:
        """Each allocated address and its attributes."""
        base = int(self.cidr.network_address)
        found = {}
        for ordinal, index in enumerate(self.allocations):
            if index is not None and 0 <= index < len(self.attributes):
                found[str(IPv4Network((base + ordinal, 32)).network_address)] = self.attributes[index]
        return found


@dataclass(frozen=True)
class Liveness:
    """A node's sign of life. `renewed` None: the backend expires it (an etcd lease);
    else it counts until `renewed + ttl` (a Kubernetes Lease)."""

    node: str
    ttl: float
    renewed: float | None = None

    @property
    def key(self) -> Key:
        return Key(LIVENESS, self.node)

    def alive(self, now: float | None = None) -> bool:
        if self.renewed is None:
            return True
        return (time.time() if now is None else now) < self.renewed + self.ttl

    def expires(self) -> float | None:
        return None if self.renewed is None else self.renewed + self.ttl


@dataclass(frozen=True)
class Pool:
    """Calico's IPPool: where blocks come from and how traffic between nodes is carried."""

    name: str
    cidr: IPv4Network
    block_size: int = 26
    ipip_mode: str = "Never"
    vxlan_mode: str = "Never"
    nat_outgoing: bool = False
    disabled: bool = False
    node_selector: str = "all()"

    @property
    def key(self) -> Key:
        return Key(POOL, self.name)

    def spec(self) -> dict[str, Any]:
        return {"cidr": str(self.cidr), "blockSize": self.block_size, "ipipMode": self.ipip_mode,
                "vxlanMode": self.vxlan_mode, "natOutgoing": self.nat_outgoing,
                "disabled": self.disabled, "nodeSelector": self.node_selector}

    @classmethod
    def from_spec(cls, name: str, spec: Mapping[str, Any]) -> Pool | None:
        try:
            return cls(name, IPv4Network(str(spec["cidr"])), int(spec.get("blockSize") or 26),
                       str(spec.get("ipipMode") or "Never"), str(spec.get("vxlanMode") or "Never"),
                       bool(spec.get("natOutgoing")), bool(spec.get("disabled")),
                       str(spec.get("nodeSelector") or "all()"))
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class Handle:
    """Calico's IPAMHandle: one attachment's addresses, counted per block."""

    handle_id: str
    blocks: tuple[tuple[str, int], ...]
    # The node holding it (a label in Kubernetes: a node lists only its own).
    node: str = ""

    @property
    def key(self) -> Key:
        return Key(HANDLE, handle_name(self.handle_id))

    def spec(self) -> dict[str, Any]:
        return {"handleID": self.handle_id, "block": dict(self.blocks), "deleted": False,
                "node": self.node}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Handle | None:
        try:
            return cls(str(spec["handleID"]),
                       tuple(sorted((str(k), int(v)) for k, v in (spec.get("block") or {}).items())),
                       str(spec.get("node") or ""))
        except (KeyError, TypeError, ValueError, AttributeError):
            return None


def handle_name(handle_id: str) -> str:
    """A handle's resource name: lower case, and only what a Kubernetes name may hold."""
    cleaned = "".join(c if c.isalnum() or c in "-." else "-" for c in handle_id.lower())
    return cleaned.strip("-.")[:253] or "handle"


Value = NodeRecord | Affinity | Block | Liveness | Pool | Handle


@dataclass(frozen=True)
class KVPair:
    key: Key
    value: Value
    revision: str


@dataclass(frozen=True)
class Listing:
    """A kind's values, and the revision a watch of that kind starts after."""

    items: list[KVPair]
    revision: str


@dataclass(frozen=True)
class WatchEvent:
    key: Key
    # None: the key was deleted.
    value: Value | None
    revision: str
