"""The pure choice of the node IP among link records, for each method and each error."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface

import pytest

from cni_calico_py.cluster.autodetect import Address, Link, NodeIPError, choose, choose_explicit


def addr(text: str, scope: int = 0) -> Address:
    return Address(IPv4Interface(text), scope)


# A node like the netns test's: loopback, a docker bridge, the storage NIC first, the right NIC second.
NODE = [
    Link("lo", None, True, (addr("127.0.0.1/8", 254),), 1),
    Link("docker0", "bridge", True, (addr("172.17.0.1/16"),), 2),
    Link("eth0", "veth", True, (addr("192.168.50.2/24"),), 3),
    Link("eth1", "veth", True, (addr("10.77.0.11/24"), addr("10.77.0.99/24")), 4),
    Link("cali1234", "veth", True, (addr("10.244.0.1/32"),), 5),
    Link("eth2", None, False, (addr("10.88.0.5/24"),), 6),
    Link("br0", "bridge", True, (addr("10.99.0.1/24"),), 7),
    Link("ens5", None, True, (addr("169.254.10.1/16", 253),), 8),
]

ROUTES = {
    IPv4Address("10.77.0.1"): IPv4Address("10.77.0.11"),
    IPv4Address("8.8.8.8"): IPv4Address("10.77.0.11"),
    IPv4Address("192.168.50.9"): IPv4Address("192.168.50.2"),
    IPv4Address("10.5.5.5"): IPv4Address("10.5.5.1"),  # a source no interface holds
}


def route_get(dst: IPv4Address) -> IPv4Address:
    if dst not in ROUTES:
        raise LookupError(f"no route to {dst}")
    return ROUTES[dst]


@pytest.mark.parametrize(
    ("links", "method", "expected"),
    [
        (NODE, "first-found", "192.168.50.2/24"),
        (NODE, "  first-found ", "192.168.50.2/24"),
        (NODE[:2] + NODE[3:], "first-found", "10.77.0.11/24"),
        # Excluded names and bridges are skipped even when they come first.
        ([Link(n, None, True, (addr("10.1.0.1/24"),)) for n in (
            "docker1", "cbr0", "dummy0", "virbr0", "lxcbr0", "veth9", "lo", "cali0", "tunl0",
            "flannel.1", "kube-ipvs0", "cni0", "vxlan.calico", "wireguard.cali", "br-abc")]
         + [Link("bond0", None, True, (addr("10.2.0.1/24"),))], "first-found", "10.2.0.1/24"),
        # Only the name prefix is excluded: "lo" exactly, not "lozenge".
        ([Link("lozenge", None, True, (addr("10.3.0.1/24"),))], "first-found", "10.3.0.1/24"),
        # A link-scope address is not global; the next interface's is.
        ([NODE[7], NODE[3]], "first-found", "10.77.0.11/24"),
        (NODE, "can-reach=10.77.0.1", "10.77.0.11/24"),
        (NODE, "can-reach=8.8.8.8", "10.77.0.11/24"),
        (NODE, "can-reach=192.168.50.9", "192.168.50.2/24"),
        (NODE, "can-reach=10.5.5.5", "10.5.5.1/32"),
        (NODE, "interface=eth1", "10.77.0.11/24"),
        (NODE, "interface=eth.*", "192.168.50.2/24"),
        (NODE, "interface=ens9,eth1", "10.77.0.11/24"),
        # The first matching interface in ifindex order, not in regex order.
        (NODE, "interface=eth1,eth0", "192.168.50.2/24"),
        # eth2 matches first but is down.
        (NODE, "interface=eth[21]", "10.77.0.11/24"),
        (NODE, "interface=docker0", "172.17.0.1/16"),
        (NODE, "cidr=10.77.0.0/16", "10.77.0.11/24"),
        (NODE, "cidr=10.77.0.64/26", "10.77.0.99/24"),
        (NODE, "cidr=10.77.0.5/16", "10.77.0.11/24"),  # host bits allowed, as net.ParseCIDR does
        (NODE, "cidr=192.168.0.0/16, 10.0.0.0/8", "192.168.50.2/24"),
        (NODE, "cidr=1.0.0.0/8,10.77.0.0/24", "10.77.0.11/24"),
        # first-found among the interfaces the patterns do not name.
        (NODE, "skip-interface=eth0", "10.77.0.11/24"),
        (NODE, "skip-interface=eth0,ens.*", "10.77.0.11/24"),
        (NODE, "skip-interface=eth1", "192.168.50.2/24"),
    ],
)
def test_choice(links, method, expected):
    assert choose(method, links, route_get) == IPv4Interface(expected)


@pytest.mark.parametrize(
    ("links", "method", "message"),
    [
        ([NODE[0], NODE[1], NODE[4], NODE[5]], "first-found",
         'ip_autodetection "first-found": no global IPv4 address on an up, non-excluded interface; '
         "interfaces: lo (excluded, 127.0.0.1/8), docker0 (excluded, bridge, 172.17.0.1/16), "
         "cali1234 (excluded, 10.244.0.1/32), eth2 (down, 10.88.0.5/24)"),
        ([], "first-found", "interfaces: none"),
        (NODE, "can-reach=10.1.2.3", 'ip_autodetection "can-reach=10.1.2.3": no route to 10.1.2.3'),
        (NODE, "can-reach=example.com",
         "ip_autodetection \"can-reach=example.com\": 'example.com' is not an IPv4 address"),
        (NODE, "can-reach=fd00::1", "'fd00::1' is not an IPv4 address"),
        (NODE, "can-reach=", 'ip_autodetection "can-reach=": can-reach needs a value'),
        (NODE[:4], "interface=eth9",
         'ip_autodetection "interface=eth9": no interface matches; interfaces: lo, docker0, eth0, eth1'),
        (NODE, "interface=eth", "no interface matches"),  # a full match, not a prefix
        (NODE, "interface=eth2",
         'ip_autodetection "interface=eth2": no matching interface is up with a global IPv4 address; '
         "matching: eth2 (down, 10.88.0.5/24)"),
        (NODE, "interface=ens5", "matching: ens5 (169.254.10.1/16)"),
        (NODE, "interface=eth(", 'ip_autodetection "interface=eth(": bad regex: missing )'),
        (NODE[:3], "cidr=10.0.0.0/24",
         'ip_autodetection "cidr=10.0.0.0/24": no address inside; addresses: 127.0.0.1/8 on lo, '
         "172.17.0.1/16 on docker0, 192.168.50.2/24 on eth0"),
        (NODE, "cidr=10.88.0.0/16", "10.88.0.5/24 on eth2 (down)"),
        ([], "cidr=10.0.0.0/8", "no address inside; addresses: none"),
        (NODE, "cidr=10.0.0.0/33", 'ip_autodetection "cidr=10.0.0.0/33": bad IPv4 CIDR: '),
        (NODE, "cidr=fd00::/64", "bad IPv4 CIDR"),
        (NODE, "foo",
         'ip_autodetection "foo": unknown method; '
         "use first-found, can-reach=<ip>, interface=<regex>, skip-interface=<regex> or "
         "cidr=<cidr>"),
        (NODE, "skip-interface=eth.*",
         'ip_autodetection "skip-interface=eth.*": no global IPv4 address on an up, '
         "non-excluded interface"),
        (NODE, "skip-interface=", "skip-interface needs a value"),
        (NODE, "", 'ip_autodetection "": unknown method'),
    ],
)
def test_errors(links, method, message):
    with pytest.raises(NodeIPError) as raised:
        choose(method, links, route_get)
    assert message in str(raised.value)


def test_can_reach_without_route_lookup_has_no_route():
    with pytest.raises(NodeIPError, match=r"no route to 10\.77\.0\.1"):
        choose("can-reach=10.77.0.1", NODE)


@pytest.mark.parametrize(
    ("explicit", "expected"),
    [
        ("10.77.0.11", "10.77.0.11/24"),  # prefix from the interface holding it
        ("10.77.0.99", "10.77.0.99/24"),
        ("10.77.0.11/16", "10.77.0.11/16"),  # a given prefix wins
        ("10.9.9.9", "10.9.9.9/32"),  # nobody holds it: still accepted
        (" 192.168.50.2 ", "192.168.50.2/24"),
    ],
)
def test_explicit(explicit, expected):
    assert choose_explicit(explicit, NODE) == IPv4Interface(expected)


@pytest.mark.parametrize("explicit", ["10.0.0.256", "fd00::1", "10.0.0.1/33", "node-1", ""])
def test_bad_explicit(explicit):
    with pytest.raises(NodeIPError) as raised:
        choose_explicit(explicit, NODE)
    assert str(raised.value) == f'IP "{explicit}": not an IPv4 address or address/prefix'
