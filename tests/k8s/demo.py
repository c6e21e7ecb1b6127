"""The three-node cluster of the tests, shown: `python -m tests.k8s.demo BIN_DIR [bgp|vxlan]`.

BIN_DIR is a CNI bin dir holding the frozen build (calico-py.d), as `make install`
lays it out. scripts/k8s-demo.sh builds it and calls this.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path

from tests.clients.kubelet.kubelet import http_get
from tests.netns import wait_for

from .cluster import KubeCluster
from .install import build_images, installed_cluster
from .workloads import deployment, ping, pod_netns, ready_pods, service


def step(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m", flush=True)


def show(cluster: KubeCluster, *args: str) -> None:
    print(f"$ kubectl {' '.join(args)}")
    print(cluster.kubectl(*args).stdout.rstrip(), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.k8s.demo")
    parser.add_argument("bin_dir", type=Path, help="a CNI bin dir holding calico-py.d")
    parser.add_argument("mode", nargs="?", choices=["bgp", "vxlan"], default="bgp")
    parser.add_argument("--datastore", choices=["kubernetes", "etcd"], default="kubernetes")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="calico-py-k8s-demo.") as scratch:
        work = Path(scratch)
        step("images: pause, busybox and calico-py (scripts/build_image.py), built offline")
        images = build_images(options.bin_dir, work / "images")
        for image in images:
            print(f"{image.name}: {image.stat().st_size / 2**20:.1f} MiB")
        step(f"cluster: control plane and three nodes; plugin installed with kubectl apply "
             f"({options.datastore} datastore, {options.mode})")
        def before_install(cluster: KubeCluster) -> None:
            show(cluster, "get", "nodes")
            step("the plugin: calico-py-settings, then kubectl apply -f conf/kubernetes/calico-py.yaml")

        with installed_cluster(work, images, options.datastore, options.mode,
                               before_install) as kube:
            cluster = kube.cluster
            show(cluster, "get", "nodes", "-o", "wide")
            show(cluster, "-n", "calico-py-system", "get", "daemonset,pods", "-o", "wide")
            step("a Deployment of six pods and a Service")
            cluster.apply([deployment("web", 6), service("web")])
            found = ready_pods(cluster, "web", 6)
            show(cluster, "get", "pods", "-o", "wide")
            show(cluster, "get", "service", "web")
            for node in cluster.nodes.values():
                step(f"{node.name}: ip route")
                print(node.run("ip", "route").stdout.rstrip())
            step("pings across nodes")
            netns = {p.name: pod_netns(cluster, p) for p in found}
            for source, target in itertools.permutations(found, 2):
                if source.node != target.node:
                    ok = ping(netns[source.name], target.ip)
                    print(f"{source.name} ({source.node}) -> {target.ip} ({target.node}): "
                          f"{'ok' if ok else 'FAILED'}")
            step("the Service from a pod on another node, and from every node")
            cluster_ip = cluster.get("service", "web")["spec"]["clusterIP"]
            client = found[0]
            for _ in range(3):
                print(f"{client.name} ({client.node}) GET http://{cluster_ip}/: "
                      f"{http_get(netns[client.name], cluster_ip, 80)}")
            for node in cluster.nodes.values():
                print(f"{node.name} GET http://{cluster_ip}/: {http_get(node.netns, cluster_ip, 80)}")
            cluster.kubectl("delete", "deployment,service", "web", "--wait=true")
            wait_for(lambda: not cluster.get("pods")["items"], "the pods to go", timeout=120)
            step("tearing everything down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
