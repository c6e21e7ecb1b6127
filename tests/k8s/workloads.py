"""What the cluster tests run on the cluster, and how they look into its pods.

The workload is busybox serving its own pod name over HTTP on 8080; a pod's
network namespace is entered through its container's PID (the node's
containerd reports it), so checks run from inside the pod with the machine's
own tools and nothing needs `kubectl exec`.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cluster import KubeCluster

WORKLOAD_IMAGE = "localhost/calico-py-e2e/busybox:1"
PORT = 8080
SERVE = ("mkdir -p /www && echo \"$(hostname)\" > /www/index.html && "
         f"exec httpd -f -p {PORT} -h /www")


def deployment(name: str, replicas: int) -> dict[str, Any]:
    """`replicas` web pods spread evenly over the nodes."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "topologySpreadConstraints": [{
                        "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                        "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": labels},
                    }],
                    "containers": [{
                        "name": "web", "image": WORKLOAD_IMAGE, "imagePullPolicy": "Never",
                        "command": ["sh", "-c", SERVE],
                        "ports": [{"containerPort": PORT}],
                        "readinessProbe": {"tcpSocket": {"port": PORT}, "periodSeconds": 1},
                    }],
                },
            },
        },
    }


def service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": PORT}]},
    }


@dataclass(frozen=True)
class Pod:
    name: str
    node: str
    ip: str
    uid: str
    container_id: str  # the web container's, in the node's containerd
    phase: str
    ready: bool


def pods(cluster: KubeCluster, app: str, namespace: str = "default") -> list[Pod]:
    found = []
    for item in cluster.get("pods", "-n", namespace, "-l", f"app={app}")["items"]:
        status = item.get("status", {})
        statuses = status.get("containerStatuses") or [{}]
        found.append(Pod(
            name=item["metadata"]["name"], node=item["spec"].get("nodeName", ""),
            ip=status.get("podIP", ""), uid=item["metadata"]["uid"],
            container_id=str(statuses[0].get("containerID", "")).removeprefix("containerd://"),
            phase=status.get("phase", ""), ready=bool(statuses[0].get("ready"))))
    return found


def ready_pods(cluster: KubeCluster, app: str, count: int, timeout: float = 180) -> list[Pod]:
    """Wait until exactly `count` pods of `app` are ready; them."""
    deadline = time.monotonic() + timeout
    while True:
        found = pods(cluster, app)
        if len(found) == count and all(p.ready and p.ip for p in found):
            return found
        if time.monotonic() > deadline:
            states = ", ".join(f"{p.name}@{p.node}:{p.phase}/{p.ready}" for p in found)
            raise AssertionError(f"{app}: {count} ready pods wanted after {timeout:g} s; "
                                 f"there are {len(found)}: {states}")
        time.sleep(0.5)


def pod_netns(cluster: KubeCluster, pod: Pod) -> str:
    pid = cluster.nodes[pod.node].container_pid(pod.container_id)
    return f"/proc/{pid}/ns/net"


def ping(netns: str, address: str, count: int = 1) -> bool:
    return subprocess.run(["nsenter", f"--net={netns}", "ping", "-c", str(count), "-W", "2",
                           "-q", address], capture_output=True).returncode == 0


def time_to_running(cluster: KubeCluster, app: str, count: int, started: float,
                    timeout: float = 300) -> list[float]:
    """Seconds from `started` (monotonic) until each of `count` pods was first seen Running."""
    seen: dict[str, float] = {}
    while len(seen) < count:
        now = time.monotonic()
        for pod in pods(cluster, app):
            if pod.phase == "Running" and pod.name not in seen:
                seen[pod.name] = now - started
        if now > started + timeout:
            raise AssertionError(f"{len(seen)} of {count} pods Running after {timeout:g} s")
        time.sleep(0.2)
    return sorted(seen.values())
