"""A cluster test case: underlay, a datastore (etcd, or the Kubernetes API: every test runs
on both), and per node a cluster config, conflist and state."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from cni_calico_py.datastore.backend import Backend
from cni_calico_py.datastore.model import AFFINITY, BLOCK, NODE, Block
from tests.cluster.stores import Store, running_store
from tests.cluster.topology import ClusterNode, Underlay, underlay
from tests.cni_calls import Pod
from tests.netns import add_netns, del_netns, inside, stop_process, unique_name

NETWORK = "k8s-pod-network"


@dataclass
class Cluster:
    underlay: Underlay
    store: Store
    tmp: Path
    exe: str
    cni_path: str
    pool: str = "192.168.0.0/24"
    block_size: int = 26
    pod_netns: list[str] = field(default_factory=list)

    def dir(self, node: ClusterNode) -> Path:
        path = self.tmp / node.name
        path.mkdir(exist_ok=True)
        return path

    def config_path(self, node: ClusterNode) -> Path:
        return self.dir(node) / "node.yaml"

    def state_file(self, node: ClusterNode) -> Path:
        return self.dir(node) / "state" / "node-state.json"

    def write_config(self, node: ClusterNode, **extra: Any) -> Path:
        """The node's cluster config and the conflist whose IPAM takes blocks from it."""
        settings: dict[str, Any] = {
            **self.store.node_settings(),
            "pool": self.pool,
            "block_size": self.block_size,
            "nodename": node.name,
            "ip_autodetection": f"can-reach={self.underlay.gateway}",
            "state_file": str(self.state_file(node)),
            "cni_conflist": str(self.dir(node) / "10-calico-py.conflist"),
            "bird_dir": str(self.dir(node) / "bird"),
            "mtu_file": str(self.dir(node) / "mtu"),
            # Long enough that changes must come through the watch.
            "resync_seconds": 60,
            **extra,
        }
        self.config_path(node).write_text(yaml.safe_dump(settings))
        self.store.node_joins(str(settings["nodename"]))
        conflist = {"cniVersion": "1.0.0", "name": NETWORK, "plugins": [self.netconf(node)]}
        Path(settings["cni_conflist"]).write_text(json.dumps(conflist))
        return self.config_path(node)

    def netconf(self, node: ClusterNode) -> dict[str, Any]:
        return {
            "cniVersion": "1.0.0", "name": NETWORK, "type": "calico-py",
            "mtu_file_path": str(self.dir(node) / "mtu"),
            "ipam": {"type": "calico-py-ipam", "dataDir": str(self.dir(node) / "ipam"),
                     "nodeStateFile": str(self.state_file(node))},
        }

    @contextmanager
    def datastore(self) -> Iterator[Backend]:
        """A client of the cluster's datastore, from inside the underlay."""
        with inside(f"/run/netns/{self.underlay.name}"):
            client = self.store.client()
            try:
                yield client
            finally:
                client.close()

    def owners(self) -> dict[str, str]:
        """Block (`192.168.0.64/26`) -> the node its affinity names."""
        with self.datastore() as client:
            return {str(kv.value.cidr): kv.value.owner or "?" for kv in client.list(BLOCK).items
                    if isinstance(kv.value, Block)}

    def put_block(self, cidr: str, node: str) -> None:
        """A block of `node` written behind the daemons' backs (as an ADD's claim, or a block
        from before affinities existed: no affinity)."""
        import ipaddress

        block = Block(ipaddress.IPv4Network(cidr), f"host:{node}")
        with self.datastore() as client:
            client.create(block.key, block)

    def delete_block(self, cidr: str) -> None:
        import ipaddress

        with self.datastore() as client:
            client.delete(Block(ipaddress.IPv4Network(cidr), None).key, None)

    def datastore_is_empty(self) -> bool:
        with self.datastore() as client:
            return not any(client.list(kind).items for kind in (NODE, BLOCK, AFFINITY))

    def node_cmd(self, node: ClusterNode, *args: str,
                 timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", node.name, self.exe, "node", *args,
             "--config", str(self.config_path(node))],
            capture_output=True, text=True, timeout=timeout)

    def sync_once(self, node: ClusterNode) -> None:
        proc = self.node_cmd(node, "run", "--once")
        assert proc.returncode == 0, proc.stderr

    def node_state(self, node: ClusterNode) -> dict[str, Any]:
        return dict(json.loads(self.state_file(node).read_text()))

    def routes(self, node: ClusterNode) -> list[str]:
        """`ip route` lines for the pool, as an operator reads them."""
        import ipaddress

        pool = ipaddress.ip_network(self.pool)
        lines = node.exec("ip", "-4", "route", "show").stdout.splitlines()
        return sorted(line.strip() for line in lines
                      if not line.startswith("default") and _in_pool(line, pool))

    def repairs_path(self, node: ClusterNode) -> Path:
        """The node's repair journal: its own, never the machine's."""
        return self.dir(node) / "repairs.jsonl"

    def node_env(self, node: ClusterNode) -> dict[str, str]:
        return {**os.environ, "CALICO_PY_REPAIRS": str(self.repairs_path(node))}

    @contextmanager
    def daemon(self, node: ClusterNode) -> Iterator[subprocess.Popen[bytes]]:
        log = open(self.dir(node) / "daemon.log", "ab")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            ["ip", "netns", "exec", node.name, self.exe, "node", "run",
             "--config", str(self.config_path(node))], stdout=log, stderr=subprocess.STDOUT,
            env=self.node_env(node))
        try:
            yield proc
        finally:
            stop_process(proc)
            log.close()

    def pod(self, node: ClusterNode) -> Pod:
        name = unique_name("pod")
        self.pod_netns.append(name)
        return Pod(node=node, exe=self.exe, cni_path=self.cni_path,  # type: ignore[arg-type]
                   conf=self.netconf(node), netns=add_netns(name),
                   container_id=f"c-{name}")

    def remove_pods(self) -> None:
        for name in self.pod_netns:
            del_netns(name)


def _in_pool(line: str, pool: Any) -> bool:
    import ipaddress

    words = line.split()
    dst = words[1] if words[0] in ("blackhole", "unreachable") else words[0]
    try:
        return bool(ipaddress.ip_network(dst, strict=False).subnet_of(pool))
    except ValueError:
        return False


@pytest.fixture(params=["etcd", "kubernetes"])
def cluster(request: pytest.FixtureRequest, root: None, plugin_exe: str, cni_path: str,
            tmp_path: Path) -> Iterator[Cluster]:
    with underlay() as made, running_store(request.param, made, tmp_path) as store:
        case = Cluster(made, store, tmp_path, plugin_exe, cni_path)
        try:
            yield case
        finally:
            case.remove_pods()




