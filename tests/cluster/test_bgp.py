"""BGP mode as on a Calico node: BIRD holds each owned block's blackhole, pods or not;
route reflectors carry the routes when the nodes peer only with them."""

from __future__ import annotations

import json
import os
import signal

import pytest

from tests.cluster.conftest import Cluster
from tests.cluster.daemons import (
    all_pods_reach_each_other,
    bgp_sessions,
    bird_pid,
    block_of,
    running,
    wait_routes,
)
from tests.netns import wait_for

pytestmark = pytest.mark.netns


def bird_lines(cluster: Cluster, nodes: list, me) -> list[str]:  # type: ignore[type-arg]
    """What `ip route` on `me` should show for the pool, with no pods."""
    lines = [f"blackhole {block_of(cluster, me)} proto bird"]
    lines += [f"{block_of(cluster, n)} via {n.ip} dev eth0 proto bird" for n in nodes if n is not me]
    return sorted(lines)


def test_blocks_are_announced_from_the_claim_on_pods_or_not(cluster: Cluster) -> None:
    ul = cluster.underlay
    nodes = [ul.add_node(i) for i in (1, 2, 3)]
    with running(cluster, nodes, "Off"):
        # No pod anywhere: every node routes every other node's block, and its own is a blackhole.
        for node in nodes:
            want = bird_lines(cluster, nodes, node)
            wait_for(lambda node=node, want=want: cluster.routes(node) == want, timeout=30,
                     what=f"routes on {node.name}: want {want}, have {cluster.routes(node)}")
        before = {n.name: cluster.routes(n) for n in nodes}
        # Pods come and go: the block lines do not move.
        pods = [cluster.pod(n) for n in nodes]
        for pod in pods:
            pod.add()
        all_pods_reach_each_other({p.node.name: p for p in pods})
        for pod in pods:
            assert pod.delete()[0] == 0
        for node in nodes:
            assert cluster.routes(node) == before[node.name]
        # A second block for n1 (as an ADD that found every block full claims it): announced
        # everywhere at once; released, it disappears everywhere.
        n1 = nodes[0]
        extra = next(b for b in ("192.168.0.0/26", "192.168.0.64/26", "192.168.0.128/26",
                                 "192.168.0.192/26") if b not in json.dumps(before))
        # Written without its affinity, as a block from before affinities: n1 adopts it.
        cluster.put_block(extra, n1.name)
        wait_routes(cluster, n1, [f"blackhole {extra} proto bird"], timeout=10)
        for node in nodes[1:]:
            wait_routes(cluster, node, [f"{extra} via {n1.ip} dev eth0 proto bird"], timeout=10)
        cluster.delete_block(extra)
        for node in nodes:
            wait_for(lambda node=node: cluster.routes(node) == before[node.name], timeout=10,
                     what=f"{extra} gone from {node.name}")


def test_route_reflectors_carry_the_routes_and_one_is_enough(cluster: Cluster) -> None:
    ul = cluster.underlay
    cluster.pool = "192.168.0.0/22"  # 16 blocks for 8 nodes
    nodes = [ul.add_node(i) for i in range(1, 9)]
    reflectors, clients = nodes[:2], nodes[2:]
    with running(cluster, reflectors, "Off", route_reflector_cluster_id="224.0.0.1") as daemons:
        for node in clients:
            daemons.start(node, "Off")
        wait_for(lambda: all(cluster.state_file(n).exists() for n in nodes), timeout=60,
                 what="every node's state")
        pods = {n.name: cluster.pod(n) for n in nodes}
        for pod in pods.values():
            pod.add()
        # Clients: a session to each reflector and to no one else; reflectors: to everyone.
        for node in clients:
            wait_for(lambda node=node: bgp_sessions(cluster, node) == {
                r.ip: "Established" for r in reflectors}, timeout=60,
                what=f"{node.name}: sessions {bgp_sessions(cluster, node)}")
        for node in reflectors:
            wait_for(lambda node=node: bgp_sessions(cluster, node) == {
                n.ip: "Established" for n in nodes if n is not node}, timeout=60,
                what=f"{node.name}: sessions {bgp_sessions(cluster, node)}")
        # Every client learns every block, with the owner (not a reflector) as next hop.
        for node in nodes:
            want = [f"{block_of(cluster, n)} via {n.ip} dev eth0 proto bird" for n in nodes if n is not node]
            wait_routes(cluster, node, want, timeout=30)
        all_pods_reach_each_other({n.name: pods[n.name] for n in (nodes[0], nodes[2], nodes[7])})
        # One reflector stops (daemon, then BIRD): the other one carries every route.
        stopped = reflectors[0]
        daemons.stop(stopped)
        os.kill(bird_pid(cluster, stopped), signal.SIGTERM)
        for node in clients:
            wait_for(lambda node=node: bgp_sessions(cluster, node).get(reflectors[1].ip) == "Established"
                     and bgp_sessions(cluster, node).get(stopped.ip) != "Established", timeout=30,
                     what=f"{node.name} on the second reflector only")
            want = [f"{block_of(cluster, n)} via {n.ip} dev eth0 proto bird"
                    for n in [*clients, reflectors[1]] if n is not node]
            wait_routes(cluster, node, want, timeout=30)
        all_pods_reach_each_other({n.name: pods[n.name] for n in (reflectors[1], nodes[3], nodes[6])})
