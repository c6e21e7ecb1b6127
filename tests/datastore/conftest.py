"""The contract suite's backends: the in-memory fake, a real etcd (and the Kubernetes API)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest

from cni_calico_py.datastore.etcd import EtcdBackend
from tests.cluster.topology import etcd, underlay
from tests.datastore.harness import Harness
from tests.datastore.memory import MemoryBackend
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

    return Harness(backend, backend.compact, let_pass, lambda: backend)


@pytest.fixture
def memory() -> Harness:
    return memory_harness()


@pytest.fixture(params=["memory", "etcd"])
def harness(request: pytest.FixtureRequest, root: None) -> Iterator[Harness]:
    if request.param == "memory":
        yield memory_harness()
        return
    with underlay() as net, etcd(net) as server, inside(f"/run/netns/{net.name}"):
        prefix = "/contract"

        def backend() -> EtcdBackend:
            return EtcdBackend([server.local_endpoint], prefix, 3.0)

        def compact() -> None:
            revision = backend().list("Node").revision
            body = json.dumps({"revision": int(revision), "physical": True}).encode()
            urllib.request.urlopen(urllib.request.Request(
                f"{server.local_endpoint}/v3/kv/compaction", data=body), timeout=5).read()

        def let_pass(seconds: float) -> None:
            import time

            time.sleep(seconds)

        yield Harness(backend(), compact, let_pass, backend)
