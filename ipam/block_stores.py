"""Which stores on the node hold addresses in a block: the block's blackhole stays while any does.

Two network configs can hand out addresses from one block through different
stores (another network name, another dataDir). The blackhole belongs to the
block, not to a store, so a DEL that takes a store's last address of the
block must leave it while another store still holds one there.

One small file per block and network namespace (the node's; in tests a
namespace stands for a node) lists the stores that hold addresses in the
block, as JSON `{"stores": [<store directory>, ...]}`:
`<directory>/net<netns cookie>-<block address>-<prefix length>`, beside the
flock `<that>.lock` that guards it and the block's blackhole route. The
directory is node-wide, `/run/calico-py-ipam/block-stores` (not the agent's
runtime directory, which goes when the agent stops): on tmpfs, like the
routes it speaks of, it starts empty at boot, and a namespace's cookie is
never reused within a boot. CALICO_PY_BLOCK_STORES names another directory;
every process on the node must use the same one, the agent and cold callers
alike. The block's two files go when no store is left.

A store takes a block's lock only while holding its own store lock (never
the other way round, and never two blocks' locks at once: the tidying below
only tries), so no wait deadlocks. Under the block's lock:
- a store that has just written a record in the block (ADD) lists itself,
  then makes sure the blackhole is there;
- a store whose last record in the block is gone (DEL, GC) leaves the list,
  and drops every listed store whose directory holds no record in the block
  now; it removes the blackhole only when nobody is left.

Why no interleaving ends with an address held and no blackhole: take a
record held at the end and the last removal of the blackhole. If the ADD
that wrote the record took the block's lock after that removal, it listed its
store and put the blackhole back then. If before, its store was listed from
then until the removal: only the store itself leaves the list (and only when
it holds nothing in the block), and whoever drops another store has read its
directory under the lock, after the record was written, and found none. So
the remover saw a listed store that holds an address, and did not remove.
The records are read without their store's lock: each one is whole (written
by a rename), and a record that appears after the read belongs to an ADD
that takes this lock, lists its store and makes the blackhole afterwards.
A listed store that holds nothing (a killed DEL, a removed store directory)
only keeps the blackhole until the next store leaves the block. An ADD killed
between its record and the block's lock leaves a record nobody listed (and
perhaps no blackhole): the runtime's DEL of that ADD removes the record, and
GC lists every store that holds an address again.

A namespace deleted with addresses still held (tests do this) leaves its
lists behind. Once there are MAX_LISTS of them, a store that starts a new list
first removes the lists none of whose stores holds an address any more,
each under its lock if that lock is free at once; at most once every
SWEEP_SECONDS (the mtime of SWEPT says when), since lists whose stores still
hold addresses stay, and sweeping them on every new list would cost each ADD
milliseconds per list.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from cni_calico_py.core import files, locks
from cni_calico_py.core.errors import CNIError, Code
from cni_calico_py.core.logs import log
from cni_calico_py.core.results import IPNetwork

from .records import listdir, record_paths

DIRECTORY_ENV = "CALICO_PY_BLOCK_STORES"
DEFAULT_DIRECTORY = "/run/calico-py-ipam/block-stores"
LOCK_SUFFIX = ".lock"
MAX_LISTS = 64
SWEEP_SECONDS = 600.0
SWEPT = ".swept"
# socket(7): the network namespace's cookie, unique within a boot (Linux 5.14).
_SO_NETNS_COOKIE = getattr(socket, "SO_NETNS_COOKIE", 71)


def directory() -> str:
    return os.environ.get(DIRECTORY_ENV) or DEFAULT_DIRECTORY


def netns_id() -> int:
    """The network namespace of the calling thread, where the plugin's routes go."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
            return int.from_bytes(probe.getsockopt(socket.SOL_SOCKET, _SO_NETNS_COOKIE, 8),
                                  "little")
    except OSError:
        pass
    try:
        # Before Linux 5.14: the inode, which a later namespace may have again.
        return os.stat("/proc/thread-self/ns/net").st_ino
    except OSError as err:
        raise CNIError(Code.IO_FAILURE, f"cannot tell which network namespace this is: "
                       f"{err.strerror or err}", "/proc/thread-self/ns/net") from None


def file_name(netns: int, block: IPNetwork) -> str:
    return f"net{netns}-{block.network_address}-{block.prefixlen}"


def block_of(name: str) -> IPNetwork | None:
    """The block a list file is named after; None for any other name."""
    if not name.startswith("net") or name.endswith(LOCK_SUFFIX):
        return None
    address, _, prefix = name.partition("-")[2].rpartition("-")
    try:
        return ipaddress.ip_network(f"{address}/{prefix}")
    except ValueError:
        return None


def holds(store: str, block: IPNetwork) -> bool:
    """Whether the store directory has a record of an address in `block` (unreadable ones count)."""
    return any(address in block for address, _ in record_paths(store))


class BlockStores:
    """The stores listed for one block; changed only while its lock is held (`locked`)."""

    def __init__(self, path: str, stores: list[str]) -> None:
        self.path = path
        self.stores = stores
        self._saved = list(stores)

    def add(self, store: str) -> None:
        if store not in self.stores:
            self.stores.append(store)

    def leave(self, store: str, block: IPNetwork) -> None:
        """`store` holds nothing in the block now; nor does any listed store whose
        directory has no record in it (read now, under the block's lock)."""
        self.stores = [s for s in self.stores if s != store and holds(s, block)]

    def save(self) -> None:
        """Write the list if it changed, durably, before the route follows it; none left, no file."""
        if self.stores == self._saved:
            return
        try:
            if self.stores:
                _tidy(self.path, sweep=not self._saved)
                files.replace(self.path, json.dumps({"stores": self.stores}) + "\n", mode=0o600)
            else:
                with suppress(FileNotFoundError):
                    os.unlink(self.path)
        except OSError as err:
            raise CNIError(Code.IO_FAILURE, f"cannot write {self.path}, the stores that hold "
                           f"addresses in the block: {err.strerror or err}", self.path) from None
        self._saved = list(self.stores)


@contextmanager
def locked(block: IPNetwork, timeout: float) -> Iterator[BlockStores]:
    """The block's list of stores, under its lock; its files go when the list ends empty."""
    path = os.path.join(directory(), file_name(netns_id(), block))
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    except OSError as err:
        raise CNIError(Code.IO_FAILURE, f"cannot create {os.path.dirname(path)}: "
                       f"{err.strerror or err}", path) from None
    lock = path + LOCK_SUFFIX
    with locks.held(lock, timeout, where=f"the lock of block {block} was taken",
                    busy=f"the lock of block {block}, {lock}, is still held by another process "
                         f"after {timeout:g} s; try again later"):
        listed = BlockStores(path, _read(path))
        yield listed
        if not listed.stores and not os.path.exists(path):
            # Last, while still held: a waiter on this file finds it unlinked and
            # takes the lock on a new one (core/locks.py).
            with suppress(OSError):
                os.unlink(lock)


def read_list(path: str) -> list[str]:
    """The stores a block's list names, read without its lock (it is replaced whole)."""
    try:
        return _read(path)
    except CNIError:
        return []


def _read(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except FileNotFoundError:
        return []
    except OSError as err:
        raise CNIError(Code.IO_FAILURE, f"cannot read {path}, the stores that hold addresses "
                       f"in the block: {err.strerror or err}", path) from None
    try:
        stores = json.loads(text)["stores"]
        if not isinstance(stores, list) or not all(isinstance(s, str) for s in stores):
            raise ValueError("stores is not a list of paths")
    except (ValueError, KeyError, TypeError) as err:
        # Only tampering makes one: the list fills again as the stores reserve.
        log.warning("ignoring %s, which is damaged (%s)", path, err)
        return []
    return list(dict.fromkeys(stores))


def _tidy(path: str, sweep: bool) -> None:
    """Before a write: a killed writer's temp file of this list; before a new list (`sweep`),
    the stale lists too when there are many."""
    parent, name = os.path.split(path)
    names = listdir(parent)
    temp = f"{files.TEMP_PREFIX}{name}-"
    for entry in names:
        if entry.startswith(temp):
            with suppress(FileNotFoundError):
                os.unlink(os.path.join(parent, entry))
    lists = [n for n in names if n != name and block_of(n) is not None]
    if sweep and len(lists) >= MAX_LISTS and _sweep_due(parent):
        for other in lists:
            _drop_if_unused(os.path.join(parent, other))


def _sweep_due(parent: str) -> bool:
    """Whether the last sweep is SWEEP_SECONDS old; if so, this one is recorded as begun."""
    marker = os.path.join(parent, SWEPT)
    try:
        if time.time() - os.stat(marker).st_mtime < SWEEP_SECONDS:
            return False
    except FileNotFoundError:
        pass
    try:
        with open(marker, "w", encoding="ascii"):
            pass
    except OSError:
        return False
    return True


def _drop_if_unused(path: str) -> None:
    """Remove a list none of whose stores holds an address in its block, if its lock is free."""
    block = block_of(os.path.basename(path))
    assert block is not None
    lock = path + LOCK_SUFFIX
    try:
        with locks.held(lock, 0.0, busy="busy", where=f"stale lists of block {block} were removed"):
            if any(holds(store, block) for store in _read(path)):
                return
            with suppress(FileNotFoundError):
                os.unlink(path)
            os.unlink(lock)
    except (CNIError, OSError):
        return
