"""Changes arrive through the etcd watch; idle nodes write nothing; dead nodes are noticed."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.cluster.conftest import Cluster
from tests.cluster.daemons import block_of, cpu_seconds, running, status, tunnel, writes
from tests.netns import wait_for

pytestmark = pytest.mark.netns

IDLE_WINDOW = 6.0


def test_idle_nodes_write_nothing_and_a_join_arrives_through_the_watch(cluster: Cluster) -> None:
    ul = cluster.underlay
    n1, n2, n3 = (ul.add_node(i) for i in (1, 2, 3))
    # The resync (60 s in these tests) is far off: whatever arrives sooner came by the watch.
    with running(cluster, [n1, n2], "VXLAN") as daemons:
        route = lambda a, b: (f"{block_of(cluster, b)} via {tunnel(cluster, b)} dev vxlan.calico "  # noqa: E731
                              "proto 98 onlink")
        wait_for(lambda: route(n1, n2) in cluster.routes(n1) and route(n2, n1) in cluster.routes(n2),
                 timeout=30, what="n1 and n2 route to each other")
        # Give the nodes a moment to settle (their leases are taken, records written).
        wait_for(lambda: all(s["alive"] for s in status(cluster, n1).values()), what="both alive")
        revision = writes(cluster)
        pids = {name: proc.pid for name, proc in daemons.procs.items()}
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        time.sleep(IDLE_WINDOW)  # the thing measured is that nothing happens
        used = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
        assert writes(cluster) == revision, "an idle node wrote to the datastore"
        assert all(seconds < 0.1 * IDLE_WINDOW / 6 for seconds in used.values()), used
        # A third node: the others route to it long before a resync would.
        daemons.start(n3, "VXLAN")
        wait_for(lambda: cluster.state_file(n3).exists(), timeout=30, what="n3's node state")
        for node in (n1, n2):
            took = wait_for(lambda node=node: route(node, n3) in cluster.routes(node), timeout=20,
                            what=f"{node.name} routes to n3")
            assert took < 20
        # ... and its leaving (`node leave`) too.
        daemons.stop(n3)
        assert cluster.node_cmd(n1, "leave", n3.name).returncode == 0
        for node in (n1, n2):
            wait_for(lambda node=node: not any("vxlan" in line and block_of(cluster, n3) in line
                                               for line in cluster.routes(node)),
                     timeout=10, what=f"n3's route gone from {node.name}")


def test_a_dead_node_is_seen_down_keeps_its_blocks_then_is_removed(cluster: Cluster) -> None:
    ul = cluster.underlay
    nodes = [ul.add_node(i) for i in (1, 2, 3)]
    n1, n2, n3 = nodes
    with running(cluster, nodes, "VXLAN", node_lease_seconds=2,
                 dead_node_release_seconds=4) as daemons:
        for node in (n1, n2):
            wait_for(lambda node=node: any(block_of(cluster, n3) in line for line in cluster.routes(node)),
                     timeout=30, what=f"{node.name} routes to n3")
        wait_for(lambda: status(cluster, n1)[n3.name]["alive"], timeout=20, what="n3 alive")
        dead_block = block_of(cluster, n3)
        # SIGKILL: no `leave`, no clean-up; its lease stops being renewed.
        proc = daemons.procs.pop(n3.name)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        wait_for(lambda: not status(cluster, n1)[n3.name]["alive"], timeout=20,
                 what="n3 seen down once its lease ran out")
        # Down, it keeps its blocks and the others keep routing to them, as Calico does
        # until the node is removed: a node that comes back finds its pods' addresses.
        assert status(cluster, n1)[n3.name]["blocks"] == [dead_block]
        assert any(dead_block in line for line in cluster.routes(n1))
        # After dead_node_release_seconds the first live node removes it.
        wait_for(lambda: n3.name not in status(cluster, n2), timeout=30, what="n3 removed")
        for node in (n1, n2):
            wait_for(lambda node=node: not any(dead_block in line for line in cluster.routes(node)),
                     timeout=10, what=f"n3's block unrouted on {node.name}")
        log = (cluster.dir(n1) / "daemon.log").read_text()
        assert f"node {n3.name} is down" in log
        assert f"removed, blocks released: {dead_block}" in log
