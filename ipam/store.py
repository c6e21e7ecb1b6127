"""What the allocation logic needs from storage (tests/ipam/fake_store.py has a dict-backed one).

Every call except `locked` assumes the caller holds the lock: the store does
no locking of its own, so one read-modify-write sees one consistent state.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from cni_calico_py.core.results import IPAddress


@dataclass(frozen=True)
class Reservation:
    """Who holds an address. `damaged` is set when the record could not be read:
    the address then stays taken (never handed out twice) until GC or DEL clears it."""

    container_id: str
    ifname: str
    netns: str = ""
    created: float = 0.0
    damaged: str = ""
    # "<namespace>/<name>" of the pod, when the runtime named it (kubelet's CNI_ARGS).
    pod: str = ""

    def belongs_to(self, container_id: str, ifname: str) -> bool:
        return not self.damaged and (self.container_id, self.ifname) == (container_id, ifname)


class Store(Protocol):
    def locked(self) -> AbstractContextManager[None]:
        """Hold the store's exclusive lock, or raise CNIError 11 past the configured bound."""

    def reservations(self) -> dict[IPAddress, Reservation]: ...

    def reserve(self, address: IPAddress, reservation: Reservation) -> None:
        """Write (or overwrite) the record of `address`; durable when this returns."""

    def release(self, address: IPAddress) -> None:
        """Remove the record of `address`; no error when there is none."""

    def last_reserved(self, range_set: int) -> IPAddress | None: ...

    def set_last_reserved(self, range_set: int, address: IPAddress) -> None: ...

    def unwritable(self) -> str:
        """Why nothing can be reserved right now, or "" when the store is writable."""
