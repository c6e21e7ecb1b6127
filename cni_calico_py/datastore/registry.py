"""The node registry: each node's record, written only when it changed, a node's removal,
and what a node knows of the whole cluster."""

from __future__ import annotations

import contextlib
from ipaddress import IPv4Network

from ..core.logs import log
from .backend import Backend
from .errors import AlreadyExists, Conflict, NotFound
from .model import BLOCK, LIVENESS, NODE, Key, KVPair, NodeRecord, Pool
from .ownership import BlockOwnership
from .view import Cluster

# The kinds a node follows; affinities it reads only for itself (ownership.recover).
FOLLOWED = (NODE, BLOCK, LIVENESS)


def read_cluster(backend: Backend) -> Cluster:
    """Every node, block and liveness, each kind with the revision to watch it after."""
    cluster = Cluster()
    for kind in FOLLOWED:
        cluster.take(kind, backend.list(kind))
    return cluster


def register(backend: Backend, record: NodeRecord) -> None:
    """Create or replace the node's record (compare-and-swap on what was there)."""
    for _ in range(5):
        try:
            current = backend.get(record.key)
        except NotFound:
            try:
                backend.create(record.key, record)
                return
            except AlreadyExists:
                continue
        if current.value == record:
            return
        try:
            backend.update(KVPair(record.key, record, current.revision))
            return
        except (Conflict, NotFound):
            continue
    raise Conflict(f"the record of node {record.name} kept changing")


def ensure_pool(backend: Backend, pool: Pool) -> None:
    """Create the pool the node's config describes unless one of its name exists, as
    calico-node creates its default pool; an existing pool that differs is left, with a
    warning (the operator's edit wins)."""
    try:
        backend.create(pool.key, pool)
        log.info("created IPPool %s (%s)", pool.name, pool.cidr)
    except AlreadyExists:
        current = backend.get(pool.key).value
        if current != pool:
            log.warning("IPPool %s in the datastore is %s; this node's config says %s",
                        pool.name, current, pool)


def remove_node(backend: Backend, name: str) -> list[IPv4Network]:
    """Take a node out of the cluster: its blocks back to the pool, then its record and
    liveness. Each step is safe to repeat when a crash cut the removal short."""
    released = BlockOwnership(backend).remove_node(name)
    for key in (Key(NODE, name), Key(LIVENESS, name)):
        with contextlib.suppress(NotFound):
            backend.delete(key, None)
    return released
