"""One attachment, one operation at a time: retries, duplicates and their rollbacks."""

from __future__ import annotations

import json
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from cni_calico_py.core import attachment_lock
from tests.cni_calls import Pod, netconf
from tests.netns import Node, ip_json, sh

pytestmark = pytest.mark.netns


def new_pod(node: Node, plugin_exe: str, cni_path: str, tmp_path, netns: str | None = None) -> Pod:
    return Pod(node=node, exe=plugin_exe, cni_path=cni_path, conf=netconf(tmp_path),
               netns=netns or node.add_pod(), container_id=f"c{uuid.uuid4().hex[:12]}")


def records(tmp_path) -> dict[str, dict[str, Any]]:
    store = tmp_path / "testnet"
    if not store.exists():
        return {}
    return {p.name: json.loads(p.read_text()) for p in store.iterdir()
            if p.name[0].isdigit()}


def pod_addresses(pod: Pod) -> list[str]:
    shown = sh("ip", "-j", "-4", "addr", "show", netns=os.path.basename(pod.netns)).stdout
    links = [link for link in json.loads(shown or "[]") if link["ifname"] == pod.ifname]
    return [a["local"] for link in links for a in link.get("addr_info", [])]


def cali_links(node: Node) -> list[str]:
    return [link["ifname"] for link in node.links() if link["ifname"].startswith("cali")]


def node_pod_routes(node: Node) -> list[str]:
    return [r["dst"] for r in node.routes() if r.get("dev", "").startswith("cali")]


def test_retried_add_keeps_the_address_and_rewires(node, plugin_exe, cni_path, tmp_path):
    pod = new_pod(node, plugin_exe, cni_path, tmp_path)
    first = pod.add()
    second = pod.add()
    assert second["ips"] == first["ips"]
    address = pod.address()
    assert list(records(tmp_path)) == [address]
    assert pod_addresses(pod) == [address]
    assert node_pod_routes(node) == [address]
    assert pod.check()[0] == 0
    assert pod.delete()[0] == 0
    assert records(tmp_path) == {} and cali_links(node) == [] and node_pod_routes(node) == []


def test_failed_retry_keeps_what_the_first_add_reserved(node, plugin_exe, cni_path, tmp_path):
    """A losing ADD's rollback must not free the address an earlier ADD of the attachment holds."""
    pod = new_pod(node, plugin_exe, cni_path, tmp_path)
    pod.add()
    address = pod.address()
    # The retry's host route will collide with this one, so its wiring fails after IPAM.
    node.exec("ip", "route", "replace", f"{address}/32", "dev", "eth0")
    rc, out, _ = pod.call("ADD")
    assert rc != 0 and "route" in out["msg"], out
    assert list(records(tmp_path)) == [address], "the retry's rollback freed the first ADD's address"
    node.exec("ip", "route", "del", f"{address}/32", "dev", "eth0")
    assert pod.delete()[0] == 0
    assert records(tmp_path) == {} and cali_links(node) == []


def test_interface_of_someone_else_is_refused_untouched(node, plugin_exe, cni_path, tmp_path):
    pod = new_pod(node, plugin_exe, cni_path, tmp_path)
    netns = os.path.basename(pod.netns)
    # A veth of another plugin's: not peered with this attachment's host veth.
    sh("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "other0", netns=netns)
    rc, out, _ = pod.call("ADD")
    assert rc != 0 and out["code"] == 100 and "already exists" in out["msg"], out
    assert records(tmp_path) == {} and cali_links(node) == []
    assert ip_json(netns, "link", "show", "dev", "other0"), "the foreign pair must stay"


@pytest.mark.parametrize("pair", [("ADD", "ADD"), ("ADD", "DEL")])
def test_same_attachment_at_once_ends_consistent(node, plugin_exe, cni_path, tmp_path, pair):
    pod = new_pod(node, plugin_exe, cni_path, tmp_path)
    for _ in range(10):
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda verb: pod.call(verb), pair))
        assert all(rc == 0 for rc, _, _ in answers), answers
        held = [a for a, r in records(tmp_path).items() if r["containerID"] == pod.container_id]
        wired = pod_addresses(pod)
        assert len(held) <= 1, f"two addresses for one attachment: {held}"
        assert wired == held, f"wired {wired}, reserved {held}"
        assert node_pod_routes(node) == held
        assert pod.call("DEL")[0] == 0
        assert records(tmp_path) == {} and cali_links(node) == [] and node_pod_routes(node) == []


def test_no_lock_file_stays_behind(node, plugin_exe, cni_path, tmp_path):
    pod = new_pod(node, plugin_exe, cni_path, tmp_path)
    path = attachment_lock.lock_path("testnet", pod.container_id, pod.ifname)
    pod.add()
    assert not os.path.exists(path)
    assert pod.delete()[0] == 0
    assert not os.path.exists(path)
