"""Hostile requests against the real executable in a node namespace: refused, nothing changed.

Each test is the regression test of one defect: CNI_NETNS naming the node's
own namespace or something that is no network namespace, a malformed
prevResult or dns, JSON nested too deep, a full IPAM store, and the smaller
ones (an empty CNI_COMMAND, interface names the kernel reads differently,
an empty subnet).
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cni_calls import Pod, netconf
from tests.netns import Node, ip_json, make_node, run_cni

pytestmark = pytest.mark.netns

NETWORK = "testnet"
SYSCTLS = ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding", "net.ipv4.conf.eth0.forwarding",
           "net.ipv4.conf.eth0.proxy_arp", "net.ipv6.conf.eth0.accept_ra")
PAGE = 4096


def node_state(node: Node) -> dict[str, Any]:
    """What a refused request must leave as it was: links, routes and sysctls of the node."""
    links = [{k: link.get(k) for k in ("ifindex", "ifname", "flags", "mtu", "address")}
             for link in node.links()]
    sysctls = {name: node.exec("sysctl", "-n", name).stdout.strip() for name in SYSCTLS}
    return {"links": links, "routes4": node.routes("-4"), "routes6": node.routes("-6"),
            "sysctls": sysctls}


def store_state(data_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(data_dir)): p.read_bytes() if p.is_file() else b"<dir>"
            for p in sorted(data_dir.rglob("*")) if "filler" not in p.name}


def records(data_dir: Path) -> dict[str, dict[str, Any]]:
    """The store's reservations: address -> record."""
    net_dir = data_dir / NETWORK
    if not net_dir.exists():
        return {}
    return {p.name: json.loads(p.read_text()) for p in net_dir.iterdir()
            if p.name[0].isdigit() or ":" in p.name}


def pod_links(netns_path: str) -> list[str]:
    return [link["ifname"] for link in ip_json(os.path.basename(netns_path), "link", "show")]


def refused(result: tuple[int, Any, str], codes: tuple[int, ...], *fragments: str) -> dict[str, Any]:
    rc, payload, stderr = result
    assert "Traceback" not in stderr, stderr
    assert rc == 1 and isinstance(payload, dict), (rc, payload, stderr)
    assert set(payload) == {"cniVersion", "code", "msg", "details"}, payload
    assert payload["code"] in codes, payload
    for fragment in fragments:
        assert fragment in payload["msg"] + payload["details"], payload
    return payload


def new_pod(node: Node, exe: str, cni_path: str, conf: dict[str, Any], netns: str | None = None,
            **fields: Any) -> Pod:
    return Pod(node=node, exe=exe, cni_path=cni_path, conf=conf, netns=netns or node.add_pod(),
               container_id=fields.pop("container_id", f"c{uuid.uuid4().hex[:12]}"), **fields)


def reserve(node: Node, ipam_exe: str, conf: dict[str, Any], container_id: str, netns: str) -> str:
    """An address reserved for (container_id, eth0) by the IPAM plugin alone: no pod wiring."""
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": container_id, "CNI_NETNS": netns,
           "CNI_IFNAME": "eth0", "CNI_PATH": ""}
    rc, out, err = run_cni(node, ipam_exe, env, json.dumps(conf))
    assert rc == 0, (out, err)
    return str(out["ips"][0]["address"]).split("/")[0]


# Defects 3 and 4: CNI_NETNS that is no pod's network namespace.

NOT_A_POD_NETNS = ["node's own", "regular file", "directory", "/dev/null", "fifo", "mount namespace"]


@pytest.fixture
def not_a_pod_netns(tmp_path: Path) -> Any:
    def path(kind: str) -> tuple[str, str]:
        """(CNI_NETNS, a fragment of the refusal)"""
        if kind == "regular file":
            (tmp_path / "file").write_text("")
            return str(tmp_path / "file"), "not a namespace"
        if kind == "fifo":
            os.mkfifo(tmp_path / "fifo")
            return str(tmp_path / "fifo"), "FIFO"
        return {
            "node's own": ("/proc/self/ns/net", "node's own network namespace"),
            "directory": (str(tmp_path), "directory"),
            "/dev/null": ("/dev/null", "character device"),
            "mount namespace": ("/proc/self/ns/mnt", "mount namespace"),
        }[kind]

    return path


@pytest.mark.parametrize("kind", NOT_A_POD_NETNS)
def test_add_refuses_what_is_not_a_pod_netns(node, plugin_exe, cni_path, tmp_path, not_a_pod_netns, kind):
    netns, fragment = not_a_pod_netns(kind)
    conf = netconf(tmp_path / "store")
    # eth1: a name the node does not have, so nothing stops an ADD wiring the node itself.
    pod = new_pod(node, plugin_exe, cni_path, conf, netns=netns, ifname="eth1")
    before = node_state(node)
    refused(pod.call("ADD"), (4,), "CNI_NETNS", fragment)
    assert node_state(node) == before  # the node's ip_forward included
    assert records(tmp_path / "store") == {}


@pytest.mark.parametrize("kind", NOT_A_POD_NETNS)
def test_del_with_what_is_not_a_pod_netns_releases_and_touches_nothing(
    node, plugin_exe, ipam_exe, cni_path, tmp_path, not_a_pod_netns, kind,
):
    netns, _ = not_a_pod_netns(kind)
    conf = netconf(tmp_path / "store")
    keeper = reserve(node, ipam_exe, conf, "keeper", node.add_pod())
    victim = reserve(node, ipam_exe, conf, "victim", node.add_pod())
    before = node_state(node)
    # eth0 is the node's uplink: a DEL working in the node's namespace would delete it.
    pod = new_pod(node, plugin_exe, cni_path, conf, netns=netns, container_id="victim", ifname="eth0")
    rc, out, err = pod.call("DEL")
    assert node_state(node) == before
    assert rc == 0, (out, err)
    assert set(records(tmp_path / "store")) == {keeper}, victim


# Defect 5: prevResult and dns checked before the pod is wired.

PREV = {"cniVersion": "1.1.0", "interfaces": [{"name": "eth0", "sandbox": "/var/run/netns/x"}],
        "ips": [{"address": "10.9.0.5/32", "interface": 0}]}


@pytest.mark.parametrize("extra, codes, field", [
    ({"prevResult": {**PREV, "ips": [{"address": "not-an-address"}]}}, (6,), "prevResult.ips[0].address"),
    ({"prevResult": {**PREV, "interfaces": [{"name": "eth0", "mtu": "1500"}]}}, (6,),
     "prevResult.interfaces[0].mtu"),
    ({"prevResult": {**PREV, "dns": {"nameservers": "8.8.8.8"}}}, (6,), "prevResult.dns.nameservers"),
    ({"dns": {"nameservers": 5}}, (7,), "dns.nameservers"),
    ({"dns": {"nameservers": "8.8.8.8"}}, (7,), "dns.nameservers"),
])
def test_bad_prev_result_or_dns_is_refused_before_the_pod_is_wired(
    node, plugin_exe, cni_path, tmp_path, extra, codes, field,
):
    good = netconf(tmp_path / "store", version="1.1.0")
    pod = new_pod(node, plugin_exe, cni_path, good)
    # The config's verdict is remembered first: prevResult must still be read on its own.
    assert run_cni(node, plugin_exe, {"CNI_COMMAND": "STATUS", "CNI_PATH": cni_path},
                   json.dumps(good))[0] == 0
    before, pod_before = node_state(node), pod_links(pod.netns)
    refused(pod.call("ADD", {**good, **extra}), codes, field)
    assert pod_links(pod.netns) == pod_before
    assert node_state(node) == before
    assert records(tmp_path / "store") == {}


# Defect 6: JSON nested too deep.


@pytest.mark.parametrize("stdin", [
    b"[" * 100_000,
    b'{"cniVersion": "1.0.0", "name": "testnet", "x": ' + b"[" * 100_000,
    b'{"cniVersion": "1.0.0", "x": ' + b"[" * 500 + b"]" * 500 + b"}",
])
def test_deeply_nested_json_is_error_6(node, plugin_exe, stdin):
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "deep", "CNI_NETNS": "/var/run/netns/x",
           "CNI_IFNAME": "eth0"}
    refused(run_cni(node, plugin_exe, env, stdin), (6,), "stdin")


# Defect 7: a full store.


@pytest.fixture
def small_tmpfs(root: None, tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs to hold the IPAM store, unmounted afterwards whatever happens."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs", str(mount)],
                   check=True)
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(mount: Path, leave_pages: int = 0) -> Path:
    """Take every page of the tmpfs but `leave_pages`."""
    filler = mount / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                os.write(fd, b"x" * PAGE)
            except OSError:
                break
    finally:
        os.close(fd)
    os.truncate(filler, filler.stat().st_size - leave_pages * PAGE)
    stats = os.statvfs(mount)
    assert stats.f_bavail * stats.f_frsize == leave_pages * PAGE
    return filler


def test_add_into_a_full_store_is_error_5_and_leaves_nothing(small_tmpfs, plugin_exe, cni_path):
    conf = netconf(small_tmpfs)
    with make_node() as node:
        pod = new_pod(node, plugin_exe, cni_path, conf)
        filler = fill(small_tmpfs)
        before = node_state(node)
        payload = refused(pod.call("ADD"), (5,), str(small_tmpfs / NETWORK))
        assert "full" in payload["msg"]
        assert pod_links(pod.netns) == ["lo"]
        assert node_state(node) == before
        # Only the lock file: no record, no temp file, no last-reserved hint.
        assert store_state(small_tmpfs) == {NETWORK: b"<dir>", f"{NETWORK}/lock": b""}
        filler.unlink()
        pod.add()
        assert pod.delete()[0] == 0


def test_status_fails_while_a_reservation_cannot_be_written(small_tmpfs, plugin_exe, cni_path):
    conf = netconf(small_tmpfs, version="1.1.0")
    status_env = {"CNI_COMMAND": "STATUS", "CNI_PATH": cni_path}
    with make_node() as node:
        filler = fill(small_tmpfs, leave_pages=1)
        # One page left: a few bytes fit, a record with a long container ID does not.
        payload = refused(run_cni(node, plugin_exe, status_env, json.dumps(conf)), (50,),
                          str(small_tmpfs / NETWORK))
        assert "full" in payload["msg"]
        pod = new_pod(node, plugin_exe, cni_path, conf, container_id="c" * 4200)
        refused(pod.call("ADD"), (5,), "full")
        assert pod_links(pod.netns) == ["lo"] and records(small_tmpfs) == {}
        filler.unlink()
        assert run_cni(node, plugin_exe, status_env, json.dumps(conf))[0] == 0
        pod.add()
        assert pod.delete()[0] == 0


# Defect 12: the smaller ones.


def test_empty_cni_command_is_error_4(node, plugin_exe, tmp_path):
    rc, out, err = run_cni(node, plugin_exe, {"CNI_COMMAND": ""}, json.dumps(netconf(tmp_path)))
    refused((rc, out, err), (4,), "CNI_COMMAND")


@pytest.mark.parametrize("ifname, fragment", [
    ("a" * 14 + "é", "16 bytes"),
    ("%d", "template"),
    ("e%dx", "template"),
])
def test_ifname_the_kernel_would_read_differently(node, plugin_exe, cni_path, tmp_path, ifname, fragment):
    pod = new_pod(node, plugin_exe, cni_path, netconf(tmp_path / "store"), ifname=ifname)
    before = node_state(node)
    refused(pod.call("ADD"), (4,), "CNI_IFNAME", fragment)
    assert pod_links(pod.netns) == ["lo"] and node_state(node) == before
    assert records(tmp_path / "store") == {}


def test_empty_subnet_is_a_config_error_not_cluster_mode(node, plugin_exe, cni_path, tmp_path):
    conf = netconf(tmp_path / "store")
    conf["ipam"] = {"type": "calico-py-ipam", "subnet": "", "dataDir": str(tmp_path / "store")}
    pod = new_pod(node, plugin_exe, cni_path, conf)
    refused(pod.call("ADD"), (7,), "ipam.subnet")
