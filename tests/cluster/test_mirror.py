"""The datastore shows which pod has which address: the node's blocks and handles follow its
IPAM store within a second, and the pool is there as Calico's IPPool."""

from __future__ import annotations

import ipaddress
import time
from typing import Any

import pytest

from cni_calico_py.datastore.model import BLOCK, HANDLE, POOL, Block, Handle, Pool
from tests.cluster.conftest import NETWORK, Cluster
from tests.kube import kubectl
from tests.netns import wait_for

pytestmark = pytest.mark.netns


def blocks(cluster: Cluster) -> dict[str, Block]:
    with cluster.datastore() as client:
        return {str(kv.value.cidr): kv.value for kv in client.list(BLOCK).items
                if isinstance(kv.value, Block)}


def handles(cluster: Cluster) -> dict[str, Handle]:
    with cluster.datastore() as client:
        return {kv.value.handle_id: kv.value for kv in client.list(HANDLE).items
                if isinstance(kv.value, Handle)}


def test_a_pods_address_and_name_reach_its_block_within_a_second(cluster: Cluster) -> None:
    node = cluster.underlay.add_node(1)
    cluster.write_config(node, encapsulation="VXLAN")
    with cluster.daemon(node):
        wait_for(lambda: cluster.state_file(node).exists(), timeout=30, what="the node state")
        home = cluster.node_state(node)["blocks"][0]
        with cluster.datastore() as client:
            pools = [kv.value for kv in client.list(POOL).items]
        assert pools == [Pool("default-ipv4-ippool", ipaddress.IPv4Network(cluster.pool), 26,
                              vxlan_mode="Always")]
        pod = cluster.pod(node)
        pod.args = "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-1"
        pod.add()
        added = time.monotonic()
        address = pod.address()
        handle = f"{NETWORK}.{pod.container_id}"

        def mirrored() -> bool:
            attributes = blocks(cluster)[home].addresses().get(address)
            return attributes == {"handle_id": handle, "secondary": {
                "node": node.name, "namespace": "shop", "pod": "web-1"}}

        wait_for(mirrored, timeout=10, interval=0.05, what=f"{address} in block {home}")
        took = time.monotonic() - added
        assert took < 3, f"the block showed the pod after {took:.2f} s"
        block = blocks(cluster)[home]
        # The tunnel address is the node's, not a pod's: not in the store, not mirrored.
        assert len(block.addresses()) == 1
        assert block.unallocated and len(block.unallocated) == block.cidr.num_addresses - 1
        wait_for(lambda: handles(cluster).get(handle) == Handle(handle, ((home, 1),), node.name),
                 timeout=5, what=f"handle {handle}")
        if cluster.store.kind == "kubernetes":
            # As an operator sees it.
            store: Any = cluster.store
            listed = kubectl(store.cp, "get", "ippools,ipamblocks,blockaffinities")
            assert "default-ipv4-ippool" in listed and f"host:{node.name}" in listed
            assert f"{node.name}-{home.replace('.', '-').replace('/', '-')}" in listed
            assert "confirmed" in listed, listed
            yaml_text = kubectl(store.cp, "get", "ipamblock", home.replace(".", "-").replace("/", "-"),
                                "-o", "yaml")
            assert "web-1" in yaml_text and "shop" in yaml_text and handle in yaml_text, yaml_text
        assert pod.delete()[0] == 0
        wait_for(lambda: blocks(cluster)[home].addresses() == {} and handle not in handles(cluster),
                 timeout=10, what="the pod's address and handle gone from the datastore")


def test_an_add_with_a_free_address_asks_the_datastore_nothing(cluster: Cluster) -> None:
    node = cluster.underlay.add_node(1)
    cluster.write_config(node)
    cluster.sync_once(node)  # the node owns a block; no daemon runs from here on
    pod = cluster.pod(node)
    before = cluster.store.requests()
    pod.add()
    # The reading of the count is itself one request of the store's (the metrics page).
    assert cluster.store.requests() - before <= 1, "an ADD from an owned block asked the datastore"
    assert pod.delete()[0] == 0
