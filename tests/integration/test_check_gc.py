"""CHECK finds each thing ADD made that was broken, and only those; GC frees nothing still routed.

The node and the pods are namespaces; each case breaks one object with `ip`
or `sysctl` and reads back what the real plugin says.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.cni_calls import Pod, netconf
from tests.ipam.helpers import cni_env
from tests.netns import Node, ip_json, run_cni, sh

pytestmark = [pytest.mark.netns, pytest.mark.no_repair]

PodFactory = Callable[..., Pod]


@pytest.fixture
def make_pod(node: Node, plugin_exe: str, cni_path: str, tmp_path) -> PodFactory:
    def factory(conf: dict[str, Any] | None = None, args: str = "", **conf_extra) -> Pod:
        return Pod(
            node=node, exe=plugin_exe, cni_path=cni_path,
            conf=conf or netconf(tmp_path, **conf_extra), netns=node.add_pod(),
            container_id=f"c{uuid.uuid4().hex[:12]}", args=args,
        )
    return factory


def in_pod(pod: Pod, *args: str) -> None:
    sh(*args, netns=os.path.basename(pod.netns))


def check_failure(pod: Pod) -> str:
    rc, out, err = pod.check()
    assert rc == 1 and isinstance(out, dict) and out["code"] == 104, (rc, out, err)
    return str(out["msg"])


def node_links(node: Node) -> list[str]:
    return [link["ifname"] for link in node.links()]


def node_routes_to(node: Node, address: str) -> list[dict[str, Any]]:
    return [r for r in node.routes() if r["dst"] == address]


def record_path(tmp_path, address: str):
    return tmp_path / "testnet" / address


# CHECK: each case breaks one thing; CHECK names it, and nothing else.

def break_link_route(node: Node, pod: Pod) -> str:
    in_pod(pod, "ip", "route", "del", "169.254.1.1", "dev", "eth0")
    return "pod route 169.254.1.1/32 dev eth0 scope link is missing"


def break_pod_mtu(node: Node, pod: Pod) -> str:
    in_pod(pod, "ip", "link", "set", "eth0", "mtu", "1400")
    return "pod interface eth0 has MTU 1400, expected 1500"


def break_host_mtu(node: Node, pod: Pod) -> str:
    node.exec("ip", "link", "set", pod.host_veth, "mtu", "1300")
    return f"host interface {pod.host_veth} has MTU 1300, expected 1500"


def widen_pod_address(node: Node, pod: Pod) -> str:
    # The /24 first: removing a device's last address would flush its routes too.
    in_pod(pod, "ip", "addr", "add", f"{pod.address()}/24", "dev", "eth0")
    in_pod(pod, "ip", "addr", "del", f"{pod.address()}/32", "dev", "eth0")
    return f"pod interface eth0 has address {pod.address()}/24, expected {pod.address()}/32"


def clear_proxy_arp(node: Node, pod: Pod) -> str:
    node.exec("sysctl", "-qw", f"net.ipv4.conf.{pod.host_veth}.proxy_arp=0")
    return f"host interface {pod.host_veth} has net.ipv4.conf.{pod.host_veth}.proxy_arp=0, expected 1"


@pytest.mark.parametrize("breaks", [
    break_link_route, break_pod_mtu, break_host_mtu, widen_pod_address, clear_proxy_arp,
])
def test_check_names_what_was_broken(node, make_pod, breaks):
    pod = make_pod()
    pod.add()
    assert pod.check()[:2] == (0, None)
    expected = breaks(node, pod)
    msg = check_failure(pod)
    assert expected in msg
    assert "found 1 problem(s)" in msg, msg


def test_check_compares_with_the_mtu_in_the_result(node, make_pod):
    pod = make_pod(version="1.1.0", mtu=1450)
    assert [i["mtu"] for i in pod.add()["interfaces"]] == [1450, 1450]
    assert pod.check()[:2] == (0, None)
    in_pod(pod, "ip", "link", "set", "eth0", "mtu", "1500")
    assert "pod interface eth0 has MTU 1500, expected 1450" in check_failure(pod)


def strays_in_own_netns(node: Node, pod: Pod, host: str, pod_mac: str) -> None:
    """Each look-alike peered with a stray device in its own netns."""
    node.exec("ip", "link", "add", host, "address", "ee:ee:ee:ee:ee:ee", "type", "veth",
              "peer", "name", "stray0")
    in_pod(pod, "ip", "link", "add", "eth0", "address", pod_mac, "type", "veth", "peer", "name", "stray1")


def strays_with_each_others_index(node: Node, pod: Pod, host: str, pod_mac: str) -> None:
    """Both peered into a third netns, at the very index the other end has: the
    indexes alone (IFLA_LINK) match, only the peers' netns tell them apart."""
    third = os.path.basename(node.add_pod())
    node.exec("ip", "link", "add", host, "index", "60", "address", "ee:ee:ee:ee:ee:ee",
              "type", "veth", "peer", "name", "stray0", "netns", third, "index", "50")
    in_pod(pod, "ip", "link", "add", "eth0", "index", "50", "address", pod_mac,
           "type", "veth", "peer", "name", "stray1", "netns", third, "index", "60")
    host_end = ip_json(node.name, "link", "show", "dev", host)[0]
    pod_end = ip_json(os.path.basename(pod.netns), "link", "show", "dev", "eth0")[0]
    assert (host_end["link_index"], pod_end["link_index"]) == (pod_end["ifindex"], host_end["ifindex"])


@pytest.mark.parametrize("replace", [strays_in_own_netns, strays_with_each_others_index])
def test_check_finds_both_ends_replaced_by_a_pair_peered_elsewhere(node, make_pod, replace):
    pod = make_pod()
    pod.add()
    host, address = pod.host_veth, pod.address()
    pod_mac = pod.result["interfaces"][1]["mac"]
    node.exec("ip", "link", "del", host)
    replace(node, pod, host, pod_mac)
    # Everything else as ADD left it.
    node.exec("ip", "link", "set", host, "up")
    for key, value in (("ipv4.conf.{}.forwarding", 1), ("ipv4.conf.{}.proxy_arp", 1),
                       ("ipv4.neigh.{}.proxy_delay", 0), ("ipv4.conf.{}.route_localnet", 1),
                       ("ipv6.conf.{}.accept_ra", 0)):
        node.exec("sysctl", "-qw", f"net.{key.format(host)}={value}")
    node.exec("ip", "route", "add", f"{address}/32", "dev", host, "scope", "link")
    in_pod(pod, "ip", "link", "set", "eth0", "up")
    in_pod(pod, "ip", "addr", "add", f"{address}/32", "dev", "eth0")
    in_pod(pod, "ip", "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
    in_pod(pod, "ip", "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")

    msg = check_failure(pod)
    assert f"host interface {host} is not peered with eth0 in {pod.netns}" in msg
    assert f"pod interface eth0 is not peered with {host} on the node" in msg
    assert "found 2 problem(s)" in msg, msg


def test_check_leaves_an_earlier_plugins_interface_and_routes_alone(node, make_pod):
    pod = make_pod()
    earlier = {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "net9", "sandbox": pod.netns}],
        "ips": [{"address": "10.1.1.5/24", "gateway": "10.1.1.1", "interface": 0}],
        "routes": [{"dst": "10.99.0.0/16", "gw": "10.1.1.1"}],
    }
    chained = {**pod.conf, "prevResult": earlier}
    rc, result, err = pod.call("ADD", chained)
    assert rc == 0, (result, err)
    assert result["interfaces"][0]["name"] == "net9"
    assert {"dst": "10.99.0.0/16", "gw": "10.1.1.1"} in result["routes"]
    rc, out, err = pod.call("CHECK", {**pod.conf, "prevResult": result})
    assert (rc, out) == (0, None), (out, err)

    # Still checked: this plugin's own route, on its own interface.
    in_pod(pod, "ip", "route", "del", "default")
    rc, out, _ = pod.call("CHECK", {**pod.conf, "prevResult": result})
    assert rc == 1 and out["code"] == 104
    assert "pod route 0.0.0.0/0 via 169.254.1.1 dev eth0 is missing" in out["msg"]
    assert "10.99.0.0" not in out["msg"] and "10.1.1.5" not in out["msg"]


# GC

def gc_conf(conf: dict[str, Any], *keep: Pod) -> dict[str, Any]:
    valid = [{"containerID": p.container_id, "ifname": p.ifname} for p in keep]
    return {**conf, "cni.dev/valid-attachments": valid}


def test_gc_removes_the_veth_and_route_of_what_it_frees(node, make_pod, tmp_path):
    keep, drop = make_pod(version="1.1.0"), make_pod(version="1.1.0")
    keep.add()
    drop.add()
    freed = drop.address()
    assert keep.call("GC", gc_conf(keep.conf, keep))[:2] == (0, None)

    assert drop.host_veth not in node_links(node)
    assert node_routes_to(node, freed) == []
    assert not record_path(tmp_path, freed).exists()
    assert keep.host_veth in node_links(node) and keep.check()[:2] == (0, None)
    # The address is free for real: a new pod gets it, routed to its own veth.
    again = make_pod(version="1.1.0", args=f"IP={freed}")
    again.add()
    assert again.address() == freed
    assert [r["dev"] for r in node_routes_to(node, freed)] == [again.host_veth]


def test_gc_keeps_an_unreadable_record_while_a_live_pod_is_routed_to_it(node, make_pod, tmp_path):
    pod = make_pod(version="1.1.0")
    pod.add()
    record = record_path(tmp_path, pod.address())
    record.write_bytes(b"\x00garbage\xff")
    rc, out, err = pod.call("GC", gc_conf(pod.conf, pod))
    assert (rc, out) == (0, None), (out, err)
    assert record.read_bytes() == b"\x00garbage\xff"
    assert pod.host_veth in node_links(node)
    assert [r["dev"] for r in node_routes_to(node, pod.address())] == [pod.host_veth]

    # Once nothing routes the address, the unreadable record goes as before.
    node.exec("ip", "link", "del", pod.host_veth)
    assert pod.call("GC", gc_conf(pod.conf, pod))[:2] == (0, None)
    assert not record.exists()


def test_standalone_ipam_gc_keeps_an_unreadable_record_routed_to_a_veth(node, ipam_exe, tmp_path):
    conf = {"cniVersion": "1.1.0", "name": "testnet",
            "ipam": {"type": "calico-py-ipam", "subnet": "10.252.9.0/26", "dataDir": str(tmp_path)}}
    rc, out, err = run_cni(node, ipam_exe, cni_env("ADD", "cstandalone", netns=node.path),
                           json.dumps(conf))
    assert rc == 0, (out, err)
    address = out["ips"][0]["address"].split("/")[0]
    node.exec("ip", "link", "add", "vethpod0", "type", "veth", "peer", "name", "vethpod1")
    node.exec("ip", "link", "set", "vethpod0", "up")
    node.exec("ip", "route", "add", f"{address}/32", "dev", "vethpod0", "scope", "link")
    record = record_path(tmp_path, address)
    record.write_text("not a record")
    gc = {**conf, "cni.dev/valid-attachments": []}
    rc, out, err = run_cni(node, ipam_exe, cni_env("GC"), json.dumps(gc))
    assert (rc, out) == (0, None), (out, err)
    assert record.read_text() == "not a record"
    assert "vethpod0" in node_links(node)  # the standalone IPAM never deletes interfaces

    node.exec("ip", "link", "del", "vethpod0")
    assert run_cni(node, ipam_exe, cni_env("GC"), json.dumps(gc))[:2] == (0, None)
    assert not record.exists()
