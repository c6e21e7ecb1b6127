"""The plugin installed on a real three-node cluster by its manifest: a Deployment's pods
get addresses from their node's blocks, reach each other and a Service, and scaling
to 60 pods and back to 0 leaves nothing behind. Both datastores, BGP and VXLAN."""

from __future__ import annotations

import ipaddress
import itertools
import time

import pytest

from tests.clients.kubelet.kubelet import http_get
from tests.netns import wait_for

from .checks import (
    cali_links,
    datastore_allocations,
    datastore_handles,
    owned_blocks,
    pod_routes,
    store_addresses,
)
from .install import Installed
from .workloads import deployment, ping, pod_netns, pods, ready_pods, service, time_to_running

pytestmark = pytest.mark.parametrize(
    "kube", [("kubernetes", "bgp"), ("kubernetes", "vxlan"), ("etcd", "vxlan"), ("etcd", "bgp")],
    indirect=True, ids=["kubernetes-bgp", "kubernetes-vxlan", "etcd-vxlan", "etcd-bgp"])


def test_pods_reach_each_other_and_a_service(kube: Installed) -> None:
    cluster = kube.cluster
    cluster.apply([deployment("web", 6), service("web")])
    try:
        found = ready_pods(cluster, "web", 6)
        assert {p.node for p in found} == set(cluster.nodes), found
        for pod in found:
            node = cluster.nodes[pod.node]
            address = ipaddress.ip_address(pod.ip)
            assert any(address in block for block in owned_blocks(node)), (pod, owned_blocks(node))
            assert pod_routes(node)[f"{pod.ip}"].startswith("cali"), pod
        netns = {p.name: pod_netns(cluster, p) for p in found}
        for source, target in itertools.permutations(found, 2):
            assert ping(netns[source.name], target.ip), f"{source.name} -> {target.name} ({target.ip})"
        cluster_ip = cluster.get("service", "web")["spec"]["clusterIP"]
        names = {p.name for p in found}
        # kube-proxy programs a new Service a moment after the API has it, on every node.
        for node in cluster.nodes.values():
            wait_for(lambda n=node: http_get(n.netns, cluster_ip, 80) in names,
                     f"kube-proxy on {node.name} to serve {cluster_ip}", timeout=30, interval=0.5)
        for pod in found:
            assert http_get(netns[pod.name], cluster_ip, 80) in names, f"from pod {pod.name}"
        for node in cluster.nodes.values():
            assert http_get(node.netns, cluster_ip, 80) in names, f"from node {node.name}"
    finally:
        cluster.kubectl("delete", "deployment,service", "web", "--wait=true")


def test_scale_to_60_and_back_releases_everything(kube: Installed) -> None:
    cluster = kube.cluster
    cluster.apply(deployment("scale", 0))
    try:
        started = time.monotonic()
        cluster.kubectl("scale", "deployment", "scale", "--replicas=60")
        running = time_to_running(cluster, "scale", 60, started)
        found = pods(cluster, "scale")
        assert len({p.ip for p in found}) == 60
        print(f"{kube.id}: 60 pods Running, p50 {_pct(running, 50):.2f} s, "
              f"p95 {_pct(running, 95):.2f} s after the scale")
    finally:
        cluster.kubectl("delete", "deployment", "scale", "--wait=true")
    wait_for(lambda: not pods(cluster, "scale"), "the pods to be gone", timeout=180, interval=1)
    for node in cluster.nodes.values():
        wait_for(lambda n=node: not pod_routes(n) and not cali_links(n),
                 f"{node.name}'s pod routes and veths to be gone", timeout=60, interval=0.5)
        assert store_addresses(node) == [], node.name
    wait_for(lambda: not datastore_handles(kube) and not datastore_allocations(kube),
             "the datastore to hold no address", timeout=30, interval=0.5)


def _pct(values: list[float], pct: int) -> float:
    return values[min(len(values) - 1, int(len(values) * pct / 100))]
