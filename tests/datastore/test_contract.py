"""What every datastore backend does alike: the fake, a real etcd (and the Kubernetes API).

The logic above the interface (block ownership, the node daemon) relies on
exactly these cases and nothing backend-specific.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from ipaddress import IPv4Network

import pytest

from cni_calico_py.datastore.errors import AlreadyExists, Conflict, NotFound, ResyncNeeded
from cni_calico_py.datastore.model import (
    AFFINITY,
    BLOCK,
    HANDLE,
    LIVENESS,
    NODE,
    Affinity,
    Block,
    Handle,
    Key,
    KVPair,
    NodeRecord,
    Pool,
)
from cni_calico_py.datastore.ownership import BlockOwnership
from tests.datastore.harness import Harness, collecting

POOL = IPv4Network("10.77.0.0/24")
CIDR = IPv4Network("10.77.0.64/26")


def node(name: str, ip: str = "10.9.0.2") -> NodeRecord:
    return NodeRecord(name, ip, 64512, "66:00:00:00:00:01")


def test_create_refuses_a_key_that_exists(harness: Harness) -> None:
    b = harness.backend
    made = b.create(Key(NODE, "n1"), node("n1"))
    with pytest.raises(AlreadyExists):
        b.create(Key(NODE, "n1"), node("n1", "10.9.0.3"))
    got = b.get(Key(NODE, "n1"))
    assert got.value == node("n1") and got.revision == made.revision


def test_update_is_compare_and_swap_on_the_revision_read(harness: Harness) -> None:
    b = harness.backend
    first = b.create(Key(NODE, "n1"), node("n1"))
    second = b.update(KVPair(first.key, node("n1", "10.9.0.3"), first.revision))
    assert second.revision != first.revision
    with pytest.raises(Conflict):
        b.update(KVPair(first.key, node("n1", "10.9.0.4"), first.revision))
    assert b.get(first.key).value == node("n1", "10.9.0.3")
    with pytest.raises(NotFound):
        b.update(KVPair(Key(NODE, "n2"), node("n2"), first.revision))


def test_delete_with_a_stale_revision_is_refused(harness: Harness) -> None:
    b = harness.backend
    first = b.create(Key(NODE, "n1"), node("n1"))
    current = b.update(KVPair(first.key, node("n1", "10.9.0.3"), first.revision))
    with pytest.raises(Conflict):
        b.delete(first.key, first.revision)
    b.delete(first.key, current.revision)
    with pytest.raises(NotFound):
        b.get(first.key)
    with pytest.raises(NotFound):
        b.delete(first.key, None)


def test_list_then_watch_sees_every_later_change_once(harness: Harness) -> None:
    b = harness.backend
    b.create(Key(NODE, "before"), node("before"))
    listing = b.list(NODE)
    assert [kv.value for kv in listing.items] == [node("before")]
    with collecting(b.watch(NODE, listing.revision)) as seen:
        made = b.create(Key(NODE, "n1"), node("n1"))
        changed = b.update(KVPair(made.key, node("n1", "10.9.0.3"), made.revision))
        b.delete(made.key, changed.revision)
        b.create(Key(BLOCK, "10-77-0-0-26"), Block.empty(IPv4Network("10.77.0.0/26"), "n1"))
        events = seen.wait_for(3)
    assert [(e.key, e.value) for e in events] == [
        (Key(NODE, "n1"), node("n1")), (Key(NODE, "n1"), node("n1", "10.9.0.3")),
        (Key(NODE, "n1"), None)]
    assert events[1].revision == changed.revision


def test_a_watch_from_a_compacted_revision_asks_for_a_resync(harness: Harness) -> None:
    b = harness.backend
    old = b.list(NODE).revision
    for index in range(3):
        b.create(Key(NODE, f"n{index}"), node(f"n{index}"))
    gone = harness.compact(old)
    with collecting(b.watch(NODE, gone)) as seen:
        seen.done.wait(10)
    assert isinstance(seen.ended, ResyncNeeded), seen.ended


def test_affinities_list_by_node(harness: Harness) -> None:
    b = harness.backend
    for name, cidr in (("a", CIDR), ("a-b", IPv4Network("10.77.0.0/26"))):
        b.create(Affinity(name, cidr).key, Affinity(name, cidr))
    assert [kv.value for kv in b.list(AFFINITY, node="a").items] == [Affinity("a", CIDR)]


def test_blocks_keep_their_allocations(harness: Harness) -> None:
    b = harness.backend
    block = Block.empty(CIDR, "n1")
    made = b.create(block.key, block)
    mirrored = replace(block, allocations=(0, *block.allocations[1:]), unallocated=block.unallocated[1:],
                       attributes=({"handle_id": "k8s-pod-network.c1",
                                    "secondary": {"namespace": "ns", "pod": "web", "node": "n1"}},))
    b.update(KVPair(made.key, mirrored, made.revision))
    got = b.get(block.key).value
    assert isinstance(got, Block) and got == mirrored
    assert got.addresses() == {"10.77.0.64": mirrored.attributes[0]}


def test_liveness_lapses_without_renewal(harness: Harness) -> None:
    b = harness.backend
    lease = b.liveness("n1", 2)
    lease.renew()

    def alive() -> set[str]:
        return {kv.value.node for kv in b.list(LIVENESS).items if kv.value.alive()}  # type: ignore[union-attr]

    assert alive() == {"n1"}
    harness.let_pass(1.0)
    lease.renew()
    harness.let_pass(1.2)
    assert alive() == {"n1"}, "a renewal must extend the node's life"
    harness.let_pass(3.5)
    assert alive() == set()
    lease.renew()
    assert alive() == {"n1"}, "a node renewing after a lapse is alive again"
    lease.release()
    assert alive() == set()


def test_racing_creates_have_one_winner(harness: Harness) -> None:
    clients = [harness.another() for _ in range(6)]
    won: list[int] = []
    start = threading.Barrier(len(clients))

    def race(index: int) -> None:
        start.wait()
        try:
            clients[index].create(Key(NODE, "contested"), node(f"n{index}"))
            won.append(index)
        except AlreadyExists:
            pass

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1


def test_six_nodes_racing_for_blocks_get_distinct_ones(harness: Harness) -> None:
    names = [f"node{i}" for i in range(6)]
    claimed: dict[str, list[IPv4Network]] = {n: [] for n in names}
    start = threading.Barrier(len(names))

    def claim(name: str) -> None:
        ownership = BlockOwnership(harness.another())
        start.wait()
        for _ in range(3):
            claimed[name].append(ownership.claim(name, POOL, 29))

    threads = [threading.Thread(target=claim, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [c for cs in claimed.values() for c in cs]
    assert len(everything) == 18 and len(set(everything)) == 18
    affinities = [kv.value for kv in harness.backend.list(AFFINITY).items]
    assert sorted((a.cidr, a.node) for a in affinities if isinstance(a, Affinity)
                  and a.state == "confirmed") == sorted((c, n) for n, cs in claimed.items() for c in cs)
    assert all(isinstance(a, Affinity) and a.state == "confirmed" for a in affinities)
    ownership = BlockOwnership(harness.backend)
    assert all(ownership.owned(n, POOL) == sorted(cs) for n, cs in claimed.items())


def test_release_gives_the_block_back_and_refuses_another_nodes(harness: Harness) -> None:
    ownership = BlockOwnership(harness.backend)
    cidr = ownership.claim("n1", POOL, 26)
    assert not ownership.release("n2", cidr)
    assert ownership.owned("n1", POOL) == [cidr]
    assert ownership.release("n1", cidr)
    assert ownership.owned("n1", POOL) == [] and ownership.blocks() == {}
    assert harness.backend.list(AFFINITY).items == []


def test_recover_finishes_what_a_kill_cut_short(harness: Harness) -> None:
    b = harness.backend
    cut = {name: IPv4Network(f"10.77.0.{i * 64}/26") for i, name in
           enumerate(["pending alone", "pending with block", "being released", "legacy"])}
    # A kill after step 1 of a claim; after step 2; in the middle of a release;
    # and a block from before affinities existed.
    b.create(Affinity("n1", cut["pending alone"]).key, Affinity("n1", cut["pending alone"]))
    b.create(Affinity("n1", cut["pending with block"]).key, Affinity("n1", cut["pending with block"]))
    b.create(Key(BLOCK, "10-77-0-64-26"), Block.empty(cut["pending with block"], "n1"))
    doomed = Affinity("n1", cut["being released"], "pendingDeletion")
    b.create(doomed.key, doomed)
    b.create(Key(BLOCK, "10-77-0-128-26"), Block.empty(cut["being released"], "n1"))
    b.create(Key(BLOCK, "10-77-0-192-26"), Block(cut["legacy"], "host:n1"))
    ownership = BlockOwnership(b)
    assert len(ownership.recover("n1")) == 4
    assert ownership.owned("n1", POOL) == [cut["pending with block"], cut["legacy"]]
    states = sorted((kv.value.cidr, kv.value.state) for kv in b.list(AFFINITY).items)  # type: ignore[union-attr]
    assert states == [(cut["pending with block"], "confirmed"), (cut["legacy"], "confirmed")]
    assert ownership.recover("n1") == []


def test_pools_and_handles_keep_their_shapes(harness: Harness) -> None:
    b = harness.backend
    pool = Pool("default-ipv4-ippool", POOL, 26, vxlan_mode="Always")
    b.create(pool.key, pool)
    assert b.get(pool.key).value == pool
    mine = Handle("k8s-pod-network.C1_x", (("10.77.0.64/26", 1),), "a")
    theirs = Handle("k8s-pod-network.c2", (("10.77.0.0/26", 1),), "a-b")
    for handle in (mine, theirs):
        b.create(handle.key, handle)
    assert mine.key.name == "k8s-pod-network.c1-x"
    assert [kv.value for kv in b.list(HANDLE, node="a").items] == [mine]
