"""The backends the contract suite runs against, each with the few things only a test does to it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from cni_calico_py.datastore.backend import Backend, WatchStream
from cni_calico_py.datastore.model import WatchEvent


@dataclass
class Harness:
    backend: Backend
    # Forget the history: a revision (given one, read before) a watch can no longer start after.
    compact: Callable[[str], str]
    # Let `seconds` pass for liveness (real time, or a fake clock moved).
    let_pass: Callable[[float], None]
    # Another client of the same datastore (its own connections), for races.
    another: Callable[[], Backend]


@dataclass
class Collected:
    """A watch read in a thread of its own, every batch kept."""

    stream: WatchStream
    events: list[WatchEvent] = field(default_factory=list)
    ended: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[WatchEvent]:
        deadline = time.monotonic() + timeout
        while len(self.events) < count and not self.done.is_set():
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.events)} of {count} events after {timeout} s: "
                                     f"{self.events}")
            time.sleep(0.02)
        return self.events


@contextmanager
def collecting(stream: WatchStream) -> Iterator[Collected]:
    collected = Collected(stream)

    def read() -> None:
        try:
            for batch in stream:
                collected.events.extend(batch)
        except BaseException as err:  # handed to the test to assert on
            collected.ended = err
        finally:
            collected.done.set()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    try:
        yield collected
    finally:
        stream.close()
        thread.join(5)
