"""Node daemons for the cluster tests, and what the tests read from a running cluster."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from tests.cluster.conftest import Cluster
from tests.cluster.topology import ClusterNode
from tests.cni_calls import Pod
from tests.netns import stop_process, wait_for


class Daemons:
    """Node daemons by node name; all stopped when the test ends."""

    def __init__(self, cluster: Cluster, stack: ExitStack) -> None:
        self.cluster = cluster
        self.stack = stack
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, node: ClusterNode, mode: str, **settings: Any) -> None:
        self.cluster.write_config(node, encapsulation=mode, **settings)
        self.procs[node.name] = self.stack.enter_context(self.cluster.daemon(node))

    def stop(self, node: ClusterNode) -> None:
        stop_process(self.procs.pop(node.name))


@contextmanager
def running(cluster: Cluster, nodes: list[ClusterNode], mode: str,
            **settings: Any) -> Iterator[Daemons]:
    with ExitStack() as stack:
        daemons = Daemons(cluster, stack)
        for node in nodes:
            daemons.start(node, mode, **settings)
        wait_for(lambda: all(cluster.state_file(n).exists() for n in nodes), what="node state")
        yield daemons


def block_of(cluster: Cluster, node: ClusterNode) -> str:
    return str(cluster.node_state(node)["blocks"][0])


def tunnel(cluster: Cluster, node: ClusterNode) -> str:
    return str(cluster.node_state(node)["tunnel_address"])


def ping(pod: Pod, address: str) -> bool:
    netns = pod.netns.rsplit("/", 1)[-1]
    proc = subprocess.run(["ip", "netns", "exec", netns, "ping", "-c", "2", "-i", "0.2", "-W", "2",
                           address], capture_output=True, text=True)
    return proc.returncode == 0


def all_pods_reach_each_other(pods: dict[str, Pod]) -> None:
    """Each pair within a few seconds: every node programs its side on its own resync."""
    for source in pods.values():
        for target in pods.values():
            if target is not source:
                wait_for(lambda source=source, target=target: ping(source, target.address()),
                         timeout=10, what=f"{source.node.name} -> {target.address()}")


def bird_pid(cluster: Cluster, node: ClusterNode) -> int:
    return int((cluster.dir(node) / "bird" / "bird.pid").read_text().strip())


def peers_up(cluster: Cluster, node: ClusterNode) -> dict[str, str]:
    status = json.loads(cluster.node_cmd(node, "status", "--json").stdout)
    return {n["name"]: n["peer"] for n in status["nodes"]}




def cpu_seconds(pid: int) -> float:
    """User and system CPU time the process has used."""
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def writes(cluster: Cluster) -> int:
    """The datastore's writes so far (etcd's revision; the API server's write requests but
    Lease renewals, the liveness an idle node keeps up)."""
    return cluster.store.writes()


def status(cluster: Cluster, node: ClusterNode) -> dict[str, dict[str, Any]]:
    """`node status --json` on `node`, by node name."""
    proc = cluster.node_cmd(node, "status", "--json")
    return {n["name"]: n for n in json.loads(proc.stdout)["nodes"]}


def bgp_sessions(cluster: Cluster, node: ClusterNode) -> dict[str, str]:
    """Peer IP -> BGP state, from BIRD."""
    out = subprocess.run(["birdc", "-s", str(cluster.dir(node) / "bird" / "bird.ctl"), "show",
                          "protocols"], capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        fields = line.split()
        if fields and fields[0].startswith("peer_"):
            found[fields[0][5:].replace("_", ".")] = fields[5] if len(fields) > 5 else fields[3]
    return found


def wait_routes(cluster: Cluster, node: ClusterNode, want: list[str], timeout: float = 30) -> None:
    wait_for(lambda: all(line in cluster.routes(node) for line in want), timeout=timeout,
             what=f"routes on {node.name}: want {want}, have {cluster.routes(node)}")


def explain(cluster: Cluster, node: ClusterNode, src: Pod, dst: Pod) -> tuple[int, dict[str, Any]]:
    """`calico-py explain --json` on `node`, with the node's own repair journal (never the
    machine's): its exit code and report."""
    proc = subprocess.run(
        ["ip", "netns", "exec", node.name, cluster.exe, "explain", src.address(), dst.address(),
         "--conf", str(cluster.dir(node) / "10-calico-py.conflist"),
         "--config", str(cluster.config_path(node)), "--json"],
        capture_output=True, text=True, timeout=60, env=cluster.node_env(node))
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, dict(json.loads(proc.stdout))
