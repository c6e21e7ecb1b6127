"""The node daemon's repairs without a kernel: which notifications wake it, what BIRD exports,
what differs from the kernel, and how explain words a repair."""

from __future__ import annotations

import socket
from ipaddress import IPv4Network
from typing import Any

import pytest

from cni_calico_py.cluster.bird import parse_exports
from cni_calico_py.cluster.kernel_events import Relevance
from cni_calico_py.cluster.repair import RouteShape, bird_drift
from cni_calico_py.core.pyroute2_loader import load_pyroute2
from cni_calico_py.core.repairs import Repair
from cni_calico_py.explain.repaired import note

load_pyroute2()

from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg  # noqa: E402
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg  # noqa: E402
from pyroute2.netlink.rtnl.ndmsg import ndmsg  # noqa: E402
from pyroute2.netlink.rtnl.rtmsg import rtmsg  # noqa: E402

POOL = IPv4Network("192.168.0.0/16")
AF_BRIDGE = 7


def encoded(msg: Any, kind: int, fields: dict[str, Any], attrs: list[tuple[str, Any]]) -> bytes:
    for key, value in fields.items():
        msg[key] = value
    msg["attrs"] = attrs
    msg["header"]["type"] = kind
    msg.encode()
    return bytes(msg.data)


def route(kind: int, dst: str, length: int, proto: int, table: int = 254) -> bytes:
    return encoded(rtmsg(), kind, {"family": socket.AF_INET, "dst_len": length, "table": table,
                                   "proto": proto, "type": 1},
                   [("RTA_TABLE", table), ("RTA_DST", dst)])


def link(kind: int, index: int, name: str) -> bytes:
    return encoded(ifinfmsg(), kind, {"index": index}, [("IFLA_IFNAME", name)])


def neigh(kind: int, index: int, family: int = socket.AF_INET) -> bytes:
    return encoded(ndmsg(), kind, {"family": family, "ifindex": index, "state": 0x80},
                   [("NDA_DST", "192.168.0.64")])


def address(kind: int, index: int, label: str) -> bytes:
    return encoded(ifaddrmsg(), kind, {"family": socket.AF_INET, "prefixlen": 32, "index": index},
                   [("IFA_ADDRESS", "192.168.0.0"), ("IFA_LABEL", label)])


@pytest.mark.parametrize(("data", "expected"), [
    (route(25, "192.168.0.64", 26, 98), "route 192.168.0.64/26"),
    (route(25, "192.168.0.64", 26, 12), "route 192.168.0.64/26"),
    (route(24, "192.168.0.64", 26, 98), None),  # new routes never wake it: no repair loops
    (route(25, "192.168.0.5", 32, 3), None),  # a pod's route: the agent's
    (route(25, "10.0.0.0", 8, 98), None),  # outside the pool
    (route(25, "192.168.0.64", 26, 98, table=100), None),
    (link(16, 7, "vxlan.calico"), "link vxlan.calico"),
    (link(17, 9, "tunl0"), "link tunl0"),
    (link(16, 3, "eth0"), None),
    (address(21, 7, "vxlan.calico"), "address of vxlan.calico"),
    (address(21, 3, "eth0"), None),
])
def test_which_notifications_wake_the_daemon(data: bytes, expected: str | None) -> None:
    assert Relevance(POOL)(data) == expected


def test_neighbour_and_fdb_deletions_on_the_vxlan_device_only() -> None:
    relevance = Relevance(POOL)
    assert relevance(neigh(29, 7)) is None  # the device is not known yet
    assert relevance(link(16, 7, "vxlan.calico")) == "link vxlan.calico"
    assert relevance(neigh(29, 7)) == "neighbour on vxlan.calico"
    assert relevance(neigh(29, 7, AF_BRIDGE)) == "neighbour on vxlan.calico"
    assert relevance(neigh(28, 7)) is None
    assert relevance(neigh(29, 3)) is None
    # Several messages in one datagram: any of them counts.
    assert relevance(route(24, "192.168.0.0", 26, 98) + neigh(29, 7)) == "neighbour on vxlan.calico"
    relevance(link(17, 7, "vxlan.calico"))
    assert relevance(neigh(29, 7)) is None


EXPORTS = """\
BIRD 2.0.12 ready.
Table master4:
192.168.0.128/26     unicast [peer_10_99_0_13 12:00:01.000] * (100) [i]
\tvia 10.99.0.13 on eth0
192.168.1.0/26       unicast [peer_10_99_0_12 12:00:01.000] * (100) [i]
\tvia 10.99.0.12 on tunl0 onlink
\tvia 10.99.0.14 on tunl0 onlink
                     unicast [peer_10_99_0_15 12:00:01.000] (100) [i]
\tvia 10.99.0.15 on eth0
192.168.0.64/26      blackhole [calico_py_blocks 12:00:00.000] * (200)
"""


def test_bird_exports_parsed() -> None:
    assert parse_exports(EXPORTS) == {
        IPv4Network("192.168.0.128/26"): RouteShape("unicast", ("10.99.0.13",)),
        IPv4Network("192.168.1.0/26"): RouteShape("unicast", ("10.99.0.12", "10.99.0.14")),
        IPv4Network("192.168.0.64/26"): RouteShape("blackhole"),
    }
    assert parse_exports("BIRD 2.0.12 ready.\n") == {}


def test_bird_drift_names_what_the_kernel_lacks_or_holds_otherwise() -> None:
    exported = parse_exports(EXPORTS) | {IPv4Network("10.1.0.0/16"): RouteShape("unicast", ("10.99.0.1",))}
    kernel = {IPv4Network("192.168.0.128/26"): RouteShape("unicast", ("10.99.0.13",)),
              IPv4Network("192.168.1.0/26"): RouteShape("unicast", ("10.99.0.12",))}
    fixes = bird_drift(exported, kernel, POOL, "kernel1")
    assert [(f.what, f.key) for f in fixes] == [("blackhole", "192.168.0.64/26"),
                                              ("route", "192.168.1.0/26")]
    assert fixes[0].found == "blackhole 192.168.0.64/26 proto bird missing from the kernel"
    assert fixes[1].found == ("192.168.1.0/26 via 10.99.0.12 proto bird in the kernel, BIRD has "
                              "192.168.1.0/26 via 10.99.0.12 via 10.99.0.14")
    assert "birdc reload out kernel1" in fixes[0].done
    assert bird_drift(exported, {**kernel, **{k: v for k, v in exported.items()}}, POOL, "kernel1") == []


def test_explain_note_names_the_latest_repair_of_the_key_for_five_minutes() -> None:
    repairs = [Repair(100.0, "node", "route", "192.168.0.64/26", "old", "old fix"),
               Repair(200.0, "node", "route", "192.168.0.64/26", "no route for 192.168.0.64/26",
                      "put back 192.168.0.64/26 via 192.168.0.64 dev vxlan.calico onlink proto 98"),
               Repair(201.0, "node", "fdb", "vxlan.calico", "no FDB entry", "put back")]
    assert note("192.168.0.64/26", repairs, 203.4) == (
        " (repaired 3 s ago: no route for 192.168.0.64/26; put back 192.168.0.64/26 via "
        "192.168.0.64 dev vxlan.calico onlink proto 98)")
    assert note("vxlan.calico", repairs, 201.0) == " (repaired 0 s ago: no FDB entry; put back)"
    assert note("192.168.0.128/26", repairs, 203.0) == ""
    assert note("192.168.0.64/26", repairs, 200.0 + 301) == ""
