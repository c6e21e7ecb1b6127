"""The contract suite's backends: the in-memory fake, a real etcd and a real kube-apiserver."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from cni_calico_py.datastore.etcd import EtcdBackend
from cni_calico_py.datastore.kubernetes import KubernetesBackend
from tests.cluster.topology import etcd, underlay
from tests.controlplane import running_control_plane
from tests.datastore.harness import Harness
from tests.datastore.memory import MemoryBackend
from tests.kube import install_crds
from tests.netns import inside


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def memory_harness() -> Harness:
    clock = FakeClock()
    backend = MemoryBackend(clock=clock)

    def let_pass(seconds: float) -> None:
        clock.now += seconds

    def compact(old: str) -> str:
        backend.compact()
        return old

    return Harness(backend, compact, let_pass, lambda: backend)


@pytest.fixture
def memory() -> Harness:
    return memory_harness()


def _compact_etcd(endpoint: str, revision: str) -> None:
    body = json.dumps({"revision": int(revision), "physical": True}).encode()
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/v3/kv/compaction", data=body),
                           timeout=5).read()


@pytest.fixture(params=["memory", "etcd", "kubernetes"])
def harness(request: pytest.FixtureRequest, root: None, tmp_path: Path) -> Iterator[Harness]:
    if request.param == "memory":
        yield memory_harness()
        return
    if request.param == "kubernetes":
        # Without its watch cache the API server answers a watch from etcd, so a compacted
        # revision is gone at once (with it, only once the cache has moved past it).
        with underlay() as net, running_control_plane(tmp_path, net.name,
                                                      extra_args=["--watch-cache=false"]) as cp, \
                inside(f"/run/netns/{net.name}"):
            install_crds(cp)

            def kube() -> KubernetesBackend:
                return KubernetesBackend(str(cp.kubeconfig), 5.0)

            def kube_compact(old: str) -> str:
                _compact_etcd(cp.etcd_url, kube().list("Node").revision)
                return old

            yield Harness(kube(), kube_compact, time.sleep, kube)
        return
    with underlay() as net, etcd(net) as server, inside(f"/run/netns/{net.name}"):
        prefix = "/contract"

        def backend() -> EtcdBackend:
            return EtcdBackend([server.local_endpoint], prefix, 3.0)

        def compact(old: str) -> str:
            _compact_etcd(server.local_endpoint, backend().list("Node").revision)
            return old

        yield Harness(backend(), compact, time.sleep, backend)
