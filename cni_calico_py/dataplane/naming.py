"""Host-side veth names, and the mark that says which attachment a pair is."""

from __future__ import annotations

import hashlib

HASH_CHARS = 11
OWNER_MARK = "calico-py "


def host_veth_name(prefix: str, pod_namespace: str, pod_name: str, container_id: str) -> str:
    """`cali` + 11 hex chars of sha1("<namespace>.<pod>"), as Calico names it.

    Without pod arguments Calico takes the container ID's first characters,
    which collide when IDs share a prefix (ctr sends `default-<name>`); a hash
    of the whole ID keeps those apart.
    """
    key = f"{pod_namespace}.{pod_name}" if pod_namespace and pod_name else container_id
    return prefix + hashlib.sha1(key.encode()).hexdigest()[:HASH_CHARS]


def spare_host_veth_name(prefix: str, network: str, container_id: str, ifname: str) -> str:
    """The name a pair takes when another attachment holds the pod's Calico name.

    Two sandboxes of one pod (or two interfaces of one pod in one network)
    share the pod's name; the second one is named after the attachment
    itself, so each keeps a pair of its own and neither deletes the other's.
    """
    key = "\0".join(("spare", network, container_id, ifname))
    return prefix + hashlib.sha1(key.encode("utf-8", "surrogateescape")).hexdigest()[:HASH_CHARS]


def owner_mark(network: str, container_id: str, ifname: str) -> str:
    """What ADD writes as the host veth's alias (IFLA_IFALIAS): the attachment that made it.

    DEL, GC and ADD's rollback remove a pair only when it carries the
    attachment's own mark, never by name alone.
    """
    key = "\0".join((network, container_id, ifname)).encode("utf-8", "surrogateescape")
    return OWNER_MARK + hashlib.sha256(key).hexdigest()[:32]
