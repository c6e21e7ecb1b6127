"""Fixed values of Calico's pod wiring."""

from __future__ import annotations

import ipaddress

# A fixed host-side MAC avoids races with udev's MAC assignment.
HOST_VETH_MAC = "ee:ee:ee:ee:ee:ee"
# The pod's next hop: answered by proxy ARP on the host veth.
POD_GATEWAY_V4 = ipaddress.IPv4Address("169.254.1.1")
# The host veth's link-local address, derived (EUI-64) from HOST_VETH_MAC.
POD_GATEWAY_V6 = ipaddress.IPv6Address("fe80::ecee:eeff:feee:eeee")
DEFAULT_MTU = 1500
# The host ends of pods' veths: this prefix and 11 hex characters (conflist: veth_prefix).
DEFAULT_VETH_PREFIX = "cali"
# The main plugin's type, the name it is installed under.
PLUGIN_NAME = "calico-py"
# The IPAM plugin that runs in-process (and installed beside calico-py, the same program).
IPAM_PLUGIN_NAME = "calico-py-ipam"

# What `ip route add` uses; pyroute2 would say `proto static` instead.
PROTO_BOOT = 3
MAIN_TABLE = 254
SCOPE_UNIVERSE = 0
SCOPE_LINK = 253
AF_INET = 2
AF_INET6 = 10


def pod_gateway(version: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return POD_GATEWAY_V4 if version == 4 else POD_GATEWAY_V6


def family(version: int) -> int:
    return AF_INET if version == 4 else AF_INET6


def host_prefixlen(version: int) -> int:
    return 32 if version == 4 else 128


# The rtnetlink protocol number of the routes calico-py makes: the IPAM's
# blackhole route for a block, the node daemon's routes to other nodes' blocks
# (not named in /etc/iproute2/rt_protos, so `ip route` prints "proto 98").
ROUTE_PROTO = 98
