"""`calico-py ipam show`: in-process and through the real executable."""

import io
import json
import os
import subprocess
import time
from ipaddress import ip_address as ip

import pytest

from ipam import config, pool
from ipam.disk_store import DiskStore
from ipam.show import show
from ipam.store import Reservation
from tests.ipam.helpers import SUBNET
from tests.ipam.test_pool import FakeBlackholes


def conflist(tmp_path, **ipam):
    section = {"type": "calico-py-ipam", "subnet": SUBNET, "dataDir": str(tmp_path / "data"),
               **ipam}
    return {"cniVersion": "1.1.0", "name": "k8s-pod-network",
            "plugins": [{"type": "calico-py", "mtu": 1450, "ipam": section},
                        {"type": "portmap", "capabilities": {"portMappings": True}}]}


def write_conf(tmp_path, data, name="10-calico-py.conflist"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


@pytest.fixture
def populated(tmp_path):
    """Three reservations: a live netns, a vanished one, and an unreadable record."""
    data = conflist(tmp_path)
    conf = config.parse({**data["plugins"][0], "name": data["name"]})
    store = DiskStore(conf.store_dir, 5)
    live = tmp_path / "live-netns"
    live.write_text("")
    pool.add(store, conf, pool.Attachment("alive", "eth0"), str(live), [], FakeBlackholes(),
             pod="shop/web-0")
    pool.add(store, conf, pool.Attachment("gone", "eth0"), str(tmp_path / "no-such-netns"), [],
             FakeBlackholes())
    with store.locked():
        store.reserve(ip("192.168.97.10"),
                      Reservation("old", "eth0", str(live), time.time() - 3 * 3600))
        store.reserve(ip("192.168.98.1"), Reservation("moved", "eth0", str(live), time.time()))
    with open(os.path.join(conf.store_dir, "192.168.97.20"), "w") as file:
        file.write("garbage")
    return write_conf(tmp_path, data)


def test_table(populated):
    out = io.StringIO()
    assert show(populated, False, out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("network k8s-pod-network, store ")
    assert lines[1] == f"block {SUBNET}: 4 of 64 addresses in use"
    assert lines[2].split() == ["ADDRESS", "POD", "CONTAINER", "IFNAME", "NETNS", "AGE", "NOTE"]
    rows = {line.split()[0]: line for line in lines[3:]}
    assert list(rows) == ["192.168.97.0", "192.168.97.1", "192.168.97.10", "192.168.97.20",
                          "192.168.98.1"]
    assert rows["192.168.97.0"].split()[1:3] == ["shop/web-0", "alive"]
    assert rows["192.168.97.0"].split()[-1] in ("0s", "1s")
    assert rows["192.168.97.1"].split()[1] == "-"
    assert rows["192.168.97.1"].endswith("netns gone")
    assert rows["192.168.97.10"].split()[5] == "3h"
    assert "unreadable" in rows["192.168.97.20"]
    assert rows["192.168.98.1"].endswith("outside the configured ranges")


def test_json(populated):
    out = io.StringIO()
    assert show(populated, True, out) == 0
    data = json.loads(out.getvalue())
    assert data["network"] == "k8s-pod-network"
    assert data["blocks"] == [{"block": SUBNET, "rangeSet": 0, "used": 4, "size": 64}]
    by_address = {r["address"]: r for r in data["reservations"]}
    alive = by_address["192.168.97.0"]
    assert (alive["containerID"], alive["ifname"], alive["netnsExists"], alive["notes"]) == (
        "alive", "eth0", True, [])
    assert (alive["pod"], by_address["192.168.97.1"]["pod"]) == ("shop/web-0", None)
    assert alive["ageSeconds"] >= 0
    assert by_address["192.168.97.1"]["netnsExists"] is False
    assert by_address["192.168.97.1"]["notes"] == ["netns gone"]
    assert by_address["192.168.97.20"]["notes"][0].startswith("unreadable")


def test_single_conf_and_empty_store(tmp_path):
    data = {"cniVersion": "1.0.0", "name": "ptpnet", "type": "ptp",
            "ipam": {"type": "calico-py-ipam", "subnet": SUBNET, "dataDir": str(tmp_path)}}
    out = io.StringIO()
    assert show(write_conf(tmp_path, data, "ptp.conf"), False, out) == 0
    assert out.getvalue().splitlines()[1:] == [f"block {SUBNET}: 0 of 64 addresses in use",
                                               "no reservations"]


@pytest.mark.parametrize(("content", "words"), [
    (None, "cannot read"),
    ("{nope", "is not valid JSON"),
    ("[]", "must hold a JSON object"),
    (json.dumps({"name": "n", "plugins": {}}), "plugins must be a list"),
    (json.dumps({"name": "n", "plugins": [{"type": "bridge", "ipam": {"type": "host-local"}}]}),
     "no plugin there uses ipam type 'calico-py-ipam'"),
    (json.dumps({"name": "n", "plugins": [{"type": "calico-py", "ipam": {
        "type": "calico-py-ipam", "subnet": "192.168.97.1/26"}}]}), "ipam.subnet"),
])
def test_errors_are_clear_and_exit_1(tmp_path, capsys, content, words):
    path = tmp_path / "x.conflist"
    if content is not None:
        path.write_text(content)
    out = io.StringIO()
    assert show(str(path), False, out) == 1
    assert out.getvalue() == ""
    err = capsys.readouterr().err
    assert err.startswith("calico-py ipam show: ") and words in err


def test_the_command_line(populated, bin_dir):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    proc = subprocess.run([str(bin_dir / "calico-py"), "ipam", "show", "--conf", populated,
                           "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["reservations"]) == 5
    proc = subprocess.run([str(bin_dir / "calico-py"), "ipam", "show", "--conf",
                           populated + ".missing"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1 and "cannot read" in proc.stderr and proc.stdout == ""
