"""containerd in a test node's namespace, its CRI network the installed plugin chained with portmap.

The node is laid out as an operator installs the plugin: one CNI bin dir
(containerd 1.6's CRI takes exactly one) with the plugin, its IPAM, loopback
and portmap, and one conf dir holding a conflist that chains `calico-py` then
`portmap`, as Calico ships its own. Pods' host-side veths, routes and the
block's blackhole land in the node's namespace, so removing the node removes
them whatever a test left.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.netns import Node

from .containerd import Containerd
from .helpers import AGENT_SOCKET_ENV, conflist, with_portmap, write_json
from .images import docker_archive

SANDBOX_IMAGE = "localhost/calico-py-e2e/sandbox:1"
CONFLIST_NAME = "10-calico-py.conflist"


@dataclass
class NodeRuntime:
    """What a test reads back: the daemon, and where the plugin keeps its state."""

    containerd: Containerd
    node: Node
    network: str
    block: str
    ipam_dir: Path
    cni_log: Path
    # The socket the plugin forwards to when an agent listens there.
    agent_socket: Path


@contextmanager
def node_containerd(base: Path, node: Node, runtime_bin_dir: Path, rootfs: Path,
                    network: str, block: str) -> Iterator[NodeRuntime]:
    """containerd started in `node`'s namespace with the sandbox image imported; stopped after."""
    conf_dir = base / "net.d"
    ipam_dir = base / "ipam"
    cni_log = base / "cni.log"
    agent_socket = base / "agent.sock"
    write_json(conf_dir / CONFLIST_NAME, with_portmap(conflist(network, block, ipam_dir, cni_log)))
    daemon = Containerd(base, runtime_bin_dir, conf_dir, SANDBOX_IMAGE,
                        env={AGENT_SOCKET_ENV: str(agent_socket)}, netns=node.path)
    daemon.start()
    try:
        daemon.import_image(docker_archive(rootfs, base / "sandbox.tar", SANDBOX_IMAGE))
        yield NodeRuntime(daemon, node, network, block, ipam_dir, cni_log, agent_socket)
    finally:
        daemon.stop()
