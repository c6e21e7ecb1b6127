"""The allocation logic over the in-memory store: no disk, no netlink."""

from ipaddress import ip_address as ip
from ipaddress import ip_network

import pytest

from cni_calico_py.core.errors import CNIError, Code
from ipam import config, pool
from ipam.requested import Requested
from ipam.store import Reservation
from tests.ipam.fake_store import MemoryStore

V4 = "192.168.97.0/26"
V6 = "fd00:97::/122"


class FakeBlackholes:
    def __init__(self, fail_on=()):
        self.routes = set()
        self.fail_on = {ip_network(b) for b in fail_on}

    def ensure(self, block):
        if block in self.fail_on:
            raise CNIError(Code.DATAPLANE_FAILURE, f"cannot add blackhole for {block}")
        self.routes.add(block)

    def remove(self, block):
        if block in self.fail_on:
            raise CNIError(Code.DATAPLANE_FAILURE, f"cannot remove blackhole for {block}")
        self.routes.discard(block)

    def present(self, block):
        return block in self.routes


def make_conf(**ipam):
    section = {"type": "calico-py-ipam", **(ipam or {"subnet": V4})}
    return config.parse({"name": "net1", "ipam": section})


@pytest.fixture
def conf():
    return make_conf()


@pytest.fixture
def store():
    return MemoryStore()


@pytest.fixture
def routes():
    return FakeBlackholes()


def who(n, ifname="eth0"):
    return pool.Attachment(f"c{n}", ifname)


def add(store, conf, routes, n, requested=(), ifname="eth0", netns="/ns"):
    chosen = pool.add(store, conf, who(n, ifname), netns, list(requested), routes)
    return [str(a.address) for a in chosen]


def wanted(address, source="CNI_ARGS IP"):
    return Requested(ip(address), source)


def test_first_adds_take_consecutive_addresses_from_the_start(store, conf, routes):
    assert add(store, conf, routes, 1) == ["192.168.97.0"]
    assert add(store, conf, routes, 2) == ["192.168.97.1"]
    record = store.records[ip("192.168.97.0")]
    assert (record.container_id, record.ifname, record.netns) == ("c1", "eth0", "/ns")
    assert record.created > 0
    assert routes.routes == {ip_network(V4)}


def test_released_address_is_not_reused_at_once(store, conf, routes):
    add(store, conf, routes, 1)
    add(store, conf, routes, 2)
    pool.release(store, conf, who(1), routes)
    assert add(store, conf, routes, 3) == ["192.168.97.2"]


def test_result_carries_the_subnet_prefix_and_range(store, conf, routes):
    (chosen,) = pool.add(store, conf, who(1), "/ns", [], routes)
    assert chosen.range.subnet == ip_network(V4)


def test_every_address_including_network_and_broadcast_then_exhaustion(store, conf, routes):
    got = [add(store, conf, routes, n)[0] for n in range(64)]
    assert sorted(got, key=ip) == [str(a) for a in ip_network(V4)]
    with pytest.raises(CNIError) as caught:
        add(store, conf, routes, 64)
    err = caught.value
    assert err.code == Code.ADDRESS_EXHAUSTED
    assert "192.168.97.0/26" in err.msg
    assert "64 of 64 addresses in use" in err.msg
    assert "STATUS" in err.msg
    assert len(store.records) == 64


def test_add_again_returns_the_same_address_without_a_new_record(store, conf, routes):
    first = add(store, conf, routes, 1)
    add(store, conf, routes, 2)
    routes.routes.clear()  # someone deleted the blackhole: the retry restores it
    assert add(store, conf, routes, 1) == first
    assert len(store.records) == 2
    assert routes.routes == {ip_network(V4)}


def test_add_says_which_addresses_it_reserved_itself(store, conf, routes):
    (first,) = pool.add(store, conf, who(1), "/ns", [], routes)
    (again,) = pool.add(store, conf, who(1), "/ns", [], routes)
    assert first.fresh and not again.fresh and again.address == first.address


def test_undo_of_a_retry_keeps_what_an_earlier_add_reserved(store, conf, routes):
    (first,) = pool.add(store, conf, who(1), "/ns", [], routes)
    (retry,) = pool.add(store, conf, who(1), "/ns", [], routes)
    fresh = [a.address for a in [retry] if a.fresh]
    assert pool.release(store, conf, who(1), routes, only=fresh) == []
    assert first.address in store.records and routes.routes == {ip_network(V4)}
    assert pool.release(store, conf, who(1), routes, only=[first.address]) == [first.address]
    assert store.records == {} and routes.routes == set()


def test_retried_add_records_the_new_netns(store, conf, routes):
    add(store, conf, routes, 1, netns="/old")
    add(store, conf, routes, 1, netns="/new")
    assert store.records[ip("192.168.97.0")].netns == "/new"


def test_same_container_other_ifname_gets_its_own_address(store, conf, routes):
    assert add(store, conf, routes, 1) != add(store, conf, routes, 1, ifname="net1")


def test_dual_stack_gives_one_address_per_range_set(store, routes):
    conf = make_conf(ranges=[[{"subnet": V4}], [{"subnet": V6}]])
    assert add(store, conf, routes, 1) == ["192.168.97.0", "fd00:97::"]
    assert add(store, conf, routes, 1) == ["192.168.97.0", "fd00:97::"]
    assert routes.routes == {ip_network(V4), ip_network(V6)}
    pool.release(store, conf, who(1), routes)
    assert store.records == {} and routes.routes == set()


def test_existing_address_in_one_set_is_kept_and_the_other_set_filled(store, routes):
    add(store, make_conf(subnet=V4), routes, 1)
    conf = make_conf(ranges=[[{"subnet": V4}], [{"subnet": V6}]])
    assert add(store, conf, routes, 1) == ["192.168.97.0", "fd00:97::"]


def test_failure_in_a_later_range_set_undoes_this_calls_reservations(store, routes):
    conf = make_conf(ranges=[[{"subnet": V4}],
                             [{"subnet": V6, "rangeStart": "fd00:97::1", "rangeEnd": "fd00:97::1"}]])
    add(store, conf, routes, 1)
    with pytest.raises(CNIError) as caught:
        add(store, conf, routes, 2)
    assert caught.value.code == Code.ADDRESS_EXHAUSTED
    assert "1 of 1 addresses in use" in caught.value.msg
    assert sorted(map(str, store.records)) == ["192.168.97.0", "fd00:97::1"]


def test_route_failure_undoes_the_reservation(store, conf):
    routes = FakeBlackholes(fail_on=[V4])
    with pytest.raises(CNIError) as caught:
        add(store, conf, routes, 1)
    assert caught.value.code == Code.DATAPLANE_FAILURE
    assert store.records == {}


def test_gateway_inside_the_range_is_never_handed_out(store, routes):
    conf = make_conf(subnet=V4, gateway="192.168.97.1")
    got = [add(store, conf, routes, n)[0] for n in range(63)]
    assert "192.168.97.1" not in got
    with pytest.raises(CNIError) as caught:
        add(store, conf, routes, 99)
    assert "63 of 63" in caught.value.msg
    with pytest.raises(CNIError) as caught:
        pool.status(store, conf)
    assert caught.value.code == Code.NOT_AVAILABLE


def test_requested_address_is_given_and_does_not_move_round_robin(store, conf, routes):
    assert add(store, conf, routes, 1, [wanted("192.168.97.7")]) == ["192.168.97.7"]
    assert add(store, conf, routes, 2) == ["192.168.97.0"]
    assert store.last == {0: ip("192.168.97.0")}


def test_requested_address_taken_names_the_holder(store, conf, routes):
    add(store, conf, routes, 1, [wanted("192.168.97.7")])
    with pytest.raises(CNIError) as caught:
        add(store, conf, routes, 2, [wanted("192.168.97.7", "runtimeConfig.ips[0]")])
    err = caught.value
    assert err.code == Code.ADDRESS_CONFLICT
    assert "192.168.97.7 (from runtimeConfig.ips[0])" in err.msg
    assert "container c1 ifname eth0" in err.msg


def test_requested_address_held_by_a_damaged_record(store, conf, routes):
    with store.locked():
        store.reserve(ip("192.168.97.7"), Reservation("", "", damaged="garbage"))
    with pytest.raises(CNIError) as caught:
        add(store, conf, routes, 2, [wanted("192.168.97.7")])
    assert caught.value.code == Code.ADDRESS_CONFLICT
    assert "unreadable record (garbage)" in caught.value.msg


def test_requested_address_outside_every_range(store, conf, routes):
    with pytest.raises(CNIError) as caught:
        add(store, conf, routes, 1, [wanted("192.168.98.7", "args.cni.ips[0]")])
    err = caught.value
    assert err.code == Code.INVALID_NETWORK_CONFIG
    assert "192.168.98.7 (from args.cni.ips[0]) is outside every range" in err.msg
    assert V4 in err.msg
    assert store.records == {}


def test_requested_gateway_is_refused(store, routes):
    conf = make_conf(subnet=V4, gateway="192.168.97.1")
    with pytest.raises(CNIError) as caught:
        add(store, conf, routes, 1, [wanted("192.168.97.1")])
    assert caught.value.code == Code.ADDRESS_CONFLICT and "gateway" in caught.value.msg


def test_two_requested_addresses_in_one_range_set(store, conf, routes):
    with pytest.raises(CNIError) as caught:
        add(store, conf, routes, 1, [wanted("192.168.97.7"), wanted("192.168.97.8")])
    assert caught.value.code == Code.INVALID_NETWORK_CONFIG
    assert "one address per range set" in caught.value.msg


def test_requested_address_and_an_existing_reservation(store, conf, routes):
    add(store, conf, routes, 1, [wanted("192.168.97.7")])
    assert add(store, conf, routes, 1, [wanted("192.168.97.7")]) == ["192.168.97.7"]
    with pytest.raises(CNIError) as caught:
        add(store, conf, routes, 1, [wanted("192.168.97.8")])
    assert caught.value.code == Code.ADDRESS_CONFLICT
    assert "already holds 192.168.97.7" in caught.value.msg


def test_release_of_unknown_attachment_succeeds(store, conf, routes):
    assert pool.release(store, conf, who(9), routes) == []


def test_addresses_of_names_only_the_attachments_own(store, conf, routes):
    add(store, conf, routes, 1)
    add(store, conf, routes, 1, ifname="net1")
    add(store, conf, routes, 2)
    assert pool.addresses_of(store, who(1)) == [ip("192.168.97.0")]
    assert pool.addresses_of(store, who(1, "net1")) == [ip("192.168.97.1")]
    assert pool.addresses_of(store, who(9)) == []
    assert not store.holding


def test_blackhole_stays_until_the_last_address_goes(store, conf, routes):
    add(store, conf, routes, 1)
    add(store, conf, routes, 2)
    assert pool.release(store, conf, who(1), routes) == [ip("192.168.97.0")]
    assert routes.routes == {ip_network(V4)}
    pool.release(store, conf, who(2), routes)
    assert routes.routes == set() and store.records == {}


def test_gc_keeps_the_valid_and_releases_the_rest(store, conf, routes):
    for n in range(4):
        add(store, conf, routes, n)
    with store.locked():
        store.reserve(ip("192.168.97.40"), Reservation("", "", damaged="garbage"))
    released = pool.gc(store, conf, {who(1), who(3), pool.Attachment("c0", "other")}, routes)
    assert sorted(map(str, released)) == ["192.168.97.0", "192.168.97.2", "192.168.97.40"]
    assert sorted(r.container_id for r in store.records.values()) == ["c1", "c3"]
    assert routes.routes == {ip_network(V4)}
    pool.gc(store, conf, set(), routes)
    assert store.records == {} and routes.routes == set()


def test_gc_restores_a_missing_blackhole(store, conf, routes):
    add(store, conf, routes, 1)
    routes.routes.clear()
    pool.gc(store, conf, {who(1)}, routes)
    assert routes.routes == {ip_network(V4)}


class FailingStore(MemoryStore):
    def __init__(self, broken):
        super().__init__()
        self.broken = {ip(a) for a in broken}

    def release(self, address):
        if address in self.broken:
            raise PermissionError(1, "Operation not permitted")
        super().release(address)


def test_gc_goes_on_past_failures_and_reports_them_all(conf):
    store = FailingStore(["192.168.97.0", "192.168.97.2"])
    routes = FakeBlackholes()
    for n in range(4):
        add(store, conf, routes, n)
    routes.fail_on = {ip_network(V4)}
    with pytest.raises(CNIError) as caught:
        pool.gc(store, conf, set(), routes)
    err = caught.value
    assert err.code == Code.IPAM_FAILURE  # failures of two kinds
    assert "192.168.97.0: " in err.msg and "192.168.97.2: " in err.msg
    assert "cannot add blackhole" in err.msg
    assert "released 2 stale reservation(s) but 3 step(s) failed" in err.msg
    assert sorted(map(str, store.records)) == ["192.168.97.0", "192.168.97.2"]


def test_gc_failures_of_one_kind_keep_their_code(conf, routes):
    store = FailingStore(["192.168.97.0"])
    add(store, conf, routes, 0)
    with pytest.raises(CNIError) as caught:
        pool.gc(store, conf, set(), routes)
    assert caught.value.code == Code.IO_FAILURE


def test_gc_asks_before_each_release_under_the_lock_and_keeps_what_is_refused(store, conf, routes):
    for n in range(4):
        add(store, conf, routes, n)
    with store.locked():
        store.reserve(ip("192.168.97.40"), Reservation("", "", damaged="garbage"))
    asked = []

    def before_release(address, record):
        asked.append((str(address), record.container_id or record.damaged, store.holding))
        return str(address) not in ("192.168.97.2", "192.168.97.40")

    released = pool.gc(store, conf, {who(1)}, routes, before_release)
    assert asked == [("192.168.97.0", "c0", True), ("192.168.97.2", "c2", True),
                     ("192.168.97.3", "c3", True), ("192.168.97.40", "garbage", True)]
    assert sorted(map(str, released)) == ["192.168.97.0", "192.168.97.3"]
    assert sorted(map(str, store.records)) == ["192.168.97.1", "192.168.97.2", "192.168.97.40"]
    assert routes.routes == {ip_network(V4)}


def test_gc_keeps_a_record_whose_cleanup_failed_and_reports_it(store, conf, routes):
    for n in range(3):
        add(store, conf, routes, n)

    def before_release(address, record):
        if record.container_id == "c1":
            raise CNIError(Code.DATAPLANE_FAILURE, "deleting host interface cali1: Busy")
        return True

    with pytest.raises(CNIError) as caught:
        pool.gc(store, conf, set(), routes, before_release)
    err = caught.value
    assert err.code == Code.DATAPLANE_FAILURE
    assert "released 2 stale reservation(s) but 1 step(s) failed" in err.msg
    assert "192.168.97.1: deleting host interface cali1: Busy" in err.msg
    assert list(map(str, store.records)) == ["192.168.97.1"]
    assert routes.routes == {ip_network(V4)}


def test_gc_of_both_families(store, routes):
    conf = make_conf(ranges=[[{"subnet": V4}], [{"subnet": V6}]])
    add(store, conf, routes, 1)
    add(store, conf, routes, 2)
    released = pool.gc(store, conf, {who(2)}, routes)
    assert list(map(str, released)) == ["192.168.97.0", "fd00:97::"]
    assert sorted(r.container_id for r in store.records.values()) == ["c2", "c2"]


def test_check(store, routes):
    conf = make_conf(ranges=[[{"subnet": V4}], [{"subnet": V6}]])
    add(store, conf, routes, 1)
    pool.check(store, conf, who(1), [ip("192.168.97.0"), ip("10.9.9.9")], routes)
    with pytest.raises(CNIError) as caught:
        pool.check(store, conf, who(2), [], routes)
    err = caught.value
    assert err.code == Code.CHECK_FAILED
    assert "container c2 ifname eth0" in err.msg
    assert f"no address reserved in {V4}" in err.msg and f"no address reserved in {V6}" in err.msg
    with pytest.raises(CNIError, match=r"prevResult address 192\.168\.97\.9 is not reserved"):
        pool.check(store, conf, who(1), [ip("192.168.97.9")], routes)
    routes.routes.discard(ip_network(V6))
    with pytest.raises(CNIError, match=f"blackhole route for block {V6} is missing"):
        pool.check(store, conf, who(1), [], routes)


def test_status(store, conf, routes):
    pool.status(store, conf)
    for n in range(63):
        add(store, conf, routes, n)
    pool.status(store, conf)
    add(store, conf, routes, 63)
    with pytest.raises(CNIError) as caught:
        pool.status(store, conf)
    assert caught.value.code == Code.NOT_AVAILABLE
    assert "64 of 64 addresses in use" in caught.value.msg
    pool.release(store, conf, who(5), routes)
    pool.status(store, conf)
    store.read_only = "disk is read-only"
    with pytest.raises(CNIError) as caught:
        pool.status(store, conf)
    assert caught.value.code == Code.NOT_AVAILABLE and "read-only" in caught.value.msg


def test_status_counts_only_the_range_set(store, routes):
    conf = make_conf(ranges=[[{"subnet": V4, "rangeStart": "192.168.97.0",
                               "rangeEnd": "192.168.97.1"}], [{"subnet": V6}]])
    add(store, conf, routes, 1)
    add(store, conf, routes, 2)
    with pytest.raises(CNIError) as caught:
        pool.status(store, conf)
    assert "(192.168.97.0-192.168.97.1) is full, 2 of 2" in caught.value.msg
    assert V6 not in caught.value.msg


def test_operations_hold_the_lock(conf, routes):
    # MemoryStore asserts that every read and write happens under the lock.
    store = MemoryStore()
    add(store, conf, routes, 1)
    pool.check(store, conf, who(1), [], routes)
    pool.gc(store, conf, {who(1)}, routes)
    pool.release(store, conf, who(1), routes)
    assert not store.holding
