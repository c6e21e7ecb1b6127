"""The datastore a cluster test runs on, etcd or the Kubernetes API, as the tests handle it:
what the node config says, a client for the test itself, taking it away, counting writes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from cni_calico_py.datastore.backend import Backend
from cni_calico_py.datastore.etcd import EtcdBackend
from cni_calico_py.datastore.kubernetes import KubernetesBackend
from tests.cluster.topology import Etcd, Underlay, etcd
from tests.controlplane import ControlPlane, running_control_plane
from tests.kube import NODE_USER, add_node, install_crds, install_rbac
from tests.netns import inside

PREFIX = "/calico-py/v1"


class Store(Protocol):
    kind: str

    def node_settings(self) -> dict[str, Any]:
        """The node.yaml keys that point a node at the store."""

    def client(self) -> Backend:
        """A client for the test; use it inside the underlay namespace (Cluster.datastore)."""

    def stop(self) -> None: ...

    def start(self) -> None: ...

    def writes(self) -> int:
        """Writes so far, but for liveness renewals (which are not writes in etcd at all)."""

    def requests(self) -> float:
        """Requests the store has received so far (etcd: gRPC messages), the tests' own too."""

    def unreachable_words(self) -> str:
        """What a node says when the store does not answer."""

    def node_joins(self, name: str) -> None:
        """What the cluster does for a node before its daemon starts (a kubelet's Node)."""


class EtcdStore:
    kind = "etcd"

    def __init__(self, server: Etcd) -> None:
        self.server = server

    def node_settings(self) -> dict[str, Any]:
        return {"etcd_endpoints": [self.server.endpoint], "etcd_timeout_seconds": 1}

    def client(self) -> Backend:
        return EtcdBackend([self.server.local_endpoint], PREFIX, 3.0)

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server.start()

    def writes(self) -> int:
        status = json.loads(self.server.etcdctl("endpoint", "status", "-w", "json"))
        return int(status[0]["Status"]["header"]["revision"])

    def requests(self) -> float:
        import urllib.request

        url = f"{self.server.local_endpoint}/metrics"
        with inside(f"/run/netns/{self.server.underlay.name}"):
            text = urllib.request.urlopen(url, timeout=10).read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("grpc_server_msg_received_total{"))

    def unreachable_words(self) -> str:
        return "no etcd endpoint answered"

    def node_joins(self, name: str) -> None:
        pass


class KubernetesStore:
    kind = "kubernetes"

    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        # The daemons run as the node's ServiceAccount, with the manifest's roles alone.
        self.node_kubeconfig = cp.kubeconfig_of(NODE_USER[0])

    def node_settings(self) -> dict[str, Any]:
        # The API server's first write of a custom resource can take a few seconds.
        return {"datastore": "kubernetes", "kubeconfig": str(self.node_kubeconfig),
                "etcd_timeout_seconds": 5}

    def node_joins(self, name: str) -> None:
        with inside(f"/run/netns/{self.cp.netns}"):
            add_node(self.cp, name)

    def client(self) -> Backend:
        return KubernetesBackend(str(self.cp.kubeconfig), 3.0)

    def stop(self) -> None:
        self.cp.stop_apiserver()

    def start(self) -> None:
        self.cp.start_apiserver()

    def writes(self) -> int:
        return self.cp.writes()

    def requests(self) -> float:
        return self.cp.requests()

    def unreachable_words(self) -> str:
        return "did not answer"


@contextmanager
def running_store(kind: str, ul: Underlay, workdir: Path) -> Iterator[Store]:
    """etcd, or etcd and kube-apiserver with Calico's CRDs, on the underlay's gateway."""
    if kind == "etcd":
        with etcd(ul) as server:
            yield EtcdStore(server)
        return
    with running_control_plane(workdir, ul.name, address=ul.gateway, users=[NODE_USER]) as cp:
        with inside(f"/run/netns/{ul.name}"):
            install_crds(cp)
        install_rbac(cp)
        yield KubernetesStore(cp)
