"""How the node's addresses are written into a block: Calico's allocations, attributes and
unallocated queue."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from cni_calico_py.cluster.mirror import mirrored_block
from cni_calico_py.datastore.model import Block

CIDR = IPv4Network("10.66.0.0/29")


def test_allocations_point_at_attributes_and_freed_addresses_queue_last() -> None:
    empty = Block.empty(CIDR, "n1")
    holders = {IPv4Address("10.66.0.2"): ("net.c1", "shop/web"), IPv4Address("10.66.0.5"): ("net.c2", "")}
    block = mirrored_block(empty, holders, "n1")
    assert block.allocations == (None, None, 0, None, None, 1, None, None)
    assert block.attributes == (
        {"handle_id": "net.c1", "secondary": {"node": "n1", "namespace": "shop", "pod": "web"}},
        {"handle_id": "net.c2", "secondary": {"node": "n1"}})
    assert block.unallocated == (0, 1, 3, 4, 6, 7)
    assert block.addresses() == {"10.66.0.2": block.attributes[0], "10.66.0.5": block.attributes[1]}
    freed = mirrored_block(block, {IPv4Address("10.66.0.5"): ("net.c2", "")}, "n1")
    assert freed.unallocated == (0, 1, 3, 4, 6, 7, 2)
    assert mirrored_block(freed, {IPv4Address("10.66.0.5"): ("net.c2", "")}, "n1") == freed


def test_without_a_store_the_mirror_stops_asking(tmp_path) -> None:
    """A node whose conflist names no store (or none yet) must not be woken twice a second."""
    from cni_calico_py.cluster.config import ClusterConfig
    from cni_calico_py.cluster.mirror import Mirror
    from tests.datastore.memory import MemoryBackend

    conf = ClusterConfig.model_validate({
        "etcd_endpoints": ["http://127.0.0.1:1"], "pool": "10.66.0.0/24", "nodename": "n1",
        "cni_conflist": str(tmp_path / "missing.conflist")})
    mirror = Mirror(MemoryBackend(), conf)
    assert mirror.changed(), "before the first mirror: look"
    assert mirror.apply([], {}) == 0
    assert not mirror.changed()
