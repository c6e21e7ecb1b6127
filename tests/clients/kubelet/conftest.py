"""A node run by upstream kubelet: containerd and kubelet in a node namespace, agent up or down.

Every test module here gets the node twice: with the node agent serving the
plugin, then with the plugin running cold. The node's pods are static pods
from manifests the tests write.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.netns import Node, make_node, running_agent, wait_for

from ..crictl import Crictl, Sandbox
from ..helpers import go_tool, reservations
from ..node_runtime import SANDBOX_IMAGE, NodeRuntime, node_containerd
from .kubelet import GLOBAL_SYSCTLS, Kubelet, static_pod

# Test-only block, inside the node's namespace only.
BLOCK = "10.253.67.0/26"
NETWORK = "calico-py-kubelet"
NODE_NET = "10.250.67"
HOST_PORT = 30080
POD_PORT = 8080
# A pod's main container: serves its own name over HTTP on POD_PORT.
WEB_SERVER = ["/bin/sh", "-c",
              f"mkdir -p /tmp/www && hostname > /tmp/www/index.html && "
              f"exec httpd -f -p {POD_PORT} -h /tmp/www"]


@dataclass
class KubeNode:
    node: Node
    runtime: NodeRuntime
    kubelet: Kubelet
    crictl: Crictl
    mode: str  # "agent" or "cold"
    manifest_to_ip: dict[str, float] = field(default_factory=dict)

    def pod_name(self, manifest: str) -> str:
        return f"{manifest}-{self.node.name}"

    def add_pod(self, manifest: str, host_port: int | None = None) -> Sandbox:
        """Start a static pod and wait until it has an address; records how long that took."""
        started = self.kubelet.add_manifest(
            manifest, static_pod(manifest, SANDBOX_IMAGE, WEB_SERVER, host_port, POD_PORT))
        box = self.wait_ready(manifest)
        self.manifest_to_ip[manifest] = time_since(started)
        return box

    def wait_ready(self, manifest: str, other_than: str | None = None,
                   timeout: float = 90) -> Sandbox:
        """The pod's ready sandbox (one other than `other_than`, when given)."""
        found: dict[str, Sandbox] = {}

        def ready() -> bool:
            box = self.ready().get(manifest)
            if box is None or box.id == other_than:
                return False
            found["box"] = box
            return True

        wait_for(ready, f"pod {manifest} ready with an address (kubelet log: "
                        f"{self.kubelet.log}, CNI log: {self.runtime.cni_log})",
                 timeout=timeout, interval=0.1)
        return found["box"]

    def ready(self) -> dict[str, Sandbox]:
        """The ready sandboxes with an address, by manifest name."""
        suffix = f"-{self.node.name}"
        return {name.removesuffix(suffix): box for name, box in self.crictl.ready().items()}

    def reserved(self) -> list[str]:
        return reservations(self.runtime.ipam_dir, NETWORK)

    def cni_calls(self, verb: str) -> int:
        """How many `verb` requests the plugin has logged."""
        if not self.runtime.cni_log.exists():
            return 0
        return sum(1 for line in self.runtime.cni_log.read_text().splitlines()
                   if f": {verb} container=" in line)


def time_since(started: float) -> float:
    return time.monotonic() - started


# What the machine's global sysctls were before any kubelet ran.
SYSCTLS_BEFORE = {name: Path("/proc/sys", name).read_text().strip() for name in GLOBAL_SYSCTLS}


@pytest.fixture(scope="session")
def kubelet_exe() -> Path:
    return go_tool("kubelet")


@pytest.fixture(scope="module", params=["agent", "cold"])
def kube(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
         installed_bin: Path, runtime_bin_dir: Path, rootfs: Path, kubelet_exe: Path,
         crictl_exe: Path) -> Iterator[KubeNode]:
    mode: str = request.param
    base = tmp_path_factory.mktemp(f"kubelet-{mode}")
    with ExitStack() as stack:
        node = stack.enter_context(make_node(net=NODE_NET))
        runtime = stack.enter_context(node_containerd(base / "containerd", node, runtime_bin_dir,
                                                      rootfs, NETWORK, BLOCK))
        if mode == "agent":
            stack.enter_context(running_agent(node, str(installed_bin / "calico-py"),
                                              str(runtime.agent_socket)))
        crictl = Crictl(crictl_exe, runtime.containerd.socket)
        # Last in, first out: kubelet stops, then every sandbox left is removed
        # (a DEL each) while the agent and containerd still run.
        stack.callback(crictl.remove_all)
        kubelet = Kubelet(kubelet_exe, base / "kubelet", node, runtime.containerd.socket)
        stack.callback(kubelet.stop)
        kubelet.start()
        yield KubeNode(node, runtime, kubelet, crictl, mode)
    assert_nothing_left(base)


def assert_nothing_left(base: Path) -> None:
    """No process still runs from the test's files, and kubelet's global sysctls are back."""
    running = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if str(base).encode() in cmdline:
            running.append(cmdline.replace(b"\0", b" ").decode(errors="replace")[:200])
    assert not running, running
    changed = {name: value for name, value in SYSCTLS_BEFORE.items()
               if Path("/proc/sys", name).read_text().strip() != value}
    assert not changed, f"kubelet's global sysctls were not restored: {changed}"
