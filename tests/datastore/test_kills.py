"""SIGKILL in the middle of claims and releases: what a restart finds is always consistent.

Three nodes claim and release blocks of one small pool against a real etcd
and a real kube-apiserver, racing each other; at seeded random moments one of them is killed, then
restarted the way the daemon starts (`recover` first). After every kill:
no block has two confirmed affinities, and no pending affinity survives
the restarted node's recovery. At the end, every block has its owner's
confirmed affinity. CALICO_PY_KILLS sets the number of kills (default 60),
CALICO_PY_KILL_SEED the seed (per datastore).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from cni_calico_py.datastore.model import AFFINITY, Affinity
from cni_calico_py.datastore.ownership import BlockOwnership
from cni_calico_py.datastore.settings import DatastoreSettings, open_backend
from tests.cluster.topology import etcd, underlay
from tests.controlplane import running_control_plane
from tests.kube import install_crds
from tests.netns import inside

pytestmark = pytest.mark.netns

KILLS = int(os.environ.get("CALICO_PY_KILLS", "60"))
SEED = os.environ.get("CALICO_PY_KILL_SEED", "7")
POOL = "10.78.0.0/25"
PREFIX = "/kills"
NODES = ("k1", "k2", "k3")


@contextmanager
def datastore(kind: str, workdir: Path) -> Iterator[tuple[str, DatastoreSettings]]:
    """The underlay namespace, and the settings of a datastore running in it."""
    with underlay() as net:
        if kind == "etcd":
            with etcd(net) as server:
                yield net.name, DatastoreSettings("etcdv3", (server.local_endpoint,), PREFIX, 3.0)
            return
        with running_control_plane(workdir, net.name) as cp:
            with inside(f"/run/netns/{net.name}"):
                install_crds(cp)
            yield net.name, DatastoreSettings("kubernetes", timeout_seconds=5.0,
                                              kubeconfig=str(cp.kubeconfig))


@pytest.mark.parametrize("kind", ["etcd", "kubernetes"])
def test_kills_during_claims_and_releases_leave_nothing_inconsistent(root, kind, tmp_path) -> None:
    rng = random.Random(f"{SEED}-{kind}")
    with datastore(kind, tmp_path) as (netns, settings), inside(f"/run/netns/{netns}"):
        backend = open_backend(settings)
        ownership = BlockOwnership(backend)

        def start(node: str, round_: int) -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                ["ip", "netns", "exec", netns, sys.executable, "-m", "tests.datastore.churn",
                 json.dumps(settings.to_dict()), node, POOL, f"{SEED}-{node}-{round_}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        first = int(backend.list(AFFINITY).revision)
        procs = {node: start(node, 0) for node in NODES}
        try:
            for round_ in range(1, KILLS + 1):
                victim = rng.choice(NODES)
                time.sleep(rng.uniform(0.05, 0.6))
                procs[victim].kill()
                procs[victim].wait()
                ownership.recover(victim)
                affinities = [kv.value for kv in backend.list(AFFINITY).items]
                assert all(isinstance(a, Affinity) for a in affinities)
                confirmed = Counter(a.cidr for a in affinities
                                    if isinstance(a, Affinity) and a.state == "confirmed")
                assert max(confirmed.values(), default=0) <= 1, (round_, confirmed)
                assert not [a for a in affinities if isinstance(a, Affinity) and a.node == victim
                            and a.state == "pending"], (round_, affinities)
                procs[victim] = start(victim, round_)
        finally:
            for proc in procs.values():
                proc.kill()
                proc.wait()
        # Both count every write (a resourceVersion is etcd's revision).
        writes = int(backend.list(AFFINITY).revision) - first
        assert writes > 4 * KILLS, f"only {writes} writes: the claimers did not run"
        for node in NODES:
            ownership.recover(node)
        blocks = ownership.blocks()
        states = {(a.value.node, a.value.cidr): a.value.state for a in backend.list(AFFINITY).items
                  if isinstance(a.value, Affinity)}
        assert all(states.get((owner, cidr)) == "confirmed" for cidr, owner in blocks.items())
        assert all(blocks.get(cidr) == node for node, cidr in states)
        assert all(b.subnet_of(IPv4Network(POOL)) for b in blocks)
