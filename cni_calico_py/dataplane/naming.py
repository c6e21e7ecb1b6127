"""Host-side veth names."""

from __future__ import annotations

import hashlib

HASH_CHARS = 11


def host_veth_name(prefix: str, pod_namespace: str, pod_name: str, container_id: str) -> str:
    """`cali` + 11 hex chars of sha1("<namespace>.<pod>"), as Calico names it.

    Without pod arguments Calico takes the container ID's first characters,
    which collide when IDs share a prefix (ctr sends `default-<name>`); a hash
    of the whole ID keeps those apart.
    """
    key = f"{pod_namespace}.{pod_name}" if pod_namespace and pod_name else container_id
    return prefix + hashlib.sha1(key.encode()).hexdigest()[:HASH_CHARS]
