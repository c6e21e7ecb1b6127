"""The cluster's shared state in etcd: the node registry, on the IPAM's block claims.

Layout under the prefix (default `/calico-py/v1`):
- `nodes/<name>`: `{"name", "ip", "asNumber", "vtepMac", "tunnelAddress"}`, the registry;
- `blocks/<address>-<length>`: `{"node", "claimed"}`, one key per owned block
  (ipam/block_claims.py: an ADD that finds every block full claims one too).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from ipaddress import IPv4Network

from ipam.block_claims import BlockClaims, DatastoreUnavailable, PoolExhausted

__all__ = ["Datastore", "DatastoreUnavailable", "NodeRecord", "PoolExhausted"]


@dataclass(frozen=True)
class NodeRecord:
    name: str
    ip: str
    as_number: int
    vtep_mac: str
    # The node's VXLAN (or tunl0) address, when an encapsulation mode uses one.
    tunnel_address: str | None = None

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "ip": self.ip, "asNumber": self.as_number,
                           "vtepMac": self.vtep_mac, "tunnelAddress": self.tunnel_address},
                          sort_keys=True)

    @classmethod
    def from_json(cls, text: bytes | str) -> NodeRecord | None:
        try:
            data = json.loads(text)
            tunnel = data.get("tunnelAddress")
            return cls(str(data["name"]), str(data["ip"]), int(data["asNumber"]),
                       str(data["vtepMac"]), str(tunnel) if tunnel else None)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


class Datastore(BlockClaims):
    def _node_key(self, name: str) -> str:
        return f"{self.prefix}/nodes/{name}"

    def register_node(self, node: NodeRecord) -> None:
        self._call(f"register node {node.name}",
                   lambda c: c.put(self._node_key(node.name), node.to_json()))

    def nodes(self) -> list[NodeRecord]:
        found = self._call("list nodes", lambda c: c.get_prefix(f"{self.prefix}/nodes/"))
        records = (NodeRecord.from_json(value) for value, _ in found)
        return sorted((r for r in records if r is not None), key=lambda r: r.name)

    def remove_node(self, name: str) -> list[IPv4Network]:
        """Take a node out of the registry and give its blocks back to the pool."""
        owned = [b for b, owner in self.blocks().items() if owner == name]
        for block in owned:
            self.release_block(block, name)
        self._call(f"remove node {name}", lambda c: c.delete(self._node_key(name)))
        return owned
