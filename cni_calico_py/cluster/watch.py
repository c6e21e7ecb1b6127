"""Follows one kind of the datastore with a watch, so changes arrive in milliseconds.

The watch runs in its own thread and hands each batch of events to a
callback. It ends, and says why, when the datastore goes away, ends it, or
no longer has the revision it was to start from; the daemon then lists
everything again and starts new watches from what it listed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..core.logs import log
from ..datastore.backend import Backend, WatchStream
from ..datastore.errors import DatastoreError
from ..datastore.model import WatchEvent

OnEvents = Callable[[list[WatchEvent]], None]
OnEnd = Callable[[str], None]


class Watch:
    """A watch of `kind` after `revision`, in a daemon thread."""

    def __init__(self, backend: Backend, kind: str, revision: str, on_events: OnEvents,
                 on_end: OnEnd) -> None:
        self.backend = backend
        self.kind = kind
        self.revision = revision
        self.on_events = on_events
        self.on_end = on_end
        self._stream: WatchStream | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{kind}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stopped.set()
        stream = self._stream
        if stream is not None:
            stream.close()

    def _run(self) -> None:
        reason = f"the watch of {self.kind} ended"
        try:
            self._stream = self.backend.watch(self.kind, self.revision)
            if self._stopped.is_set():
                return
            log.debug("watching %s after revision %s", self.kind, self.revision)
            for events in self._stream:
                self.on_events(events)
        except DatastoreError as err:
            reason = f"the watch of {self.kind} ended: {err}"
        except Exception as err:  # a broken stream or bad data: read everything again
            reason = f"the watch of {self.kind} failed: {type(err).__name__}: {err}"
        if not self._stopped.is_set():
            self.on_end(reason)
