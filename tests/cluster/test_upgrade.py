"""A node upgraded in place keeps its blocks: etcd as an earlier version wrote it (blocks
without affinities, a format 1 node state) is read, and the first sync moves it to
Calico's shapes without the node losing or changing a block."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.cluster.conftest import Cluster
from tests.cluster.stores import EtcdStore

pytestmark = pytest.mark.netns

BLOCK = "192.168.0.64/26"


@pytest.mark.parametrize("cluster", ["etcd"], indirect=True)
def test_a_node_upgraded_in_place_keeps_its_block(cluster: Cluster) -> None:
    store = cluster.store
    assert isinstance(store, EtcdStore)
    node = cluster.underlay.add_node(1)
    cluster.write_config(node)
    store.server.etcdctl("put", "/calico-py/v1/blocks/192.168.0.64-26",
                         json.dumps({"node": node.name, "claimed": 1700000000.0}))
    state: dict[str, Any] = {
        "format": 1, "nodename": node.name, "node_ip": node.cidr, "pool": cluster.pool,
        "block_size": 26, "encapsulation": "Off", "etcd_endpoints": [store.server.endpoint],
        "etcd_prefix": "/calico-py/v1", "etcd_timeout_seconds": 1.0, "blocks": [BLOCK],
        "tunnel_address": None}
    cluster.state_file(node).parent.mkdir(parents=True, exist_ok=True)
    cluster.state_file(node).write_text(json.dumps(state))

    cluster.sync_once(node)

    upgraded = cluster.node_state(node)
    assert upgraded["format"] == 2 and upgraded["blocks"] == [BLOCK]
    assert upgraded["datastore"]["etcd_endpoints"] == [store.server.endpoint]
    block = json.loads(store.server.etcdctl(
        "get", "--print-value-only", "/calico-py/v1/blocks/192.168.0.64-26"))
    assert block["cidr"] == BLOCK and block["affinity"] == f"host:{node.name}"
    assert len(block["allocations"]) == 64 and block["strictAffinity"] is False
    affinity = json.loads(store.server.etcdctl(
        "get", "--print-value-only", f"/calico-py/v1/affinities/{node.name}-192-168-0-64-26"))
    assert affinity == {"cidr": BLOCK, "deleted": "false", "node": node.name, "state": "confirmed"}
    assert cluster.owners() == {BLOCK: node.name}
