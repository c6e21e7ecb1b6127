"""Block ownership in a real datastore: claims, races, restarts, borrowing, outages."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import threading
from collections import Counter
from typing import Any

import pytest

from tests.cluster.conftest import Cluster
from tests.netns import wait_for

pytestmark = pytest.mark.netns


def owners(cluster: Cluster) -> dict[str, str]:
    """Block (`192.168.0.64/26`) -> owner, as the datastore has it."""
    return cluster.owners()


def owned_by(cluster: Cluster, name: str) -> list[str]:
    return sorted(key for key, owner in owners(cluster).items() if owner == name)


def in_parallel(*calls: tuple[Any, ...]) -> None:
    threads = [threading.Thread(target=f, args=args) for f, *args in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_three_nodes_starting_at_once_get_distinct_blocks_and_keep_them(cluster: Cluster) -> None:
    nodes = [cluster.underlay.add_node(i) for i in (1, 2, 3)]
    for node in nodes:
        cluster.write_config(node)
    in_parallel(*[(cluster.sync_once, n) for n in nodes])
    blocks = {n.name: cluster.node_state(n)["blocks"] for n in nodes}
    assert all(len(b) == 1 for b in blocks.values()), blocks
    assert len({b[0] for b in blocks.values()}) == 3
    for node in nodes:
        block: Any = ipaddress.ip_network(blocks[node.name][0])
        assert block.prefixlen == 26 and block.subnet_of(ipaddress.ip_network(cluster.pool))
        assert cluster.node_state(node)["node_ip"] == node.cidr
    assert sorted(owners(cluster).values()) == sorted(n.name for n in nodes)
    status = json.loads(cluster.node_cmd(nodes[0], "status", "--json").stdout)
    assert {n["name"]: (n["ip"], n["blocks"]) for n in status["nodes"]} == {
        n.name: (n.cidr, blocks[n.name]) for n in nodes}
    # Restarting every daemon keeps each node's block.
    in_parallel(*[(cluster.sync_once, n) for n in nodes])
    assert {n.name: cluster.node_state(n)["blocks"] for n in nodes} == blocks
    assert len(owners(cluster)) == 3


def test_twenty_claimers_for_three_free_blocks_never_share_one(cluster: Cluster) -> None:
    node = cluster.underlay.add_node(1)
    cluster.pool = "192.168.50.0/24"  # four /26 blocks
    cluster.write_config(node, nodename="early")
    cluster.sync_once(node)
    names = [f"racer-{i:02d}" for i in range(20)]
    configs = {}
    for name in names:
        cluster.write_config(node, nodename=name)
        configs[name] = cluster.config_path(node).with_name(f"{name}.yaml")
        cluster.config_path(node).rename(configs[name])
    procs: dict[str, Any] = {name: subprocess.Popen(
        ["ip", "netns", "exec", node.name, cluster.exe, "node", "run", "--once",
         "--config", str(configs[name])], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in names}
    outcomes = {name: (p.wait(120), p.stderr.read()) for name, p in procs.items()}
    winners = [n for n, (code, _) in outcomes.items() if code == 0]
    losers = {n: err for n, (code, err) in outcomes.items() if code != 0}
    assert len(winners) == 3, outcomes
    owned = owners(cluster)
    assert len(owned) == 4 and Counter(owned.values()) == Counter(["early", *winners])
    for err in losers.values():
        assert "pool 192.168.50.0/24 has no free /26 block: all 4 are owned" in err, err


def test_a_full_block_brings_a_second_one_and_addresses_stay_unique(cluster: Cluster) -> None:
    cluster.block_size = 29  # eight addresses a block keeps the test short
    node = cluster.underlay.add_node(1)
    # VXLAN: the IPAM makes each block's blackhole while the block holds an address
    # (in BGP modes BIRD holds them: test_bgp_blocks.py).
    cluster.write_config(node, encapsulation="VXLAN")
    cluster.sync_once(node)
    first = cluster.node_state(node)["blocks"]
    pods = [cluster.pod(node) for _ in range(11)]
    for pod in pods:
        pod.add()
    blocks = cluster.node_state(node)["blocks"]
    assert blocks[0] == first[0] and len(blocks) == 2
    addresses = [pod.address() for pod in pods]
    assert len(set(addresses)) == 11
    networks = [ipaddress.ip_network(b) for b in blocks]
    # Seven: the first address of the first block is the VTEP's.
    assert sum(ipaddress.ip_address(a) in networks[0] for a in addresses) == 7
    assert all(any(ipaddress.ip_address(a) in n for n in networks) for a in addresses)
    assert Counter(owners(cluster).values()) == Counter({node.name: 2})
    routes = node.exec("ip", "route", "show", "type", "blackhole").stdout
    assert all(b in routes for b in blocks), routes
    shown = json.loads(subprocess.run(
        [cluster.exe, "ipam", "show", "--json", "--conf",
         str(cluster.dir(node) / "10-calico-py.conflist")], capture_output=True, text=True).stdout)
    assert [b["used"] for b in shown["blocks"]] == [11]
    first_block = ipaddress.ip_network(blocks[0])
    assert shown["blocks"][0]["block"] == (
        f"{blocks[0]} ({first_block[1]}-{first_block[-1]}), {blocks[1]}")
    for pod in pods:
        assert pod.delete()[0] == 0
    assert node.exec("ip", "route", "show", "type", "blackhole").stdout == ""


def test_datastore_down_owned_blocks_serve_a_new_block_waits(cluster: Cluster) -> None:
    cluster.block_size = 30
    node = cluster.underlay.add_node(1)
    cluster.write_config(node)
    cluster.sync_once(node)
    cluster.store.stop()
    with cluster.daemon(node):
        pods = [cluster.pod(node) for _ in range(5)]
        for pod in pods[:4]:
            pod.add()
        code, out, _ = pods[4].call("ADD")
        assert code != 0 and out["code"] == 11, out
        assert "no free address in block" in out["msg"]
        assert "claiming another block of pool 192.168.0.0/24 failed" in out["msg"]
        assert cluster.store.unreachable_words() in out["msg"]
        log = cluster.dir(node) / "daemon.log"
        wait_for(lambda: log.read_text().count("retrying in") >= 2, what="the daemon's retries")
        cluster.store.start()
        pods[4].add()
        assert len(cluster.node_state(node)["blocks"]) == 2
        assert len({p.address() for p in pods}) == 5
        for pod in pods:
            assert pod.delete()[0] == 0


def test_an_idle_extra_block_goes_back_to_the_pool(cluster: Cluster) -> None:
    cluster.block_size = 30
    cluster.pool = "192.168.0.0/26"
    node = cluster.underlay.add_node(1)
    # Other nodes own every block but the pool's last and first. Unless the
    # node's claims start at the pool's start, its second claim then wraps
    # around to a block below its first, which must not become its home.
    blocks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = list(
        ipaddress.ip_network(cluster.pool).subnets(new_prefix=30))
    for block in blocks[1:-1]:
        cluster.put_block(str(block), "other")
    cluster.write_config(node, block_release_after_seconds=1)
    cluster.sync_once(node)
    first = cluster.node_state(node)["blocks"][0]
    pods = [cluster.pod(node) for _ in range(5)]
    with cluster.daemon(node):
        for pod in pods:
            pod.add()
        assert len(cluster.node_state(node)["blocks"]) == 2
        assert pods[4].delete()[0] == 0
        wait_for(lambda: len(owned_by(cluster, node.name)) == 1, what="the release")
        assert cluster.node_state(node)["blocks"] == [first]
        # The first block stays even when empty: a node keeps one block.
        for pod in pods[:4]:
            assert pod.delete()[0] == 0
        log = (cluster.dir(node) / "daemon.log").read_text()
    assert "released block" in log
    assert owned_by(cluster, node.name) == [first]
