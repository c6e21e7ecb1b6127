"""IPIP modes: BIRD itself installs the peers' blocks through tunl0, as on a Calico node.

These machines have no ipip module, so no real tunl0: a veth named tunl0
stands in. That shows the config BIRD is given for IPIP and IPIPCrossSubnet
makes BIRD write `<block> via <node IP> dev tunl0 proto bird onlink` (and,
CrossSubnet, a plain route within the node's subnet); no packet goes through
a tunnel here.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from cni_calico_py.cluster.bird import Bird
from cni_calico_py.cluster.bird_config import render
from cni_calico_py.datastore.model import NodeRecord
from tests.cluster.topology import ClusterNode, Underlay, underlay
from tests.netns import inside, wait_for

pytestmark = pytest.mark.netns

POOL = ipaddress.IPv4Network("192.168.0.0/16")


def routes(node: ClusterNode) -> list[str]:
    lines = node.exec("ip", "-4", "route", "show", "root", str(POOL)).stdout.splitlines()
    return sorted(line.strip() for line in lines)


def start_bird(node: ClusterNode, records: list[NodeRecord], mode: str, tmp: Path) -> Bird:
    node.exec("ip", "link", "add", "tunl0", "type", "veth", "peer", "name", "tunl0-peer")
    node.exec("ip", "link", "set", "tunl0", "up")
    node.exec("ip", "link", "set", "tunl0-peer", "up")
    me = next(r for r in records if r.name == node.name)
    block = ipaddress.IPv4Network(f"192.168.{node.index}.0/26")
    bird = Bird(str(tmp / node.name))
    text = render(me, records, POOL, 64512, str(tmp / node.name / "bird.log"), [block], mode)
    with inside(node.netns):
        bird.apply(text)
    return bird


@pytest.mark.parametrize("mode", ["IPIP", "IPIPCrossSubnet"])
def test_bird_routes_the_peers_blocks_through_tunl0_onlink(root: None, tmp_path: Path, mode: str) -> None:
    ul: Underlay
    with underlay() as ul:
        nodes = [ul.add_node(1), ul.add_node(2), ul.add_remote_node(3)]
        records = [NodeRecord(n.name, n.cidr, 64512, "66:00:00:00:00:00") for n in nodes]
        for node in nodes:
            start_bird(node, records, mode, tmp_path)
        n1 = nodes[0]
        # Plain to the node in n1's subnet when CrossSubnet; through tunl0 otherwise.
        to_n2 = ("192.168.2.0/26 via " + nodes[1].ip + " dev eth0 proto bird" if mode == "IPIPCrossSubnet"
                 else "192.168.2.0/26 via " + nodes[1].ip + " dev tunl0 proto bird onlink")
        want = sorted(["blackhole 192.168.1.0/26 proto bird", to_n2,
                       f"192.168.3.0/26 via {nodes[2].ip} dev tunl0 proto bird onlink"])
        wait_for(lambda: routes(n1) == want, timeout=30,
                 what=f"n1's routes: want {want}, have {routes(n1)}")
