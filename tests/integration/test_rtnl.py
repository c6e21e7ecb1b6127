"""The synchronous rtnetlink socket against the kernel, in a namespace of its own."""

from __future__ import annotations

import errno
import socket
import subprocess

import pytest

from cni_calico_py.core.rtnl import NetlinkError, RouteSpec, Rtnl
from cni_calico_py.dataplane.netlink import pod_handle
from cni_calico_py.dataplane.netns import entered
from tests.netns import add_netns, del_netns, ip_json, sh, unique_name

pytestmark = pytest.mark.netns

BLACKHOLE = 6
PROTO_OURS = 98


@pytest.fixture
def netns(root):
    name = unique_name("rtnl")
    path = add_netns(name)
    try:
        yield name, path
    finally:
        del_netns(name)


def test_links_addresses_and_errors(netns):
    name, path = netns
    with pod_handle(path) as rtnl:
        assert rtnl.link_index("lo") == 1
        assert rtnl.link_index("nosuchlink") is None
        rtnl.add_veth("rt0", 1400, peer={"ifname": "rt1", "address": "ee:ee:ee:ee:ee:ee", "mtu": 1400})
        index = rtnl.link_index("rt0")
        peer = rtnl.link_index("rt1")
        assert index and peer and index != peer
        with pytest.raises(NetlinkError) as exists:
            rtnl.add_veth("rt0", 1400, peer={"ifname": "rt2"})
        assert exists.value.code == errno.EEXIST
        rtnl.set_up(peer)
        link = rtnl.link(peer)
        assert link.get("address") == "ee:ee:ee:ee:ee:ee" and link.get("mtu") == 1400
        assert link["flags"] & 1
        rtnl.add_address(index, socket.AF_INET, "10.9.0.7", 32)
        assert rtnl.addresses(index) == ["10.9.0.7"]
        rtnl.delete_link(index)
        assert rtnl.link_index("rt1") is None
    assert [link["ifname"] for link in ip_json(name, "link", "show")] == ["lo"]


def test_a_dump_longer_than_one_datagram(netns):
    name, path = netns
    sh("ip", "link", "add", "rt0", "type", "veth", "peer", "name", "rt1", netns=name)
    sh("ip", "link", "set", "rt0", "up", netns=name)
    batch = "".join(f"route add 10.{i // 250}.{i % 250}.0/24 dev rt0\n" for i in range(3000))
    subprocess.run(["ip", "-n", name, "-batch", "-"], input=batch, text=True, check=True)
    with pod_handle(path) as rtnl:
        dests = {r.get("dst") for r in rtnl.routes(socket.AF_INET, table=254)}
    assert len({d for d in dests if d and d.startswith("10.")}) == 3000


def test_strict_dumps_are_filtered_by_the_kernel(netns):
    name, path = netns
    with pod_handle(path) as rtnl:
        for block in ("10.8.0.0", "10.8.0.64"):
            rtnl.change_route("add", RouteSpec(socket.AF_INET, block, 26, proto=PROTO_OURS,
                                               kind=BLACKHOLE))
        with pytest.raises(NetlinkError) as twice:
            rtnl.change_route("add", RouteSpec(socket.AF_INET, "10.8.0.0", 26, proto=PROTO_OURS,
                                               kind=BLACKHOLE))
        assert twice.value.code == errno.EEXIST
    sh("ip", "route", "add", "blackhole", "10.7.0.0/26", netns=name)  # proto boot: not ours
    with pod_handle(path) as plain:  # without strict checking the kernel ignores the filter
        assert "10.7.0.0" in {r.get("dst") for r in plain.routes(
            socket.AF_INET, proto=PROTO_OURS, type=BLACKHOLE)}
    with entered(path):
        strict = Rtnl(strict_check=True)
    with strict:
        found = strict.routes(socket.AF_INET, table=254, proto=PROTO_OURS, type=BLACKHOLE)
        assert sorted(r.get("dst") for r in found) == ["10.8.0.0", "10.8.0.64"]
        strict.change_route("del", RouteSpec(socket.AF_INET, "10.8.0.0", 26, proto=PROTO_OURS,
                                             kind=BLACKHOLE))
    assert [r["dst"] for r in ip_json(name, "route", "show", "proto", "98")] == ["10.8.0.64/26"]


def test_a_refusal_carries_the_kernels_reason(netns):
    _, path = netns
    with pod_handle(path) as rtnl:
        lo = rtnl.link_index("lo")
        with pytest.raises(NetlinkError) as refused:
            rtnl.change_route("add", RouteSpec(socket.AF_INET, "10.6.0.0", 24, oif=lo,
                                               gateway="10.99.0.1", proto=3))
    assert refused.value.code == errno.ENETUNREACH
    assert "gateway" in str(refused.value).lower(), str(refused.value)
