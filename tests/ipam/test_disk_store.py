"""The disk store: record format, atomic writes, stray temp files, bounded lock waits,
and a crash at every write step of ADD and DEL (a forked child kills itself there)."""

import fcntl
import json
import os
import signal
import time
from ipaddress import ip_address as ip
from pathlib import Path

import pytest

from cni_calico_py.core.errors import CNIError, Code
from ipam import config, pool
from ipam.disk_store import DiskStore
from ipam.records import read_record, record_paths
from ipam.store import Reservation
from tests.ipam.test_pool import FakeBlackholes


@pytest.fixture
def store(tmp_path):
    return DiskStore(str(tmp_path / "net1"), lock_timeout=5)


def test_records_round_trip_as_json_files_named_by_address(store):
    with store.locked():
        store.reserve(ip("192.168.97.5"), Reservation("abc", "eth0", "/var/run/netns/p", 1234.5))
        store.reserve(ip("fd00:97::5"), Reservation("abc", "net1", "/var/run/netns/p", 1234.5))
        store.set_last_reserved(0, ip("192.168.97.5"))
        found = store.reservations()
    assert found[ip("192.168.97.5")] == Reservation("abc", "eth0", "/var/run/netns/p", 1234.5)
    assert found[ip("fd00:97::5")].ifname == "net1"
    data = json.loads(Path(store.directory, "192.168.97.5").read_text())
    assert data == {"containerID": "abc", "ifname": "eth0", "netns": "/var/run/netns/p",
                    "created": 1234.5}
    assert Path(store.directory, "last_reserved_ip.0").read_text() == "192.168.97.5"
    assert store.last_reserved(0) == ip("192.168.97.5")
    assert store.last_reserved(1) is None
    assert sorted(os.listdir(store.directory)) == [
        "192.168.97.5", "fd00:97::5", "last_reserved_ip.0", "lock"]


def test_release(store):
    with store.locked():
        store.reserve(ip("192.168.97.5"), Reservation("abc", "eth0"))
        store.release(ip("192.168.97.5"))
        store.release(ip("192.168.97.6"))  # nothing there: fine
        assert store.reservations() == {}


def write(store, name, content):
    os.makedirs(store.directory, exist_ok=True)
    with open(os.path.join(store.directory, name), "wb") as file:
        file.write(content)


def test_host_local_records_are_read(store):
    write(store, "192.168.97.9", b"abc\r\neth0")
    with store.locked():
        record = store.reservations()[ip("192.168.97.9")]
    assert (record.container_id, record.ifname, record.netns, record.damaged) == (
        "abc", "eth0", "", "")
    assert record.created > 0


@pytest.mark.parametrize("content", [
    b"", b"\xff\xfe", b"{\"containerID\": \"abc\"", b"{\"containerID\": \"abc\"}",
    b"{\"containerID\": 5, \"ifname\": \"eth0\"}", b"just one line",
    b"{\"containerID\": \"abc\", \"ifname\": \"eth0\", \"created\": \"yesterday\"}",
])
def test_unreadable_records_are_damaged_and_keep_the_address_taken(store, content):
    write(store, "192.168.97.0", content)
    with store.locked():
        record = store.reservations()[ip("192.168.97.0")]
    assert record.damaged
    assert not record.belongs_to("abc", "eth0")
    conf = config.parse({"name": "net1", "ipam": {"type": "calico-py-ipam",
                                                  "subnet": "192.168.97.0/26",
                                                  "dataDir": os.path.dirname(store.directory)}})
    (chosen,) = pool.add(store, conf, pool.Attachment("c1", "eth0"), "", [], FakeBlackholes())
    assert str(chosen.address) == "192.168.97.1"


def test_stray_temp_files_are_ignored_and_removed_by_the_next_lock_holder(store):
    write(store, ".tmp-192.168.97.3-dead", b"{\"containerID\": \"x\"")  # torn, never renamed
    write(store, "192.168.097.4", b"abc\r\neth0")  # not a canonical address name
    write(store, "notes.txt", b"hello")
    assert list(record_paths(store.directory)) == []
    with store.locked():
        assert store.reservations() == {}
    assert sorted(os.listdir(store.directory)) == ["192.168.097.4", "lock", "notes.txt"]


def test_record_paths_are_in_address_order(store):
    for name in ("192.168.97.10", "192.168.97.9", "fd00::1", "192.168.97.100"):
        write(store, name, b"a\r\nb")
    assert [str(a) for a, _ in record_paths(store.directory)] == [
        "192.168.97.9", "192.168.97.10", "192.168.97.100", "fd00::1"]


def test_read_record_of_a_vanished_file(tmp_path):
    assert read_record(str(tmp_path / "192.168.97.1")) is None


def test_lock_wait_is_bounded_and_says_which_lock(store):
    os.makedirs(store.directory)
    holder = os.open(os.path.join(store.directory, "lock"), os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(holder, fcntl.LOCK_EX)
    short = DiskStore(store.directory, lock_timeout=0.3)
    try:
        started = time.monotonic()
        with pytest.raises(CNIError) as caught, short.locked():
            pass
        waited = time.monotonic() - started
    finally:
        os.close(holder)
    err = caught.value
    assert err.code == Code.TRY_AGAIN_LATER
    assert os.path.join(store.directory, "lock") in err.msg
    assert "0.3 s" in err.msg and "lockTimeoutSeconds" in err.msg
    assert 0.25 < waited < 3
    with short.locked():  # free again once the holder is gone
        pass


def test_lock_is_released_after_an_error_inside(store):
    with pytest.raises(RuntimeError), store.locked():
        raise RuntimeError("boom")
    other = DiskStore(store.directory, lock_timeout=0.2)
    with other.locked():
        pass


def test_unwritable_store(tmp_path, store):
    assert store.unwritable() == ""
    (tmp_path / "file").write_text("x")
    broken = DiskStore(str(tmp_path / "file" / "net1"), lock_timeout=1)
    assert "is not writable" in broken.unwritable()
    with pytest.raises(CNIError) as caught, broken.locked():
        pass
    assert caught.value.code == Code.IO_FAILURE
    assert str(tmp_path / "file" / "net1") in caught.value.msg


# --- a crash at every step -------------------------------------------------------------

STEPS = ("open", "fsync", "replace", "unlink")


def _scenario(data_dir):
    """A runtime's sequence: ADD c3, DEL c1, ADD c4 asking for .40, GC keeping c2-c4."""
    conf = config.parse({"name": "net1", "ipam": {"type": "calico-py-ipam",
                                                  "subnet": "192.168.97.0/26",
                                                  "dataDir": str(data_dir)}})
    store = DiskStore(conf.store_dir, lock_timeout=5)
    routes = FakeBlackholes()
    from ipam.requested import Requested

    pool.add(store, conf, pool.Attachment("c3", "eth0"), "/ns3", [], routes)
    pool.release(store, conf, pool.Attachment("c1", "eth0"), routes)
    pool.add(store, conf, pool.Attachment("c4", "eth0"), "/ns4",
             [Requested(ip("192.168.97.40"), "CNI_ARGS IP")], routes)
    pool.gc(store, conf, {pool.Attachment(c, "eth0") for c in ("c2", "c3", "c4")}, routes)
    return conf, store


def _prepare(data_dir):
    conf = config.parse({"name": "net1", "ipam": {"type": "calico-py-ipam",
                                                  "subnet": "192.168.97.0/26",
                                                  "dataDir": str(data_dir)}})
    store = DiskStore(conf.store_dir, lock_timeout=5)
    for c in ("c1", "c2"):
        pool.add(store, conf, pool.Attachment(c, "eth0"), f"/{c}", [], FakeBlackholes())


def _run_until_step(data_dir, crash_at):
    """Run the scenario in a child that SIGKILLs itself just before its `crash_at`-th step."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            count = [0]
            originals = {name: getattr(os, name) for name in STEPS}

            def hooked(name):
                def call(*args, **kwargs):
                    if name != "open" or args[1] & os.O_CREAT:
                        count[0] += 1
                        if count[0] == crash_at:
                            os.kill(os.getpid(), signal.SIGKILL)
                    return originals[name](*args, **kwargs)
                return call

            for name in STEPS:
                setattr(os, name, hooked(name))
            _scenario(data_dir)
            os._exit(0)
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status)


def test_a_crash_at_any_write_step_leaves_a_consistent_store(tmp_path):
    crash_at = 1
    torn_writes = 0
    while True:
        data_dir = tmp_path / f"crash{crash_at}"
        _prepare(data_dir)
        killed = _run_until_step(data_dir, crash_at)
        directory = data_dir / "net1"
        leftovers = [n for n in os.listdir(directory) if n.startswith(".tmp-")]
        torn_writes += bool(leftovers)
        store = DiskStore(str(directory), lock_timeout=5)
        with store.locked():
            held = store.reservations()
        assert not [n for n in os.listdir(directory) if n.startswith(".tmp-")]
        assert all(not r.damaged for r in held.values()), (crash_at, held)
        owners = [r.container_id for r in held.values()]
        assert len(owners) == len(set(owners)), (crash_at, held)
        assert held[ip("192.168.97.1")].container_id == "c2"  # untouched by the scenario
        # The runtime retries the whole sequence: the end state is exact.
        _, store = _scenario(data_dir)
        with store.locked():
            final = {str(a): r.container_id for a, r in store.reservations().items()}
        assert final == {"192.168.97.1": "c2", "192.168.97.2": "c3", "192.168.97.40": "c4"}, (
            crash_at, leftovers)
        if not killed:
            break
        crash_at += 1
    assert crash_at > 10  # the scenario really has that many write steps
    assert torn_writes > 0  # and some crashes left a temp file behind
