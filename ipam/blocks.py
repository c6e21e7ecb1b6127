"""Which blocks (block_size, e.g. /26) of the pool a node may claim, in which order."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterator
from ipaddress import IPv4Network


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


def block_key(block: IPv4Network) -> str:
    """The block as an etcd key segment: `/` is the key separator."""
    return f"{block.network_address}-{block.prefixlen}"


def block_from_key(segment: str) -> IPv4Network | None:
    address, _, length = segment.partition("-")
    try:
        return IPv4Network(f"{address}/{length}")
    except ValueError:
        return None
