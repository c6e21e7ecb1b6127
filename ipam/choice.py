"""Which address an ADD reserves: the next free one in round-robin order, or the requested one."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from cni_calico_py.core.errors import CNIError, Code
from cni_calico_py.core.results import IPAddress

from .allocator import candidates
from .ranges import IpamConf, RangeSet
from .requested import Requested
from .store import Reservation, Store


def next_free(store: Store, range_set: RangeSet, held: Collection[IPAddress]) -> IPAddress:
    """The first free address after the range set's last reserved one, wrapping around."""
    spans = [r.span for r in range_set.ranges]
    for address in candidates(spans, store.last_reserved(range_set.index)):
        if address not in held and not range_set.is_gateway(address):
            return address
    raise CNIError(
        Code.ADDRESS_EXHAUSTED,
        f"no free address in block {range_set.describe()} (range set {range_set.index}): "
        f"{used(range_set, held)} of {range_set.size} addresses in use; STATUS reports "
        "error 50 until one is released",
        range_set.describe(),
    )


def require_free(want: Requested, range_set: RangeSet, held: dict[IPAddress, Reservation]) -> None:
    """Error 103 when the requested address is the gateway or someone else's."""
    if range_set.is_gateway(want.address):
        raise CNIError(Code.ADDRESS_CONFLICT,
                       f"requested address {want} is the gateway of {range_set.describe()}",
                       str(want.address))
    holder = held.get(want.address)
    if holder is None:
        return
    if holder.damaged:
        whom = f"an unreadable record ({holder.damaged}); GC releases it once no pod is routed to it"
    else:
        whom = f"container {holder.container_id} ifname {holder.ifname}"
    raise CNIError(Code.ADDRESS_CONFLICT, f"requested address {want} is already reserved "
                   f"for {whom}", str(want.address))


def requested_by_set(conf: IpamConf, requested: Sequence[Requested]) -> dict[int, Requested]:
    """The requested addresses by range set; error 7 for one outside them all, or two in one."""
    by_set: dict[int, Requested] = {}
    for want in requested:
        range_set = conf.range_set_of(want.address)
        if range_set is None:
            blocks = "; ".join(s.describe() for s in conf.range_sets)
            raise CNIError(Code.INVALID_NETWORK_CONFIG,
                           f"requested address {want} is outside every range of network "
                           f"{conf.network} ({blocks})", str(want.address))
        if range_set.index in by_set:
            raise CNIError(Code.INVALID_NETWORK_CONFIG,
                           f"requested addresses {by_set[range_set.index]} and {want} are both "
                           f"in {range_set.describe()}: one address per range set",
                           str(want.address))
        by_set[range_set.index] = want
    return by_set


def used(range_set: RangeSet, held: Collection[IPAddress]) -> int:
    """How many addresses of the range set are held (its gateway never is)."""
    return sum(1 for a in held if range_set.find(a) and not range_set.is_gateway(a))
