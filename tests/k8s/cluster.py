"""A Kubernetes cluster of three nodes on one machine, for the plugin to network.

The control plane (etcd, kube-apiserver, kube-scheduler, kube-controller-manager)
runs in the underlay's namespace and listens on its bridge address; each node
(tests/k8s/node.py) hangs off that bridge with containerd, a kubelet registered
with the API server, and kube-proxy in iptables mode. Every program is the
upstream one, built by scripts/go-tools.sh. The kubelets, kube-proxy and the
controllers authenticate with static tokens made here: kubelets as
`system:node:<name>` (the Node authorizer), the rest as the admin.

Nothing networks the pods until the plugin is installed, as an operator does,
with `kubectl apply -f conf/kubernetes/calico-py.yaml`: until then the nodes
are NotReady.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.clients.helpers import go_tool
from tests.cluster.topology import Underlay, underlay
from tests.controlplane import ControlPlane, running_control_plane
from tests.netns import stop_process, wait_for

from .node import GLOBAL_SYSCTLS, K8S_NAMESPACE, KubeNode

POD_CIDR = "192.168.0.0/16"
NODE_NAMES = ("node-a", "node-b", "node-c")
LATE_NODE = "node-d"
KUBECTL_TIMEOUT = 120.0


@dataclass
class KubeCluster:
    underlay: Underlay
    control_plane: ControlPlane
    base: Path
    nodes: dict[str, KubeNode] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def kubectl(self, *args: str, check: bool = True, input_text: str | None = None,
                timeout: float = KUBECTL_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """kubectl as the admin, from the underlay (where the API server listens)."""
        proc = subprocess.run(
            ["ip", "netns", "exec", self.underlay.name, "kubectl", "--kubeconfig",
             str(self.control_plane.kubeconfig), *args],
            capture_output=True, text=True, timeout=timeout, input=input_text)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {proc.returncode}: "
                                 f"{proc.stderr.strip()[-2000:]}")
        return proc

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def apply(self, doc: dict[str, Any] | list[dict[str, Any]]) -> None:
        docs = doc if isinstance(doc, list) else [doc]
        self.kubectl("apply", "-f", "-", input_text=json.dumps({"apiVersion": "v1", "kind": "List",
                                                                 "items": docs}))

    def node_ready(self) -> dict[str, bool]:
        ready = {}
        for item in self.get("nodes")["items"]:
            conditions = {c["type"]: c["status"] for c in item["status"].get("conditions", [])}
            ready[item["metadata"]["name"]] = conditions.get("Ready") == "True"
        return ready

    def wait_nodes_ready(self, names: Sequence[str], timeout: float = 180) -> float:
        return wait_for(lambda: all(self.node_ready().get(n) for n in names),
                        f"nodes {', '.join(names)} to be Ready", timeout=timeout, interval=1)

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.base / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def start_controller(self, name: str, argv: list[str]) -> None:
        with (self.base / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                ["ip", "netns", "exec", self.underlay.name, *argv], stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, start_new_session=True)

    def add_node(self, name: str, images: Sequence[Path], sandbox_image: str) -> KubeNode:
        """A node on the underlay, its containerd with `images`, its kubelet and kube-proxy up."""
        cluster_node = self.underlay.add_node(len(self.underlay.nodes) + 1, name_suffix=name)
        node = KubeNode(
            name=name, netns=cluster_node.netns, address=cluster_node.ip, base=self.base / name,
            kubeconfig=self.control_plane.kubeconfig_of(f"system:node:{name}"),
            proxy_kubeconfig=self.control_plane.kubeconfig, cluster_cidr=POD_CIDR,
            sandbox_image=sandbox_image)
        self.nodes[name] = node
        node.base.mkdir(parents=True, exist_ok=True)
        node.start_namespace()
        node.start_containerd()
        for image in images:
            node.import_image(image)
        node.start_kubelet(go_tool("kubelet"))
        node.start_kube_proxy(go_tool("kube-proxy"))
        return node


@contextmanager
def running_cluster(workdir: Path, images: Sequence[Path], sandbox_image: str,
                    names: Sequence[str] = NODE_NAMES) -> Iterator[KubeCluster]:
    """The control plane and `names` nodes, all registered; everything removed on exit."""
    sysctls = {name: Path("/proc/sys", name).read_text() for name in GLOBAL_SYSCTLS}
    cgroups = _containers_cgroups()
    with ExitStack() as stack:
        ul = stack.enter_context(underlay())
        # A node may join later (LATE_NODE); its token is made now.
        users = [(f"system:node:{name}", "system:nodes") for name in (*names, LATE_NODE)]
        cp = stack.enter_context(running_control_plane(
            workdir, netns=ul.name, address=ul.gateway, users=users, controllers=True))
        base = workdir / "k8s"
        base.mkdir(parents=True, exist_ok=True)
        cluster = KubeCluster(underlay=ul, control_plane=cp, base=base)
        stack.callback(_stop_cluster, cluster, sysctls, cgroups)
        cluster.start_controller("kube-scheduler", [
            str(go_tool("kube-scheduler")), f"--kubeconfig={cp.kubeconfig}",
            f"--authentication-kubeconfig={cp.kubeconfig}",
            f"--authorization-kubeconfig={cp.kubeconfig}",
            "--leader-elect=false", "--bind-address=127.0.0.1"])
        cluster.start_controller("kube-controller-manager", [
            str(go_tool("kube-controller-manager")), f"--kubeconfig={cp.kubeconfig}",
            f"--authentication-kubeconfig={cp.kubeconfig}",
            f"--authorization-kubeconfig={cp.kubeconfig}",
            "--leader-elect=false", "--bind-address=127.0.0.1",
            f"--root-ca-file={cp.ca_file}",
            f"--service-account-private-key-file={cp.directory / 'service-account.key'}",
            "--use-service-account-credentials=false",
            # A deleted node's pods go at once (pod GC), as the drain test expects.
            "--terminated-pod-gc-threshold=100",
            "--node-monitor-grace-period=20s"])
        # The default service account is what every pod of a namespace needs.
        wait_for(lambda: cluster.kubectl("get", "serviceaccount", "default", check=False)
                 .returncode == 0, "the default service account", timeout=60, interval=0.5)
        for name in names:
            cluster.add_node(name, images, sandbox_image)
        yield cluster


def _containers_cgroups() -> set[Path]:
    return {path for path in Path("/sys/fs/cgroup").glob(f"*/{K8S_NAMESPACE}/*") if path.is_dir()}


def _remove_new_cgroups(before: set[Path]) -> None:
    """The cgroups the nodes' containers left (containerd 1.6 leaves some in the unified
    hierarchy of a hybrid machine); the cluster's processes are all gone by now."""
    for path in sorted(_containers_cgroups() - before, key=lambda p: len(p.parts), reverse=True):
        for pid in (path / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        with contextlib.suppress(OSError):
            wait_for(lambda p=path: not (p / "cgroup.procs").read_text().strip(),
                     f"the processes in {path} to exit", timeout=10)
            path.rmdir()


def _stop_cluster(cluster: KubeCluster, sysctls: dict[str, str], cgroups: set[Path]) -> None:
    for node in cluster.nodes.values():
        try:
            node.stop()
        except Exception as error:
            print(f"stopping {node.name}: {error}")
    for proc in cluster.processes.values():
        stop_process(proc)
    _remove_new_cgroups(cgroups)
    for name, value in sysctls.items():
        path = Path("/proc/sys", name)
        if path.read_text() != value:
            path.write_text(value)
