"""Pods on three nodes reach each other in each mode; route tables read as in the routing model."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from tests.cluster.conftest import Cluster
from tests.cluster.daemons import (
    all_pods_reach_each_other,
    bird_pid,
    block_of,
    peers_up,
    ping,
    running,
    tunnel,
)
from tests.cluster.topology import ClusterNode
from tests.cni_calls import Pod
from tests.netns import wait_for

pytestmark = pytest.mark.netns


def expected_routes(cluster: Cluster, me: ClusterNode, nodes: list[ClusterNode], mode: str,
                    pods: dict[str, Pod]) -> list[str]:
    pod = pods[me.name]
    owner = "bird" if mode == "Off" else "98"
    lines = [f"{pod.address()} dev {pod.host_veth} scope link",
             f"blackhole {block_of(cluster, me)} proto {owner}"]
    for other in nodes:
        if other is me:
            continue
        same_subnet = other.cidr.rsplit(".", 1)[0] == me.cidr.rsplit(".", 1)[0]
        if mode == "Off":
            lines.append(f"{block_of(cluster, other)} via {other.ip} dev eth0 proto bird")
        elif mode == "VXLANCrossSubnet" and same_subnet:
            lines.append(f"{block_of(cluster, other)} via {other.ip} dev eth0 proto 98")
        else:
            lines.append(f"{block_of(cluster, other)} via {tunnel(cluster, other)} dev vxlan.calico "
                         "proto 98 onlink")
    return sorted(lines)


MODES = {
    "Off": False,  # BGP: plain routes need every node on one segment
    "VXLAN": True,
    "VXLANCrossSubnet": True,
}


@pytest.mark.parametrize("mode", list(MODES))
def test_pods_on_every_node_reach_each_other(cluster: Cluster, mode: str) -> None:
    ul = cluster.underlay
    nodes = [ul.add_node(1), ul.add_node(2), ul.add_remote_node(3) if MODES[mode] else ul.add_node(3)]
    with running(cluster, nodes, mode) as daemons:
        pods = {n.name: cluster.pod(n) for n in nodes}
        for pod in pods.values():
            pod.add()
        for node in nodes:
            want = expected_routes(cluster, node, nodes, mode, pods)
            wait_for(lambda node=node, want=want: cluster.routes(node) == want, timeout=20,
                     what=f"routes on {node.name}: want {want}, have {cluster.routes(node)}")
        all_pods_reach_each_other(pods)
        mtu = 1450 if mode != "Off" else 1500
        for pod in pods.values():
            netns = pod.netns.rsplit("/", 1)[-1]
            link = json.loads(subprocess.run(["ip", "-n", netns, "-j", "link", "show", "eth0"],
                                             capture_output=True, text=True).stdout)[0]
            assert link["mtu"] == mtu
        if mode != "Off":
            vxlan = json.loads(nodes[0].exec("ip", "-d", "-j", "link", "show", "vxlan.calico").stdout)[0]
            info = vxlan["linkinfo"]["info_data"]
            assert (info["id"], info["port"], info["learning"], info["local"]) == (
                4096, 4789, False, nodes[0].ip)
        # A node leaving the registry disappears from the others' routes.
        status = json.loads(cluster.node_cmd(nodes[0], "status", "--json").stdout)
        assert sorted(n["name"] for n in status["nodes"]) == sorted(n.name for n in nodes)
        leaving = nodes[2]
        pods[leaving.name].delete()
        daemons.stop(leaving)
        proc = cluster.node_cmd(nodes[0], "leave", leaving.name)
        assert proc.returncode == 0, proc.stderr
        for node in nodes[:2]:
            wait_for(lambda node=node: leaving.name not in json.dumps(cluster.routes(node))
                     and not any(block_of(cluster, leaving) in line for line in cluster.routes(node)),
                     what=f"{leaving.name}'s routes gone from {node.name}")
        if mode != "Off":
            def vxlan_entries() -> tuple[str, str]:
                return (nodes[0].exec("ip", "neigh", "show", "dev", "vxlan.calico").stdout,
                        nodes[0].exec("bridge", "fdb", "show", "dev", "vxlan.calico").stdout)

            # The block goes first, the registry entry a moment later: wait for both.
            wait_for(lambda: tunnel(cluster, leaving) + " " not in vxlan_entries()[0]
                     and leaving.ip + " " not in vxlan_entries()[1], what="VXLAN entries removed")
            neigh, fdb = vxlan_entries()
            # CrossSubnet reaches n2, in n1's own subnet, without VXLAN.
            kept = mode == "VXLAN"
            assert (tunnel(cluster, nodes[1]) in neigh, nodes[1].ip in fdb) == (kept, kept)


def test_bgp_withdraws_a_stopped_node_and_meshes_a_late_one(cluster: Cluster) -> None:
    ul = cluster.underlay
    nodes = [ul.add_node(i) for i in (1, 2, 3)]
    with running(cluster, nodes, "Off") as daemons:
        pods = {n.name: cluster.pod(n) for n in nodes}
        for pod in pods.values():
            pod.add()
        n1, n2, n3 = nodes
        route_to_n2 = f"{block_of(cluster, n2)} via {n2.ip} dev eth0 proto bird"
        for node in (n1, n3):
            wait_for(lambda node=node: route_to_n2 in cluster.routes(node), what="BGP routes")
        wait_for(lambda: peers_up(cluster, n1) == {n1.name: "self", n2.name: "Established",
                                                   n3.name: "Established"}, what="peers up")
        # n2's BIRD stops (its daemon first, or it would start BIRD again).
        daemons.stop(n2)
        os.kill(bird_pid(cluster, n2), signal.SIGTERM)
        for node in (n1, n3):
            wait_for(lambda node=node: route_to_n2 not in cluster.routes(node), what="withdrawal")
        assert not ping(pods[n1.name], pods[n2.name].address())
        daemons.start(n2, "Off")
        for node in (n1, n3):
            wait_for(lambda node=node: route_to_n2 in cluster.routes(node), what="restored routes")
        all_pods_reach_each_other(pods)
        # A fourth node joins: meshed without restarting anyone's BIRD.
        before = {n.name: bird_pid(cluster, n) for n in nodes}
        n4 = ul.add_node(4)
        daemons.start(n4, "Off")
        wait_for(lambda: cluster.state_file(n4).exists(), what="n4 state")
        pods[n4.name] = cluster.pod(n4)
        pods[n4.name].add()
        route_to_n4 = f"{block_of(cluster, n4)} via {n4.ip} dev eth0 proto bird"
        for node in nodes:
            wait_for(lambda node=node: route_to_n4 in cluster.routes(node), timeout=20,
                     what=f"{node.name} learns n4's block")
        assert {n.name: bird_pid(cluster, n) for n in nodes} == before
        all_pods_reach_each_other(pods)
        # n4 leaves the registry: its peer goes from every BIRD.
        daemons.stop(n4)
        assert cluster.node_cmd(n1, "leave", n4.name).returncode == 0
        wait_for(lambda: n4.name not in peers_up(cluster, n1), what="n4 gone from the registry")
        for node in nodes:
            wait_for(lambda node=node: route_to_n4 not in cluster.routes(node), what="n4 withdrawn")
            wait_for(lambda node=node: n4.ip not in subprocess.run(
                ["birdc", "-s", str(cluster.dir(node) / "bird" / "bird.ctl"), "show", "protocols"],
                capture_output=True, text=True).stdout.replace("_", "."), what="n4 peer removed")


def test_ipip_on_a_kernel_without_ipip_is_a_clear_error_and_nothing_is_set_up(cluster: Cluster) -> None:
    node = cluster.underlay.add_node(1)
    cluster.write_config(node, encapsulation="IPIP")
    proc = cluster.node_cmd(node, "run", "--once")
    assert proc.returncode == 1
    assert "encapsulation IPIP needs the kernel's ipip support" in proc.stderr
    assert "use VXLAN" in proc.stderr
    assert not cluster.state_file(node).exists()
    assert cluster.datastore_is_empty()
    assert "tunl0" not in node.exec("ip", "link").stdout


def test_vxlan_follows_a_node_whose_ip_changes(cluster: Cluster) -> None:
    ul = cluster.underlay
    nodes = [ul.add_node(1), ul.add_node(2)]
    with running(cluster, nodes, "VXLAN"):
        pods = {n.name: cluster.pod(n) for n in nodes}
        for pod in pods.values():
            pod.add()
        n1, n2 = nodes
        fdb = lambda: n1.exec("bridge", "fdb", "show", "dev", "vxlan.calico").stdout  # noqa: E731
        wait_for(lambda: f"dst {n2.ip} " in fdb(), what="n2's fdb entry")
        all_pods_reach_each_other(pods)
        new_ip = n2.ip.rsplit(".", 1)[0] + ".42"
        n2.exec("ip", "addr", "del", n2.cidr, "dev", "eth0")
        n2.exec("ip", "addr", "add", f"{new_ip}/24", "dev", "eth0")
        n2.exec("ip", "route", "replace", "default", "via", ul.gateway)
        wait_for(lambda: f"dst {new_ip} " in fdb() and f"dst {n2.ip} " not in fdb(),
                 what="n1's fdb entry following n2's new IP")
        all_pods_reach_each_other(pods)
