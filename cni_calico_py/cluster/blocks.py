"""The node's blocks as the node daemon orders them, and its VXLAN MAC.

Which blocks a node may claim, and their etcd keys, are the IPAM's
(ipam/blocks.py): an ADD that finds every block full claims one too.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Collection, Sequence
from ipaddress import IPv4Network


def home_first(
    owned: Collection[IPv4Network], tunnel: ipaddress.IPv4Address | None,
    earlier: Sequence[IPv4Network],
) -> list[IPv4Network]:
    """The node's blocks, its home block first: the one holding the tunnel
    address, else the one held longest (`earlier` is the order last written).

    Claims wrap around the pool, so a later block can have a lower address:
    ordered by address alone, the home block would move to the newest one.
    """
    def rank(block: IPv4Network) -> tuple[bool, int, IPv4Network]:
        since = earlier.index(block) if block in earlier else len(earlier)
        return (tunnel is None or tunnel not in block, since, block)

    return sorted(owned, key=rank)


def vtep_mac(nodename: str) -> str:
    """A stable, locally administered unicast MAC for the node's VXLAN device."""
    digest = hashlib.sha1(b"vtep:" + nodename.encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x66, *digest[:5]))
