"""Calico's resources as the Kubernetes backend writes and reads them: names, labels,
a node's annotations, and the decoding of every kind."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

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
    Liveness,
    NodeRecord,
    Pool,
    Value,
)

GROUP = "crd.projectcalico.org/v1"
NAMESPACE = "calico-py-system"
CUSTOM = {AFFINITY: ("blockaffinities", "BlockAffinity"), BLOCK: ("ipamblocks", "IPAMBlock"),
          POOL: ("ippools", "IPPool"), HANDLE: ("ipamhandles", "IPAMHandle")}
# Kinds a node lists only its own of, by the label of its name's hash.
BY_NODE = (AFFINITY, HANDLE)
HOSTNAME_HASH = "projectcalico.org/hostname-hash"
ANNOTATIONS = {
    "ip": "projectcalico.org/IPv4Address",
    "as_number": "projectcalico.org/ASNumber",
    "tunnel_address": "projectcalico.org/IPv4VXLANTunnelAddr",
    "vtep_mac": "projectcalico.org/VXLANTunnelMACAddr",
    "route_reflector": "projectcalico.org/RouteReflectorClusterID",
}


def hostname_hash(node: str) -> str:
    """A label value for any node name (label values are at most 63 characters)."""
    return hashlib.sha256(node.encode()).hexdigest()[:40]


def node_record(node: dict[str, Any]) -> NodeRecord | None:
    """The record a Node's annotations hold, None when the node has not registered."""
    notes = (node.get("metadata") or {}).get("annotations") or {}
    try:
        return NodeRecord(node["metadata"]["name"], notes[ANNOTATIONS["ip"]],
                          int(notes[ANNOTATIONS["as_number"]]), notes[ANNOTATIONS["vtep_mac"]],
                          notes.get(ANNOTATIONS["tunnel_address"]) or None,
                          notes.get(ANNOTATIONS["route_reflector"]) or None)
    except (KeyError, TypeError, ValueError):
        return None


def node_annotations(record: NodeRecord | None) -> dict[str, str | None]:
    """The annotations to merge into the Node: None removes one."""
    if record is None:
        return dict.fromkeys(ANNOTATIONS.values())
    return {ANNOTATIONS["ip"]: record.ip, ANNOTATIONS["as_number"]: str(record.as_number),
            ANNOTATIONS["vtep_mac"]: record.vtep_mac,
            ANNOTATIONS["tunnel_address"]: record.tunnel_address,
            ANNOTATIONS["route_reflector"]: record.route_reflector}


def parse_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def decode(kind: str, obj: dict[str, Any]) -> Value | None:
    if kind == NODE:
        return node_record(obj)
    spec = obj.get("spec") or {}
    if kind == LIVENESS:
        return Liveness(obj["metadata"]["name"], float(spec.get("leaseDurationSeconds") or 0),
                        parse_time(spec.get("renewTime")) or 0.0)
    if kind == AFFINITY:
        return Affinity.from_spec(spec)
    if kind == POOL:
        return Pool.from_spec(obj["metadata"]["name"], spec)
    if kind == HANDLE:
        return Handle.from_spec(spec)
    return Block.from_spec(spec)
