"""`calico-py explain` across nodes: the healthy path in BGP, VXLAN and VXLANCrossSubnet modes,
and the faults it must name with their node and object."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from tests.cluster.conftest import Cluster
from tests.cluster.daemons import bird_pid, block_of, explain, peers_up, running, tunnel
from tests.cluster.topology import ClusterNode
from tests.cni_calls import Pod
from tests.netns import wait_for

pytestmark = pytest.mark.netns


def whats(report: dict[str, Any]) -> str:
    return "\n".join(f"{hop['where']}: {hop['what']}" for hop in report["hops"])


def problems(report: dict[str, Any]) -> list[str]:
    return [hop["problem"] for hop in report["hops"] if hop["problem"]]


def three_nodes(cluster: Cluster, remote_third: bool) -> list[ClusterNode]:
    ul = cluster.underlay
    return [ul.add_node(1), ul.add_node(2), ul.add_remote_node(3) if remote_third else ul.add_node(3)]


def pods_routed(cluster: Cluster, nodes: list[ClusterNode]) -> dict[str, Pod]:
    pods = {n.name: cluster.pod(n) for n in nodes}
    for pod in pods.values():
        pod.add()
    for node in nodes:
        for other in nodes:
            if other is not node:
                wait_for(lambda node=node, other=other: any(
                    line.startswith(block_of(cluster, other)) for line in cluster.routes(node)),
                    what=f"{node.name}'s route to {other.name}'s block", timeout=30)
    return pods


def test_bgp_path_and_its_faults(cluster: Cluster) -> None:
    nodes = three_nodes(cluster, remote_third=False)
    n1, _, n3 = nodes
    with running(cluster, nodes, "Off") as daemons:
        pods = pods_routed(cluster, nodes)
        wait_for(lambda: set(peers_up(cluster, n1).values()) == {"self", "Established"},
                 what="BGP sessions")
        src, dst = pods[n1.name], pods[n3.name]
        code, report = explain(cluster, n1, src, dst)
        assert code == 0, whats(report) + str(problems(report))
        text = whats(report)
        assert "route default via 169.254.1.1 dev eth0" in text
        assert f"route {block_of(cluster, n3)} via {n3.ip} dev eth0 proto bird" in text
        assert f"BGP session with {n3.ip}: Established" in text
        assert f"node {n3.name} (expected): owns {block_of(cluster, n3)}" in text
        assert f"blackhole {block_of(cluster, n1)} proto bird (exported to the peers by BIRD)" in text

        # n1's daemon stopped, or it would put back at once what is broken next (test_repair.py).
        daemons.stop(n1)
        # The own block's blackhole removed: nothing to announce.
        n1.exec("ip", "route", "del", "blackhole", block_of(cluster, n1))
        code, report = explain(cluster, n1, src, dst)
        assert code == 1 and any(f"no blackhole route for this node's block {block_of(cluster, n1)}"
                                 in p for p in problems(report)), problems(report)

        # BIRD stopped.
        os.kill(bird_pid(cluster, n1), signal.SIGTERM)
        wait_for(lambda: not any(line.startswith(block_of(cluster, n3))
                                 for line in cluster.routes(n1)), what="BIRD's routes withdrawn")
        code, report = explain(cluster, n1, src, dst)
        found = problems(report)
        assert code == 1 and any(
            f"no route for {block_of(cluster, n3)} (owned by node {n3.name} at {n3.ip})" in p
            and "BIRD is not running on this node" in p for p in found), found


@pytest.mark.parametrize("mode", ["VXLAN", "VXLANCrossSubnet"])
def test_vxlan_path_and_its_faults(cluster: Cluster, mode: str) -> None:
    nodes = three_nodes(cluster, remote_third=True)
    n1, n2, n3 = nodes
    with running(cluster, nodes, mode) as daemons:
        pods = pods_routed(cluster, nodes)
        src, dst = pods[n1.name], pods[n3.name]
        code, report = explain(cluster, n1, src, dst)
        assert code == 0, whats(report) + str(problems(report))
        text = whats(report)
        vtep = tunnel(cluster, n3)
        assert f"route {block_of(cluster, n3)} via {vtep} dev vxlan.calico proto 98 onlink" in text
        assert f"VTEP {vtep} is " in text and f"dst {n3.ip}; outer {n1.ip} -> {n3.ip} UDP 4789" \
            in text, text
        if mode == "VXLANCrossSubnet":
            # n2 shares n1's subnet: plain routing over eth0.
            code, report = explain(cluster, n1, src, pods[n2.name])
            assert code == 0, problems(report)
            assert f"to node {n2.name} at {n2.ip} over eth0, not encapsulated" in whats(report)

        # n1's daemon stopped, or it would put back at once what is broken next (test_repair.py).
        daemons.stop(n1)
        # The tunnel's MTU lowered below the pod's.
        n1.exec("ip", "link", "set", "vxlan.calico", "mtu", "1400")
        code, report = explain(cluster, n1, src, dst)
        assert code == 1 and any("MTU mismatch: the pod's eth0 has 1450, vxlan.calico only 1400"
                                 in p for p in problems(report)), problems(report)
        n1.exec("ip", "link", "set", "vxlan.calico", "mtu", "1450")

        # The route for n3's block deleted.
        n1.exec("ip", "route", "del", block_of(cluster, n3))
        code, report = explain(cluster, n1, src, dst)
        assert code == 1 and any(
            f"no route for {block_of(cluster, n3)} (owned by node {n3.name} at {n3.ip})" in p
            for p in problems(report)), problems(report)

        # The datastore unreachable: the owner cannot be named, and explain says why.
        cluster.store.stop()
        _, report = explain(cluster, n1, src, dst)
        assert "datastore: could not be read" in whats(report) or any(
            "the datastore could not be read" in p for p in problems(report)), whats(report)
