"""The routes to other nodes' blocks each encapsulation mode asks for."""

from __future__ import annotations

import ipaddress

import pytest

from cni_calico_py.cluster.peers import encapsulation_overhead, plan
from cni_calico_py.datastore.model import NodeRecord

ME = NodeRecord("n1", "10.99.0.11/24", 64512, "66:00:00:00:00:01", "192.168.0.0")
SAME = NodeRecord("n2", "10.99.0.12/24", 64512, "66:00:00:00:00:02", "192.168.0.64")
FAR = NodeRecord("n3", "10.99.1.13/24", 64512, "66:00:00:00:00:03", "192.168.0.128")
OWNERS = {ipaddress.IPv4Network(b): n for b, n in [
    ("192.168.0.0/26", "n1"), ("192.168.0.64/26", "n2"), ("192.168.0.128/26", "n3"),
    ("192.168.1.0/26", "n3")]}


def lines(mode: str) -> list[str]:
    return [r.line() for r in plan(mode, ME, "eth0", [ME, SAME, FAR], OWNERS).routes]


@pytest.mark.parametrize(("mode", "expected"), [
    ("Off", []),
    ("VXLAN", ["192.168.0.64/26 via 192.168.0.64 dev vxlan.calico onlink",
               "192.168.0.128/26 via 192.168.0.128 dev vxlan.calico onlink",
               "192.168.1.0/26 via 192.168.0.128 dev vxlan.calico onlink"]),
    ("VXLANCrossSubnet", ["192.168.0.64/26 via 10.99.0.12 dev eth0",
                          "192.168.0.128/26 via 192.168.0.128 dev vxlan.calico onlink",
                          "192.168.1.0/26 via 192.168.0.128 dev vxlan.calico onlink"]),
    # BIRD carries these (bird_config.py): nothing for the daemon to program.
    ("IPIP", []),
    ("IPIPCrossSubnet", []),
])
def test_routes_per_mode(mode: str, expected: list[str]) -> None:
    assert lines(mode) == expected


def test_vxlan_peers_and_a_peer_without_a_vtep_yet() -> None:
    pending = NodeRecord("n4", "10.99.0.14/24", 64512, "66:00:00:00:00:04", None)
    result = plan("VXLAN", ME, "eth0", [ME, SAME, pending], OWNERS)
    assert [(str(p.tunnel_address), p.vtep_mac, str(p.node_ip)) for p in result.vxlan_peers] == [
        ("192.168.0.64", "66:00:00:00:00:02", "10.99.0.12")]
    assert result.skipped == ("n4: no VXLAN tunnel address registered yet",)


def test_mtu_overhead() -> None:
    assert [encapsulation_overhead(m) for m in ("Off", "VXLAN", "IPIPCrossSubnet")] == [0, 50, 20]
