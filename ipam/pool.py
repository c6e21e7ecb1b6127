"""Allocation over a Store: what ADD, DEL, GC, CHECK and STATUS do to the reservations.

Each operation is one read-modify-write under the store's lock, including the
blackhole route changes, so a concurrent ADD of a block's first address and
DEL of its last one cannot leave the route in the wrong state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace

from cni_calico_py.core.errors import CNIError, Code
from cni_calico_py.core.results import IPAddress, IPNetwork

from .blackhole import Blackholes
from .choice import next_free, requested_by_set, require_free, used
from .ranges import IpamConf, Range, RangeSet
from .requested import Requested
from .store import Reservation, Store


@dataclass(frozen=True)
class Attachment:
    container_id: str
    ifname: str

    def __str__(self) -> str:
        return f"container {self.container_id} ifname {self.ifname}"


@dataclass(frozen=True)
class Allocation:
    address: IPAddress
    range: Range
    # Reserved by this very call; False when the attachment already held it.
    fresh: bool = False


def add(
    store: Store, conf: IpamConf, who: Attachment, netns: str,
    requested: Sequence[Requested], routes: Blackholes, pod: str = "",
) -> list[Allocation]:
    """One address per range set for `who`; the ones it already holds come back unchanged."""
    wanted = requested_by_set(conf, requested)
    with store.locked():
        held = store.reservations()
        made: list[IPAddress] = []
        try:
            chosen = [
                _one(store, range_set, who, netns, pod, wanted.get(range_set.index), held, made)
                for range_set in conf.range_sets
            ]
            for block in dict.fromkeys(a.range.subnet for a in chosen):
                routes.ensure(block)
        except BaseException:
            # Undo this call's reservations only; earlier ones belong to an earlier ADD.
            for address in made:
                with suppress(OSError):
                    store.release(address)
            raise
    return chosen


def _one(
    store: Store, range_set: RangeSet, who: Attachment, netns: str, pod: str,
    want: Requested | None, held: dict[IPAddress, Reservation], made: list[IPAddress],
) -> Allocation:
    mine = sorted(a for a, r in held.items()
                  if r.belongs_to(who.container_id, who.ifname) and range_set.find(a))
    if mine:
        if want is not None and want.address not in mine:
            raise CNIError(Code.ADDRESS_CONFLICT,
                           f"{who} already holds {mine[0]} in {range_set.describe()}; "
                           f"cannot also reserve {want}: DEL it first", str(want.address))
        address = want.address if want is not None else mine[0]
        if (held[address].netns, held[address].pod) != (netns, pod or held[address].pod):
            # A retried ADD may come with a new netns; keep the record telling the truth.
            store.reserve(address, replace(held[address], netns=netns,
                                           pod=pod or held[address].pod))
    else:
        if want is not None:
            require_free(want, range_set, held)
            address = want.address
        else:
            address = next_free(store, range_set, held)
        store.reserve(address, Reservation(who.container_id, who.ifname, netns, time.time(),
                                           pod=pod))
        made.append(address)
        if want is None:
            store.set_last_reserved(range_set.index, address)
    found = range_set.find(address)
    assert found is not None
    return Allocation(address, found, fresh=address in made)


def addresses_of(store: Store, who: Attachment) -> list[IPAddress]:
    """What `who` holds now; while it does, no other attachment can be handed these."""
    with store.locked():
        return _held_by(store.reservations(), who)


def _held_by(held: dict[IPAddress, Reservation], who: Attachment) -> list[IPAddress]:
    return [a for a, r in held.items() if r.belongs_to(who.container_id, who.ifname)]


def release(
    store: Store, conf: IpamConf, who: Attachment, routes: Blackholes,
    only: Collection[IPAddress] | None = None,
) -> list[IPAddress]:
    """Free what `who` holds (of `only`, when given); nothing held is success too.

    DEL frees all of it and may be repeated. The undo of one ADD passes the
    addresses that ADD reserved: what the attachment held before that ADD
    belongs to an earlier one and stays.
    """
    with store.locked():
        held = store.reservations()
        mine = [a for a in _held_by(held, who) if only is None or a in only]
        for address in mine:
            store.release(address)
            del held[address]
        for block in dict.fromkeys(b for b in map(conf.block_of, mine) if b is not None):
            if not any(a in block for a in held):
                routes.remove(block)
    return mine


# Asked under the store's lock before GC frees an address: whether it may go.
# The main plugin removes the host veth and node route behind the address
# here; False keeps the reservation (the node still routes it to a pod).
BeforeRelease = Callable[[IPAddress, Reservation], bool]


def gc(
    store: Store, conf: IpamConf, valid: Collection[Attachment], routes: Blackholes,
    before_release: BeforeRelease | None = None,
) -> list[IPAddress]:
    """Release every reservation not in `valid`, going on past failures; one error lists them all.

    `before_release`, when given, is asked first for each: False keeps that
    reservation; an error keeps it too, and is reported with the rest.
    """
    failures: list[str] = []
    codes: set[int] = set()
    released: list[IPAddress] = []
    with store.locked():
        held = store.reservations()
        for address, record in sorted(held.items(), key=_address_order):
            if not record.damaged and Attachment(record.container_id, record.ifname) in valid:
                continue
            try:
                if before_release is not None and not before_release(address, record):
                    continue
                store.release(address)
                released.append(address)
            except CNIError as err:
                failures.append(f"{address}: {err.msg}")
                codes.add(err.code)
            except OSError as err:
                failures.append(f"{address}: {err}")
                codes.add(Code.IO_FAILURE)
        remaining = store.reservations()
        # GC also puts right what a killed ADD or DEL left undone.
        for block in conf.blocks:
            try:
                _reconcile(block, remaining, routes)
            except CNIError as err:
                failures.append(err.msg)
                codes.add(err.code)
    if failures:
        raise CNIError(
            codes.pop() if len(codes) == 1 else Code.IPAM_FAILURE,
            f"GC released {len(released)} stale reservation(s) but {len(failures)} step(s) "
            f"failed: {'; '.join(failures)}",
            "GC",
        )
    return released


def _address_order(item: tuple[IPAddress, Reservation]) -> tuple[int, int]:
    # IPv4 and IPv6 addresses do not compare with each other.
    return item[0].version, int(item[0])


def _reconcile(block: IPNetwork, held: Collection[IPAddress], routes: Blackholes) -> None:
    if any(a in block for a in held):
        routes.ensure(block)
    else:
        routes.remove(block)


def check(
    store: Store, conf: IpamConf, who: Attachment, expected: Sequence[IPAddress],
    routes: Blackholes,
) -> None:
    """Error 104 naming each thing missing: a reservation, or its block's blackhole route."""
    with store.locked():
        held = store.reservations()
    mine = {a for a, r in held.items() if r.belongs_to(who.container_id, who.ifname)}
    problems = [
        f"no address reserved in {s.describe()}"
        for s in conf.range_sets if not any(s.find(a) for a in mine)
    ]
    for address in expected:
        if conf.range_set_of(address) is not None and address not in mine:
            problems.append(f"prevResult address {address} is not reserved for it")
    for block in dict.fromkeys(b for b in map(conf.block_of, mine) if b is not None):
        if not routes.present(block):
            problems.append(f"the blackhole route for block {block} is missing (ADD restores it)")
    if problems:
        raise CNIError(Code.CHECK_FAILED, f"CHECK of {who} in network {conf.network}: "
                       + "; ".join(problems), conf.store_dir)


def status(store: Store, conf: IpamConf) -> None:
    """Error 50 while some range set cannot hand out an address, else nothing."""
    reason = store.unwritable()
    if reason:
        raise CNIError(Code.NOT_AVAILABLE, reason, conf.store_dir)
    if conf.node_state_file is not None:
        return  # cluster mode: a full node claims another block from the pool on the next ADD
    with store.locked():
        held = store.reservations()
    full = [s for s in conf.range_sets if used(s, held) >= s.size]
    if full:
        raise CNIError(
            Code.NOT_AVAILABLE,
            "no address can be handed out: " + "; ".join(
                f"block {s.describe()} is full, {used(s, held)} of {s.size} addresses in use"
                for s in full),
            conf.store_dir,
        )
