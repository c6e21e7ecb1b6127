"""Installing the plugin on the test cluster as an operator does: the settings
ConfigMap (Calico's variables, the documented switch of datastore and mode), then
one `kubectl apply -f conf/kubernetes/calico-py.yaml`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.clients.images import busybox_rootfs, docker_archive
from tests.clients.node_runtime import SANDBOX_IMAGE
from tests.cluster.topology import Etcd

from .cluster import KubeCluster, running_cluster
from .workloads import WORKLOAD_IMAGE

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "conf" / "kubernetes" / "calico-py.yaml"
NAMESPACE = "calico-py-system"
DAEMONSET = "calico-py-node"
SETTINGS = "calico-py-settings"
# A node that stopped renewing is down after this; its blocks go back this long later.
NODE_LEASE_SECONDS = 10
DEAD_NODE_RELEASE_SECONDS = 15


@dataclass
class Installed:
    """A cluster networked by the plugin, and how it was installed."""

    cluster: KubeCluster
    datastore: str   # kubernetes or etcd
    mode: str        # bgp or vxlan
    etcd: Etcd | None
    images: list[Path]

    @property
    def id(self) -> str:
        return f"{self.datastore}-{self.mode}"


def settings_for(datastore: str, mode: str, etcd: Etcd | None) -> dict[str, str]:
    """The calico-py-settings ConfigMap: Calico's variables, the documented switch."""
    settings = {
        "CALICO_IPV4POOL_CIDR": "192.168.0.0/16",
        "IP_AUTODETECTION_METHOD": "interface=eth0",
        "CALICO_PY_NODE_LEASE_SECONDS": str(NODE_LEASE_SECONDS),
        "CALICO_PY_DEAD_NODE_RELEASE_SECONDS": str(DEAD_NODE_RELEASE_SECONDS),
    }
    if mode == "vxlan":
        settings["CALICO_IPV4POOL_VXLAN"] = "Always"
    if datastore == "etcd":
        assert etcd is not None
        settings["DATASTORE_TYPE"] = "etcdv3"
        settings["ETCD_ENDPOINTS"] = etcd.endpoint
    return settings


def install_plugin(cluster: KubeCluster, settings: dict[str, str]) -> None:
    """What an operator does: the settings ConfigMap, then one kubectl apply."""
    cluster.kubectl("create", "namespace", NAMESPACE)
    cluster.kubectl("-n", NAMESPACE, "create", "configmap", SETTINGS,
                    *(f"--from-literal={key}={value}" for key, value in settings.items()))
    cluster.kubectl("apply", "-f", str(MANIFEST))


def wait_installed(cluster: KubeCluster, timeout: float = 240) -> None:
    cluster.kubectl("-n", NAMESPACE, "rollout", "status", f"daemonset/{DAEMONSET}",
                    f"--timeout={int(timeout)}s", timeout=timeout + 10)
    cluster.wait_nodes_ready(list(cluster.nodes), timeout=timeout)


def diagnose(cluster: KubeCluster) -> str:
    """What a failed bring-up looked like: pods, the DaemonSet's logs, each node's logs."""
    parts = [cluster.kubectl("get", "pods", "-A", "-o", "wide", check=False).stdout]
    for container in ("install-cni", "node", "agent"):
        parts.append(cluster.kubectl("-n", NAMESPACE, "logs", f"daemonset/{DAEMONSET}", "-c",
                                     container, "--tail=30", check=False).stdout)
    for node in cluster.nodes.values():
        parts.append(f"--- {node.name} kubelet\n{node.log_tail('kubelet', 15)}")
    return "\n".join(parts)


def build_images(build: Path, base: Path) -> list[Path]:
    """The pause, workload and plugin images as docker archives for `ctr images import`;
    the plugin's from the frozen build in `build` (a CNI bin dir holding calico-py.d),
    by the project's own script, as an operator builds it."""
    rootfs = busybox_rootfs(base / "rootfs")
    sandbox = docker_archive(rootfs, base / "sandbox.tar", SANDBOX_IMAGE)
    workload = docker_archive(rootfs, base / "busybox.tar", WORKLOAD_IMAGE, entrypoint=None,
                              cmd=["sh"])
    plugin = base / "calico-py-image.tar"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "build_image.py"),
                           "--dist", str(build), "--out", str(plugin)],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/build_image.py failed:\n{proc.stdout[-2000:]}\n"
                           f"{proc.stderr[-3000:]}")
    return [sandbox, workload, plugin]


@contextmanager
def installed_cluster(workdir: Path, images: list[Path], datastore: str, mode: str,
                      before_install: Callable[[KubeCluster], None] | None = None,
                      ) -> Iterator[Installed]:
    """The three-node cluster with the plugin installed (`datastore`: kubernetes or etcd;
    `mode`: bgp or vxlan), every node Ready; everything removed on exit.
    `before_install` sees the cluster with its nodes registered and NotReady."""
    with ExitStack() as stack:
        cluster = stack.enter_context(running_cluster(workdir, images, SANDBOX_IMAGE))
        etcd = None
        if datastore == "etcd":
            (workdir / "etcd").mkdir()
            etcd = Etcd(cluster.underlay, workdir / "etcd" / "data")
            stack.callback(etcd.stop)
            etcd.start()
        if before_install is not None:
            before_install(cluster)
        install_plugin(cluster, settings_for(datastore, mode, etcd))
        try:
            wait_installed(cluster)
        except AssertionError:
            print(diagnose(cluster))
            raise
        yield Installed(cluster, datastore, mode, etcd, images)
