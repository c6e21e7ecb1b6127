"""The Store protocol over dicts, for unit tests of the allocation logic (host-local's FakeStore)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from cni_calico_py.core.results import IPAddress
from ipam.store import Reservation


class MemoryStore:
    """The Store protocol over dicts, for unit tests of the allocation logic."""

    def __init__(self) -> None:
        self.records: dict[IPAddress, Reservation] = {}
        self.last: dict[int, IPAddress] = {}
        self.holding = False
        self.read_only = ""

    @contextmanager
    def _lock(self) -> Iterator[None]:
        assert not self.holding, "lock taken twice"
        self.holding = True
        try:
            yield
        finally:
            self.holding = False

    def locked(self) -> AbstractContextManager[None]:
        return self._lock()

    def reservations(self) -> dict[IPAddress, Reservation]:
        self._require_lock()
        return dict(self.records)

    def reserve(self, address: IPAddress, reservation: Reservation) -> None:
        self._require_lock()
        if self.read_only:
            raise OSError(self.read_only)
        self.records[address] = reservation

    def release(self, address: IPAddress) -> None:
        self._require_lock()
        self.records.pop(address, None)

    def last_reserved(self, range_set: int) -> IPAddress | None:
        return self.last.get(range_set)

    def set_last_reserved(self, range_set: int, address: IPAddress) -> None:
        self._require_lock()
        self.last[range_set] = address

    def unwritable(self) -> str:
        return self.read_only

    def _require_lock(self) -> None:
        assert self.holding, "store used without its lock"
