"""ADD, DEL and CHECK against real namespaces: the node and the pods are namespaces."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from cni_calico_py.core.versions import SUPPORTED_VERSIONS
from cni_calico_py.dataplane.naming import spare_host_veth_name
from tests.cni_calls import BLOCK_V4, Pod, netconf
from tests.netns import Node, ip_json, run_cni, sh

pytestmark = pytest.mark.netns

PodFactory = Callable[..., Pod]


@pytest.fixture
def make_pod(node: Node, plugin_exe: str, cni_path: str, tmp_path) -> PodFactory:
    def factory(conf: dict[str, Any] | None = None, args: str = "", netns: str | None = None,
                container_id: str | None = None, **conf_extra) -> Pod:
        return Pod(
            node=node, exe=plugin_exe, cni_path=cni_path,
            conf=conf or netconf(tmp_path, **conf_extra),
            netns=netns or node.add_pod(),
            container_id=container_id or f"c{uuid.uuid4().hex[:12]}", args=args,
        )
    return factory


def ping(node: Node, target: str, netns: str | None = None) -> bool:
    where = os.path.basename(netns) if netns else node.name
    return sh("ping", "-c1", "-W2", target, netns=where, check=False).returncode == 0


def node_links(node: Node) -> list[str]:
    return [link["ifname"] for link in node.links() if link["ifname"].startswith("cali")]


def reservations(data_dir) -> list[str]:
    net_dir = data_dir / "testnet"
    if not net_dir.exists():
        return []
    return sorted(p.name for p in net_dir.iterdir() if p.name[0].isdigit() or ":" in p.name)


def pod_routes(pod: Pod, family: str = "-4") -> list[dict[str, Any]]:
    return list(ip_json(os.path.basename(pod.netns), family, "route", "show"))


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_add_gives_calico_shapes(node, make_pod, version, tmp_path):
    pod = make_pod(version=version, args="K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;IgnoreUnknown=1")
    result = pod.add()
    expected_veth = "cali" + hashlib.sha1(b"default.web-0").hexdigest()[:11]

    # The result, in the requested version's shape.
    assert result["cniVersion"] == version
    host, eth0 = result["interfaces"]
    assert host["name"] == expected_veth and host["mac"] == "ee:ee:ee:ee:ee:ee" and "sandbox" not in host
    assert eth0["name"] == "eth0" and eth0["sandbox"] == pod.netns and len(eth0["mac"]) == 17
    assert ("mtu" in eth0) == (version == "1.1.0")
    (ip,) = result["ips"]
    assert ip["address"].endswith("/32") and ip["interface"] == 1
    assert ("version" in ip) == (version in ("0.3.0", "0.3.1", "0.4.0"))
    assert result["routes"] == [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}]
    address = pod.address()

    # The node: one /32 per pod through its veth, and the block's blackhole.
    routes = node.routes()
    pod_route = [r for r in routes if r["dst"] == address]
    assert pod_route == [{"dst": address, "dev": expected_veth, "scope": "link", "flags": []}]
    assert any(r.get("type") == "blackhole" and r["dst"] == BLOCK_V4 for r in routes)

    # The pod: only the gateway and a default route through it.
    assert pod_routes(pod) == [
        {"dst": "default", "gateway": "169.254.1.1", "dev": "eth0", "flags": []},
        {"dst": "169.254.1.1", "dev": "eth0", "scope": "link", "flags": []},
    ]
    addrs = ip_json(os.path.basename(pod.netns), "-4", "addr", "show", "dev", "eth0")
    assert [(a["local"], a["prefixlen"]) for a in addrs[0]["addr_info"]] == [(address, 32)]
    assert ping(node, address)

    rc, out, _ = pod.delete()
    assert (rc, out) == (0, None)
    assert node_links(node) == []
    assert [r for r in node.routes() if r["dst"] == address or r.get("type") == "blackhole"] == []
    assert reservations(tmp_path) == []


def test_two_pods_ping_each_other_and_the_node(node, make_pod):
    first, second = make_pod(), make_pod()
    first.add()
    second.add()
    assert first.address() != second.address()
    assert first.host_veth != second.host_veth
    assert ping(node, second.address(), netns=first.netns)
    assert ping(node, first.address(), netns=second.netns)
    assert ping(node, node.address, netns=first.netns)
    for pod in (first, second):
        assert pod.delete()[0] == 0
    assert node_links(node) == []


@pytest.mark.parametrize("allow_forwarding", [False, True])
def test_sysctls(node, make_pod, allow_forwarding):
    pod = make_pod(container_settings={"allow_ip_forwarding": allow_forwarding})
    pod.add()
    veth = pod.host_veth

    def node_sysctl(key: str) -> str:
        value: str = node.exec("sysctl", "-n", key).stdout.strip()
        return value

    assert node_sysctl(f"net.ipv4.conf.{veth}.proxy_arp") == "1"
    assert node_sysctl(f"net.ipv4.neigh.{veth}.proxy_delay") == "0"
    assert node_sysctl(f"net.ipv4.conf.{veth}.forwarding") == "1"
    assert node_sysctl(f"net.ipv4.conf.{veth}.route_localnet") == "1"
    assert node_sysctl(f"net.ipv6.conf.{veth}.accept_ra") == "0"
    pod_forward = sh("sysctl", "-n", "net.ipv4.ip_forward", netns=os.path.basename(pod.netns)).stdout
    assert pod_forward.strip() == ("1" if allow_forwarding else "0")
    link = ip_json(node.name, "link", "show", "dev", veth)[0]
    assert link["address"] == "ee:ee:ee:ee:ee:ee" and "UP" in link["flags"]


def test_dual_stack(node, make_pod):
    first, second = make_pod(dual_stack=True, version="1.1.0"), make_pod(dual_stack=True, version="1.1.0")
    result = first.add()
    second.add()
    assert sorted(ip["address"].split("/")[1] for ip in result["ips"]) == ["128", "32"]
    v6 = first.address(6)
    assert {"dst": "::/0", "gw": "fe80::ecee:eeff:feee:eeee"} in result["routes"]
    six = pod_routes(first, "-6")
    assert any(r["dst"] == "default" and r["gateway"] == "fe80::ecee:eeff:feee:eeee" and r["dev"] == "eth0"
               for r in six)
    assert any(r["dst"] == v6 and r["dev"] == first.host_veth for r in node.routes("-6"))
    dad = sh("sysctl", "-n", "net.ipv6.conf.eth0.accept_dad", netns=os.path.basename(first.netns))
    assert dad.stdout.strip() == "0"
    assert ping(node, second.address(6), netns=first.netns)
    assert ping(node, second.address(4), netns=first.netns)
    assert first.check()[0] == 0
    for pod in (first, second):
        assert pod.delete()[0] == 0
    assert node_links(node) == []
    assert [r for r in node.routes("-6") if r["dst"].startswith("fd00:252")] == []


def test_mtu_from_config_and_from_node_file(node, make_pod, tmp_path):
    pod = make_pod(mtu=1400, version="1.1.0")
    result = pod.add()
    assert [i["mtu"] for i in result["interfaces"]] == [1400, 1400]
    assert ip_json(node.name, "link", "show", "dev", pod.host_veth)[0]["mtu"] == 1400
    mtu_file = tmp_path / "mtu"
    mtu_file.write_text("1450\n")
    other = make_pod(mtu_file_path=str(mtu_file), version="1.1.0")
    assert [i["mtu"] for i in other.add()["interfaces"]] == [1450, 1450]
    eth0 = ip_json(os.path.basename(other.netns), "link", "show", "dev", "eth0")[0]
    assert eth0["mtu"] == 1450


def test_custom_routes_replace_the_default(node, make_pod):
    pod = make_pod(ipam={"routes": [{"dst": "10.96.0.0/12"}, {"dst": "10.250.1.0/24"}]})
    pod.add()
    dsts = {r["dst"]: r.get("gateway") for r in pod_routes(pod)}
    assert dsts == {"10.96.0.0/12": "169.254.1.1", "10.250.1.0/24": "169.254.1.1", "169.254.1.1": None}
    assert ping(node, node.address, netns=pod.netns)


def test_pod_without_k8s_args_is_named_by_a_hash_of_the_container_id(node, make_pod):
    pods = [make_pod(container_id=f"default-web{i}") for i in range(2)]
    names = [p.add()["interfaces"][0]["name"] for p in pods]
    assert names == ["cali" + hashlib.sha1(f"default-web{i}".encode()).hexdigest()[:11] for i in range(2)]


def test_interface_already_in_pod_is_an_error_and_reserves_nothing(node, make_pod, tmp_path):
    pod = make_pod()
    sh("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "other",
       netns=os.path.basename(pod.netns))
    rc, out, _ = pod.call("ADD")
    assert rc == 1 and "eth0 already exists" in out["msg"]
    assert reservations(tmp_path) == [] and node_links(node) == []


def test_a_veth_of_the_pods_name_that_is_not_its_own_is_left_and_the_pod_takes_its_spare(
        node, make_pod):
    pod = make_pod(args="K8S_POD_NAMESPACE=ns;K8S_POD_NAME=stale")
    stale = "cali" + hashlib.sha1(b"ns.stale").hexdigest()[:11]
    node.exec("ip", "link", "add", stale, "type", "veth", "peer", "name", "leftover")
    pod.add()
    assert pod.host_veth == spare_host_veth_name("cali", "testnet", pod.container_id, "eth0")
    assert ping(node, pod.address())
    assert {stale, "leftover"} <= {link["ifname"] for link in node.links()}
    assert pod.delete()[0] == 0
    assert {stale, "leftover"} <= {link["ifname"] for link in node.links()}
    assert pod.host_veth not in node_links(node)


def test_failure_after_allocation_leaves_nothing_behind(node, make_pod, tmp_path):
    # A route for the address already points elsewhere: the node route step fails,
    # after the address was allocated and the veth made.
    address = "10.252.7.9"
    node.exec("ip", "route", "add", f"{address}/32", "dev", "eth0")
    pod = make_pod(args=f"IP={address}")
    rc, out, _ = pod.call("ADD")
    assert rc == 1, out
    assert out["code"] == 103
    assert "eth0" in out["msg"] and "cali" in out["msg"]
    assert node_links(node) == []
    assert reservations(tmp_path) == []
    pod_links = [link["ifname"] for link in ip_json(os.path.basename(pod.netns), "link", "show")]
    assert pod_links == ["lo"]
    remaining = [r for r in node.routes() if r["dst"] == address]
    assert remaining == [{"dst": address, "dev": "eth0", "scope": "link", "flags": []}]


def test_del_is_idempotent_and_survives_a_missing_netns(node, make_pod, tmp_path):
    pod = make_pod()
    pod.add()
    for _ in range(2):
        rc, out, _ = pod.delete()
        assert (rc, out) == (0, None)
    assert pod.delete(CNI_NETNS="")[0] == 0

    gone = make_pod()
    gone.add()
    sh("ip", "netns", "del", os.path.basename(gone.netns))
    assert gone.delete()[0] == 0
    assert gone.delete(CNI_NETNS="")[0] == 0
    assert reservations(tmp_path) == [] and node_links(node) == []


@contextmanager
def kept_alive(netns: str) -> Iterator[None]:
    """A leftover process inside `netns`: the namespace outlives `ip netns del`."""
    keeper = subprocess.Popen(["ip", "netns", "exec", os.path.basename(netns), "sleep", "600"])
    try:
        target = os.stat(netns).st_ino
        deadline = time.monotonic() + 10
        while os.stat(f"/proc/{keeper.pid}/ns/net").st_ino != target:
            assert time.monotonic() < deadline, "the keeper never entered the netns"
            time.sleep(0.01)
        yield
    finally:
        keeper.kill()
        keeper.wait()


def test_del_with_the_netns_gone_removes_a_veth_it_left_behind(node, make_pod, tmp_path):
    pod = make_pod()
    pod.add()
    with kept_alive(pod.netns):
        sh("ip", "netns", "del", os.path.basename(pod.netns))
        assert pod.host_veth in node_links(node)
        assert pod.delete()[0] == 0
        assert node_links(node) == [] and reservations(tmp_path) == []
        assert [r for r in node.routes() if r["dst"] == pod.address()] == []


def test_del_with_the_netns_gone_spares_a_newer_sandbox_of_the_pod(node, make_pod, tmp_path):
    old = make_pod(args="K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web")
    old.add()
    with kept_alive(old.netns):
        sh("ip", "netns", "del", os.path.basename(old.netns))
        new = make_pod(args="K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web")
        new.add()  # the old sandbox's veth has the pod's name: the new one takes its spare
        assert new.host_veth == spare_host_veth_name("cali", "testnet", new.container_id, "eth0")
        assert old.delete()[0] == 0
        assert node_links(node) == [new.host_veth]
        assert reservations(tmp_path) == [new.address()]
        assert ping(node, new.address())


@pytest.mark.no_repair
def test_check_passes_after_add_and_names_what_is_missing(node, make_pod, ipam_exe, cni_path):
    pod = make_pod(version="1.0.0")
    pod.add()
    assert pod.check()[:2] == (0, None)
    podns = os.path.basename(pod.netns)

    sh("ip", "route", "del", "default", netns=podns)
    rc, out, _ = pod.check()
    assert rc == 1 and out["code"] == 104 and "pod route 0.0.0.0/0 via 169.254.1.1" in out["msg"]
    sh("ip", "route", "add", "default", "via", "169.254.1.1", "dev", "eth0", netns=podns)
    assert pod.check()[0] == 0

    node.exec("ip", "route", "del", f"{pod.address()}/32")
    rc, out, _ = pod.check()
    assert rc == 1 and f"host route {pod.address()}/32 dev {pod.host_veth} is missing" in out["msg"]
    node.exec("ip", "route", "add", f"{pod.address()}/32", "dev", pod.host_veth, "scope", "link")
    assert pod.check()[0] == 0

    # Release the reservation behind the plugin's back through the IPAM plugin itself.
    rc, _, _ = run_cni(node, ipam_exe, pod.env("DEL"), json.dumps(pod.conf))
    assert rc == 0
    rc, out, _ = pod.check()
    assert rc == 1 and "IPAM" in out["msg"]
    assert pod.delete()[0] == 0


def test_delegates_to_another_ipam_plugin(node, make_pod, reference_plugins, tmp_path):
    conf = netconf(tmp_path)
    conf["ipam"] = {"type": "host-local", "subnet": "10.252.8.0/26", "dataDir": str(tmp_path / "hl")}
    pod = make_pod(conf=conf)
    result = pod.add()
    assert result["ips"][0]["address"].startswith("10.252.8.")
    assert result["ips"][0]["address"].endswith("/32")
    assert ping(node, pod.address())
    assert pod.check()[0] == 0
    assert pod.delete()[0] == 0
    assert list((tmp_path / "hl" / "testnet").glob("10.*")) == []


def test_another_ipam_plugins_error_code_is_kept(node, make_pod, reference_plugins, tmp_path):
    conf = netconf(tmp_path, version="1.1.0")
    conf["ipam"] = {"type": "host-local", "subnet": "10.252.8.0/26", "dataDir": str(tmp_path / "hl")}
    rc, out, _ = make_pod(conf=conf).call("ADD")
    assert rc == 1 and out["code"] == 1 and "host-local" in out["msg"]
    assert node_links(node) == []


def test_status_and_gc_through_the_main_plugin(node, make_pod, tmp_path):
    keep, drop = make_pod(version="1.1.0"), make_pod(version="1.1.0")
    keep.add()
    drop.add()
    assert keep.call("STATUS")[:2] == (0, None)
    valid = [{"containerID": keep.container_id, "ifname": "eth0"}]
    gc_conf = {**keep.conf, "cni.dev/valid-attachments": valid}
    assert keep.call("GC", gc_conf)[:2] == (0, None)
    assert reservations(tmp_path) == [keep.address()]
    assert keep.check()[0] == 0
    rc, out, _ = drop.check()
    assert rc == 1 and "IPAM" in out["msg"]
