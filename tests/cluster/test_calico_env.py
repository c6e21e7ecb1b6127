"""The node daemon run with Calico's environment variables, as a calico-node container would be."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.cluster.conftest import Cluster
from tests.cluster.daemons import block_of
from tests.netns import wait_for

pytestmark = pytest.mark.netns


def test_networking_backend_none_claims_blocks_and_routes_nothing_between_nodes(
        cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pool and backend from the environment win over the file; the underlay routes the pool."""
    ul = cluster.underlay
    nodes = [ul.add_node(1), ul.add_node(2)]
    monkeypatch.setenv("CALICO_NETWORKING_BACKEND", "none")
    monkeypatch.setenv("CALICO_IPV4POOL_CIDR", "10.244.0.0/24")
    for node in nodes:
        cluster.write_config(node, encapsulation="Off")  # BGP in the file; the variable wins
    with cluster.daemon(nodes[0]), cluster.daemon(nodes[1]):
        wait_for(lambda: all(cluster.state_file(n).exists() for n in nodes), what="node state")
        state = cluster.node_state(nodes[0])
        assert (state["pool"], state["encapsulation"]) == ("10.244.0.0/24", "None")
        pod = cluster.pod(nodes[0])
        pod.add()
        assert pod.address().startswith("10.244.0.")
        other_block = block_of(cluster, nodes[1])
        routes = [line.strip() for line in
                  nodes[0].exec("ip", "-4", "route", "show").stdout.splitlines()]
        # The IPAM's own blackhole, no route to the other node's block, no BIRD, no tunnel.
        assert f"blackhole {block_of(cluster, nodes[0])} proto 98" in routes, routes
        assert not any(line.startswith(other_block) for line in routes), routes
        assert not (cluster.dir(nodes[0]) / "bird" / "bird.pid").exists()
        links = json.loads(nodes[0].exec("ip", "-j", "link", "show").stdout)
        assert not {"vxlan.calico", "tunl0"} & {link["ifname"] for link in links}
        shown = json.loads(cluster.node_cmd(nodes[0], "config", "--json").stdout)
        assert shown["networking_backend"]["source"] == "env CALICO_NETWORKING_BACKEND"
        assert shown["pool"] == {"value": "10.244.0.0/24",
                                 "source": f"env CALICO_IPV4POOL_CIDR (over "
                                           f"{cluster.config_path(nodes[0])})"}
        pod.delete()


def test_a_bad_variable_stops_the_daemon_before_it_registers(cluster: Cluster) -> None:
    node = cluster.underlay.add_node(1)
    cluster.write_config(node)
    proc = subprocess.run(
        ["ip", "netns", "exec", node.name, "env", "AS=seventy", cluster.exe, "node", "run",
         "--config", str(cluster.config_path(node))], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "AS='seventy'" in proc.stderr, proc.stderr
    assert not cluster.state_file(node).exists()
    assert cluster.datastore_is_empty()
