"""Several stores in one block: the list of stores per block, and the blackhole it keeps.

The stores are real DiskStores in temporary directories and the block lists
real files under real flocks; only the routes are a set standing for the
node's routing table.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable
from functools import partial
from ipaddress import ip_address as ip
from ipaddress import ip_network

import pytest

from cni_calico_py.core import locks
from cni_calico_py.core.results import IPAddress, IPNetwork
from ipam import block_stores, config, pool
from ipam.blackhole import SharedBlackholes
from ipam.disk_store import DiskStore

BLOCK = ip_network("192.168.97.0/26")
OTHER = ip_network("192.168.97.64/26")
SEED = int(os.environ.get("CALICO_PY_ATTACK_SEED", "20261201"))


@pytest.fixture(autouse=True)
def registry(tmp_path, monkeypatch):
    directory = tmp_path / "block-stores"
    monkeypatch.setenv(block_stores.DIRECTORY_ENV, str(directory))
    monkeypatch.setenv("CALICO_PY_VERDICTS", "off")
    return directory


class Node:
    """The node's blackhole routes, shared by every store's SharedBlackholes."""

    def __init__(self, jitter: random.Random | None = None) -> None:
        self.routes: set[IPNetwork] = set()
        self.jitter = jitter

    def pause(self) -> None:
        if self.jitter is not None:
            time.sleep(self.jitter.uniform(0, 0.002))


class Blackholes(SharedBlackholes):
    def __init__(self, node: Node, store_dir: str) -> None:
        super().__init__(store_dir, lock_timeout=10.0)
        self.node = node

    def open(self):
        return None

    def _ensure_route(self, block):
        self.node.pause()
        self.node.routes.add(block)

    def _remove_route(self, block):
        self.node.pause()
        self.node.routes.discard(block)

    def present(self, block):
        return block in self.node.routes


class Store:
    """One network config's store: its config, its disk store, its view of the blackholes."""

    def __init__(self, node: Node, data_dir, name: str = "net", subnet: str = str(BLOCK)) -> None:
        self.conf = config.parse({"name": name, "ipam": {"type": "calico-py-ipam", "subnet": subnet,
                                                         "dataDir": str(data_dir)}})
        self.disk = DiskStore(self.conf.store_dir, 10.0)
        self.routes = Blackholes(node, self.conf.store_dir)

    def add(self, container: str) -> str:
        (got,) = pool.add(self.disk, self.conf, pool.Attachment(container, "eth0"), "/ns", [],
                          self.routes)
        return str(got.address)

    def delete(self, container: str) -> list[IPAddress]:
        return pool.release(self.disk, self.conf, pool.Attachment(container, "eth0"), self.routes)

    def gc(self, keep=()) -> list[IPAddress]:
        return pool.gc(self.disk, self.conf, {pool.Attachment(c, "eth0") for c in keep}, self.routes)

    def holds(self) -> bool:
        return bool(self.disk.reservations())


def listed(registry, block=BLOCK) -> list[str]:
    path = registry / block_stores.file_name(block_stores.netns_id(), block)
    return json.loads(path.read_text())["stores"] if path.exists() else []


@pytest.mark.parametrize("layout", ["two dataDirs", "two names in one dataDir"])
def test_the_blackhole_stays_while_any_store_holds_an_address(tmp_path, registry, layout):
    node = Node()
    if layout == "two dataDirs":
        a, b = Store(node, tmp_path / "default"), Store(node, tmp_path / "other")
    else:
        a, b = Store(node, tmp_path / "data", "net-a"), Store(node, tmp_path / "data", "net-b")
    a.add("a1")
    b.add("b1")
    assert node.routes == {BLOCK}
    assert listed(registry) == [a.routes.store, b.routes.store]
    assert a.delete("a1")
    assert node.routes == {BLOCK}, "store a's DEL removed the blackhole store b still needs"
    assert listed(registry) == [b.routes.store]
    assert b.delete("b1")
    assert node.routes == set()
    assert os.listdir(registry) == [], "the block's list and lock outlived its last store"


def test_a_store_is_listed_once_and_leaves_only_with_its_last_address(tmp_path, registry):
    node = Node()
    a, b = Store(node, tmp_path / "a"), Store(node, tmp_path / "b")
    a.add("a1")
    a.add("a2")
    a.add("a1")  # a retried ADD
    b.add("b1")
    assert listed(registry) == [a.routes.store, b.routes.store]
    a.delete("a1")
    assert listed(registry) == [a.routes.store, b.routes.store]
    b.delete("b1")
    assert listed(registry) == [a.routes.store] and node.routes == {BLOCK}
    a.delete("a2")
    assert node.routes == set() and os.listdir(registry) == []


def test_gc_of_an_empty_store_leaves_the_other_stores_blackhole(tmp_path, registry):
    node = Node()
    a, b = Store(node, tmp_path / "a"), Store(node, tmp_path / "b")
    a.add("a1")
    b.add("b1")
    assert a.gc() == [ip("192.168.97.0")]
    assert node.routes == {BLOCK}
    node.routes.clear()  # someone deleted it: GC of the store that holds an address restores it
    b.gc(keep=["b1"])
    assert node.routes == {BLOCK} and listed(registry) == [b.routes.store]
    b.gc()
    assert node.routes == set() and os.listdir(registry) == []


def test_blocks_are_listed_apart(tmp_path, registry):
    node = Node()
    a = Store(node, tmp_path / "a")
    b = Store(node, tmp_path / "b", subnet=str(OTHER))
    a.add("a1")
    b.add("b1")
    assert node.routes == {BLOCK, OTHER}
    a.delete("a1")
    assert node.routes == {OTHER}
    assert listed(registry, BLOCK) == [] and listed(registry, OTHER) == [b.routes.store]


def test_a_listed_store_that_holds_nothing_is_dropped(tmp_path, registry):
    """A killed DEL, or a store directory removed by hand, keeps the blackhole only until
    the next store leaves the block."""
    node = Node()
    a, b, c = (Store(node, tmp_path / n) for n in "abc")
    for store, container in ((a, "a1"), (b, "b1"), (c, "c1")):
        store.add(container)
    for name in os.listdir(b.conf.store_dir):  # b's record gone without its DEL
        if name[0].isdigit():
            os.unlink(os.path.join(b.conf.store_dir, name))
    (tmp_path / "c" / "net").rename(tmp_path / "c-moved")  # c's whole store gone
    a.delete("a1")
    assert node.routes == set() and os.listdir(registry) == []


def test_a_damaged_record_counts_as_held(tmp_path, registry):
    node = Node()
    a, b = Store(node, tmp_path / "a"), Store(node, tmp_path / "b")
    a.add("a1")
    address = b.add("b1")
    with open(os.path.join(b.conf.store_dir, address), "w") as record:
        record.write("not a record")
    a.delete("a1")
    assert node.routes == {BLOCK}
    # A record of another block in b does not hold this one.
    other = tmp_path / "b" / "net" / "192.168.97.70"
    os.unlink(os.path.join(b.conf.store_dir, address))
    other.write_text("{}")
    assert not block_stores.holds(b.conf.store_dir, BLOCK)
    assert block_stores.holds(b.conf.store_dir, OTHER)


def test_a_damaged_list_is_ignored(tmp_path, registry, caplog):
    node = Node()
    a = Store(node, tmp_path / "a")
    a.add("a1")
    path = registry / block_stores.file_name(block_stores.netns_id(), BLOCK)
    path.write_text("{")
    a.add("a2")
    assert "damaged" in caplog.text and listed(registry) == [a.routes.store]


def test_a_killed_writers_temp_file_goes_with_the_next_write(tmp_path, registry):
    node = Node()
    a, b = Store(node, tmp_path / "a"), Store(node, tmp_path / "b")
    a.add("a1")
    name = block_stores.file_name(block_stores.netns_id(), BLOCK)
    stray = registry / f".tmp-{name}-deadbeef"
    stray.write_text("half")
    b.add("b1")
    assert not stray.exists()


def test_the_list_says_which_namespace(tmp_path, registry):
    """The blackhole is the namespace's route, and tests run many node namespaces at once:
    the list is the namespace's, named by its cookie, which no later namespace gets."""
    netns = block_stores.netns_id()
    assert netns == block_stores.netns_id() > 0
    assert block_stores.file_name(netns, BLOCK) == f"net{netns}-192.168.97.0-26"
    v6 = ip_network("fd00::/122")
    assert block_stores.file_name(netns, v6) == f"net{netns}-fd00::-122"
    assert block_stores.block_of(block_stores.file_name(netns, v6)) == v6
    assert block_stores.block_of(block_stores.file_name(netns, BLOCK) + ".lock") is None
    assert block_stores.block_of(".tmp-net1-192.168.97.0-26-abcd") is None


def test_many_lists_left_by_deleted_namespaces_go_when_a_new_one_starts(tmp_path, registry):
    live = Store(Node(), tmp_path / "live", subnet="10.9.200.0/26")
    live.add("kept")
    gone = [registry / f"net{n}-10.9.{n}.0-26" for n in range(block_stores.MAX_LISTS)]
    for path in gone:
        path.write_text(json.dumps({"stores": [str(tmp_path / "removed-store")]}))
        (registry / (path.name + ".lock")).touch()
    in_use = registry / "net1-10.9.200.0-26"  # another namespace's, whose store holds an address
    in_use.write_text(json.dumps({"stores": [live.routes.store]}))
    (registry / (in_use.name + ".lock")).touch()
    busy = str(gone[0])
    with locks.held(busy + ".lock", 1.0, busy="", where=""):
        Store(Node(), tmp_path / "new").add("c1")
    mine = [block_stores.file_name(block_stores.netns_id(), b)
            for b in (ip_network("10.9.200.0/26"), BLOCK)]
    assert sorted(os.listdir(registry)) == sorted(
        [gone[0].name, gone[0].name + ".lock", in_use.name, in_use.name + ".lock",
         block_stores.SWEPT, *(name + suffix for name in mine for suffix in ("", ".lock"))])


def test_lists_are_swept_at_most_once_in_a_while(tmp_path, registry):
    """Lists whose stores still hold addresses stay; a sweep on every new list would make
    each ADD read them all."""
    held = Store(Node(), tmp_path / "held", subnet="10.9.200.0/26")
    held.add("kept")
    stale = [registry / f"net{n}-10.9.{n}.0-26" for n in range(block_stores.MAX_LISTS)]
    for path in stale:
        path.write_text(json.dumps({"stores": [held.routes.store]}))
    Store(Node(), tmp_path / "first").add("c1")
    swept = (registry / block_stores.SWEPT).stat().st_mtime
    for path in stale:
        path.write_text(json.dumps({"stores": [str(tmp_path / "removed-store")]}))
    Store(Node(), tmp_path / "second", subnet="10.9.201.0/26").add("c2")
    assert (registry / block_stores.SWEPT).stat().st_mtime == swept
    assert all(path.exists() for path in stale)  # not swept again so soon


def test_one_stores_del_racing_anothers_first_add(tmp_path, registry):
    """Store a's DEL of its only address against store b's ADD of its first, started
    together with seeded jitter in the route changes: the blackhole is there iff
    some store holds an address, after every trial."""
    trials = int(os.environ.get("CALICO_PY_RACE_TRIALS", "100")) * 2
    rng = random.Random(f"{SEED}:block-stores")
    node = Node(jitter=rng)
    a, b = Store(node, tmp_path / "a"), Store(node, tmp_path / "b", "other")
    broken = []
    for trial in range(trials):
        a.add(f"a{trial}")
        start = threading.Barrier(2)
        threads = [threading.Thread(target=_together, args=(start, rng.uniform(0, 0.003), job))
                   for job in (partial(a.delete, f"a{trial}"), partial(b.add, f"b{trial}"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        holders = a.holds() or b.holds()
        if (BLOCK in node.routes) != holders:
            broken.append(f"trial {trial}: held {holders}, blackhole {BLOCK in node.routes}")
        b.delete(f"b{trial}")
        if node.routes:
            broken.append(f"trial {trial}: the blackhole outlived both stores' addresses")
            node.routes.clear()
    assert not broken, "\n".join(broken[:10])
    assert os.listdir(registry) == []


def _together(start: threading.Barrier, lag: float, job: Callable[[], object]) -> None:
    start.wait()
    time.sleep(lag)
    job()
