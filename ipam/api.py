"""What the node daemon (cni_calico_py/cluster) uses of the IPAM.

Two modules make the whole contract (block ownership, which a full ADD
claims too, is the datastore's: cni_calico_py/datastore/ownership.py):
- `ipam.node_state`: the node state file the daemon writes and every ADD reads;
- this module: the addresses held in the store of the conflist's network, and
  the store's lock, so that the daemon gives back only blocks nobody uses.

`calico-py explain` reads who holds each address here too (`network_view`), and
the node agent's repairer what every store of the node holds (`node_holdings`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from cni_calico_py.core.results import IPAddress, IPNetwork

from .conflist import ConflistError

__all__ = ["ConflistError", "Holder", "Holding", "NetworkView", "NodeHoldings", "PoolStore",
           "bird_holds_blackholes", "network_view", "node_holdings", "pool_store",
           "restore_blackhole"]


@dataclass(frozen=True)
class PoolStore:
    """The store of a network whose blocks come from the node state file."""

    held: Callable[[], list[IPAddress]]
    """Every address reserved in the store now (read without the lock)."""
    locked: Callable[[], AbstractContextManager[None]]
    """The store's lock: no ADD reserves an address while it is held."""


def pool_store(conflist: str) -> PoolStore | None:
    """The store of the network the conflist gives this IPAM; None when that network
    has a block of its own in the conflist rather than the pool's blocks.

    Raises ConflistError when the file is not such a conflist, CNIError when
    its ipam section is invalid or the node state file is unreadable.
    """
    from . import config
    from .conflist import load_network
    from .disk_store import DiskStore

    conf = config.parse(load_network(conflist))
    if conf.node_state_file is None:
        return None
    store = DiskStore(conf.store_dir, conf.lock_timeout)
    return PoolStore(held=lambda: list(store.reservations()), locked=store.locked)


@dataclass(frozen=True)
class Holder:
    """Who holds an address, as its record says."""

    container_id: str
    ifname: str
    netns: str
    pod: str  # "<namespace>/<name>", or "" when the runtime did not name it


@dataclass(frozen=True)
class NetworkView:
    network: str
    blocks: tuple[IPNetwork, ...]
    holders: dict[IPAddress, Holder]
    # The store's directory: every ADD and DEL changes its modification time.
    store: str = ""


def network_view(conflist: str) -> NetworkView:
    """The network's blocks now (the conflist's, or in cluster mode the node state's) and
    who holds each address, read without the store's lock.

    Raises ConflistError or CNIError as `pool_store` does.
    """
    from . import config
    from .conflist import load_network
    from .records import read_record, record_paths

    conf = config.parse(load_network(conflist))
    holders = {}
    for address, path in record_paths(conf.store_dir):
        record = read_record(path)
        if record is not None and not record.damaged:
            holders[address] = Holder(record.container_id, record.ifname, record.netns,
                                      record.pod)
    return NetworkView(conf.network, conf.blocks, holders, conf.store_dir)


@dataclass(frozen=True)
class Holding:
    """One address a store of this node holds, and for which attachment."""

    store: str  # the store directory, <dataDir>/<network name>
    network: str
    address: IPAddress
    container_id: str
    ifname: str


@dataclass(frozen=True)
class NodeHoldings:
    holdings: tuple[Holding, ...]
    # The blocks some store holds an address in, and whether BIRD, not the IPAM,
    # holds their blackholes (cluster BGP modes).
    blocks: tuple[IPNetwork, ...]
    bird_holds_blackholes: bool


def node_holdings(state_file: str | None = None) -> NodeHoldings:
    """What every store of this network namespace holds, read without the stores' locks.

    The stores are the ones the blocks' lists name (block_stores.py), so a
    store that has held nothing since the node booted is not among them.
    """
    from . import block_stores
    from .records import listdir, read_record, record_paths

    netns = block_stores.netns_id()
    prefix = f"net{netns}-"
    stores: dict[str, set[IPNetwork]] = {}
    for name in listdir(block_stores.directory()):
        block = block_stores.block_of(name) if name.startswith(prefix) else None
        if block is None:
            continue
        path = f"{block_stores.directory()}/{name}"
        for store in block_stores.read_list(path):
            stores.setdefault(store, set()).add(block)
    holdings = []
    held_blocks: set[IPNetwork] = set()
    for store, blocks in sorted(stores.items()):
        network = store.rstrip("/").rsplit("/", 1)[-1]
        for address, path in record_paths(store):
            record = read_record(path)
            if record is None or record.damaged:
                continue
            holdings.append(Holding(store, network, address, record.container_id, record.ifname))
            held_blocks.update(b for b in blocks if address in b)
    return NodeHoldings(tuple(holdings), tuple(sorted(held_blocks, key=str)),
                        bird_holds_blackholes(state_file))


def bird_holds_blackholes(state_file: str | None = None) -> bool:
    """Whether the node state says BIRD, not the IPAM, holds the node's blackholes."""
    from . import node_state

    state = node_state.read(state_file or node_state.DEFAULT_STATE_FILE)
    return state is not None and state.bird_holds_blackholes


def restore_blackhole(block: IPNetwork, timeout: float = 1.0) -> bool:
    """Put the IPAM's blackhole of `block` back if a store of this node holds an address in
    it; whether it did. Under the block's lock, as the stores' ADD and DEL change it, so it
    never brings back one that the last store's DEL has just removed.

    Raises CNIError 11 when the block's lock stays busy past `timeout`.
    """
    from . import block_stores
    from .blackhole import NetlinkBlackholes

    holes = NetlinkBlackholes()
    try:
        with block_stores.locked(block, timeout) as listed:
            if not any(block_stores.holds(store, block) for store in listed.stores):
                return False
            if holes.present(block):
                return False
            holes.ensure(block)
            return True
    finally:
        holes.close()
