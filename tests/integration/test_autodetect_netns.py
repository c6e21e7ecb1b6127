"""Node IP autodetection against a real kernel: a node namespace with a docker bridge,
a storage NIC first (eth0) and the cluster NIC second (eth1, with the default route).

Detection runs in a subprocess inside the node namespace; nothing is sent from the
root namespace, and a route get only asks the kernel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.netns import add_netns, del_netns, ip_json, sh, unique_name

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
PROBE = """
import sys
from cni_calico_py.cluster.autodetect import NodeIPError, detect
try:
    print(detect(sys.argv[1], sys.argv[2] or None))
except NodeIPError as err:
    print(err)
    sys.exit(3)
"""


@dataclass
class Detected:
    code: int
    out: str
    err: str


@pytest.fixture(scope="module")
def node() -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.fail("this test needs root and iproute2 to create network namespaces")
    node, storage, gateway = unique_name("ad"), unique_name("sto"), unique_name("gw")
    made: list[str] = []
    try:
        for name in (node, storage, gateway):
            add_netns(name)
            made.append(name)
            # No IPv6 chatter (DAD, router solicitations): the NICs must stay silent.
            sh("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", netns=name)
            sh("sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1", netns=name)
        sh("ip", "link", "add", "docker0", "type", "bridge", netns=node)
        sh("ip", "addr", "add", "172.17.0.1/16", "dev", "docker0", netns=node)
        sh("ip", "link", "set", "docker0", "up", netns=node)
        for nic, peer_ns, local, remote in (
            ("eth0", storage, "192.168.50.2/24", "192.168.50.1/24"),
            ("eth1", gateway, "10.77.0.11/24", "10.77.0.1/24"),
        ):
            sh("ip", "link", "add", nic, "type", "veth", "peer", "name", "peer", "netns", peer_ns,
               netns=node)
            sh("ip", "addr", "add", local, "dev", nic, netns=node)
            sh("ip", "link", "set", nic, "up", netns=node)
            sh("ip", "addr", "add", remote, "dev", "peer", netns=peer_ns)
            sh("ip", "link", "set", "peer", "up", netns=peer_ns)
        sh("ip", "route", "add", "default", "via", "10.77.0.1", netns=node)
        yield node
    finally:
        for name in made:
            del_netns(name)


def detect_in(netns: str, method: str, explicit: str = "") -> Detected:
    proc = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", PROBE, method, explicit],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )
    return Detected(proc.returncode, proc.stdout.strip(), proc.stderr)


def tx_packets(netns: str, ifname: str) -> int:
    return int(ip_json(netns, "-s", "link", "show", ifname)[0]["stats64"]["tx"]["packets"])


def test_links_are_in_the_expected_order(node):
    names = [link["ifname"] for link in ip_json(node, "link", "show")]
    assert names == ["lo", "docker0", "eth0", "eth1"]


@pytest.mark.parametrize(
    ("method", "explicit", "expected"),
    [
        # The storage NIC comes first: the wrong address, the case Calico's docs warn about.
        ("first-found", "", "192.168.50.2/24"),
        ("can-reach=10.77.0.1", "", "10.77.0.11/24"),
        ("can-reach=8.8.8.8", "", "10.77.0.11/24"),  # through the default route
        ("can-reach=192.168.50.1", "", "192.168.50.2/24"),
        ("interface=eth1", "", "10.77.0.11/24"),
        ("interface=ens.*,eth1", "", "10.77.0.11/24"),
        ("interface=docker0", "", "172.17.0.1/16"),
        ("cidr=10.77.0.0/16", "", "10.77.0.11/24"),
        ("cidr=10.0.0.0/8,192.168.0.0/16", "", "192.168.50.2/24"),
        # An explicit IP wins, even over a method that would fail.
        ("interface=eth9", "10.77.0.11", "10.77.0.11/24"),
        ("first-found", "10.77.0.11/16", "10.77.0.11/16"),
        ("first-found", "10.123.0.7", "10.123.0.7/32"),
        ("first-found", "autodetect", "192.168.50.2/24"),
    ],
)
def test_detects(node, method, explicit, expected):
    found = detect_in(node, method, explicit)
    assert (found.code, found.out) == (0, expected), found.err


@pytest.mark.parametrize(
    ("method", "explicit", "message"),
    [
        ("interface=eth9", "",
         'ip_autodetection "interface=eth9": no interface matches; interfaces: lo, docker0, eth0, eth1'),
        ("cidr=10.0.0.0/24", "",
         'ip_autodetection "cidr=10.0.0.0/24": no address inside; addresses: 127.0.0.1/8 on lo, '
         "172.17.0.1/16 on docker0, 192.168.50.2/24 on eth0, 10.77.0.11/24 on eth1"),
        ("interface=(", "", 'ip_autodetection "interface=(": bad regex'),
        ("cidr=10.0.0.0/99", "", 'ip_autodetection "cidr=10.0.0.0/99": bad IPv4 CIDR'),
        ("foo", "", 'ip_autodetection "foo": unknown method; use first-found, can-reach=<ip>, '
                    "interface=<regex>, skip-interface=<regex> or cidr=<cidr>"),
        ("first-found", "10.0.0.300", 'IP "10.0.0.300": not an IPv4 address or address/prefix'),
    ],
)
def test_errors(node, method, explicit, message):
    found = detect_in(node, method, explicit)
    assert found.code == 3, found.err
    assert found.out.startswith(message)


def test_can_reach_without_a_route(node):
    sh("ip", "route", "del", "default", netns=node)
    try:
        found = detect_in(node, "can-reach=203.0.113.5")
    finally:
        sh("ip", "route", "add", "default", "via", "10.77.0.1", netns=node)
    assert found.code == 3, found.err
    assert found.out.startswith('ip_autodetection "can-reach=203.0.113.5": no route to 203.0.113.5')


def test_route_get_sends_nothing(node):
    before = {nic: tx_packets(node, nic) for nic in ("eth0", "eth1")}
    assert detect_in(node, "can-reach=8.8.8.8").out == "10.77.0.11/24"
    assert {nic: tx_packets(node, nic) for nic in ("eth0", "eth1")} == before
