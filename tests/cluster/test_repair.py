"""The node daemon puts back what it programs within a second of something removing it,
and an idle node writes nothing to its kernel.

Each object is deleted by hand REPEATS times; the time from the kernel's
deletion notice to its notice of the object back is read from rtnetlink in
the node's namespace (notifications.py) and printed as p50 / max. After each
repair a pod pings a pod of another node.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster.conftest import Cluster
from tests.cluster.daemons import block_of, explain, running, tunnel, wait_routes
from tests.cluster.notifications import AF_BRIDGE, Note, Notifications, notifications
from tests.cluster.topology import ClusterNode
from tests.cni_calls import Pod
from tests.netns import inside, wait_for

pytestmark = pytest.mark.netns

REPEATS = 20
# Generous: the daemon aims at milliseconds; a busy 2-core machine may stall it.
BOUND = 5.0
IDLE_SECONDS = 60
PORT = 9468


def ping_once(pod: Pod, address: str) -> bool:
    netns = pod.netns.rsplit("/", 1)[-1]
    return subprocess.run(["ip", "netns", "exec", netns, "ping", "-c", "1", "-W", "1", address],
                          capture_output=True).returncode == 0


def pings(pod: Pod, address: str) -> None:
    wait_for(lambda: ping_once(pod, address), timeout=BOUND, interval=0.01,
             what=f"{pod.node.name} pinging {address}")


def add_pods(cluster: Cluster, nodes: list[ClusterNode]) -> dict[str, Pod]:
    pods = {n.name: cluster.pod(n) for n in nodes}
    for pod in pods.values():
        pod.add()
    return pods


def measure(watch: Notifications, delete: Callable[[], object], gone: Callable[[Note], bool],
            back: Callable[[Note], bool], what: str, after_each: Callable[[], None]) -> list[float]:
    """Delete REPEATS times; seconds from the deletion's notice to the object's."""
    took = []
    for _ in range(REPEATS):
        mark = watch.mark()
        delete()
        deleted, position = watch.wait(gone, mark, BOUND, f"{what} deleted")
        restored, _ = watch.wait(back, position, BOUND, f"{what} back")
        took.append(restored.at - deleted.at)
        after_each()
    return took


def figures(what: str, took: list[float]) -> str:
    line = (f"{what}: p50 {statistics.median(took) * 1000:.1f} ms, max {max(took) * 1000:.1f} ms "
            f"over {len(took)}")
    print(f"\nrepair {line}")
    assert max(took) < BOUND, line
    return line


def scrape(node: ClusterNode) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with inside(node.netns), \
            urllib.request.urlopen(f"http://127.0.0.1:{PORT}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


# rtnetlink requests that change something (numeric when strace cannot name them).
_WRITE_REQUEST = re.compile(r"nlmsg_type=(RTM_(NEW|DEL)(LINK|ADDR|ROUTE|NEIGH)\b|0x1[014589cd]\b)")


@contextmanager
def netlink_requests(pid: int) -> Iterator[Callable[[], list[str]]]:
    """The change requests a process sends to the kernel, as strace sees them (an identical
    replace is a request the kernel announces nothing for)."""
    if shutil.which("strace") is None:
        pytest.fail("strace is not installed (scripts/setup.sh installs it): apt-get install strace")
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as out:
        tracer = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=sendto,sendmsg", "-e",
                                   "signal=none", "-s", "64", "-o", out.name, "-p", str(pid)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1)  # attached to every thread
            yield lambda: [line for line in out.read().splitlines() if _WRITE_REQUEST.search(line)]
        finally:
            tracer.terminate()
            tracer.wait(10)


def resync_count(node: ClusterNode) -> float:
    return scrape(node).get(("calico_py_node_syncs_total", (("trigger", "resync"),)), 0.0)


def repairs(cluster: Cluster, node: ClusterNode) -> list[dict[str, Any]]:
    path = cluster.repairs_path(node)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_vxlan_routes_neighbours_and_fdb_come_back(cluster: Cluster) -> None:
    ul = cluster.underlay
    nodes = [ul.add_node(i) for i in (1, 2, 3)]
    n1, n2, n3 = nodes
    with running(cluster, nodes, "VXLAN", metrics_port=PORT):
        pods = add_pods(cluster, nodes)
        for node in nodes:
            wait_routes(cluster, node, [f"{block_of(cluster, o)} via {tunnel(cluster, o)} dev vxlan.calico "
                                        "proto 98 onlink" for o in nodes if o is not node])
        src, dst = pods[n1.name], pods[n3.name]
        pings(src, dst.address())
        block, vtep = block_of(cluster, n3), tunnel(cluster, n3)
        mac = json.loads(n3.exec("ip", "-j", "link", "show", "vxlan.calico").stdout)[0]["address"]
        results = []
        with notifications(n1.netns) as watch:
            def route(note: Note, kind: str) -> bool:
                return note.kind == kind and note.dst == block and note.proto == 98

            took = measure(watch, lambda: n1.exec("ip", "route", "del", block),
                           lambda n: route(n, "delroute"), lambda n: route(n, "newroute"),
                           f"route {block}", lambda: pings(src, dst.address()))
            results.append(figures(f"VXLAN route to another node's block ({block} proto 98)", took))

            def neigh(note: Note, kind: str) -> bool:
                return (note.kind == kind and note.family == 2 and note.dst == vtep
                        and (kind == "delneigh" or (note.permanent and note.lladdr == mac)))

            took = measure(watch, lambda: n1.exec("ip", "neigh", "del", vtep, "dev", "vxlan.calico"),
                           lambda n: neigh(n, "delneigh"), lambda n: neigh(n, "newneigh"),
                           f"neighbour {vtep}", lambda: pings(src, dst.address()))
            results.append(figures(f"VXLAN neighbour entry ({vtep} lladdr {mac})", took))

            def fdb(note: Note, kind: str) -> bool:
                return (note.kind == kind and note.family == AF_BRIDGE and note.lladdr == mac
                        and note.dst == n3.ip and (kind == "delneigh" or note.permanent))

            took = measure(watch, lambda: n1.exec("bridge", "fdb", "del", mac, "dev", "vxlan.calico",
                                                  "dst", n3.ip),
                           lambda n: fdb(n, "delneigh"), lambda n: fdb(n, "newneigh"),
                           f"fdb {mac}", lambda: pings(src, dst.address()))
            results.append(figures(f"VXLAN FDB entry ({mac} dst {n3.ip})", took))

            # The tunnel device down, its MTU, MAC or address changed, then deleted: the routes
            # and entries the kernel drops with it come back too.
            def device() -> dict[str, Any]:
                return dict(json.loads(n1.exec("ip", "-j", "addr", "show", "vxlan.calico").stdout)[0])

            own_mac, own_vtep = device()["address"], tunnel(cluster, n1)
            n1.exec("ip", "link", "set", "vxlan.calico", "down")
            pings(src, dst.address())
            n1.exec("ip", "link", "set", "vxlan.calico", "mtu", "1400")
            wait_for(lambda: device()["mtu"] == 1450, timeout=BOUND, what="vxlan.calico's MTU back")
            n1.exec("ip", "link", "set", "vxlan.calico", "address", "66:00:00:00:00:99")
            wait_for(lambda: device()["address"] == own_mac, timeout=BOUND, what="vxlan.calico's MAC back")
            n1.exec("ip", "addr", "del", f"{own_vtep}/32", "dev", "vxlan.calico")
            wait_for(lambda: any(a["local"] == own_vtep for a in device()["addr_info"]), timeout=BOUND,
                     what="vxlan.calico's address back")
            pings(pods[n2.name], src.address())
            n1.exec("ip", "link", "del", "vxlan.calico")
            pings(src, dst.address())
            pings(pods[n2.name], src.address())

        # Every repair journaled with what explain matches on, counted, and named by explain.
        journal = repairs(cluster, n1)
        keys = [(r["what"], r["key"]) for r in journal]
        assert all(r["by"] == "node" for r in journal)
        assert keys.count(("route", block)) >= REPEATS
        assert keys.count(("neigh", "vxlan.calico")) >= REPEATS
        assert keys.count(("fdb", "vxlan.calico")) >= REPEATS
        assert ("device", "vxlan.calico") in keys
        samples = scrape(n1)
        for what in ("route", "neigh", "fdb"):
            assert samples[("calico_py_node_repairs_total", (("what", what),))] >= REPEATS
        assert samples[("calico_py_node_repairs_total", (("what", "device"),))] >= 1
        _, report = explain(cluster, n1, src, dst)
        assert report["ok"], report
        route_hop = next(h["what"] for h in report["hops"] if h["what"].startswith(f"route {block}"))
        assert "(repaired " in route_hop and "s ago: " in route_hop, route_hop
        device_hop = next(h["what"] for h in report["hops"] if h["what"].startswith("vxlan.calico"))
        assert "(repaired " in device_hop, device_hop
        # Nothing was repaired on the nodes nobody touched.
        assert repairs(cluster, n2) == []
    print("\n" + "\n".join(results))


def test_bgp_bird_routes_and_blackholes_come_back(cluster: Cluster) -> None:
    ul = cluster.underlay
    nodes = [ul.add_node(i) for i in (1, 2, 3)]
    n1, _, n3 = nodes
    with running(cluster, nodes, "Off"):
        pods = add_pods(cluster, nodes)
        for node in nodes:
            wait_routes(cluster, node, [f"{block_of(cluster, o)} via {o.ip} dev eth0 proto bird"
                                        for o in nodes if o is not node], timeout=30)
        src, dst = pods[n1.name], pods[n3.name]
        pings(src, dst.address())
        theirs, mine = block_of(cluster, n3), block_of(cluster, n1)
        results = []
        with notifications(n1.netns) as watch:
            def route(note: Note, kind: str, dst: str, rtype: str) -> bool:
                return note.kind == kind and note.dst == dst and note.proto == 12 and note.type == rtype

            took = measure(watch, lambda: n1.exec("ip", "route", "del", theirs),
                           lambda n: route(n, "delroute", theirs, "unicast"),
                           lambda n: route(n, "newroute", theirs, "unicast"),
                           f"route {theirs}", lambda: pings(src, dst.address()))
            results.append(figures(f"BGP route to another node's block ({theirs} proto bird)", took))
            # The own block's blackhole is what BIRD announces: the other node's reply needs it.
            took = measure(watch, lambda: n1.exec("ip", "route", "del", "blackhole", mine),
                           lambda n: route(n, "delroute", mine, "blackhole"),
                           lambda n: route(n, "newroute", mine, "blackhole"),
                           f"blackhole {mine}", lambda: pings(dst, src.address()))
            results.append(figures(f"BGP own block's blackhole ({mine} proto bird)", took))
        keys = [(r["what"], r["key"]) for r in repairs(cluster, n1)]
        assert keys.count(("route", theirs)) >= REPEATS
        assert keys.count(("blackhole", mine)) >= REPEATS
    print("\n" + "\n".join(results))


@pytest.mark.parametrize("mode", ["VXLAN", "Off"])
def test_an_idle_node_writes_nothing_to_its_kernel(cluster: Cluster, mode: str) -> None:
    ul = cluster.underlay
    nodes = [ul.add_node(i) for i in (1, 2, 3)]
    # Resyncs within the window: they compare the kernel with everything, and write nothing.
    with running(cluster, nodes, mode, resync_seconds=25, metrics_port=PORT) as daemons:
        pods = add_pods(cluster, nodes)
        for node in nodes:
            wait_routes(cluster, node, [
                f"{block_of(cluster, o)} via {tunnel(cluster, o)} dev vxlan.calico proto 98 onlink"
                if mode == "VXLAN" else f"{block_of(cluster, o)} via {o.ip} dev eth0 proto bird"
                for o in nodes if o is not node], timeout=30)
        first = pods[nodes[0].name]
        for other in nodes[1:]:
            pings(first, pods[other.name].address())
        # The tunnel's IPv6 link-local address settles (DAD) in a second or two.
        time.sleep(3)
        resyncs = {n.name: resync_count(n) for n in nodes}
        with notifications(nodes[0].netns) as w1, notifications(nodes[1].netns) as w2, \
                notifications(nodes[2].netns) as w3, \
                netlink_requests(daemons.procs[nodes[0].name].pid) as requests:
            time.sleep(IDLE_SECONDS)
            sent = requests()
            watches = {n.name: w for n, w in zip(nodes, (w1, w2, w3), strict=True)}
            # The kernel's own neighbour state machine (REACHABLE, STALE, ...) moves with the
            # lease renewals' traffic; nobody writes those. Permanent entries are written.
            notes = {name: w.since(0) for name, w in watches.items()}
            lost = {name: w.lost for name, w in watches.items()}
        writes = {name: [n for n in found if not n.kind.endswith("neigh") or n.permanent
                         or n.family == AF_BRIDGE] for name, found in notes.items()}
        print(f"\n{mode}: idle {IDLE_SECONDS} s, rtnetlink writes per node (routes, links, addresses, "
              f"permanent neighbours, FDB): {({k: len(v) for k, v in writes.items()})}; the kernel's "
              f"own neighbour state changes: {({k: len(v) - len(writes[k]) for k, v in notes.items()})}")
        print(f"node {nodes[0].name}'s daemon sent {len(sent)} change requests to the kernel")
        assert all(not v for v in writes.values()), writes
        assert not sent, sent[:10]
        assert all(not v for v in lost.values()), lost
        assert all(resync_count(n) >= resyncs[n.name] + 2 for n in nodes), resyncs


@pytest.mark.parametrize("mode", ["VXLAN", "Off"])
def test_a_pods_own_wiring_comes_back_without_an_agent(cluster: Cluster, mode: str) -> None:
    """The daemon runs the pod repairer too: a node with no agent gets its pods' route,
    veth state and proxy_arp back, and pods of other nodes reach the pod again."""
    ul = cluster.underlay
    nodes = [ul.add_node(i) for i in (1, 2, 3)]
    n1, _, n3 = nodes
    with running(cluster, nodes, mode):
        pods = add_pods(cluster, nodes)
        src, dst = pods[n3.name], pods[n1.name]
        pings(src, dst.address())
        veth = dst.host_veth
        address = f"{dst.address()}/32"
        results = []
        with notifications(n1.netns) as watch:
            def pod_route(kind: str) -> Callable[[Note], bool]:
                return lambda note: note.kind == kind and note.dst == address

            took = measure(watch, lambda: n1.exec("ip", "route", "del", address, "dev", veth),
                           pod_route("delroute"), pod_route("newroute"), f"route {address}",
                           lambda: pings(src, dst.address()))
            results.append(figures(f"{mode}: a pod's route {address} dev {veth}", took))

            def link(up: bool) -> Callable[[Note], bool]:
                return lambda note: note.kind == "newlink" and note.name == veth \
                    and _is_up(n1, veth) == up

            # Down and up at once: the kernel drops the veth's routes without a notice.
            took = measure(watch, lambda: n1.exec("sh", "-c", f"ip link set {veth} down && "
                                                  f"ip link set {veth} up"),
                           link(True), pod_route("newroute"), f"veth {veth} flapped",
                           lambda: pings(src, dst.address()))
            results.append(figures(f"{mode}: the pod's veth set down and up", took))
            if mode == "VXLAN":  # in BGP modes the blackhole is BIRD's (tested above)
                block = block_of(cluster, n1)

                def blackhole(kind: str) -> Callable[[Note], bool]:
                    return lambda note: note.kind == kind and note.dst == block \
                        and note.type == "blackhole"

                took = measure(watch, lambda: n1.exec("ip", "route", "del", "blackhole", block),
                               blackhole("delroute"), blackhole("newroute"),
                               f"blackhole {block}", lambda: pings(src, dst.address()))
                results.append(figures(f"{mode}: the node's block's blackhole {block}", took))
        for _ in range(5):
            n1.exec("sysctl", "-qw", f"net.ipv4.conf.{veth}.proxy_arp=0")
            wait_for(lambda: n1.exec("cat", f"/proc/sys/net/ipv4/conf/{veth}/proxy_arp")
                     .stdout.strip() == "1", "proxy_arp back", timeout=BOUND, interval=0.005)
            pings(dst, src.address())
        found = {(r["by"], r["what"]) for r in repairs(cluster, n1)}
        assert {("node", "route"), ("node", "sysctl")} <= found, found
    print("\n" + "\n".join(results))


def _is_up(node: ClusterNode, veth: str) -> bool:
    return ",UP" in node.exec("ip", "-o", "link", "show", veth).stdout.split(">")[0]
