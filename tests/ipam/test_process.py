"""The real calico-py-ipam executable, run in a node netns, one request at a time."""

import fcntl
import json
import os
import subprocess
import time
from contextlib import contextmanager

import pytest

from tests.ipam.helpers import (
    ALL_ADDRESSES,
    SUBNET,
    address_of,
    blackholes,
    netconf,
    records,
    store_dir,
)

pytestmark = pytest.mark.netns


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_add_result_in_each_version_and_retried_add(ipam, tmp_path, version):
    conf = netconf(tmp_path, version, routes=[{"dst": "0.0.0.0/0"}])
    code, out, err = ipam("ADD", conf, "c1")
    assert code == 0, (out, err)
    expected_ip = {"address": "192.168.97.0/26"}
    if version < "1.0.0":
        expected_ip["version"] = "4"
    assert out == {"cniVersion": version, "ips": [expected_ip],
                   "routes": [{"dst": "0.0.0.0/0"}], "dns": {}}
    # A retried ADD gets the same address back and leaves one record.
    code, again, _ = ipam("ADD", conf, "c1")
    assert code == 0 and again == out
    assert list(records(conf)) == ["192.168.97.0"]


def test_record_content_and_gateway_in_the_result(ipam, node, tmp_path):
    conf = netconf(tmp_path, gateway="169.254.1.1")
    code, out, _ = ipam("ADD", conf, "c1")
    assert code == 0
    assert out["ips"] == [{"address": "192.168.97.0/26", "gateway": "169.254.1.1"}]
    record = records(conf)["192.168.97.0"]
    assert record["containerID"] == "c1" and record["ifname"] == "eth0"
    assert record["netns"] == node.path
    assert abs(record["created"] - time.time()) < 60


def test_blackhole_route_follows_the_block(ipam, node, tmp_path):
    conf = netconf(tmp_path)
    assert blackholes(node) == []
    ipam("ADD", conf, "c1")
    ipam("ADD", conf, "c2")
    (route,) = blackholes(node)
    assert route["dst"] == SUBNET and route["protocol"] == "98"
    node.exec("ip", "route", "del", "blackhole", SUBNET)
    assert blackholes(node) == []
    code, _, _ = ipam("ADD", conf, "c1")  # a retried ADD restores it
    assert code == 0 and len(blackholes(node)) == 1
    node.exec("ip", "route", "del", "blackhole", SUBNET)
    ipam("ADD", conf, "c3")  # so does any ADD
    assert len(blackholes(node)) == 1
    ipam("DEL", conf, "c1")
    ipam("DEL", conf, "c2")
    assert len(blackholes(node)) == 1  # c3 still holds an address
    code, out, _ = ipam("DEL", conf, "c3")
    assert code == 0 and out is None
    assert blackholes(node) == []
    assert records(conf) == {}


def test_foreign_route_for_the_block_is_an_error_naming_it(ipam, node, tmp_path):
    node.exec("ip", "route", "add", SUBNET, "dev", "eth0")
    code, out, _ = ipam("ADD", netconf(tmp_path), "c1")
    assert code == 1 and out["code"] == 100
    assert f"already has a route for {SUBNET}" in out["msg"]
    assert records(netconf(tmp_path)) == {}  # the reservation was undone


def test_ipv6_block_gets_its_blackhole_too(ipam, node, tmp_path):
    conf = netconf(tmp_path, ranges=[[{"subnet": "fd00:97::/122"}]])
    code, out, _ = ipam("ADD", conf, "c1")
    assert code == 0
    assert [ip["address"] for ip in out["ips"]] == ["192.168.97.0/26", "fd00:97::/122"]
    v6 = [r for r in node.routes("-6") if r.get("type") == "blackhole"]
    assert [(r["dst"], r["protocol"]) for r in v6] == [("fd00:97::/122", "98")]
    ipam("DEL", conf, "c1")
    assert not [r for r in node.routes("-6") if r.get("type") == "blackhole"]


@pytest.mark.parametrize("how", ["CNI_ARGS", "args", "runtimeConfig"])
def test_specific_address_each_way(ipam, tmp_path, how):
    conf = netconf(tmp_path)
    kwargs = {}
    if how == "CNI_ARGS":
        kwargs["args"] = "IgnoreUnknown=1;IP=192.168.97.7"
    elif how == "args":
        conf["args"] = {"cni": {"ips": ["192.168.97.7"]}}
    else:
        conf["runtimeConfig"] = {"ips": ["192.168.97.7/26"]}
    code, out, err = ipam("ADD", conf, "c1", **kwargs)
    assert code == 0, (out, err)
    assert address_of(out) == "192.168.97.7"
    # Taken: the second container is told who holds it.
    code, out, _ = ipam("ADD", conf, "c2", **kwargs)
    assert code == 1 and out["code"] == 103
    assert "192.168.97.7" in out["msg"] and "container c1 ifname eth0" in out["msg"]


def test_specific_address_outside_the_block(ipam, tmp_path):
    code, out, _ = ipam("ADD", netconf(tmp_path), "c1", args="IP=192.168.98.7")
    assert code == 1 and out["code"] == 7
    assert "192.168.98.7" in out["msg"] and "outside every range" in out["msg"]
    assert SUBNET in out["msg"]


def test_exhaustion_and_status(ipam, tmp_path):
    conf = netconf(tmp_path)
    code, out, _ = ipam("STATUS", conf)
    assert (code, out) == (0, None)
    # Fill the store directly: 63 records, then one real ADD takes the last address.
    directory = store_dir(conf)
    for n, address in enumerate(sorted(ALL_ADDRESSES - {"192.168.97.63"})):
        (directory / address).write_text(json.dumps({"containerID": f"x{n}", "ifname": "eth0"}))
    code, out, _ = ipam("ADD", conf, "last")
    assert code == 0 and address_of(out) == "192.168.97.63"
    code, out, _ = ipam("ADD", conf, "one-too-many")
    assert code == 1 and out["code"] == 102
    assert SUBNET in out["msg"] and "64 of 64 addresses in use" in out["msg"]
    assert "STATUS" in out["msg"]
    code, out, _ = ipam("STATUS", conf)
    assert code == 1 and out["code"] == 50 and "64 of 64" in out["msg"]
    ipam("DEL", conf, "last")
    assert ipam("STATUS", conf)[:2] == (0, None)


def test_status_when_the_store_is_not_writable(ipam, tmp_path):
    (tmp_path / "file").write_text("not a directory")
    code, out, _ = ipam("STATUS", netconf(tmp_path / "file"))
    assert code == 1 and out["code"] == 50 and "not writable" in out["msg"]


def test_del_of_unknown_and_repeated_del(ipam, tmp_path):
    conf = netconf(tmp_path)
    assert ipam("DEL", conf, "never-added")[:2] == (0, None)
    ipam("ADD", conf, "c1")
    assert ipam("DEL", conf, "c1")[:2] == (0, None)
    assert ipam("DEL", conf, "c1")[:2] == (0, None)
    assert ipam("DEL", conf, "c1", netns="")[:2] == (0, None)


def test_check(ipam, tmp_path):
    conf = netconf(tmp_path)
    code, out, _ = ipam("ADD", conf, "c1")
    conf_with_prev = {**conf, "prevResult": out}
    assert ipam("CHECK", conf_with_prev, "c1")[:2] == (0, None)
    code, out, _ = ipam("CHECK", conf, "c2")
    assert code == 1 and out["code"] == 104
    assert "container c2 ifname eth0" in out["msg"] and "no address reserved" in out["msg"]


@pytest.mark.parametrize("key", ["cni.dev/valid-attachments", "cni.dev/attachments"])
def test_gc_releases_all_but_the_listed(ipam, node, tmp_path, key):
    conf = netconf(tmp_path)
    for c in ("c1", "c2", "c3"):
        ipam("ADD", conf, c)
    ipam("ADD", conf, "c1", ifname="net1")
    gc_conf = {**conf, key: [{"containerID": "c2", "ifname": "eth0"},
                             {"containerID": "c1", "ifname": "net1"}]}
    assert ipam("GC", gc_conf)[:2] == (0, None)
    assert sorted((r["containerID"], r["ifname"]) for r in records(conf).values()) == [
        ("c1", "net1"), ("c2", "eth0")]
    assert ipam("GC", {**conf, key: []})[:2] == (0, None)
    assert records(conf) == {} and blackholes(node) == []


def test_gc_without_the_list_is_refused(ipam, tmp_path):
    conf = netconf(tmp_path)
    ipam("ADD", conf, "c1")
    code, out, _ = ipam("GC", conf)
    assert code == 1 and out["code"] == 7 and "cni.dev/valid-attachments" in out["msg"]
    code, out, _ = ipam("GC", {**conf, "cni.dev/valid-attachments": [{"containerID": "c1"}]})
    assert code == 1 and out["code"] == 7 and "cni.dev/valid-attachments[0]" in out["msg"]
    assert len(records(conf)) == 1


@contextmanager
def immutable(path):
    subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_gc_goes_on_past_errors_and_reports_them(ipam, tmp_path):
    conf = netconf(tmp_path)
    for c in ("c1", "c2", "c3", "c4"):
        ipam("ADD", conf, c)
    directory = store_dir(conf)
    with immutable(directory / "192.168.97.0"), immutable(directory / "192.168.97.2"):
        code, out, _ = ipam("GC", {**conf, "cni.dev/valid-attachments": []})
        assert code == 1 and out["code"] == 5
        assert "192.168.97.0: " in out["msg"] and "192.168.97.2: " in out["msg"]
        assert "released 2 stale reservation(s) but 2 step(s) failed" in out["msg"]
        assert sorted(records(conf)) == ["192.168.97.0", "192.168.97.2"]
    assert ipam("GC", {**conf, "cni.dev/valid-attachments": []})[:2] == (0, None)
    assert records(conf) == {}


def test_lock_timeout_is_error_11(ipam, tmp_path):
    conf = netconf(tmp_path, lockTimeoutSeconds=0.5)
    directory = store_dir(conf)
    directory.mkdir(parents=True)
    holder = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        started = time.monotonic()
        code, out, _ = ipam("ADD", conf, "c1")
        assert time.monotonic() - started < 10
    finally:
        os.close(holder)
    assert code == 1 and out["code"] == 11
    assert str(directory / "lock") in out["msg"] and "0.5 s" in out["msg"]
    assert records(conf) == {}
    assert ipam("ADD", conf, "c1")[0] == 0


def test_bad_config_from_the_executable(ipam, tmp_path):
    conf = netconf(tmp_path, ranges=[[{"subnet": SUBNET}]])
    code, out, _ = ipam("ADD", conf, "c1")
    assert code == 1 and out["code"] == 7
    assert out["details"] == "ipam.ranges[0][0]"
    assert "overlaps ipam.subnet" in out["msg"]


def test_log_file(ipam, tmp_path):
    log = tmp_path / "logs" / "ipam.log"
    conf = {**netconf(tmp_path), "log_level": "DEBUG", "log_file_path": str(log)}
    assert ipam("ADD", conf, "c1")[0] == 0
    assert "IPAM ADD container c1 ifname eth0 got 192.168.97.0" in log.read_text()
    code, out, _ = ipam("ADD", {**conf, "log_level": "loud"}, "c1")
    assert code == 1 and out["code"] == 7 and out["details"] == "log_level"
