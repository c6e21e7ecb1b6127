"""Which /26 (block_size) blocks of the pool a node may claim, in which order."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Collection, Iterator, Sequence

IPv4Network = ipaddress.IPv4Network


def pool_blocks(pool: IPv4Network, block_size: int) -> Iterator[IPv4Network]:
    return pool.subnets(new_prefix=block_size)


def block_count(pool: IPv4Network, block_size: int) -> int:
    return 1 << (block_size - pool.prefixlen)


def claim_order(
    pool: IPv4Network, block_size: int, taken: Collection[IPv4Network], nodename: str,
) -> Iterator[IPv4Network]:
    """Free blocks, starting at a point that depends on the node name and wrapping around.

    Nodes starting together then mostly try different blocks first, so a race
    costs a retry only when two names land on the same block.
    """
    count = block_count(pool, block_size)
    start = int.from_bytes(hashlib.sha1(nodename.encode()).digest()[:8], "big") % count
    step = 1 << (32 - block_size)
    base = int(pool.network_address)
    for offset in range(count):
        index = (start + offset) % count
        block = IPv4Network((base + index * step, block_size))
        if block not in taken:
            yield block


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


def block_key(block: IPv4Network) -> str:
    """The block as an etcd key segment: `/` is the key separator."""
    return f"{block.network_address}-{block.prefixlen}"


def block_from_key(segment: str) -> IPv4Network | None:
    address, _, length = segment.partition("-")
    try:
        return IPv4Network(f"{address}/{length}")
    except ValueError:
        return None


def vtep_mac(nodename: str) -> str:
    """A stable, locally administered unicast MAC for the node's VXLAN device."""
    digest = hashlib.sha1(b"vtep:" + nodename.encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x66, *digest[:5]))
