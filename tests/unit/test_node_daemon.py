"""The node daemon's logic over the in-memory datastore: joins, claims, dead nodes, idle blocks.

Routing is a recorder here: what the daemon asks of the kernel is checked
by the cluster tests; these check what it decides and writes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest

from cni_calico_py.cluster.config import ClusterConfig
from cni_calico_py.cluster.daemon import NodeDaemon
from cni_calico_py.datastore.errors import DatastoreUnavailable, PoolExhausted
from cni_calico_py.datastore.model import AFFINITY, BLOCK, NODE, Affinity, Block, Key, NodeRecord
from cni_calico_py.datastore.ownership import BlockOwnership
from ipam import node_state
from tests.datastore.memory import MemoryBackend
from tests.netns import wait_for

POOL = "10.66.0.0/24"


class RecordedRouting:
    recheck_at = float("inf")

    def __init__(self) -> None:
        self.applied: list[tuple[str, dict[IPv4Network, str]]] = []

    def apply(self, me: NodeRecord, nodes: Sequence[NodeRecord], owners: Mapping[IPv4Network, str],
              force: bool) -> int:
        self.applied.append((me.name, dict(owners)))
        return 1500

    def close(self) -> None:
        pass


def daemon(tmp_path: Path, backend: MemoryBackend, name: str, **extra: Any) -> NodeDaemon:
    conf = ClusterConfig.model_validate({
        "etcd_endpoints": ["http://127.0.0.1:1"], "pool": POOL, "block_size": 26, "nodename": name,
        "state_file": str(tmp_path / name / "node-state.json"), **extra})
    made = NodeDaemon(conf, "10.9.0.2/24", backend=backend)
    made.routing = RecordedRouting()  # type: ignore[assignment]
    return made


@pytest.fixture
def backend() -> MemoryBackend:
    return MemoryBackend()


def test_a_joining_node_claims_a_block_registers_and_confirms(tmp_path: Path, backend: MemoryBackend):
    n1 = daemon(tmp_path, backend, "n1")
    state = n1.sync()
    (block,) = state.networks
    assert BlockOwnership(backend).owned("n1", IPv4Network(POOL)) == [block]
    assert backend.get(Key(NODE, "n1")).value == n1.record(None)
    writes = [c for c in backend.calls if not c.startswith(("get", "list", "watch"))]
    n1.sync()
    again = [c for c in backend.calls if not c.startswith(("get", "list", "watch"))]
    assert again == writes, "a second sync with nothing changed must write nothing"


def test_nodes_see_each_others_blocks(tmp_path: Path, backend: MemoryBackend):
    n1, n2 = daemon(tmp_path, backend, "n1"), daemon(tmp_path, backend, "n2")
    b1, b2 = n1.sync().networks[0], n2.sync().networks[0]
    n1.refresh(watch=False)
    n1.sync()
    assert b1 != b2
    assert n1.routing.applied[-1] == ("n1", {b1: "n1", b2: "n2"})  # type: ignore[attr-defined]
    # A node reads only its own affinities, never the cluster's (the costly list at scale).
    lists = [c for c in backend.calls if c.startswith(f"list {AFFINITY}")]
    assert lists and all(c in (f"list {AFFINITY} of n1", f"list {AFFINITY} of n2") for c in lists)


def test_a_claim_a_kill_cut_short_is_finished_before_the_node_uses_a_block(tmp_path, backend):
    cidr = IPv4Network("10.66.0.128/26")
    backend.create(Affinity("n1", cidr).key, Affinity("n1", cidr))
    backend.create(Block.empty(cidr, "n1").key, Block.empty(cidr, "n1"))
    stray = IPv4Network("10.66.0.0/26")
    backend.create(Affinity("n1", stray).key, Affinity("n1", stray))
    state = daemon(tmp_path, backend, "n1").sync()
    assert state.networks == [cidr]
    assert [(kv.value.cidr, kv.value.state) for kv in backend.list(AFFINITY).items] == [
        (cidr, "confirmed")]


def test_the_datastore_down_keeps_the_node_state(tmp_path: Path, backend: MemoryBackend):
    n1 = daemon(tmp_path, backend, "n1")
    before = n1.sync()
    backend.down = True
    with pytest.raises(DatastoreUnavailable):
        n1.refresh(watch=False)
    assert node_state.read(n1.conf.state_file) == before


def test_a_full_pool_is_said_plainly(tmp_path: Path, backend: MemoryBackend):
    for name in ["a", "b", "c", "d"]:
        BlockOwnership(backend).claim(name, IPv4Network(POOL), 26)
    with pytest.raises(PoolExhausted, match="grow the pool"):
        daemon(tmp_path, backend, "n1").sync()


def two_nodes(tmp_path: Path, backend: MemoryBackend) -> tuple[NodeDaemon, Any]:
    """n1, which removes nodes dead for 0.05 s, and n2's lease; both nodes joined."""
    n1 = daemon(tmp_path, backend, "n1", dead_node_release_seconds=0.05)
    n2 = daemon(tmp_path, backend, "n2")
    backend.liveness("n1", 10).renew()
    lease2 = backend.liveness("n2", 10)
    lease2.renew()
    n2.sync()
    n1.sync()
    return n1, lease2


def test_a_dead_node_is_removed_after_its_grace_and_its_blocks_freed(tmp_path, backend):
    n1, lease2 = two_nodes(tmp_path, backend)
    lease2.release()  # n2 died: its liveness lapsed
    n1.refresh(watch=False)
    n1.sync()
    assert backend.get(Key(NODE, "n2"))
    time.sleep(0.1)
    n1.refresh(watch=False)
    n1.sync()
    assert [kv.key.name for kv in backend.list(NODE).items] == ["n1"]
    assert set(BlockOwnership(backend).blocks().values()) == {"n1"}
    assert backend.list(AFFINITY, node="n2").items == []


def test_a_node_deleted_from_the_cluster_has_its_blocks_freed_after_the_grace(tmp_path, backend):
    """Its Kubernetes Node deleted (its record gone) and its lease lapsed: its blocks must
    not stay claimed for ever."""
    n1, lease2 = two_nodes(tmp_path, backend)
    backend.delete(Key(NODE, "n2"), None)
    lease2.release()
    n1.refresh(watch=False)
    n1.sync()
    assert "n2" in set(BlockOwnership(backend).blocks().values())
    time.sleep(0.1)
    n1.refresh(watch=False)
    n1.sync()
    assert set(BlockOwnership(backend).blocks().values()) == {"n1"}
    assert backend.list(AFFINITY, node="n2").items == []


def test_a_block_listing_older_than_an_applied_event_loses_nothing(tmp_path, backend):
    """A node re-reads the blocks (its own claim, an ADD's); a block whose event its watch
    delivered while that listing was on its way must stay in its view."""
    n1 = daemon(tmp_path, backend, "n1")
    n1.refresh()
    try:
        stale = backend.list(BLOCK)  # taken before n2's block exists, answered late
        cidr = BlockOwnership(backend).claim("n2", IPv4Network(POOL), 26)
        wait_for(lambda: cidr in n1.follower.known()[1], what="n2's block by the watch")
        real_list = backend.list
        backend.list = lambda kind, node=None: stale if kind == BLOCK else real_list(kind, node)
        n1.follower.reread_blocks()
        backend.list = real_list
        wait_for(lambda: cidr in n1.follower.known()[1], what="n2's block delivered again")
    finally:
        n1.follower.stop()


def test_an_idle_extra_block_goes_back_and_the_home_block_stays(tmp_path, backend):
    """Over the node's real IPAM store (files) and the in-memory datastore."""
    conflist = tmp_path / "10-calico-py.conflist"
    state_file = tmp_path / "n1" / "node-state.json"
    conflist.write_text(json.dumps({"cniVersion": "1.0.0", "name": "net", "plugins": [{
        "type": "calico-py", "ipam": {"type": "calico-py-ipam", "dataDir": str(tmp_path / "ipam"),
                                      "nodeStateFile": str(state_file)}}]}))
    n1 = daemon(tmp_path, backend, "n1", cni_conflist=str(conflist), block_release_after_seconds=0.01)
    home = n1.sync().networks[0]
    extra = BlockOwnership(backend).claim("n1", IPv4Network(POOL), 26)
    n1.follower.reread_blocks()
    assert n1.sync().networks == [home, extra]
    for _ in range(3):  # idle once, out of the node state, then given back one check later
        time.sleep(n1.idle.check_seconds + 0.02)
        n1.idle.release()
    assert BlockOwnership(backend).owned("n1", IPv4Network(POOL)) == [home]
    assert node_state.read(str(state_file)).networks == [home]  # type: ignore[union-attr]


def test_node_ready_wants_a_block_and_in_bgp_modes_bird(tmp_path: Path, backend: MemoryBackend):
    from cni_calico_py.cluster.status import not_ready

    vxlan = daemon(tmp_path, backend, "n1", encapsulation="VXLAN")
    assert not_ready(vxlan.conf) == ["no block claimed yet (the node state has none)"]
    vxlan.sync()
    assert not_ready(vxlan.conf) == []
    bgp = ClusterConfig.model_validate({**vxlan.conf.model_dump(mode="json"), "encapsulation": "Off",
                                        "bird_dir": str(tmp_path / "no-bird")})
    assert not_ready(bgp) == ["BIRD is not running"]
