"""The cluster's life with the plugin installed by its manifest: restarts and a new
DaemonSet revision keep every address, a drained and deleted node's blocks and routes
go, a node that joins is routed everywhere, and pods deleted mid-ADD or created and
deleted in a tight loop leave nothing behind."""

from __future__ import annotations

import itertools
import re
import subprocess
import time

import pytest

from tests.clients.helpers import go_tool
from tests.clients.node_runtime import SANDBOX_IMAGE
from tests.netns import wait_for

from .checks import (
    block_owners,
    cali_links,
    datastore_allocations,
    datastore_handles,
    pod_routes,
    routed_everywhere,
    routes,
    store_addresses,
)
from .cluster import LATE_NODE
from .install import DAEMONSET, NAMESPACE, Installed, wait_installed
from .workloads import deployment, pod_netns, pods, ready_pods

pytestmark = pytest.mark.parametrize(
    "kube", [("kubernetes", "bgp"), ("etcd", "vxlan")], indirect=True,
    ids=["kubernetes-bgp", "etcd-vxlan"])


def _all_ping(kube: Installed, app: str) -> dict[str, str]:
    """Every pod of `app` pings every other; their addresses."""
    found = pods(kube.cluster, app)
    netns = {p.name: pod_netns(kube.cluster, p) for p in found}
    for source, target in itertools.permutations(found, 2):
        assert _ping(netns[source.name], target.ip), \
            f"{source.name} -> {target.name} ({target.ip})\n{_routes_of(kube)}"
    return {p.name: p.ip for p in found}


def _routes_of(kube: Installed) -> str:
    """Every node's routing table, for a failure's message."""
    return "\n".join(f"--- {node.name}\n{node.run('ip', 'route', check=False).stdout}"
                     for node in kube.cluster.nodes.values())


def _ping(netns: str, address: str, tries: int = 3) -> bool:
    return any(subprocess.run(["nsenter", f"--net={netns}", "ping", "-c", "1", "-W", "2", "-q",
                               address], capture_output=True).returncode == 0
               for _ in range(tries))


def test_restarts_and_a_new_revision_keep_every_address(kube: Installed) -> None:
    cluster = kube.cluster
    cluster.apply(deployment("keep", 6))
    try:
        ready_pods(cluster, "keep", 6)
        before = _all_ping(kube, "keep")
        a, b, c = (cluster.nodes[n] for n in ("node-a", "node-b", "node-c"))
        a.stop_kubelet()
        a.start_kubelet(go_tool("kubelet"))
        b.restart_containerd()
        cluster.kubectl("-n", NAMESPACE, "delete", "pod", "-l", "k8s-app=calico-py-node",
                        "--field-selector", f"spec.nodeName={c.name}", "--wait=true")
        wait_installed(cluster)
        ready_pods(cluster, "keep", 6)
        assert _all_ping(kube, "keep") == before

        # A new revision rolls out while a pod on node-a pings one on node-b.
        found = {p.node: p for p in pods(cluster, "keep")}
        source, target = found["node-a"], found["node-b"]
        pinger = subprocess.Popen(
            ["nsenter", f"--net={pod_netns(cluster, source)}", "ping", "-i", "0.2", "-W", "1",
             target.ip], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            cluster.kubectl("-n", NAMESPACE, "rollout", "restart", f"daemonset/{DAEMONSET}")
            time.sleep(1)
            wait_installed(cluster)
        finally:
            pinger.send_signal(2)
            output, _ = pinger.communicate(timeout=10)
        counts = re.search(r"(\d+) packets transmitted, (\d+) received", output)
        assert counts, output[-500:]
        sent, received = int(counts[1]), int(counts[2])
        print(f"{kube.id}: ping across nodes during the rollout: {received} of {sent} answered")
        answered = {int(seq) for seq in re.findall(r"icmp_seq=(\d+) ", output)}
        lost = sorted(set(range(1, sent + 1)) - answered)
        # The last one may still be on its way when the pinger stops.
        assert received >= sent - 1, (f"lost icmp_seq {lost} of {sent} (0.2 s apart)\n"
                                      + output[-1000:])
        assert _all_ping(kube, "keep") == before
    finally:
        cluster.kubectl("delete", "deployment", "keep", "--wait=true")


def test_drained_and_deleted_node_goes_and_a_new_node_joins(kube: Installed) -> None:
    cluster = kube.cluster
    cluster.apply(deployment("drain", 6))
    try:
        ready_pods(cluster, "drain", 6)
        gone = cluster.nodes["node-c"]
        blocks = [block for block, owner in block_owners(kube).items() if owner == gone.name]
        assert blocks
        cluster.kubectl("drain", gone.name, "--ignore-daemonsets", "--delete-emptydir-data",
                        "--force", "--timeout=120s", timeout=150)
        moved = ready_pods(cluster, "drain", 6)
        assert all(p.node != gone.name for p in moved)
        _all_ping(kube, "drain")

        cluster.kubectl("delete", "node", gone.name)
        gone.stop()  # the machine goes, and with it the DaemonSet's pod
        others = [n for n in cluster.nodes.values() if n is not gone]

        def released() -> bool:
            routed = {r["dst"] for n in others for r in routes(n)}
            return not any(block in routed for block in blocks) and \
                gone.name not in block_owners(kube).values() and not _affinity(kube, gone.name)
        waited = wait_for(released, f"{gone.name}'s blocks to be released and unrouted",
                          timeout=120, interval=1)
        print(f"{kube.id}: {gone.name}'s blocks released and unrouted {waited:.1f} s after it went")
        del cluster.nodes[gone.name]

        # A node joins: routed to and from every node.
        started = time.monotonic()
        late = cluster.add_node(LATE_NODE, kube.images, SANDBOX_IMAGE)
        cluster.wait_nodes_ready([late.name], timeout=180)
        ready = time.monotonic() - started

        try:
            wait_for(lambda: routed_everywhere(kube, late), f"{late.name} routed everywhere",
                     timeout=120, interval=0.2)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{_routes_of(kube)}") from None
        print(f"{kube.id}: node join (kubelet start) to Ready {ready:.1f} s, to routes "
              f"everywhere {time.monotonic() - started:.1f} s")
        cluster.kubectl("scale", "deployment", "drain", "--replicas=8")
        ready_pods(cluster, "drain", 8)
        _all_ping(kube, "drain")
    finally:
        cluster.kubectl("delete", "deployment", "drain", "--wait=true")


def _affinity(kube: Installed, node: str) -> list[str]:
    if kube.datastore == "kubernetes":
        return [item["metadata"]["name"] for item in kube.cluster.get("blockaffinities")["items"]
                if item["spec"].get("node") == node]
    assert kube.etcd is not None
    listed = kube.etcd.etcdctl("get", "--prefix", "--keys-only", "/calico-py/v1/affinities/")
    return [line for line in listed.splitlines() if line.strip() and node in line]


def test_pods_deleted_mid_add_and_churn_leave_nothing(kube: Installed) -> None:
    cluster = kube.cluster
    for cycle in range(30):
        name = f"churn-{cycle}"
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": "default", "labels": {"app": "churn"}},
               "spec": {"terminationGracePeriodSeconds": 0,
                        "nodeName": sorted(cluster.nodes)[cycle % len(cluster.nodes)],
                        "containers": [{"name": "c", "image": "localhost/calico-py-e2e/busybox:1",
                                        "imagePullPolicy": "Never",
                                        "command": ["sleep", "3600"]}]}}
        cluster.apply(pod)
        # Every third pod is deleted at once, while its sandbox's ADD is in flight.
        if cycle % 3:
            time.sleep(0.05 * (cycle % 7))
        cluster.kubectl("delete", "pod", name, "--wait=false", "--grace-period=0", "--force")
    wait_for(lambda: not pods(cluster, "churn"), "the churned pods to be gone", timeout=180,
             interval=1)
    for node in cluster.nodes.values():
        wait_for(lambda n=node: not pod_routes(n) and not cali_links(n) and not store_addresses(n),
                 f"{node.name} to hold no pod", timeout=120, interval=1)
    wait_for(lambda: not datastore_handles(kube) and not datastore_allocations(kube),
             "the datastore to hold no address", timeout=60, interval=0.5)
