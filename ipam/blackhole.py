"""The node's `blackhole <block>` route while the block has an allocation.

Pods are routed per /32 (/128); without the blackhole, traffic for a block
address that no pod holds would follow the node's default route out and come
back (Calico does the same). The route carries this project's own protocol
number so it can tell its routes from anyone else's.

The netlink socket (and pyroute2's codecs) are loaded only here and only
when a route is touched: they cost more to import than the rest of the IPAM.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Any, Protocol

from cni_calico_py.core.constants import MAIN_TABLE, ROUTE_PROTO
from cni_calico_py.core.errors import CNIError, Code
from cni_calico_py.core.results import IPNetwork

from . import block_stores

if TYPE_CHECKING:
    from cni_calico_py.core.rtnl import Rtnl

_RTN_BLACKHOLE = 6
_ESRCH = 3


class Blackholes(Protocol):
    """Called under the store's lock, as the store's records of the block change."""

    def ensure(self, block: IPNetwork) -> None:
        """The store holds an address in `block`: the node must have its blackhole."""

    def remove(self, block: IPNetwork) -> None:
        """The store holds no address in `block` now: the blackhole goes, unless
        another store on the node still holds one there (SharedBlackholes)."""

    def present(self, block: IPNetwork) -> bool: ...


class NetlinkBlackholes:
    """Blackhole routes in the current network namespace (the node's)."""

    def __init__(self) -> None:
        self._rtnl: Rtnl | None = None

    def open(self) -> Rtnl:
        """Pay the import and socket cost now, e.g. before taking a lock."""
        if self._rtnl is None:
            from cni_calico_py.core.rtnl import Rtnl

            # Strict checking lets the kernel filter dumps by protocol and type,
            # so the usual check reads this plugin's few blackholes, not a
            # route per pod.
            self._rtnl = Rtnl(strict_check=True)
        return self._rtnl

    def close(self) -> None:
        if self._rtnl is not None:
            self._rtnl.close()
            self._rtnl = None

    def ensure(self, block: IPNetwork) -> None:
        if self.present(block):
            return
        routes = self._routes(block)
        others = [r for r in routes if r["type"] != _RTN_BLACKHOLE]
        if others:
            raise CNIError(
                Code.DATAPLANE_FAILURE,
                f"cannot add the blackhole route for block {block}: the node already has a "
                f"route for {block} ({_describe(others[0])}); remove it, the block is "
                "this node's",
                str(block),
            )
        # A blackhole someone else made for our block becomes ours.
        self._change("replace" if routes else "add", block)

    def remove(self, block: IPNetwork) -> None:
        if self.present(block):
            self._change("del", block)

    def present(self, block: IPNetwork) -> bool:
        return any(_ours(r) for r in self._routes(block, proto=ROUTE_PROTO, type=_RTN_BLACKHOLE))

    def _routes(self, block: IPNetwork, **kernel_filter: int) -> list[Any]:
        rtnl = self.open()
        family = socket.AF_INET if block.version == 4 else socket.AF_INET6
        try:
            dump = rtnl.routes(family, table=MAIN_TABLE, **kernel_filter)
        except OSError as err:
            raise _failure("read the node's routes", block, err) from None
        return [
            r for r in dump
            if r.get("dst") == str(block.network_address) and r["dst_len"] == block.prefixlen
            and r["table"] == MAIN_TABLE
        ]

    def _change(self, verb: str, block: IPNetwork) -> None:
        from cni_calico_py.core.rtnl import RouteSpec

        family = socket.AF_INET if block.version == 4 else socket.AF_INET6
        route = RouteSpec(family, str(block.network_address), block.prefixlen,
                          proto=ROUTE_PROTO, kind=_RTN_BLACKHOLE, table=MAIN_TABLE)
        try:
            self.open().change_route(verb, route)
        except OSError as err:
            if verb == "del" and getattr(err, "code", None) == _ESRCH:
                return
            raise _failure(f"{verb} the blackhole route", block, err) from None


class SharedBlackholes(NetlinkBlackholes):
    """The IPAM's own blackholes, shared by every store on the node that uses the block.

    The block's lock and its list of stores (block_stores.py) decide: the
    blackhole goes only when the last store holding an address in the block
    leaves it, whichever network name or dataDir each store has.
    """

    def __init__(self, store_dir: str, lock_timeout: float) -> None:
        super().__init__()
        self.store = os.path.normpath(store_dir)
        self.lock_timeout = lock_timeout

    def ensure(self, block: IPNetwork) -> None:
        self.open()
        with block_stores.locked(block, self.lock_timeout) as listed:
            listed.add(self.store)
            listed.save()
            self._ensure_route(block)

    def remove(self, block: IPNetwork) -> None:
        self.open()
        with block_stores.locked(block, self.lock_timeout) as listed:
            listed.leave(self.store, block)
            listed.save()
            if not listed.stores:
                self._remove_route(block)

    def _ensure_route(self, block: IPNetwork) -> None:
        super().ensure(block)

    def _remove_route(self, block: IPNetwork) -> None:
        super().remove(block)


def _ours(route: Any) -> bool:
    return bool(route["type"] == _RTN_BLACKHOLE and route["proto"] == ROUTE_PROTO)


def _describe(route: Any) -> str:
    return f"type {route['type']}, proto {route['proto']}"


def _failure(action: str, block: IPNetwork, err: OSError) -> CNIError:
    return CNIError(Code.DATAPLANE_FAILURE, f"cannot {action} for block {block}: {err}",
                    str(block))


class BirdBlackholes(SharedBlackholes):
    """Cluster BGP modes: BIRD holds the blackhole of every block the node owns,
    pods or not (`blackhole <block> proto bird`); the IPAM only checks it is there.
    The block's list of stores is kept all the same: the node's repairer reads
    from it which stores hold the addresses whose wiring it keeps."""

    def _ensure_route(self, block: IPNetwork) -> None:
        pass

    def _remove_route(self, block: IPNetwork) -> None:
        pass

    def present(self, block: IPNetwork) -> bool:
        return bool(self._routes(block, type=_RTN_BLACKHOLE))
