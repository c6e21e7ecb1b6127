"""`calico-py explain` on one node: the healthy path between two pods, and each fault it must name."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cni_calls import BLOCK_V4, Pod, netconf
from tests.netns import Node, make_node, running_agent, wait_for

pytestmark = pytest.mark.netns


@dataclass
class Pair:
    node: Node
    exe: str
    conf: Path
    src: Pod
    dst: Pod

    def explain(self, src: str = "", dst: str = "") -> tuple[int, Any]:
        proc = subprocess.run(
            ["ip", "netns", "exec", self.node.name, self.exe, "explain",
             src or self.src.address(), dst or self.dst.address(), "--conf", str(self.conf),
             "--config", "/nonexistent", "--json"], capture_output=True, text=True, timeout=60)
        assert proc.returncode in (0, 1), proc.stderr
        return proc.returncode, json.loads(proc.stdout)


@pytest.fixture
def pair(root: None, plugin_exe: str, cni_path: str, tmp_path: Path) -> Iterator[Pair]:
    conf = netconf(tmp_path)
    conf_file = tmp_path / "net.conf"
    conf_file.write_text(json.dumps(conf))
    with make_node() as node:
        pods = [Pod(node=node, exe=plugin_exe, cni_path=cni_path, conf=conf,
                    netns=node.add_pod(), container_id=f"explain{i}",
                    args=f"IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-{i}")
                for i in range(2)]
        for pod in pods:
            pod.add()
        yield Pair(node, plugin_exe, conf_file, *pods)
        for pod in pods:
            pod.delete()


def broken(report: dict[str, Any]) -> list[str]:
    return [hop["problem"] for hop in report["hops"] if hop["problem"]]


def test_a_healthy_path_names_each_kernel_object(pair: Pair) -> None:
    code, report = pair.explain()
    assert code == 0 and report["ok"], report
    whats = [hop["what"] for hop in report["hops"]]
    assert whats[0].startswith("route default via 169.254.1.1 dev eth0"), whats
    assert f"in on {pair.src.host_veth}" in whats[1] and "proxy_arp 1" in whats[1], whats
    assert f"route {pair.dst.address()} dev {pair.dst.host_veth} scope link" in whats[2], whats
    assert f"blackhole {BLOCK_V4}" in whats[-1], whats
    text = subprocess.run(["ip", "netns", "exec", pair.node.name, pair.exe, "explain",
                           pair.src.address(), pair.dst.address(), "--conf", str(pair.conf),
                           "--config", "/nonexistent"], capture_output=True, text=True,
                          timeout=60).stdout
    assert text.splitlines()[0].startswith(f"{pair.src.address()} -> {pair.dst.address()}")
    assert text.splitlines()[-1] == "path: ok", text


@pytest.mark.parametrize("fault, diagnosis", [
    ("veth down", "host veth {veth} is down"),
    ("proxy_arp off", "proxy_arp is off on {veth}"),
    ("blackhole removed", "no blackhole route for this node's block"),
    ("destination route deleted", "yet the node has no route"),
    ("destination veth down", "destination pod's host veth {dst_veth} is down"),
])
def test_each_fault_is_named(pair: Pair, fault: str, diagnosis: str) -> None:
    veth, dst_veth = pair.src.host_veth, pair.dst.host_veth
    if fault == "veth down":
        pair.node.exec("ip", "link", "set", veth, "down")
    elif fault == "proxy_arp off":
        pair.node.exec("sysctl", "-qw", f"net.ipv4.conf.{veth}.proxy_arp=0")
    elif fault == "blackhole removed":
        pair.node.exec("ip", "route", "del", "blackhole", BLOCK_V4)
    elif fault == "destination route deleted":
        pair.node.exec("ip", "route", "del", pair.dst.address(), "dev", dst_veth)
    elif fault == "destination veth down":
        pair.node.exec("ip", "link", "set", dst_veth, "down")
    code, report = pair.explain()
    problems = broken(report)
    assert code == 1 and not report["ok"], report
    assert any(diagnosis.format(veth=veth, dst_veth=dst_veth) in p for p in problems), problems


def test_a_source_that_is_not_a_pod_here_is_refused(pair: Pair) -> None:
    proc = subprocess.run(["ip", "netns", "exec", pair.node.name, pair.exe, "explain",
                           "10.99.99.99", pair.dst.address(), "--conf", str(pair.conf),
                           "--config", "/nonexistent"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "10.99.99.99 is not a pod of this node" in proc.stderr, proc


def test_pods_can_be_named_as_kubelet_names_them(pair: Pair) -> None:
    code, report = pair.explain("shop/web-0", "shop/web-1")
    assert code == 0, report
    assert (report["src"], report["dst"]) == (pair.src.address(), pair.dst.address())
    proc = subprocess.run(["ip", "netns", "exec", pair.node.name, pair.exe, "explain",
                           "shop/web-9", "shop/web-1", "--conf", str(pair.conf),
                           "--config", "/nonexistent"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "no pod named shop/web-9" in proc.stderr, proc.stderr


def test_a_source_pod_whose_netns_is_gone_is_named(pair: Pair) -> None:
    subprocess.run(["ip", "netns", "del", Path(pair.src.netns).name], check=True)
    code, report = pair.explain()
    assert code == 1, json.dumps(report, indent=1)
    assert any("cannot enter the pod's network namespace" in p for p in broken(report)), \
        json.dumps(report, indent=1)
    assert not Path(pair.src.netns).exists(), "explain must never make a namespace"


def test_a_hop_the_agent_just_repaired_says_so(pair: Pair, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    journal = tmp_path / "repairs.jsonl"
    monkeypatch.setenv("CALICO_PY_REPAIRS", str(journal))  # the agent's and explain's
    veth = pair.src.host_veth
    with running_agent(pair.node, pair.exe, str(tmp_path / "agent.sock")):
        pair.node.exec("ip", "link", "set", veth, "down")
        wait_for(lambda: "route" in (journal.read_text() if journal.exists() else ""),
                 "the repairer to put the veth and its route back", timeout=10)
    code, report = pair.explain()
    assert code == 0 and report["ok"], report
    veth_hop = report["hops"][1]["what"]
    assert f"in on {veth} (up" in veth_hop and "repaired" in veth_hop, veth_hop
    assert "was down; set it up" in veth_hop, veth_hop
    assert "was missing; added it" in veth_hop, veth_hop
