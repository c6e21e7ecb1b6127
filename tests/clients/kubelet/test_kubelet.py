"""Static pods under upstream kubelet, wired by the installed plugin through containerd's CRI.

The tests run in order on one node per mode (agent up, then cold): three
pods come up, talk to each other and to the underlay through a hostPort,
survive restarts of kubelet and containerd without a new ADD, come back after
their sandbox is killed, and leave nothing once their manifests are gone.
"""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import time
from typing import Any

import pytest

from tests.netns import ip_json, wait_for

from ..helpers import ping
from .conftest import BLOCK, HOST_PORT, KubeNode
from .kubelet import SYNC_SECONDS, http_get

pytestmark = pytest.mark.netns

PODS = ("web-0", "web-1", "web-2")
HOST_VETH = re.compile(r"^cali[0-9a-f]{11}$")


def pod_routes(kube: KubeNode) -> dict[str, dict[str, Any]]:
    """The node's routes to single pod addresses in the block, by address."""
    block = ipaddress.ip_network(BLOCK)
    return {route["dst"]: route for route in ip_json(kube.node.name, "-4", "route", "show")
            if "/" not in route["dst"] and route["dst"] != "default"
            and ipaddress.ip_address(route["dst"]) in block}


def cali_links(kube: KubeNode) -> list[str]:
    return sorted(link["ifname"] for link in kube.node.links() if link["ifname"].startswith("cali"))


def assert_wired(kube: KubeNode, boxes: dict[str, Any]) -> None:
    """Each pod's address is reserved, routed to a cali veth, and nothing else is."""
    addresses = sorted(box.ip for box in boxes.values())
    assert kube.reserved() == addresses, (kube.reserved(), addresses)
    routes = pod_routes(kube)
    assert sorted(routes) == addresses, routes
    for route in routes.values():
        assert HOST_VETH.match(route["dev"]) and route.get("scope") == "link", route
    assert cali_links(kube) == sorted(route["dev"] for route in routes.values())


def test_static_pods_get_addresses_routes_and_the_blackhole(kube: KubeNode) -> None:
    boxes = {name: kube.add_pod(name, host_port=HOST_PORT if name == "web-0" else None)
             for name in PODS}
    for box in boxes.values():
        assert ipaddress.ip_address(box.ip) in ipaddress.ip_network(BLOCK), box
    assert_wired(kube, boxes)
    blackholes = [r for r in ip_json(kube.node.name, "-4", "route", "show", "type", "blackhole")
                  if r["dst"] == BLOCK]
    assert blackholes, ip_json(kube.node.name, "-4", "route", "show")
    # Manifest written -> pod address known to the runtime.
    print(f"\n[{kube.mode}] manifest to pod IP: "
          + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in kube.manifest_to_ip.items()))


def test_every_pod_pings_every_other(kube: KubeNode) -> None:
    boxes = kube.ready()
    assert len(boxes) == len(PODS), boxes
    for source in boxes.values():
        for target in boxes.values():
            if target is not source:
                ping(target.ip, netns=source.netns, count=1)


def test_host_port_reaches_the_pod_from_the_underlay(kube: KubeNode) -> None:
    upstream = os.path.join("/run/netns", kube.node.upstream)
    body = wait_for_body(upstream, kube.node.address, HOST_PORT)
    assert body == kube.pod_name("web-0"), body


def wait_for_body(netns: str, host: str, port: int) -> str:
    answers: list[str] = []

    def answered() -> bool:
        body = http_get(netns, host, port)
        if body is not None:
            answers.append(body)
        return body is not None

    wait_for(answered, f"an HTTP answer from {host}:{port}", timeout=30, interval=0.5)
    return answers[-1]


def test_restarts_of_kubelet_and_containerd_keep_pods_without_a_new_add(kube: KubeNode) -> None:
    before = kube.ready()
    adds = kube.cni_calls("ADD")
    kube.kubelet.stop()
    kube.kubelet.start()
    wait_for(lambda: kube.kubelet.has_taken_over([kube.pod_name(n) for n in PODS]),
             "kubelet to pick up the running pods", timeout=30)
    assert_unchanged_for_a_sync(kube, before, adds)
    kube.runtime.containerd.restart()
    assert_unchanged_for_a_sync(kube, before, adds)
    after = kube.ready()
    ping(after["web-1"].ip, netns=after["web-2"].netns, count=1)


def assert_unchanged_for_a_sync(kube: KubeNode, before: dict[str, Any], adds: int) -> None:
    """Over one kubelet sync period and a little more, no pod is re-created and no ADD is made."""
    deadline = time.monotonic() + SYNC_SECONDS + 1
    while time.monotonic() < deadline:
        now = kube.ready()
        assert {n: (b.id, b.ip) for n, b in now.items()} == \
            {n: (b.id, b.ip) for n, b in before.items()}
        assert kube.cni_calls("ADD") == adds
        time.sleep(0.5)
    assert_wired(kube, kube.ready())


def test_a_killed_sandbox_is_recreated_with_a_working_address(kube: KubeNode) -> None:
    before = kube.ready()
    victim = before["web-1"]
    os.kill(victim.pid, signal.SIGKILL)
    fresh = kube.wait_ready("web-1", other_than=victim.id)
    wait_for(lambda: kube.ready().keys() == before.keys(), "all pods ready again")
    boxes = kube.ready()
    assert boxes["web-1"].id == fresh.id
    # The old sandbox's address went back to the block; only live pods hold one.
    wait_for(lambda: len(kube.reserved()) == len(boxes), "the dead sandbox's address released")
    assert_wired(kube, boxes)
    ping(fresh.ip, netns=boxes["web-0"].netns, count=1)
    ping(boxes["web-2"].ip, netns=fresh.netns, count=1)


def test_removing_the_manifests_releases_everything(kube: KubeNode) -> None:
    for name in PODS:
        kube.kubelet.remove_manifest(name)
    wait_for(lambda: not kube.ready(), "the pods to stop", timeout=60)
    wait_for(lambda: not kube.reserved(), "every address released", timeout=30)
    assert pod_routes(kube) == {}
    assert cali_links(kube) == []
